"""Simulation station: Gymnasium environments, physics backends, randomization, reality profiles.

Importing ``sim`` registers the ``kizuna/*-v0`` Gymnasium ids (see ``sim.registration``).
"""

from sim.registration import register_envs

register_envs()
