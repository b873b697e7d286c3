"""Camera intrinsics from board images: camera matrix, distortion, reprojection errors.

Written as a ROS ``camera_info`` YAML (the ``camera_calibration_parsers`` layout that
``camera_info_manager`` loads), with the per-image report in comments and a JSON sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from calibration.board import BoardSpec, Detection, detect

MIN_IMAGES = 5
# An image whose error is this many times the median (and above MIN_OUTLIER_PX) is rejected.
OUTLIER_FACTOR, MIN_OUTLIER_PX = 3.0, 1.0


class CalibrationError(ValueError):
    """Input the calibration cannot use; the message says what to capture next."""


@dataclass
class IntrinsicsResult:
    camera_name: str
    image_size: tuple[int, int]  # (width, height) in pixels
    camera_matrix: np.ndarray  # 3x3
    distortion: np.ndarray  # plumb_bob k1 k2 p1 p2 k3
    per_image_error_px: dict[str, float]
    rejected: dict[str, str]  # image name -> reason
    warnings: list[str] = field(default_factory=list)

    @property
    def mean_error_px(self) -> float:
        return float(np.mean(list(self.per_image_error_px.values())))


def load_images(paths: Sequence[str | Path]) -> list[tuple[str, np.ndarray]]:
    """(name, RGB image) for every image file given, folders expanded (sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(
                f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg")
            )
        elif p.is_file():
            files.append(p)
        else:
            raise CalibrationError(f"{p}: no such image file or folder")
    out = []
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CalibrationError(f"{f}: not a readable image (PNG or JPEG expected)")
        out.append((f.name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return out


def _calibrate(dets: dict[str, Detection], size: tuple[int, int]) -> tuple:
    obj = [d.object_points for d in dets.values()]
    img = [d.image_points.astype(np.float32) for d in dets.values()]
    _, K, dist, rvecs, tvecs = cv2.calibrateCamera(obj, img, size, None, None)
    errors = {}
    for (name, d), rv, tv in zip(dets.items(), rvecs, tvecs, strict=True):
        proj, _ = cv2.projectPoints(d.object_points, rv, tv, K, dist)
        errors[name] = float(
            np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - d.image_points) ** 2, 1)))
        )
    return K, dist.reshape(-1)[:5], errors


def _coverage(dets: dict[str, Detection], size: tuple[int, int], cells: int = 4) -> float:
    """Fraction of a cells x cells grid over the image that some detected corner falls in."""
    pts = np.concatenate([d.image_points for d in dets.values()])
    ij = np.clip((pts / np.array(size) * cells).astype(int), 0, cells - 1)
    return len({(int(i), int(j)) for i, j in ij}) / cells**2


def calibrate_intrinsics(
    images: Sequence[tuple[str, np.ndarray]], board: BoardSpec, camera_name: str = "camera"
) -> IntrinsicsResult:
    """Calibrate one camera from named RGB images of ``board``."""
    if not images:
        raise CalibrationError(f"no images given: capture at least {MIN_IMAGES} of the board")
    sizes = {(im.shape[1], im.shape[0]) for _, im in images}
    if len(sizes) > 1:
        raise CalibrationError(f"images have different sizes {sorted(sizes)}: use one camera mode")
    size = sizes.pop()
    dets: dict[str, Detection] = {}
    rejected: dict[str, str] = {}
    for name, image in images:
        found = detect(board, image)
        if isinstance(found, str):
            rejected[name] = found
        else:
            dets[name] = found
    _require_enough(dets, rejected, len(images))
    K, dist, errors = _calibrate(dets, size)
    median = float(np.median(list(errors.values())))
    outliers = [n for n, e in errors.items() if e > max(OUTLIER_FACTOR * median, MIN_OUTLIER_PX)]
    if outliers and len(dets) - len(outliers) >= MIN_IMAGES:
        for n in outliers:
            rejected[n] = (
                f"reprojection error {errors[n]:.2f} px > {OUTLIER_FACTOR}x median (blur?)"
            )
            del dets[n]
        K, dist, errors = _calibrate(dets, size)
    warnings = []
    coverage = _coverage(dets, size)
    if coverage < 0.6:
        warnings.append(
            f"corners cover only {coverage:.0%} of the image: capture the board near the edges "
            "and corners too, or the distortion is extrapolated there"
        )
    return IntrinsicsResult(camera_name, size, K, dist, errors, rejected, warnings)


