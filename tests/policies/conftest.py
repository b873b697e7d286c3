"""Shared by the policy tests: contract observations (Contract 2) near the arm's home pose."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kizuna.robot import PANDA

Observation = dict[str, Any]


@pytest.fixture
def make_observation() -> Callable[..., Observation]:
    """``make_observation(seed=0, size=96)``: state near home, random front and wrist images."""

    def make(seed: int = 0, size: int = 96) -> Observation:
        rng = np.random.default_rng(seed)
        home = np.array([*PANDA.home_q_rad, 1.0], np.float32)
        return {
            "state": home + rng.normal(0, 0.05, 8).astype(np.float32),
            "images": {
                c: rng.integers(0, 256, (size, size, 3), np.uint8) for c in ("front", "wrist")
            },
            "instruction": "touch the red cube",
        }

    return make
