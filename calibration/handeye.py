"""Hand-eye calibration: every OpenCV method, their disagreement, held-out validation.

``eye_in_hand``: the camera rides on the gripper, the board is fixed in the cell; the result is
``T_gripper_cam`` (and ``T_base_board``). ``eye_to_hand``: the camera is fixed, the gripper holds
the board; the result is ``T_base_cam`` (and ``T_gripper_board``). See ``calibration.frames``
for the conventions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from calibration.board import BoardSpec, detect
from calibration.frames import CONVENTIONS, average_transform, invert, make_transform, pose_error
from calibration.intrinsics import CalibrationError
from calibration.refine import STEP_EPS, Observation, observation, refine
from kizuna.kinematics import forward_kinematics

Mode = Literal["eye_in_hand", "eye_to_hand"]
METHODS = {
    "tsai": cv2.CALIB_HAND_EYE_TSAI,
    "park": cv2.CALIB_HAND_EYE_PARK,
    "horaud": cv2.CALIB_HAND_EYE_HORAUD,
    "andreff": cv2.CALIB_HAND_EYE_ANDREFF,
    "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS,
}
MIN_POSES = 5  # three is OpenCV's bare minimum; five survive one bad pose
MIN_ROTATION_DEG, GOOD_ROTATION_DEG = 5.0, 30.0  # largest rotation between poses
MIN_AXIS_SPREAD_DEG, GOOD_AXIS_SPREAD_DEG = 5.0, 30.0  # spread of relative rotation axes
GOOD_POSES = 15  # fewer still solve, but one poor pose then weighs a lot
GOOD_SPAN = 0.35  # fraction of the image (width or height) the board's corners should span
GOOD_TILT_RANGE_DEG = 30.0  # range of the board's tilt to the camera, about each image axis
JOINT_NOISE_RAD = 5e-4  # per joint: encoder noise plus kinematic-model error of a stock arm
GOOD_STD_MM, GOOD_STD_DEG = 1.0, 0.2  # warn above this 1-sigma uncertainty of the result


@dataclass(frozen=True)
class Sample:
    """One robot pose: its name (image file), joint positions (rad) and the camera image."""

    name: str
    q_rad: np.ndarray
    image: np.ndarray


@dataclass
class MethodResult:
    """One OpenCV method's closed-form answer, refined by reprojection (``calibration.refine``)."""

    T: np.ndarray  # T_gripper_cam (eye_in_hand) or T_base_cam (eye_to_hand), refined
    T_board: np.ndarray  # T_base_board (eye_in_hand) or T_gripper_board (eye_to_hand)
    T_closed_form: np.ndarray  # OpenCV's answer before the refinement
    holdout_mm: float  # mean board-pose error on held-out poses (train poses without a holdout)
    holdout_deg: float
    holdout_px: float  # mean reprojection error of the predicted board corners
    chi2_per_dof: float = np.inf  # ~1 when pixel and joint noise explain the refined residuals
    std_mm: float = np.inf  # 1-sigma uncertainty of T's translation (from the refinement)
    std_deg: float = np.inf


@dataclass
class HandEyeResult:
    mode: Mode
    methods: dict[str, MethodResult]
    best: str
    disagreement_mm: float  # largest pairwise difference among the closed-form answers
    disagreement_deg: float
    train: list[str]
    holdout: list[str]
    rejected: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    @property
    def transform_name(self) -> str:
        return "T_gripper_cam" if self.mode == "eye_in_hand" else "T_base_cam"

    @property
    def transform(self) -> np.ndarray:
        return self.methods[self.best].T

    def to_dict(self) -> dict:
        board = "T_base_board" if self.mode == "eye_in_hand" else "T_gripper_board"
        best = self.methods[self.best]
        return {
            "conventions": CONVENTIONS,
            "mode": self.mode,
            "best_method": self.best,
            self.transform_name: best.T.round(6).tolist(),
            board: best.T_board.round(6).tolist(),
            "uncertainty_1sigma": {"mm": best.std_mm, "deg": best.std_deg},
            "closed_form_disagreement": {"mm": self.disagreement_mm, "deg": self.disagreement_deg},
            "methods": {
                name: {
                    self.transform_name: m.T.round(6).tolist(),
                    "closed_form": m.T_closed_form.round(6).tolist(),
                    "holdout_mm": m.holdout_mm,
                    "holdout_deg": m.holdout_deg,
                    "holdout_px": m.holdout_px,
                    "chi2_per_dof": m.chi2_per_dof,
                }
                for name, m in self.methods.items()
            },
            "train_poses": self.train,
            "holdout_poses": self.holdout,
            "rejected": self.rejected,
            "warnings": self.warnings,
        }


