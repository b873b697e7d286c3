"""Checkpoints for the ROS tests.

``tiny_checkpoint``: an untrained VLA (``policies.vla.testing.make_tiny_checkpoint``) — it moves
the arm near home, enough for e-stop, watchdog and message tests. ``trained_checkpoint``: the
multi-task VLA that ships in ``config/checkpoints`` (or ``$KIZUNA_TRAINED_CHECKPOINT``), which
succeeds at reach, push and pick_place.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from policies.vla.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def trained_checkpoint() -> Path:
    from kizuna.paths import shipped_checkpoint

    if env := os.environ.get("KIZUNA_TRAINED_CHECKPOINT"):
        return Path(env)
    return shipped_checkpoint()
