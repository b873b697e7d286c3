"""The robot, described once: a 7-DoF Franka-Panda-class arm with a parallel gripper.

Every backend (MuJoCo, PyBullet) builds its model from this description, and the safety filter
uses the same forward kinematics, so "where is the gripper" has one answer everywhere.

Frames: the robot base sits at the world origin, z up, on the table top (z = 0). Lengths are in
metres, angles in radians. The chain follows the Panda's published URDF joint origins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Joint:
    """One revolute joint: its origin in the parent link frame and its limits."""

    name: str
    xyz_m: tuple[float, float, float]
    rpy_rad: tuple[float, float, float]
    lower_rad: float
    upper_rad: float
    velocity_rad_s: float
    effort_nm: float
    # Capsule radius of the link that this joint moves: primitives render ~6x faster than meshes.
    link_radius_m: float


_HALF_PI = np.pi / 2


@dataclass(frozen=True)
class RobotDescription:
    """Joint chain, gripper and home pose of one arm."""

    robot_id: str
    joints: tuple[Joint, ...]
    # Fixed transform from the last joint frame to the hand (flange + the hand's -45 deg yaw).
    flange_xyz_m: tuple[float, float, float]
    hand_yaw_rad: float
    # Tool centre point (between the fingertips) along the hand's z axis.
    tcp_offset_m: float
    # Finger joints are prismatic; each finger moves 0..finger_travel_m, so the opening is 2x.
    finger_origin_m: float
    finger_travel_m: float
    finger_force_n: float
    home_q_rad: tuple[float, ...]
    control_hz: float = 20.0
    gripper_names: tuple[str, str] = ("panda_finger_joint1", "panda_finger_joint2")
    # Lightweight per-link mass (kg); the arm is gravity-compensated in simulation.
    link_mass_kg: float = 1.0

    @property
    def dof(self) -> int:
        return len(self.joints)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def lower_rad(self) -> np.ndarray:
        return np.array([j.lower_rad for j in self.joints])

    @property
    def upper_rad(self) -> np.ndarray:
        return np.array([j.upper_rad for j in self.joints])

    @property
    def velocity_rad_s(self) -> np.ndarray:
        return np.array([j.velocity_rad_s for j in self.joints])

    @property
    def action_dim(self) -> int:
        """Joint targets plus one gripper command (0 closed .. 1 open)."""
        return self.dof + 1


PANDA = RobotDescription(
    robot_id="kizuna-panda-v1",
    joints=(
        Joint("panda_joint1", (0, 0, 0.333), (0, 0, 0), -2.8973, 2.8973, 2.175, 87, 0.07),
        Joint("panda_joint2", (0, 0, 0), (-_HALF_PI, 0, 0), -1.7628, 1.7628, 2.175, 87, 0.07),
        Joint("panda_joint3", (0, -0.316, 0), (_HALF_PI, 0, 0), -2.8973, 2.8973, 2.175, 87, 0.06),
        Joint("panda_joint4", (0.0825, 0, 0), (_HALF_PI, 0, 0), -3.0718, -0.0698, 2.175, 87, 0.06),
        Joint(
            "panda_joint5", (-0.0825, 0.384, 0), (-_HALF_PI, 0, 0), -2.8973, 2.8973, 2.61, 12, 0.06
        ),
        Joint("panda_joint6", (0, 0, 0), (_HALF_PI, 0, 0), -0.0175, 3.7525, 2.61, 12, 0.05),
        Joint("panda_joint7", (0.088, 0, 0), (_HALF_PI, 0, 0), -2.8973, 2.8973, 2.61, 12, 0.04),
    ),
    flange_xyz_m=(0, 0, 0.107),
    hand_yaw_rad=-np.pi / 4,
    tcp_offset_m=0.1034,
    finger_origin_m=0.0584,
    finger_travel_m=0.04,
    finger_force_n=70.0,
    home_q_rad=(0.0, -0.3, 0.0, -2.2, 0.0, 1.9, np.pi / 4),
)
