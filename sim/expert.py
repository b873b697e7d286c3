"""A scripted expert driven by the task spec: IK + waypoints + grasp logic, no per-task code.

It reads the privileged scene state (true object poses) and plans from the task's success
predicates: ``reach`` moves the TCP to the marker; every object predicate (in_zone, lifted,
stacked_on, inserted) becomes grasp -> carry -> place/release at ``sim.success.goal_position``.
Speeds and approach heights are drawn from the env's RNG so demonstrations vary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kizuna.kinematics import solve_ik, tcp_down_pose
from kizuna.task import ObjectSpec, Predicate
from sim.env import KizunaEnv
from sim.success import goal_position

OPEN, CLOSED = 1.0, 0.0
MAX_GRASP_TRIES = 3
# The speed profile along a segment (``_move``): bounded acceleration keeps a part held by
# friction alone in the fingers; the tiny head start gets the first step moving.
ACCEL_M_S2 = 1.0
START_M = 0.002
MIN_STEP_M = 0.001  # the last steps would otherwise creep towards the goal forever


@dataclass(frozen=True)
class Waypoint:
    pos_m: np.ndarray
    yaw_rad: float
    gripper: float
    speed_m_s: float
    hold_steps: int = 0  # extra control periods to stay once there (grasp, release)


def _grasp_yaw(obj_quat_wxyz: np.ndarray, shape: str) -> float:
    """Hand yaw that lines the fingers up with a box's faces, the one closest to 0."""
    w, x, y, z = obj_quat_wxyz
    yaw = float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
    if shape != "box":
        return 0.0
    return _wrap_quarter(yaw)


