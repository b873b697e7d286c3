"""Rigid transforms and the frame conventions every calibration result is written in.

Conventions (stated again in every output file):

- ``T_a_b`` is a 4x4 homogeneous transform that maps points from frame ``b`` into frame ``a``
  (``p_a = T_a_b @ p_b``); so ``T_base_cam`` is the camera's pose in the robot base frame.
- Lengths in metres, angles in radians (reports add mm and degrees for people).
- Camera frames follow OpenCV/ROS optical frames: x right, y down, z forward (into the scene).
  MuJoCo cameras look along their -z with y up; ``MJ_FROM_CV`` converts between the two.
- ``gripper`` is the tool centre point (``kizuna.kinematics.forward_kinematics``).
"""

from __future__ import annotations

import cv2
import numpy as np

# Rotation from an OpenCV optical frame to a MuJoCo/OpenGL camera frame (180 deg about x).
MJ_FROM_CV = np.diag([1.0, -1.0, -1.0])

CONVENTIONS = (
    "T_a_b maps points from frame b to frame a (p_a = T_a_b @ p_b); metres and radians; "
    "camera frames are optical (x right, y down, z forward); gripper = TCP "
    "(kizuna.kinematics.forward_kinematics); base = robot base frame"
)


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 transform from a rotation matrix (or rotation vector) and a translation."""
    R = np.asarray(R, dtype=float)
    if R.shape in ((3,), (3, 1)):
        R = cv2.Rodrigues(R.reshape(3, 1))[0]
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=float).reshape(3)
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (no general matrix inverse)."""
    R, t = T[:3, :3], T[:3, 3]
    return make_transform(R.T, -R.T @ t)


def rotation_angle_rad(R: np.ndarray) -> float:
    """Angle of a rotation matrix (0..pi)."""
    return float(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)))


def pose_error(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """(translation difference in mm, rotation difference in degrees) between two poses."""
    dt_mm = float(np.linalg.norm(T_a[:3, 3] - T_b[:3, 3])) * 1000.0
    return dt_mm, float(np.degrees(rotation_angle_rad(T_a[:3, :3].T @ T_b[:3, :3])))


def look_at_cv(eye_m: np.ndarray, target_m: np.ndarray, up: np.ndarray) -> np.ndarray:
    """``T_world_cam`` of an optical-frame camera at ``eye_m`` looking at ``target_m``."""
    z = np.asarray(target_m, float) - np.asarray(eye_m, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))  # so that y = z x x is "down", away from ``up``
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_transform(np.stack([x, y, z], axis=1), eye_m)


def average_transform(Ts: list[np.ndarray]) -> np.ndarray:
    """Mean translation and chordal-mean rotation (SVD projection) of several poses."""
    t = np.mean([T[:3, 3] for T in Ts], axis=0)
    U, _, Vt = np.linalg.svd(np.sum([T[:3, :3] for T in Ts], axis=0))
    R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    return make_transform(R, t)