def _require_enough(dets: dict[str, Detection], rejected: dict[str, str], n_images: int) -> None:
    if len(dets) >= MIN_IMAGES:
        return
    reasons = "; ".join(f"{n}: {r}" for n, r in list(rejected.items())[:5])
    raise CalibrationError(
        f"the board was found in {len(dets)} of {n_images} images, need {MIN_IMAGES}: capture "
        f"{MIN_IMAGES - len(dets)} or more images with the whole board in view, at different "
        f"distances and tilted 20-40 degrees. Rejected: {reasons or 'none'}"
    )


def camera_info_dict(result: IntrinsicsResult) -> dict:
    """The ROS camera_info YAML content (camera_calibration_parsers layout)."""
    K, dist = result.camera_matrix, result.distortion
    P = np.hstack([K, np.zeros((3, 1))])
    w, h = result.image_size
    return {
        "image_width": int(w),
        "image_height": int(h),
        "camera_name": result.camera_name,
        "camera_matrix": {"rows": 3, "cols": 3, "data": [float(v) for v in K.reshape(-1)]},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [float(v) for v in dist]},
        "rectification_matrix": {
            "rows": 3,
            "cols": 3,
            "data": [float(v) for v in np.eye(3).reshape(-1)],
        },
        "projection_matrix": {"rows": 3, "cols": 4, "data": [float(v) for v in P.reshape(-1)]},
    }


def write_camera_info(result: IntrinsicsResult, path: str | Path) -> None:
    """camera_info YAML; the reprojection report rides along as comments."""
    lines = [
        f"# kizuna calibrate intrinsics: mean reprojection error {result.mean_error_px:.3f} px",
        *(f"#   {n}: {e:.3f} px" for n, e in result.per_image_error_px.items()),
        *(f"#   rejected {n}: {r}" for n, r in result.rejected.items()),
        *(f"# warning: {w}" for w in result.warnings),
    ]
    body = yaml.safe_dump(camera_info_dict(result), sort_keys=False)
    Path(path).write_text("\n".join(lines) + "\n" + body)


def _matrix(info: dict, key: str, rows: int, cols: int, path: Path) -> np.ndarray:
    entry = info.get(key)
    data = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(data, list) or len(data) != rows * cols:
        raise CalibrationError(f"{path}: field '{key}.data' must hold {rows * cols} numbers")
    return np.asarray(data, dtype=float).reshape(rows, cols)


def load_camera_info(path: str | Path) -> IntrinsicsResult:
    """Read a camera_info YAML back (the report fields come back empty)."""
    path = Path(path)
    try:
        info = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CalibrationError(f"{path}: cannot read camera_info YAML ({exc})") from None
    if not isinstance(info, dict):
        raise CalibrationError(f"{path}: expected a camera_info mapping")
    for key in ("image_width", "image_height"):
        if not isinstance(info.get(key), int) or info[key] <= 0:
            raise CalibrationError(f"{path}: field '{key}' must be a positive integer")
    K = _matrix(info, "camera_matrix", 3, 3, path)
    n = len((info.get("distortion_coefficients") or {}).get("data") or [])
    dist = _matrix(info, "distortion_coefficients", 1, n, path).reshape(-1) if n else np.zeros(5)
    size = (info["image_width"], info["image_height"])
    return IntrinsicsResult(str(info.get("camera_name", "camera")), size, K, dist, {}, {})