def _wrap_quarter(angle_rad: float) -> float:
    """Wrap to [-45, 45) degrees: a box looks the same every quarter turn."""
    return float((angle_rad + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def _grasp_depth_m(obj: ObjectSpec) -> float:
    """How far below the object's top the fingertips close (tall parts are held near the top)."""
    return min(obj.height_m / 2, 0.025)


class ScriptedExpert:
    """Call ``reset(env)`` after ``env.reset``, then ``act()`` each step for a joint action."""

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng or np.random.default_rng()
        self._plan: Iterator[tuple[np.ndarray, float]] | None = None

    def reset(self, env: KizunaEnv) -> None:
        self.env = env
        self.q_rad = env.sim.joint_positions().copy()
        self._gripper = OPEN
        self._tcp = env.scene_state().tcp_pos_m.copy()
        self._yaw = 0.0
        self._plan = self._actions()

    def act(self) -> np.ndarray:
        assert self._plan is not None, "call reset(env) first"
        q, grip = next(self._plan, (self.q_rad, self._gripper))
        return np.concatenate([q, [grip]]).astype(np.float32)

    # -- planning ---------------------------------------------------------------------------
    def _actions(self) -> Iterator[tuple[np.ndarray, float]]:
        for predicate in self.env.spec_task.predicates:
            for waypoint in self._waypoints(predicate):
                yield from self._move(waypoint)

    def _waypoints(self, p: Predicate) -> Iterator[Waypoint]:
        state = self.env.scene_state()
        speed = float(self.rng.uniform(0.18, 0.3))
        if p.kind == "reach":
            yield Waypoint(goal_position(self.env.spec_task, p, state), 0.0, OPEN, speed, 3)
            return
        obj = self.env.spec_task.object(p.object or "")
        clearance = float(self.rng.uniform(0.08, 0.12))
        goal = goal_position(self.env.spec_task, p, state)
        grasp_dz = obj.height_m / 2 - _grasp_depth_m(obj)  # fingertips above the centre
        place_z = goal[2] + grasp_dz + 0.005
        # Carry high enough to clear bins and other objects.
        carry_z = max(place_z, state.object_pos_m[obj.name][2]) + clearance + obj.height_m / 2
        careful = 0.04 if p.kind == "inserted" else speed * 0.5
        stages = ((carry_z, speed), (place_z + 0.03, speed), (place_z, careful))
        for _ in range(MAX_GRASP_TRIES):  # a missed grasp or a drop starts over from the object
            yield from self._grasp(obj, grasp_dz, clearance, carry_z, speed)
            if p.kind == "lifted" and self._holding(obj):
                return
            # Approach the goal in stages, re-measuring the object in the hand before each: it
            # may slip or turn while carried, and a 1 mm insertion clearance leaves no room.
            for z, v in stages:
                if not self._holding(obj):
                    break
                place = self._corrected_place(p, obj, goal, z)
                yield Waypoint(place.pos_m, place.yaw_rad, CLOSED, v, 2 if z == place_z else 0)
            else:
                yield Waypoint(place.pos_m, place.yaw_rad, OPEN, speed, 4)
                up = place.pos_m + np.array([0.0, 0.0, clearance])
                yield Waypoint(up, place.yaw_rad, OPEN, speed)
                return
            yield Waypoint(self._tcp, self._yaw, OPEN, speed, 2)

    def _grasp(
        self, obj: ObjectSpec, grasp_dz: float, clearance: float, carry_z: float, speed: float
    ) -> Iterator[Waypoint]:
        """Above the object, down, close, lift: from wherever the object is now."""
        state = self.env.scene_state()
        pos = state.object_pos_m[obj.name]
        yaw = _grasp_yaw(state.object_quat_wxyz[obj.name], obj.shape)
        grasp = pos + np.array([0.0, 0.0, grasp_dz])
        yield Waypoint(grasp + np.array([0.0, 0.0, clearance]), yaw, OPEN, speed)
        yield Waypoint(grasp, yaw, OPEN, speed * 0.5, 2)
        yield Waypoint(grasp, yaw, CLOSED, speed, 6)
        yield Waypoint(np.array([*grasp[:2], carry_z]), yaw, CLOSED, speed)

    def _holding(self, obj: ObjectSpec) -> bool:
        """The object hangs between the fingers (within a few cm of the TCP)."""
        state = self.env.scene_state()
        gap_m = float(np.linalg.norm(state.object_pos_m[obj.name] - state.tcp_pos_m))
        return gap_m < obj.height_m / 2 + 0.03

    def _corrected_place(
        self, p: Predicate, obj: ObjectSpec, goal: np.ndarray, z: float
    ) -> Waypoint:
        """TCP pose that puts the held object at ``goal`` (xy) given where it sits in the hand."""
        held = self.env.scene_state()
        held_yaw = _grasp_yaw(held.object_quat_wxyz[obj.name], obj.shape)
        place_yaw = self._yaw + _wrap_quarter(self._goal_yaw(p, held) - held_yaw)
        offset_xy = self._rotate(
            held.tcp_pos_m[:2] - held.object_pos_m[obj.name][:2], place_yaw - self._yaw
        )
        return Waypoint(np.array([*(goal[:2] + offset_xy), z]), place_yaw, CLOSED, 0.0)

    def _goal_yaw(self, p: Predicate, state) -> float:
        """Yaw the placed object should end with: the fixture's, or the object below's."""
        if p.target in state.fixture_yaw_rad:
            return state.fixture_yaw_rad[p.target]
        if p.target in state.object_quat_wxyz:
            return _grasp_yaw(state.object_quat_wxyz[p.target], "box")
        return _grasp_yaw(state.object_quat_wxyz[p.object], "box")

    @staticmethod
    def _rotate(xy: np.ndarray, angle_rad: float) -> np.ndarray:
        c, s = np.cos(angle_rad), np.sin(angle_rad)
        return np.array([c * xy[0] - s * xy[1], s * xy[0] + c * xy[1]])

    def _move(self, wp: Waypoint) -> Iterator[tuple[np.ndarray, float]]:
        """Straight-line TCP motion at up to ``wp.speed_m_s``, then hold; one IK solve per step.

        The speed is a function of *where* the TCP is on the segment, not of the time since it
        started: ``min(v, sqrt(2 a s_done), sqrt(2 a s_left))`` (a trapezoid in position). So
        the next target depends only on the current position, start and goal, which a policy
        can see; a time-based profile (min-jerk) makes the same position mean different speeds.
        """
        dt = self.env.control_dt_s
        start, start_yaw = self._tcp.copy(), self._yaw
        distance = float(np.linalg.norm(wp.pos_m - start))
        done_m = 0.0
        while done_m < distance - 1e-9:
            speed = min(
                wp.speed_m_s,
                np.sqrt(2 * ACCEL_M_S2 * (done_m + START_M)),
                np.sqrt(2 * ACCEL_M_S2 * (distance - done_m)),
            )
            done_m = min(distance, done_m + max(speed * dt, MIN_STEP_M))
            alpha = done_m / distance
            self._tcp = start + alpha * (wp.pos_m - start)
            self._yaw = start_yaw + alpha * (wp.yaw_rad - start_yaw)
            yield self._ik(), self._gripper
        if distance <= 1e-9:  # a turn on the spot: one step, as before
            self._yaw = wp.yaw_rad
            yield self._ik(), self._gripper
        self._gripper = wp.gripper
        for _ in range(wp.hold_steps + 1):
            yield self._ik(), self._gripper

    def _ik(self) -> np.ndarray:
        target = tcp_down_pose(self._tcp, self._yaw)
        self.q_rad, _ = solve_ik(target, self.q_rad, self.env.robot, iterations=4)
        return self.q_rad
