"""Success predicates and reward terms on hand-made scene states (no physics)."""

from __future__ import annotations

import numpy as np
import pytest

from kizuna.task import TaskSpec, load_task
from sim.success import (
    REWARD_SCALES,
    SceneState,
    is_success,
    reward_terms,
    steps_done,
    total_reward,
)


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


def _lift_then_place() -> TaskSpec:
    return TaskSpec.model_validate(
        {
            "name": "lift_then_place",
            "episode_steps": 100,
            "objects": [
                {
                    "name": "cube",
                    "shape": "box",
                    "size_m": [0.04, 0.04, 0.04],
                    "pose": {"x_m": [0.5, 0.5], "y_m": [0.0, 0.0]},
                }
            ],
            "fixtures": [
                {
                    "name": "bin",
                    "kind": "bin",
                    "size_m": [0.14, 0.14, 0.06],
                    "pose": {"x_m": [0.5, 0.5], "y_m": [0.2, 0.2]},
                }
            ],
            "steps": [
                {
                    "order": 2,
                    "text": "drop it in the bin.",
                    "predicate": {"kind": "in_zone", "object": "cube", "target": "bin"},
                },
                {
                    "order": 1,
                    "text": "Lift the cube",
                    "predicate": {"kind": "lifted", "object": "cube"},
                },
            ],
        }
    )


def test_steps_without_instructions_become_the_instruction_in_order() -> None:
    spec = _lift_then_place()
    assert spec.instructions == {"en": ["Lift the cube, then drop it in the bin"]}
    assert [s.order for s in spec.ordered_steps] == [1, 2]


def test_ordered_steps_latch_and_succeed_only_in_order() -> None:
    spec = _lift_then_place()
    bin_at = {"bin": (0.5, 0.2, 0.0)}
    on_table = _state((0.5, 0.0, 0.3), {"cube": (0.5, 0.0, 0.02)}, bin_at)
    lifted = _state((0.5, 0.0, 0.15), {"cube": (0.5, 0.0, 0.13)}, bin_at, opening=0.3)
    in_bin = _state((0.5, 0.2, 0.3), {"cube": (0.5, 0.2, 0.03)}, bin_at)
    # Placed without ever being lifted (pushed in): step 1 never happened.
    assert steps_done(spec, on_table) == 0
    assert steps_done(spec, in_bin) == 0 and not is_success(spec, in_bin, 0)
    # Lifted, then placed: step 1 latches although the cube is no longer up at the end.
    done = steps_done(spec, lifted)
    assert done == 1 and not is_success(spec, lifted, done)
    done = steps_done(spec, in_bin, done)
    assert done == 2 and is_success(spec, in_bin, done)
    assert reward_terms(spec, in_bin, done)["success"] == 1.0


def test_duplicate_step_orders_are_refused() -> None:
    raw = _lift_then_place().model_dump()
    raw["steps"][1]["order"] = 2
    raw["instructions"] = {}
    with pytest.raises(ValueError, match="order"):
        TaskSpec.model_validate(raw)
