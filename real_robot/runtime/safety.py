"""The safety filter between the policy and the robot: always on, plain numpy.

Whatever the policy outputs (NaN, inf, wrong shape, a jump across the workspace), the command
that leaves ``SafetyFilter.filter`` is inside the joint limits (with margin), within one
control period's velocity of the previous command, keeps the TCP inside the workspace box, and
has a gripper value in 0..1. Malformed input holds the last safe command. Every intervention is
reported as a named event so the node can publish it and the evaluation can count it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kizuna.kinematics import forward_kinematics
from kizuna.robot import PANDA, RobotDescription

EVENTS = ("malformed", "position_clamp", "velocity_clamp", "workspace_clamp")


@dataclass(frozen=True)
class SafetyLimits:
    """Limits in robot units: rad, rad/s, metres (robot base frame), seconds."""

    lower_rad: tuple[float, ...]
    upper_rad: tuple[float, ...]
    max_velocity_rad_s: tuple[float, ...]
    control_dt_s: float
    workspace_min_m: tuple[float, float, float] = (0.15, -0.6, 0.005)
    workspace_max_m: tuple[float, float, float] = (0.85, 0.6, 0.7)

    @classmethod
    def for_robot(
        cls,
        robot: RobotDescription = PANDA,
        control_hz: float = 20.0,
        margin_rad: float = 0.05,
        velocity_fraction: float = 0.5,
        **workspace: tuple[float, float, float],
    ) -> SafetyLimits:
        """Joint limits shrunk by ``margin_rad``, velocity at a fraction of the rated speed."""
        lower, upper = robot.lower_rad + margin_rad, robot.upper_rad - margin_rad
        if np.any(lower >= upper):
            raise ValueError(f"margin_rad={margin_rad} leaves no range on some joint")
        return cls(
            lower_rad=tuple(lower),
            upper_rad=tuple(upper),
            max_velocity_rad_s=tuple(robot.velocity_rad_s * velocity_fraction),
            control_dt_s=1.0 / control_hz,
            **workspace,
        )

    @property
    def dof(self) -> int:
        return len(self.lower_rad)


@dataclass
class FilterResult:
    command: np.ndarray  # [dof + 1]: joint targets (rad) + gripper 0..1
    events: list[str] = field(default_factory=list)


class SafetyFilter:
    """Stateful: it remembers the last command it let through (the velocity reference)."""

    def __init__(self, limits: SafetyLimits, robot: RobotDescription = PANDA) -> None:
        self.limits = limits
        self.robot = robot
        self._lower = np.array(limits.lower_rad)
        self._upper = np.array(limits.upper_rad)
        self._max_step = np.array(limits.max_velocity_rad_s) * limits.control_dt_s
        self._box_min = np.array(limits.workspace_min_m)
        self._box_max = np.array(limits.workspace_max_m)
        self._last: np.ndarray | None = None
        self.counts = dict.fromkeys(EVENTS, 0)

    def reset(self, q_measured_rad: np.ndarray, gripper: float = 1.0) -> None:
        """Start from where the arm is (clipped into the limits)."""
        q = np.clip(np.asarray(q_measured_rad, dtype=float), self._lower, self._upper)
        self._last = np.concatenate([q, [float(np.clip(gripper, 0.0, 1.0))]])

    @property
    def last_command(self) -> np.ndarray:
        if self._last is None:
            raise RuntimeError("SafetyFilter.reset(q) must be called with the measured position")
        return self._last.copy()

    def hold(self) -> np.ndarray:
        """The last safe command: what to send when anything is in doubt."""
        return self.last_command

    def filter(self, action: object) -> FilterResult:
        """Make ``action`` safe; the result always satisfies every limit."""
        last = self.last_command
        events: list[str] = []
        cmd = self._well_formed(action)
        if cmd is None:
            events.append("malformed")
            cmd = last.copy()
        joints = np.clip(cmd[:-1], self._lower, self._upper)
        if not np.array_equal(joints, cmd[:-1]):
            events.append("position_clamp")
        step = np.clip(joints - last[:-1], -self._max_step, self._max_step)
        if not np.array_equal(step, joints - last[:-1]):
            events.append("velocity_clamp")
        joints = last[:-1] + step
        joints, clamped = self._inside_workspace(last[:-1], joints)
        if clamped:
            events.append("workspace_clamp")
        out = np.concatenate([joints, [float(np.clip(cmd[-1], 0.0, 1.0))]])
        self._last = out
        for event in events:
            self.counts[event] += 1
        return FilterResult(out.copy(), events)

    def _well_formed(self, action: object) -> np.ndarray | None:
        try:
            cmd = np.asarray(action, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            return None
        if cmd.shape != (self.limits.dof + 1,) or not np.all(np.isfinite(cmd)):
            return None
        return cmd

    def _tcp_inside(self, q_rad: np.ndarray) -> bool:
        p = forward_kinematics(q_rad, self.robot)[:3, 3]
        return bool(np.all(p >= self._box_min) and np.all(p <= self._box_max))

    def _box_distance(self, q_rad: np.ndarray) -> float:
        p = forward_kinematics(q_rad, self.robot)[:3, 3]
        return float(np.linalg.norm(p - np.clip(p, self._box_min, self._box_max)))

    def _inside_workspace(self, q_from: np.ndarray, q_to: np.ndarray) -> tuple[np.ndarray, bool]:
        """Go as far toward ``q_to`` as keeps the TCP in the box (bisection on the segment)."""
        if self._tcp_inside(q_to):
            return q_to, False
        if not self._tcp_inside(q_from):
            # Started outside (the arm was put there by hand): moves back toward the box are
            # allowed, moves further away are held, so the policy can always recover.
            if self._box_distance(q_to) <= self._box_distance(q_from):
                return q_to, True
            return q_from, True
        low, high = 0.0, 1.0
        for _ in range(12):  # 1/4096 of one velocity-limited step: well under a millimetre
            mid = (low + high) / 2
            if self._tcp_inside(q_from + mid * (q_to - q_from)):
                low = mid
            else:
                high = mid
        return q_from + low * (q_to - q_from), True
