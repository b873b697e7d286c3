"""Checkpoints for the ROS tests.

``tiny_checkpoint``: an untrained VLA (``policies.vla.testing.make_tiny_checkpoint``) — it moves
the arm near home, enough for e-stop, watchdog and message tests. ``trained_checkpoint``: one
that can succeed at a task, from ``policies.vla.testing.make_trained_checkpoint(path)`` when
that exists, or ``$KIZUNA_TRAINED_CHECKPOINT``; otherwise the success test is skipped.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from policies.vla.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if env := os.environ.get("KIZUNA_TRAINED_CHECKPOINT"):
        return Path(env)
    testing = importlib.import_module("policies.vla.testing")
    maker = getattr(testing, "make_trained_checkpoint", None)
    if maker is None:
        pytest.skip("needs a trained checkpoint (lead)")
    return Path(maker(tmp_path_factory.mktemp("trained") / "checkpoint"))
