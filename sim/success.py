"""Success predicates and reward terms, evaluated on a snapshot of the scene.

Pure functions of ``SceneState`` so the same checks run in any backend, in tests with made-up
states, and in the expert's planner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kizuna.task import Predicate, TaskSpec

# A stacked or inserted object counts only once the gripper has let go of it.
RELEASED_OPENING = 0.5
RELEASED_DISTANCE_M = 0.05

# Reward = sum of scale * term. Terms are negative distances (m) except the bonuses.
REWARD_SCALES: dict[str, float] = {
    "tcp_to_target": 1.0,  # reach: gripper to the marker
    "tcp_to_object": 0.5,  # approach the object to move
    "object_to_goal": 2.0,  # bring it where the predicate wants it
    "success": 10.0,  # all predicates hold
    "arm_contact": -0.1,  # per arm-link contact with the table or fixtures
}


@dataclass(frozen=True)
class SceneState:
    """Where things are right now (robot base frame, metres)."""

    tcp_pos_m: np.ndarray
    gripper_opening: float
    object_pos_m: dict[str, np.ndarray]
    object_quat_wxyz: dict[str, np.ndarray]
    fixture_pos_m: dict[str, np.ndarray]
    fixture_yaw_rad: dict[str, float]
    arm_contacts: int = 0


def _in_fixture_frame(state: SceneState, obj: str, fixture: str) -> np.ndarray:
    """Object centre relative to the fixture's reference point, in the fixture's yaw frame."""
    delta = state.object_pos_m[obj] - state.fixture_pos_m[fixture]
    c, s = np.cos(-state.fixture_yaw_rad[fixture]), np.sin(-state.fixture_yaw_rad[fixture])
    return np.array([c * delta[0] - s * delta[1], s * delta[0] + c * delta[1], delta[2]])


def _released(state: SceneState, obj: str) -> bool:
    far = np.linalg.norm(state.tcp_pos_m - state.object_pos_m[obj]) > RELEASED_DISTANCE_M
    return state.gripper_opening > RELEASED_OPENING or bool(far)


def predicate_holds(spec: TaskSpec, p: Predicate, state: SceneState) -> bool:
    """Whether one success predicate holds in ``state``."""
    if p.kind == "reach":
        target = state.fixture_pos_m[p.target or ""]
        return bool(np.linalg.norm(state.tcp_pos_m - target) <= p.tolerance_m)
    obj = spec.object(p.object or "")
    pos = state.object_pos_m[obj.name]
    if p.kind == "lifted":
        return bool(pos[2] - obj.height_m / 2 >= p.height_m)
    if p.kind == "stacked_on":
        below = spec.object(p.target or "")
        below_pos = state.object_pos_m[below.name]
        xy_ok = np.linalg.norm(pos[:2] - below_pos[:2]) <= p.tolerance_m
        contact_z = below_pos[2] + below.height_m / 2 + obj.height_m / 2
        return bool(
            xy_ok and abs(pos[2] - contact_z) <= p.tolerance_m and _released(state, obj.name)
        )
    fixture = spec.fixture(p.target or "")
    local = _in_fixture_frame(state, obj.name, fixture.name)
    half = np.array(fixture.size_m[:2]) / 2
    inside_xy = bool(np.all(np.abs(local[:2]) <= half + p.tolerance_m))
    bottom_z = local[2] - obj.height_m / 2
    if p.kind == "in_zone":
        # Zones lie on the table; bins must hold the object below their rim.
        rim_z = fixture.size_m[2] if fixture.kind == "bin" else 0.02
        return inside_xy and bottom_z <= rim_z
    # inserted: centred within tolerance and its bottom at least depth_m below the rim.
    centred = bool(np.all(np.abs(local[:2]) <= p.tolerance_m))
    return centred and bottom_z <= fixture.size_m[2] - p.depth_m and _released(state, obj.name)


def steps_done(spec: TaskSpec, state: SceneState, done: int = 0) -> int:
    """Ordered steps completed: from ``done``, each next step counts once its check holds.

    Steps latch: "lifted" in the middle of a kitting sequence is done once the part was up,
    although it is no longer up when the part lands in its tray.
    """
    ordered = spec.ordered_steps
    while done < len(ordered) and predicate_holds(spec, ordered[done].predicate, state):
        done += 1
    return done


def is_success(spec: TaskSpec, state: SceneState, done_steps: int | None = None) -> bool:
    """Every ``success`` predicate holds now, and every ordered step is done (``done_steps``
    from ``steps_done``; ``None``, without an episode's history: every step holds now)."""
    if not all(predicate_holds(spec, p, state) for p in spec.success):
        return False
    if done_steps is None:
        return all(predicate_holds(spec, s.predicate, state) for s in spec.steps)
    return done_steps >= len(spec.steps)


def goal_position(spec: TaskSpec, p: Predicate, state: SceneState) -> np.ndarray:
    """Where the predicate wants the object's centre (or the TCP, for reach)."""
    if p.kind == "reach":
        return state.fixture_pos_m[p.target or ""].copy()
    obj = spec.object(p.object or "")
    pos = state.object_pos_m[obj.name]
    if p.kind == "lifted":
        return np.array([pos[0], pos[1], p.height_m + obj.height_m / 2 + 0.01])
    if p.kind == "stacked_on":
        below = spec.object(p.target or "")
        below_pos = state.object_pos_m[below.name]
        return below_pos + np.array([0.0, 0.0, below.height_m / 2 + obj.height_m / 2])
    fixture = spec.fixture(p.target or "")
    goal = state.fixture_pos_m[fixture.name].copy()
    if p.kind == "in_zone":
        floor_z = fixture.wall_m if fixture.kind == "bin" else 0.0
        goal[2] = floor_z + obj.height_m / 2
    else:
        goal[2] = fixture.size_m[2] - p.depth_m - 0.005 + obj.height_m / 2
    return goal


def reward_terms(
    spec: TaskSpec, state: SceneState, done_steps: int | None = None
) -> dict[str, float]:
    """Named, unscaled reward terms; multiply by ``REWARD_SCALES`` and sum for the reward."""
    terms = {name: 0.0 for name in REWARD_SCALES}
    for p in spec.predicates:
        goal = goal_position(spec, p, state)
        if p.kind == "reach":
            terms["tcp_to_target"] -= float(np.linalg.norm(state.tcp_pos_m - goal))
            continue
        obj_pos = state.object_pos_m[p.object or ""]
        terms["tcp_to_object"] -= float(np.linalg.norm(state.tcp_pos_m - obj_pos))
        terms["object_to_goal"] -= float(np.linalg.norm(obj_pos - goal))
    terms["success"] = float(is_success(spec, state, done_steps))
    terms["arm_contact"] = float(state.arm_contacts)
    return terms


def total_reward(terms: dict[str, float]) -> float:
    return float(sum(REWARD_SCALES[name] * value for name, value in terms.items()))
