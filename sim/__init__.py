"""Simulation station: Gymnasium environments, physics backends, randomization, reality profiles.

Importing ``sim`` registers the ``kizuna/*-v0`` Gymnasium ids (see ``sim.registration``).
"""

import os

# MuJoCo picks its OpenGL platform when first imported; offscreen EGL works headless (software
# or GPU). Set it before anything imports mujoco; a user's own MUJOCO_GL wins.
os.environ.setdefault("MUJOCO_GL", "egl")

from sim.registration import register_envs  # noqa: E402

register_envs()
