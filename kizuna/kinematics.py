"""Forward kinematics, Jacobian and inverse kinematics of a ``RobotDescription`` (numpy only).

Used by the simulator's ``ee_delta`` action mode, the scripted experts and the safety filter's
workspace box, so the same numbers hold in every backend and on the robot.
"""

from __future__ import annotations

import numpy as np

from kizuna.robot import PANDA, RobotDescription


def rpy_to_matrix(rpy_rad: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """URDF convention: R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    r, p, y = rpy_rad
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def _transform(xyz: tuple[float, float, float], rotation: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rotation
    T[:3, 3] = xyz
    return T


def _rot_z(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def joint_frames(q_rad: np.ndarray, robot: RobotDescription = PANDA) -> list[np.ndarray]:
    """World transforms of each joint frame (after its rotation), then the hand, then the TCP."""
    q = np.asarray(q_rad, dtype=float)
    if q.shape != (robot.dof,):
        raise ValueError(f"expected {robot.dof} joint positions, got shape {q.shape}")
    T = np.eye(4)
    frames = []
    for joint, angle in zip(robot.joints, q, strict=True):
        T = (
            T
            @ _transform(joint.xyz_m, rpy_to_matrix(joint.rpy_rad))
            @ _transform((0, 0, 0), _rot_z(angle))
        )
        frames.append(T)
    T_hand = T @ _transform(robot.flange_xyz_m, _rot_z(robot.hand_yaw_rad))
    frames.append(T_hand)
    frames.append(T_hand @ _transform((0, 0, robot.tcp_offset_m), np.eye(3)))
    return frames


def forward_kinematics(q_rad: np.ndarray, robot: RobotDescription = PANDA) -> np.ndarray:
    """4x4 world transform of the tool centre point (``T_base_tcp``)."""
    return joint_frames(q_rad, robot)[-1]


def tcp_jacobian(q_rad: np.ndarray, robot: RobotDescription = PANDA) -> np.ndarray:
    """6 x dof geometric Jacobian of the TCP (linear rows first), in the base frame."""
    frames = joint_frames(q_rad, robot)
    p_tcp = frames[-1][:3, 3]
    J = np.zeros((6, robot.dof))
    for i in range(robot.dof):
        z = frames[i][:3, 2]
        J[:3, i] = np.cross(z, p_tcp - frames[i][:3, 3])
        J[3:, i] = z
    return J


def gripper_width_m(opening: float, robot: RobotDescription = PANDA) -> float:
    """Finger gap for a gripper command in 0 (closed) .. 1 (open)."""
    return 2.0 * robot.finger_travel_m * float(np.clip(opening, 0.0, 1.0))


def rotation_error(R_current: np.ndarray, R_target: np.ndarray) -> np.ndarray:
    """Axis-angle vector (base frame) rotating ``R_current`` onto ``R_target``."""
    R_err = R_target @ R_current.T
    cos = np.clip((np.trace(R_err) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    axis = np.array(
        [R_err[2, 1] - R_err[1, 2], R_err[0, 2] - R_err[2, 0], R_err[1, 0] - R_err[0, 1]]
    )
    norm = np.linalg.norm(axis)
    if norm < 1e-9:
        if angle < 1e-6:
            return np.zeros(3)
        # 180 degrees: take the axis from the symmetric part.
        w, v = np.linalg.eigh((R_err + np.eye(3)) / 2.0)
        return v[:, np.argmax(w)] * angle
    return axis / norm * angle


def solve_ik(
    T_base_target: np.ndarray,
    q_init_rad: np.ndarray,
    robot: RobotDescription = PANDA,
    iterations: int = 100,
    damping: float = 1e-4,
    tolerance_m: float = 1e-4,
    orientation_weight: float = 0.5,
    q_rest_rad: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Damped-least-squares IK for the TCP pose; returns (q within limits, position error in m).

    A small null-space pull toward ``q_rest_rad`` (the home pose by default) keeps solutions
    away from joint limits and makes them repeatable.
    """
    q = np.clip(np.asarray(q_init_rad, dtype=float), robot.lower_rad, robot.upper_rad)
    q_rest = np.asarray(robot.home_q_rad if q_rest_rad is None else q_rest_rad, dtype=float)
    weights = np.array([1.0, 1.0, 1.0, orientation_weight, orientation_weight, orientation_weight])
    pos_err = np.inf
    for _ in range(iterations):
        T = forward_kinematics(q, robot)
        err = np.concatenate(
            [T_base_target[:3, 3] - T[:3, 3], rotation_error(T[:3, :3], T_base_target[:3, :3])]
        )
        pos_err = float(np.linalg.norm(err[:3]))
        if pos_err < tolerance_m and np.linalg.norm(err[3:]) < 1e-3:
            break
        J = tcp_jacobian(q, robot) * weights[:, None]
        JJt = J @ J.T + damping * np.eye(6)
        J_pinv = J.T @ np.linalg.inv(JJt)
        null = (np.eye(robot.dof) - J_pinv @ J) @ (q_rest - q) * 0.1
        step = J_pinv @ (err * weights) + null
        q = np.clip(q + np.clip(step, -0.3, 0.3), robot.lower_rad, robot.upper_rad)
    return q, pos_err


def tcp_down_pose(position_m: np.ndarray, yaw_rad: float = 0.0) -> np.ndarray:
    """TCP pose pointing straight down at ``position_m``, rotated ``yaw_rad`` about world z."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    T = np.eye(4)
    # Down-pointing gripper: x forward, y mirrored, z down (the home pose's orientation).
    T[:3, :3] = np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])
    T[:3, 3] = position_m
    return T
