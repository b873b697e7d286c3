"""Calibration boards (checkerboard or ChArUco): geometry, images and corner detection.

Board frame: origin at the board's top-left outer corner as printed, x along the rows (to the
right on the print), y down the print, z into the board; corners lie at z = 0. Inner corner
``k`` of a board with ``squares_x`` squares across sits at
``((k % (squares_x - 1) + 1) * square_m, (k // (squares_x - 1) + 1) * square_m, 0)``, the same
numbering OpenCV's ChArUco boards use, so both kinds share one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

MIN_CORNERS = 6  # fewer detected ChArUco corners cannot constrain a pose well


@dataclass(frozen=True)
class BoardSpec:
    """A printed board. ``squares_x`` x ``squares_y`` squares of ``square_m``; ChArUco adds
    markers of ``marker_m`` from ``dictionary`` (an OpenCV ``DICT_*`` name)."""

    kind: Literal["checkerboard", "charuco"] = "charuco"
    squares_x: int = 8
    squares_y: int = 6
    square_m: float = 0.03
    marker_m: float = 0.022
    dictionary: str = "DICT_5X5_100"

    def __post_init__(self) -> None:
        if self.kind not in ("checkerboard", "charuco"):
            raise ValueError(f"board kind must be 'checkerboard' or 'charuco', got {self.kind!r}")
        if self.squares_x < 3 or self.squares_y < 3:
            raise ValueError("a board needs at least 3 x 3 squares (squares_x, squares_y)")
        if self.square_m <= 0 or (
            self.kind == "charuco" and not 0 < self.marker_m < self.square_m
        ):
            raise ValueError("need square_m > 0 and, for ChArUco, 0 < marker_m < square_m")
        if self.kind == "charuco" and not hasattr(cv2.aruco, self.dictionary):
            raise ValueError(f"unknown ArUco dictionary {self.dictionary!r} (cv2.aruco.DICT_*)")

    @property
    def inner_corners(self) -> tuple[int, int]:
        return self.squares_x - 1, self.squares_y - 1

    @property
    def size_m(self) -> tuple[float, float]:
        return self.squares_x * self.square_m, self.squares_y * self.square_m

    def object_points(self) -> np.ndarray:
        """(N, 3) inner-corner positions in the board frame, in corner-id order."""
        nx, ny = self.inner_corners
        ij = np.stack(np.meshgrid(np.arange(nx), np.arange(ny)), -1).reshape(-1, 2)
        return np.column_stack([(ij + 1) * self.square_m, np.zeros(len(ij))]).astype(np.float32)

    def charuco(self) -> cv2.aruco.CharucoBoard:
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        size = (self.squares_x, self.squares_y)
        return cv2.aruco.CharucoBoard(size, self.square_m, self.marker_m, dictionary)

    def image(self, px_per_square: int = 80) -> np.ndarray:
        """The printable board (grayscale uint8), exactly ``squares * px_per_square`` pixels."""
        w, h = self.squares_x * px_per_square, self.squares_y * px_per_square
        if self.kind == "charuco":
            return self.charuco().generateImage((w, h), marginSize=0, borderBits=1)
        ij = np.add.outer(np.arange(self.squares_y), np.arange(self.squares_x)) % 2
        return np.kron(1 - ij, np.ones((px_per_square, px_per_square))).astype(np.uint8) * 255


@dataclass(frozen=True)
class Detection:
    """Corners found in one image: pixel positions and the matching board points."""

    image_points: np.ndarray  # (N, 2) float32, pixels
    object_points: np.ndarray  # (N, 3) float32, board frame (m)
    ids: np.ndarray  # (N,) corner ids


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def detect(board: BoardSpec, image: np.ndarray) -> Detection | str:
    """Board corners in an RGB or gray image, or the reason none were usable."""
    gray = _gray(image)
    if board.kind == "checkerboard":
        found, corners = cv2.findChessboardCornersSB(
            gray, board.inner_corners, flags=cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY
        )
        if not found:
            nx, ny = board.inner_corners
            return f"checkerboard with {nx}x{ny} inner corners not found (whole board in view?)"
        ids = np.arange(len(corners))
        return Detection(corners.reshape(-1, 2), board.object_points(), ids)
    detector = cv2.aruco.CharucoDetector(board.charuco())
    corners, ids, _, _ = detector.detectBoard(gray)
    if ids is None or len(ids) < MIN_CORNERS:
        n = 0 if ids is None else len(ids)
        return f"only {n} ChArUco corners found (need {MIN_CORNERS}; board in focus and lit?)"
    ids = ids.reshape(-1)
    return Detection(corners.reshape(-1, 2), board.object_points()[ids], ids)
