"""Joint refinement of a hand-eye result over both unknowns (Levenberg-Marquardt, numpy).

OpenCV's closed-form methods treat every board pose from PnP and every gripper pose alike. PnP's
depth (along the camera's axis) is its weakest part, far weaker than the board's position across
the image, and the robot's poses carry their own (joint) errors. The refinement minimizes each
pose's disagreement weighted by its covariance: PnP's from the corners' reprojection error,
the robot's from the joints' noise through the arm's Jacobian. That is what the corners' pixel
reprojection error would give with perfect kinematics, but it does not trust a few-hundredths of
a degree of wrist error to be real, which a plain pixel fit would.

The model (``calibration.handeye``'s unified form): ``T_cam_board_i = inv(G_i @ X) @ B`` with
``G_i = T_base_gripper`` (eye-in-hand; X = T_gripper_cam, B = T_base_board) or its inverse
(eye-to-hand; X = T_base_cam, B = T_gripper_board).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from calibration.frames import invert, make_transform

MAX_ITERATIONS = 30
STEP_EPS = 1e-7  # finite-difference step (rad and m): the residuals are smooth at this scale
MIN_SIGMA_PX = 0.02  # corner noise floor: rendering and detection are never exact


@dataclass(frozen=True)
class Observation:
    """One pose: ``G`` (see the module docstring), its joint-perturbed versions (one per joint,
    each by ``STEP_EPS``), the board pose PnP measured and PnP's information about it."""

    G: np.ndarray
    G_dq: list[np.ndarray]
    T_cam_board: np.ndarray
    pnp_info: np.ndarray  # 6x6 inverse covariance of the residual below, per pixel^2 of noise
    n_corners: int


@dataclass(frozen=True)
class Refined:
    X: np.ndarray
    B: np.ndarray
    chi2_per_dof: float  # ~1 when the noise model (pixels, joints) explains the residuals
    std_mm: float  # 1-sigma uncertainty of X's translation
    std_deg: float  # 1-sigma uncertainty of X's rotation


def pose_residual(T_pred: np.ndarray, T_meas: np.ndarray) -> np.ndarray:
    """(rotation vector of R_pred R_meas^T, t_pred - t_meas): 6 numbers, rad and m."""
    # Not cv2.Rodrigues: it rounds rotations below ~1e-5 rad to zero, which would blank out
    # the finite-difference Jacobians. The residuals are small, far from the pi singularity.
    R = T_pred[:3, :3] @ T_meas[:3, :3].T
    w = 0.5 * np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    sin = np.linalg.norm(w)
    if sin > 1e-12:
        w *= np.arctan2(sin, (np.trace(R) - 1.0) / 2.0) / sin
    return np.concatenate([w, T_pred[:3, 3] - T_meas[:3, 3]])


def observation(
    G: np.ndarray,
    G_dq: list[np.ndarray],
    T_cam_board: np.ndarray,
    object_points: np.ndarray,
    focal_px: float,
) -> Observation:
    """PnP's information about ``T_cam_board`` from its corners' projection Jacobian (pixels)."""
    P = np.asarray(object_points, np.float64).reshape(-1, 3)

    def project(delta: np.ndarray) -> np.ndarray:
        R = cv2.Rodrigues(delta[:3])[0] @ T_cam_board[:3, :3]
        p = P @ R.T + T_cam_board[:3, 3] + delta[3:]
        return (p[:, :2] / p[:, 2:3]).ravel() * focal_px

    J = _jacobian(project, project(np.zeros(6)), 6)
    return Observation(G, G_dq, T_cam_board, J.T @ J, len(P))


def _perturb(T: np.ndarray, delta: np.ndarray) -> np.ndarray:
    # Right (body-frame) perturbation: rotation vector then translation, both in T's own frame.
    return T @ make_transform(delta[:3], delta[3:])


def _jacobian(fn: Callable[[np.ndarray], np.ndarray], r0: np.ndarray, n: int) -> np.ndarray:
    J = np.empty((len(r0), n))
    for k in range(n):
        delta = np.zeros(n)
        delta[k] = STEP_EPS
        J[:, k] = (fn(delta) - r0) / STEP_EPS
    return J


def _whitening(
    obs: Sequence[Observation], X: np.ndarray, B: np.ndarray, sigma_px: float, sigma_q_rad: float
) -> list[np.ndarray]:
    """Per pose, W with W^T W = inverse of (PnP covariance + the joints' covariance)."""
    out = []
    for o in obs:
        T = invert(o.G @ X) @ B
        A = np.column_stack([pose_residual(invert(G @ X) @ B, T) for G in o.G_dq]) / STEP_EPS
        cov = sigma_px**2 * np.linalg.inv(o.pnp_info) + sigma_q_rad**2 * A @ A.T
        out.append(np.linalg.cholesky(np.linalg.inv(cov)).T)
    return out


def _residuals(
    X: np.ndarray, B: np.ndarray, obs: Sequence[Observation], W: Sequence[np.ndarray]
) -> np.ndarray:
    return np.concatenate(
        [
            w @ pose_residual(invert(o.G @ X) @ B, o.T_cam_board)
            for o, w in zip(obs, W, strict=True)
        ]
    )


def refine(
    X0: np.ndarray,
    B0: np.ndarray,
    obs: Sequence[Observation],
    sigma_px: float,
    sigma_q_rad: float,
) -> Refined:
    """Minimize the covariance-weighted pose disagreement over X and B, starting at (X0, B0);
    ``sigma_px`` is the corners' noise, ``sigma_q_rad`` the joints'."""
    X, B = X0.copy(), B0.copy()
    W = _whitening(obs, X0, B0, max(sigma_px, MIN_SIGMA_PX), sigma_q_rad)

    def at(delta: np.ndarray) -> np.ndarray:
        return _residuals(_perturb(X, delta[:6]), _perturb(B, delta[6:]), obs, W)

    r = at(np.zeros(12))
    cost, damping = float(r @ r), 1e-3
    for _ in range(MAX_ITERATIONS):
        J = _jacobian(at, r, 12)
        A, g = J.T @ J, J.T @ r
        improved = False
        while damping < 1e8 and not improved:
            step = np.linalg.solve(A + damping * np.diag(np.diag(A) + 1e-12), -g)
            r_new = at(step)
            if (new_cost := float(r_new @ r_new)) < cost:
                X, B = _perturb(X, step[:6]), _perturb(B, step[6:])
                done = cost - new_cost < 1e-12 * cost or np.abs(step).max() < 1e-10
                r, cost, damping, improved = r_new, new_cost, max(damping / 10, 1e-9), True
            else:
                damping *= 10
        if not improved or done:
            break
    J = _jacobian(at, r, 12)
    chi2 = cost / max(len(r) - 12, 1)
    # Scale up (never down) when the residuals say the noise is larger than assumed.
    cov = max(chi2, 1.0) * np.linalg.pinv(J.T @ J)
    std_deg = float(np.degrees(np.sqrt(np.trace(cov[:3, :3]))))
    std_mm = float(np.sqrt(np.trace(cov[3:6, 3:6])) * 1000.0)
    return Refined(X, B, chi2, std_mm, std_deg)
