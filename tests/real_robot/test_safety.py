"""Safety filter: whatever the policy outputs, the command sent never leaves the limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kizuna.kinematics import forward_kinematics, solve_ik, tcp_down_pose
from kizuna.robot import PANDA
from real_robot.runtime.safety import SafetyFilter, SafetyLimits

LIMITS = SafetyLimits.for_robot(PANDA, control_hz=20.0, margin_rad=0.05)
HOME = np.array(PANDA.home_q_rad)
_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
_actions = st.one_of(
    arrays(np.float64, PANDA.action_dim, elements=_floats),
    arrays(np.float64, PANDA.action_dim, elements=st.floats(-10, 10)),
    arrays(np.float64, st.integers(0, 12), elements=st.floats(-5, 5)),
    st.lists(st.one_of(_floats, st.text(max_size=2)), max_size=9),
    st.none(),
)


def _assert_safe(cmd: np.ndarray, previous: np.ndarray) -> None:
    assert cmd.shape == (PANDA.action_dim,)
    assert np.all(np.isfinite(cmd))
    joints = cmd[:-1]
    assert np.all(joints >= np.array(LIMITS.lower_rad) - 1e-12)
    assert np.all(joints <= np.array(LIMITS.upper_rad) + 1e-12)
    max_step = np.array(LIMITS.max_velocity_rad_s) * LIMITS.control_dt_s
    assert np.all(np.abs(joints - previous[:-1]) <= max_step + 1e-12)
    tcp = forward_kinematics(joints)[:3, 3]
    assert np.all(tcp >= np.array(LIMITS.workspace_min_m) - 1e-9)
    assert np.all(tcp <= np.array(LIMITS.workspace_max_m) + 1e-9)
    assert 0.0 <= cmd[-1] <= 1.0


@settings(max_examples=300, deadline=None)
@given(actions=st.lists(_actions, min_size=1, max_size=15))
def test_any_action_sequence_stays_within_every_limit(actions: list) -> None:
    safety = SafetyFilter(LIMITS)
    safety.reset(HOME)
    previous = safety.last_command
    for action in actions:
        result = safety.filter(action)
        _assert_safe(result.command, previous)
        previous = result.command


@settings(max_examples=100, deadline=None)
@given(target=arrays(np.float64, PANDA.action_dim, elements=st.floats(-4, 4)))
def test_repeated_commands_converge_inside_the_limits(target: np.ndarray) -> None:
    safety = SafetyFilter(LIMITS)
    safety.reset(HOME)
    previous = safety.last_command
    for _ in range(60):
        cmd = safety.filter(target).command
        _assert_safe(cmd, previous)
        previous = cmd


def test_malformed_actions_hold_the_last_safe_command() -> None:
    safety = SafetyFilter(LIMITS)
    safety.reset(HOME, gripper=0.3)
    held = safety.last_command
    for bad in (None, [np.nan] * 8, np.full(8, np.inf), np.zeros(3), "open", [[1, 2], [3]]):
        result = safety.filter(bad)
        assert result.events == ["malformed"]
        np.testing.assert_array_equal(result.command, held)
    assert safety.counts["malformed"] == 6


def test_a_small_valid_step_passes_unchanged() -> None:
    safety = SafetyFilter(LIMITS)
    safety.reset(HOME)
    action = np.concatenate([HOME + 0.01, [0.5]])
    result = safety.filter(action)
    assert result.events == []
    np.testing.assert_allclose(result.command, action)


def test_a_jump_is_rate_limited_and_reported() -> None:
    safety = SafetyFilter(LIMITS)
    safety.reset(HOME)
    result = safety.filter(np.concatenate([HOME + 1.0, [1.0]]))
    assert "velocity_clamp" in result.events
    step = result.command[:-1] - HOME
    np.testing.assert_allclose(np.abs(step), np.array(LIMITS.max_velocity_rad_s) * 0.05)


def test_the_workspace_box_stops_a_dive_into_the_table() -> None:
    safety = SafetyFilter(LIMITS)
    safety.reset(HOME)
    # A target 10 cm below the table top.
    dive, _ = solve_ik(tcp_down_pose(np.array([0.5, 0.0, -0.1])), HOME)
    assert forward_kinematics(dive)[2, 3] < 0
    cmd = None
    for _ in range(100):
        result = safety.filter(np.concatenate([dive, [1.0]]))
        cmd = result.command
    assert "workspace_clamp" in result.events
    assert forward_kinematics(cmd[:-1])[2, 3] >= LIMITS.workspace_min_m[2] - 1e-9


def test_reset_is_required_and_the_margin_must_leave_a_range() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        SafetyFilter(LIMITS).filter(np.zeros(8))
    with pytest.raises(ValueError, match="margin_rad"):
        SafetyLimits.for_robot(PANDA, margin_rad=2.0)