def _board_pose(
    board: BoardSpec, image: np.ndarray, K: np.ndarray, dist: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """(T_cam_board, image points, object points) or why not."""
    found = detect(board, image)
    if isinstance(found, str):
        return found
    ok, rvec, tvec = cv2.solvePnP(found.object_points, found.image_points, K, dist)
    if not ok:
        return "solvePnP failed on the detected corners"
    return make_transform(rvec, tvec), found.image_points, found.object_points


def check_diversity(T_base_gripper: Sequence[np.ndarray]) -> list[str]:
    """Warnings about weak pose diversity; ``CalibrationError`` when it is degenerate."""
    rotvecs = []
    for i in range(len(T_base_gripper)):
        for j in range(i + 1, len(T_base_gripper)):
            R = T_base_gripper[i][:3, :3].T @ T_base_gripper[j][:3, :3]
            rotvecs.append(cv2.Rodrigues(R)[0].reshape(3))
    angles = np.degrees([np.linalg.norm(r) for r in rotvecs])
    largest = float(angles.max()) if len(angles) else 0.0
    axes = [r / np.linalg.norm(r) for r, a in zip(rotvecs, angles, strict=True) if a > 2.0]
    spread = max(
        (np.degrees(np.arccos(min(1.0, abs(float(a @ b))))) for a in axes for b in axes),
        default=0.0,
    )
    if largest < MIN_ROTATION_DEG or spread < MIN_AXIS_SPREAD_DEG:
        raise CalibrationError(
            f"degenerate poses: the gripper turns at most {largest:.1f} deg between poses, about "
            f"axes within {spread:.1f} deg of each other; capture poses that tilt the gripper "
            f"by 20-40 deg about at least two different axes (roll, pitch and yaw)"
        )
    warnings = []
    if largest < GOOD_ROTATION_DEG:
        warnings.append(
            f"poor pose diversity: largest rotation between poses {largest:.1f} deg; "
            f"tilt the gripper more ({GOOD_ROTATION_DEG:.0f}+ deg)"
        )
    if spread < GOOD_AXIS_SPREAD_DEG:
        warnings.append(
            f"poor pose diversity: rotation axes span only {spread:.1f} deg; "
            "rotate about more different axes"
        )
    return warnings


def capture_warnings(
    views: Sequence[tuple[np.ndarray, np.ndarray]], image_wh: tuple[int, int], mode: Mode
) -> list[str]:
    """Guidance from how the camera saw the board: ``views`` are (T_cam_board, corners in px).

    PnP's depth (along the camera's axis) is its weakest direction; it improves as the board
    fills more of the image and as it is seen at varied tilts.
    """
    w, h = image_wh
    span = float(np.median([max(np.ptp(p[:, 0]) / w, np.ptp(p[:, 1]) / h) for _, p in views]))
    normals = np.array([T[:3, 2] for T, _ in views])  # the board's z in the camera frame
    about_x = np.ptp(np.degrees(np.arctan2(normals[:, 1], normals[:, 2])))
    about_y = np.ptp(np.degrees(np.arctan2(normals[:, 0], normals[:, 2])))
    closer = (
        "hold the board closer to the camera"
        if mode == "eye_to_hand"
        else ("bring the camera closer to the board")
    )
    warnings = []
    if span < GOOD_SPAN:
        warnings.append(
            f"the board's corners span a median {span:.0%} of the image: {closer} "
            f"(aim for {GOOD_SPAN:.0%}-70%, the whole board still in view)"
        )
    if min(about_x, about_y) < GOOD_TILT_RANGE_DEG:
        warnings.append(
            f"the board's tilt to the camera varies by {about_x:.0f} deg about the image's "
            f"horizontal axis and {about_y:.0f} deg about its vertical axis: tilt it up to "
            f"+-{GOOD_TILT_RANGE_DEG:.0f} deg both ways about both axes"
        )
    return warnings


def calibrate_handeye(
    samples: Sequence[Sample],
    board: BoardSpec,
    K: np.ndarray,
    dist: np.ndarray,
    mode: Mode = "eye_in_hand",
    holdout_every: int = 5,
    joint_noise_rad: float = JOINT_NOISE_RAD,
) -> HandEyeResult:
    """Run all of OpenCV's methods on ``samples``, refine each by reprojection error; every
    ``holdout_every``-th pose is held out and the best method is the one that predicts it best.
    ``joint_noise_rad``: the joints' error (encoders and kinematic model), which weighs the
    robot's poses against the camera's in the refinement."""
    if board.kind != "charuco":
        raise CalibrationError(
            "hand-eye needs a ChArUco board: a checkerboard's corner order can flip between "
            "images, which breaks the fixed-board assumption"
        )
    poses, rejected = {}, {}
    for s in samples:
        found = _board_pose(board, s.image, K, dist)
        if isinstance(found, str):
            rejected[s.name] = found
        else:
            q = np.asarray(s.q_rad, float)
            poses[s.name] = (forward_kinematics(q), *found, q)
    names = list(poses)
    if len(names) < MIN_POSES:
        raise CalibrationError(
            f"board found in {len(names)} of {len(samples)} poses, need {MIN_POSES}: capture "
            f"{MIN_POSES - len(names)} or more poses with the whole board in the camera's view"
        )
    holdout = names[holdout_every - 1 :: holdout_every] if len(names) >= MIN_POSES + 2 else []
    train = [n for n in names if n not in holdout]
    warnings = check_diversity([poses[n][0] for n in train])
    height, width = samples[0].image.shape[:2]
    warnings += capture_warnings([poses[n][1:3] for n in train], (width, height), mode)
    if len(names) < GOOD_POSES:
        warnings.append(f"{len(names)} poses: {GOOD_POSES}+ make the result robust")
    if not holdout:
        warnings.append(f"no held-out poses (fewer than {MIN_POSES + 2}): errors are on train")
    obs = [_observation(poses[n], mode, K, dist) for n in train]
    sigma_px = _pnp_noise_px([poses[n] for n in train], K, dist)
    test = [poses[n] for n in holdout or train]
    methods = {
        name: _solve(method, [poses[n] for n in train], test, mode, K, dist)
        for name, method in METHODS.items()
    }
    for m in methods.values():
        _refine(m, obs, sigma_px, joint_noise_rad)
        _validate(m, test, mode, K, dist)
    finite = {n: m for n, m in methods.items() if np.isfinite(m.T).all()}
    best = min(finite, key=lambda n: finite[n].holdout_px)
    pairs = [
        pose_error(a.T_closed_form, b.T_closed_form)
        for a in finite.values()
        for b in finite.values()
    ]
    mm, deg = (max(p[i] for p in pairs) for i in (0, 1))
    if finite[best].std_mm > GOOD_STD_MM or finite[best].std_deg > GOOD_STD_DEG:
        warnings.append(
            f"uncertain result (1 sigma {finite[best].std_mm:.2f} mm, "
            f"{finite[best].std_deg:.3f} deg): capture more poses ({GOOD_POSES}+), the board "
            f"closer to the camera and tilted +-{GOOD_TILT_RANGE_DEG:.0f} deg about two axes"
        )
    return HandEyeResult(mode, methods, best, mm, deg, train, holdout, rejected, warnings)


def _robot_pose(T_base_gripper: np.ndarray, mode: Mode) -> np.ndarray:
    # OpenCV's eye-to-hand form: pass base->gripper where it asks for gripper->base.
    return T_base_gripper if mode == "eye_in_hand" else invert(T_base_gripper)


def _observation(pose: tuple, mode: Mode, K: np.ndarray, dist: np.ndarray) -> Observation:
    T_base_gripper, T_cam_board, _, object_pts, q = pose
    G_dq = [
        _robot_pose(forward_kinematics(q + STEP_EPS * np.eye(len(q))[k]), mode)
        for k in range(len(q))
    ]
    return observation(
        _robot_pose(T_base_gripper, mode), G_dq, T_cam_board, object_pts, float(K[0, 0])
    )


def _pnp_noise_px(poses: list[tuple], K: np.ndarray, dist: np.ndarray) -> float:
    """The corners' noise (px) from PnP's residuals, corrected for its 6 fitted parameters."""
    sq, n = 0.0, 0
    for _, T_cam_board, image_pts, object_pts, _ in poses:
        rvec = cv2.Rodrigues(T_cam_board[:3, :3])[0]
        proj, _ = cv2.projectPoints(object_pts, rvec, T_cam_board[:3, 3], K, dist)
        sq += float(np.sum((proj.reshape(-1, 2) - image_pts) ** 2))
        n += 2 * len(image_pts) - 6
    return float(np.sqrt(sq / max(n, 1)))  # per image coordinate


def _solve(
    method: int, train: list[tuple], test: list[tuple], mode: Mode, K: np.ndarray, dist: np.ndarray
) -> MethodResult:
    """OpenCV's closed-form answer, and the board's pose averaged over the training poses."""
    T_g = [_robot_pose(p[0], mode) for p in train]
    T_cb = [p[1] for p in train]
    R, t = cv2.calibrateHandEye(
        [T[:3, :3] for T in T_g], [T[:3, 3] for T in T_g],
        [T[:3, :3] for T in T_cb], [T[:3, 3] for T in T_cb], method=method,
    )  # fmt: skip
    X = make_transform(R, t)
    if not np.isfinite(X).all():
        return MethodResult(X, X.copy(), X.copy(), np.inf, np.inf, np.inf)
    T_board = average_transform([Tg @ X @ Tcb for Tg, Tcb in zip(T_g, T_cb, strict=True)])
    return MethodResult(X, T_board, X.copy(), np.inf, np.inf, np.inf)


def _refine(m: MethodResult, obs: list[Observation], sigma_px: float, sigma_q: float) -> None:
    if np.isfinite(m.T).all():
        r = refine(m.T, m.T_board, obs, sigma_px, sigma_q)
        m.T, m.T_board, m.chi2_per_dof = r.X, r.B, r.chi2_per_dof
        m.std_mm, m.std_deg = r.std_mm, r.std_deg


def _validate(
    m: MethodResult, test: list[tuple], mode: Mode, K: np.ndarray, dist: np.ndarray
) -> None:
    """Predict the held-out board poses: pose error and corners' reprojection error."""
    if not np.isfinite(m.T).all():
        return
    errors, pixels = [], []
    for T_base_gripper, T_cam_board, image_pts, object_pts, _ in test:
        predicted = invert(_robot_pose(T_base_gripper, mode) @ m.T) @ m.T_board
        errors.append(pose_error(predicted, T_cam_board))
        rvec = cv2.Rodrigues(predicted[:3, :3])[0]
        proj, _ = cv2.projectPoints(object_pts, rvec, predicted[:3, 3], K, dist)
        pixels.append(np.mean(np.linalg.norm(proj.reshape(-1, 2) - image_pts, axis=1)))
    mm, deg = np.mean(errors, axis=0)
    m.holdout_mm, m.holdout_deg, m.holdout_px = float(mm), float(deg), float(np.mean(pixels))
