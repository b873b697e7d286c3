"""Success predicates and reward terms on hand-made scene states (no physics)."""

from __future__ import annotations

import numpy as np

from kizuna.task import load_task
from sim.success import REWARD_SCALES, SceneState, is_success, reward_terms, total_reward


def _state(tcp, objects: dict, fixtures: dict, opening: float = 1.0) -> SceneState:
    return SceneState(
        tcp_pos_m=np.array(tcp, float),
        gripper_opening=opening,
        object_pos_m={k: np.array(v, float) for k, v in objects.items()},
        object_quat_wxyz={k: np.array([1.0, 0, 0, 0]) for k in objects},
        fixture_pos_m={k: np.array(v, float) for k, v in fixtures.items()},
        fixture_yaw_rad={k: 0.0 for k in fixtures},
    )


def test_reach_within_tolerance() -> None:
    spec = load_task("reach")
    target = {"marker": (0.5, 0.0, 0.2)}
    assert is_success(spec, _state((0.5, 0.0, 0.225), {}, target))
    assert not is_success(spec, _state((0.5, 0.0, 0.25), {}, target))


def test_pick_place_needs_the_cube_inside_the_bin_below_its_rim() -> None:
    spec = load_task("pick_place")
    fixtures = {"bin": (0.5, 0.2, 0.0)}
    inside = _state((0.5, 0.2, 0.3), {"cube": (0.52, 0.18, 0.03)}, fixtures)
    above = _state((0.5, 0.2, 0.3), {"cube": (0.52, 0.18, 0.15)}, fixtures)
    beside = _state((0.5, 0.2, 0.3), {"cube": (0.5, 0.05, 0.02)}, fixtures)
    assert is_success(spec, inside)
    assert not is_success(spec, above)
    assert not is_success(spec, beside)


def test_stack_requires_contact_height_and_release() -> None:
    spec = load_task("stack")
    on_top = {"red_cube": (0.5, 0.1, 0.05 + 0.02), "blue_cube": (0.5, 0.1, 0.025)}
    assert is_success(spec, _state((0.5, 0.1, 0.3), on_top, {}))
    assert not is_success(spec, _state((0.5, 0.1, 0.08), on_top, {}, opening=0.1))
    floating = {"red_cube": (0.5, 0.1, 0.15), "blue_cube": (0.5, 0.1, 0.025)}
    assert not is_success(spec, _state((0.5, 0.1, 0.3), floating, {}))


def test_insert_requires_depth_and_centring() -> None:
    spec = load_task("insert")
    hole = {"hole": (0.5, 0.1, 0.0)}
    # rim at 0.04; peg 0.07 tall, bottom must be at or below 0.02.
    assert is_success(spec, _state((0.5, 0.1, 0.3), {"peg": (0.5, 0.1, 0.015 + 0.035)}, hole))
    assert not is_success(spec, _state((0.5, 0.1, 0.3), {"peg": (0.5, 0.1, 0.06 + 0.035)}, hole))
    off = {"peg": (0.5, 0.11, 0.015 + 0.035)}
    assert not is_success(spec, _state((0.5, 0.1, 0.3), off, hole))


def test_reward_terms_are_named_and_improve_toward_the_goal() -> None:
    spec = load_task("pick_place")
    fixtures = {"bin": (0.5, 0.2, 0.0)}
    far = reward_terms(spec, _state((0.3, -0.2, 0.4), {"cube": (0.5, -0.1, 0.02)}, fixtures))
    near = reward_terms(spec, _state((0.5, -0.1, 0.03), {"cube": (0.5, -0.1, 0.02)}, fixtures))
    done = reward_terms(spec, _state((0.5, 0.2, 0.3), {"cube": (0.5, 0.2, 0.03)}, fixtures))
    assert set(far) == set(REWARD_SCALES)
    assert near["tcp_to_object"] > far["tcp_to_object"]
    assert done["success"] == 1.0 and far["success"] == 0.0
    assert total_reward(done) > total_reward(near) > total_reward(far)
