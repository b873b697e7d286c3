"""Scene registration against a depth cloud rendered from a known camera pose."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.frames import look_at_cv, make_transform, pose_error
from calibration.register import register, scene_points
from calibration.synthetic import depth_cloud


@pytest.fixture(scope="module")
def scene():
    return scene_points("pick_place")


def test_registration_within_5mm(scene) -> None:
    T_true = look_at_cv(np.array([0.9, 0.4, 0.6]), np.array([0.5, 0.0, 0.0]), [0, 0, 1])
    cloud = depth_cloud(T_true, noise_std_m=0.001)
    # A rough start (the hand-eye result of a cell that moved a few cm).
    T_init = make_transform(np.array([0.03, -0.02, 0.04]), [0.03, -0.02, 0.02]) @ T_true
    result = register(cloud, scene, T_init=T_init)
    mm, deg = pose_error(result.T_base_cloud, T_true)
    assert result.accepted and mm <= 5.0 and deg <= 0.5, (mm, deg, result.fitness)


def test_wrong_scene_is_rejected(scene) -> None:
    rng = np.random.default_rng(0)
    blob = rng.normal(0.0, 0.3, (5000, 3))
    result = register(blob, scene)
    assert not result.accepted and "capture a view" in result.reason
