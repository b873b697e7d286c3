"""The contract every physics backend implements; ``KizunaEnv`` talks only to this.

A backend owns one engine instance holding the robot (``kizuna.robot``), the table, the task's
objects and fixtures, and the cameras (``sim.scene.CAMERAS``). It knows nothing of rewards,
observations or randomization: the env decides, the backend executes.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sim.scene import Layout, PhysicsParams


class Backend(Protocol):
    """One simulated cell. All positions in the robot base frame (metres, radians)."""

    name: str  # "mujoco" or "pybullet"

    def reset(
        self, layout: Layout, q_rad: np.ndarray, gripper_opening: float, params: PhysicsParams
    ) -> None:
        """Apply ``params``, put objects and fixtures at ``layout``, the arm at ``q_rad``
        (at rest, zero velocity) and the fingers at ``gripper_opening`` (0 closed .. 1 open)."""

    def step(self, q_target_rad: np.ndarray, gripper_cmd: float) -> None:
        """Advance one control period (1 / control_hz) tracking the joint targets with the
        position controllers; the gripper closes (0) or opens (1) with bounded force."""

    def joint_positions(self) -> np.ndarray:
        """Arm joint positions (dof,), rad."""

    def joint_velocities(self) -> np.ndarray:
        """Arm joint velocities (dof,), rad/s."""

    def gripper_opening(self) -> float:
        """Measured finger gap as a fraction of the full opening, 0..1."""

    def tcp_pose(self) -> np.ndarray:
        """4x4 world transform of the tool centre point, measured in the engine."""

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Position (3,) of the object's centre and orientation as a wxyz quaternion (4,)."""

    def fixture_position(self, name: str) -> np.ndarray:
        """Position (3,) of a fixture's reference point (zone/bin/hole centre on the table,
        reach target centre)."""

    def set_joint_positions(self, q_rad: np.ndarray) -> None:
        """Teleport the arm (kinematics tests, resets); no physics step."""

    def render(self, camera: str, width: int, height: int) -> np.ndarray:
        """RGB image (height, width, 3) uint8 from a camera in ``sim.scene.CAMERAS``."""

    def arm_contacts(self) -> int:
        """Contacts between arm links (not fingers) and the table or fixtures right now."""

    def close(self) -> None:
        """Release the engine and any rendering context."""
