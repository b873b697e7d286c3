"""Intrinsics on images rendered where the truth is known, and the camera_info YAML."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration.board import BoardSpec
from calibration.frames import look_at_cv
from calibration.intrinsics import (
    CalibrationError,
    IntrinsicsResult,
    calibrate_intrinsics,
    load_camera_info,
    write_camera_info,
)
from calibration.render import BoardRenderer


def _views(board: BoardSpec, n: int, seed: int = 0) -> tuple[list, np.ndarray]:
    rng = np.random.default_rng(seed)
    renderer = BoardRenderer(board)
    centre = np.array([*board.size_m, 0.0]) / 2
    images = []
    for i in range(n):
        eye = centre + [rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), -rng.uniform(0.3, 0.5)]
        up = np.array([0.0, -1.0, 0.0]) + rng.normal(0.0, 0.3, 3)
        target = centre + rng.uniform(-0.06, 0.06, 3) * [1, 1, 0]
        images.append((f"img{i:02d}.png", renderer.render(look_at_cv(eye, target, up), np.eye(4))))
    K = renderer.intrinsics()
    renderer.close()
    return images, K


@pytest.mark.parametrize("kind", ["charuco", "checkerboard"])
def test_intrinsics_recover_the_rendering_camera(kind: str, tmp_path) -> None:
    board = BoardSpec(kind=kind)
    images, K_true = _views(board, 10)
    blank = ("blank.png", np.full_like(images[0][1], 128))
    result = calibrate_intrinsics([*images, blank], board, "front")
    assert result.mean_error_px <= 0.5
    assert max(result.per_image_error_px.values()) <= 0.5
    np.testing.assert_allclose(result.camera_matrix, K_true, atol=2.0)  # pixels
    assert "blank.png" in result.rejected and "found" in result.rejected["blank.png"]
    write_camera_info(result, tmp_path / "front.yaml")
    back = load_camera_info(tmp_path / "front.yaml")
    np.testing.assert_allclose(back.camera_matrix, result.camera_matrix)
    assert back.image_size == (640, 480) and back.camera_name == "front"


def test_too_few_images_says_what_to_capture() -> None:
    board = BoardSpec()
    images, _ = _views(board, 3)
    with pytest.raises(CalibrationError, match=r"found in 3 of 3 images.*capture 2 or more"):
        calibrate_intrinsics(images, board)


def test_bad_camera_info_names_the_field(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("image_width: 640\nimage_height: 480\ncamera_matrix: {data: [1, 2]}\n")
    with pytest.raises(CalibrationError, match="camera_matrix.data"):
        load_camera_info(path)


finite = st.floats(-1e3, 1e3, allow_nan=False)


@settings(max_examples=25, deadline=None)
@given(
    K=st.lists(finite, min_size=9, max_size=9),
    dist=st.lists(finite, min_size=5, max_size=5),
    size=st.tuples(st.integers(1, 4096), st.integers(1, 4096)),
    name=st.text("abcxyz_0123", min_size=1, max_size=12),
)
def test_camera_info_round_trip(K, dist, size, name, tmp_path_factory) -> None:
    result = IntrinsicsResult(name, size, np.reshape(K, (3, 3)), np.array(dist), {"a": 0.1}, {})
    path = tmp_path_factory.mktemp("ci") / "c.yaml"
    write_camera_info(result, path)
    back = load_camera_info(path)
    np.testing.assert_array_equal(back.camera_matrix, result.camera_matrix)
    np.testing.assert_array_equal(back.distortion, result.distortion)
    assert (back.image_size, back.camera_name) == (size, name)
