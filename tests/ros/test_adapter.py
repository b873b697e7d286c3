"""The ROS ``Robot`` adapter, node parameters and diagnostics under the real control loop,
without DDS: messages are handed to the adapter the way the node's callbacks do."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_convert import HOME, image, ordered_joint_state

from kizuna.robot import PANDA
from real_robot.ros.adapter import (
    LEVEL_ERROR,
    LEVEL_OK,
    LEVEL_WARN,
    NodeStatus,
    RosRobot,
    TimedPolicy,
    diagnostic_values,
    warmup_observation,
)
from real_robot.ros.params import (
    ParamError,
    PolicyNodeParams,
    SimRobotParams,
    defaults,
    from_values,
)
from real_robot.runtime.loop import ControlLoop, LoopConfig

PARAMS = PolicyNodeParams(
    checkpoint_dir="ck", instruction="put the red cube in the bin", image_size=(4, 4)
)
FRAME = np.full((4, 4, 3), 9, np.uint8)


class Drift:
    """Test-only Policy: every row asks joint 1 to move 0.01 rad further from the state."""

    chunk_size, action_dim = 5, 8

    def reset(self) -> None:
        pass

    def act(self, observation: dict) -> np.ndarray:
        state = np.asarray(observation["state"], float)
        rows = np.tile(state, (self.chunk_size, 1))
        rows[:, 0] += 0.01 * np.arange(1, self.chunk_size + 1)
        return rows.astype(np.float32)


def feed(robot: RosRobot, now_s: float, joints: object = None, cameras: object = None) -> None:
    robot.on_joint_state(joints or ordered_joint_state(), now_s)
    for camera in cameras or PARAMS.camera_names:
        robot.on_image(camera, image(FRAME), now_s)


def test_observe_waits_for_every_stream_then_builds_contract_2() -> None:
    robot = RosRobot(PARAMS, lambda a: None)
    assert robot.observe() is None and "/joint_states" in robot.problem
    robot.on_joint_state(ordered_joint_state(), 1.0)
    robot.on_image("front", image(FRAME), 1.0)
    assert robot.observe() is None and "/camera/wrist/image_raw" in robot.problem
    robot.on_image("wrist", image(FRAME), 1.5)
    timed = robot.observe()
    assert timed is not None and robot.problem == ""
    assert timed.stamps_s == {"joint_states": 1.0, "camera/front": 1.0, "camera/wrist": 1.5}
    np.testing.assert_allclose(timed.observation["state"], HOME, atol=1e-6)
    assert timed.observation["instruction"] == PARAMS.instruction
    assert robot.observed_stamp.sec == 1


def test_a_bad_message_is_refused_once_and_the_next_good_one_recovers() -> None:
    robot = RosRobot(PARAMS, lambda a: None)
    feed(robot, 1.0)
    bad = image(FRAME)
    bad.encoding = "mono8"
    robot.on_image("wrist", bad, 1.1)
    for _ in range(3):
        assert robot.observe() is None
    assert "/camera/wrist/image_raw: encoding 'mono8'" in robot.problem
    assert robot.rejected["/camera/wrist/image_raw"] == 1  # counted once per message
    robot.on_image("wrist", image(FRAME), 1.2)
    assert robot.observe() is not None and robot.problem == ""


def _loop(robot: RosRobot) -> ControlLoop:
    return ControlLoop(robot, Drift(), PARAMS.camera_names, LoopConfig(), threaded=False)


def test_bad_input_sends_nothing_and_is_reported_then_the_loop_resumes() -> None:
    sent: list[np.ndarray] = []
    robot = RosRobot(PARAMS, sent.append)
    loop, status = _loop(robot), NodeStatus()
    for k in range(5):
        feed(robot, 0.05 * k)
        status.record(0.05 * k, loop.tick(0.05 * k), robot)
    assert len(sent) == 5 and sent[-1][0] > sent[0][0]  # moving
    for k in range(5, 10):
        unknown = ordered_joint_state()  # a new message every tick, as on the wire
        unknown.name = [f"joint_{i}" for i in range(8)]
        feed(robot, 0.05 * k, joints=unknown)
        reasons = status.record(0.05 * k, loop.tick(0.05 * k), robot)
    assert len(sent) == 5, "a refused observation must never produce a command"
    assert reasons[0].startswith("bad input: /joint_states: missing joint(s)")
    level, message, values = diagnostic_values("active", status, loop.estop, loop, robot)
    assert level == LEVEL_ERROR and "missing joint" in str(values["bad_input"])
    assert values["count/bad input"] == 5 and values["rejected/joint_states"] == 5
    feed(robot, 0.6)
    status.record(0.6, loop.tick(0.6), robot)
    assert len(sent) == 6 and status.reasons == []


def test_estop_holds_the_last_command_and_diagnostics_say_so() -> None:
    sent: list[np.ndarray] = []
    robot = RosRobot(PARAMS, sent.append)
    loop, status = _loop(robot), NodeStatus()
    for k in range(4):
        feed(robot, 0.05 * k)
        loop.tick(0.05 * k)
    loop.estop.trigger("/kizuna/estop")
    for k in range(4, 8):
        feed(robot, 0.05 * k)
        status.record(0.05 * k, loop.tick(0.05 * k), robot)
    for held in sent[4:]:
        np.testing.assert_array_equal(held, sent[3])
    level, message, values = diagnostic_values("active", status, loop.estop, loop, robot)
    assert level == LEVEL_ERROR and "e-stop latched" in message and values["estop_count"] == 1


def test_diagnostic_levels() -> None:
    robot = RosRobot(PARAMS, lambda a: None)
    loop, status = _loop(robot), NodeStatus()
    assert diagnostic_values("inactive", status, loop.estop, None, None)[0] == LEVEL_OK
    feed(robot, 0.0)
    status.record(1.0, loop.tick(1.0), robot)  # every stream is 1 s old: stale
    level, message, _ = diagnostic_values("active", status, loop.estop, loop, robot)
    assert level == LEVEL_WARN and "stale: camera/front" in message


def test_timed_policy_records_latency_and_warmup_is_well_formed() -> None:
    policy = TimedPolicy(Drift())
    obs = warmup_observation(PARAMS)
    assert obs["images"]["front"].shape == (4, 4, 3)
    np.testing.assert_allclose(obs["state"][:7], PANDA.home_q_rad, atol=1e-6)
    assert policy.act(obs).shape == (5, 8) and len(policy.latencies_s) == 1


# ---- parameters -------------------------------------------------------------------------------


def test_parameters_are_coerced_by_type_and_bad_ones_name_the_parameter() -> None:
    values = defaults(PolicyNodeParams) | {"control_hz": 30, "replan_every": 4.0}
    params = from_values(PolicyNodeParams, values)
    assert params.control_hz == 30.0 and isinstance(params.control_hz, float)
    assert params.replan_every == 4 and params.joint_names == PANDA.joint_names
    bad = [
        ({"control_hz": "fast"}, "'control_hz' must be float"),
        ({"command_interface": "effort"}, "'command_interface' is 'effort'"),
        ({"joint_names": ["a", "a"]}, "'joint_names' needs 7 distinct"),
        ({"workspace_min_m": [1.0, 0.0, 0.0]}, "workspace_min_m"),
        ({"image_size": [96]}, "'image_size'"),
        ({"dry_run": "maybe"}, "'dry_run' must be bool"),
        ({"camera_names": "front"}, "'camera_names' must be a list"),
        ({"no_such_thing": 1}, "unknown parameter"),
    ]
    for change, match in bad:
        with pytest.raises(ParamError, match=match):
            from_values(PolicyNodeParams, change)
    with pytest.raises(ParamError, match="checkpoint_dir"):
        PolicyNodeParams().check_ready()
    assert from_values(SimRobotParams, {"control_hz": 0, "task": "reach"}).control_hz == 0.0


def test_params_match_the_node_defaults_given_to_ros() -> None:
    ros = defaults(PolicyNodeParams)
    assert ros["joint_names"] == list(PANDA.joint_names)  # lists, not tuples, for rclpy
    assert from_values(PolicyNodeParams, ros) == PolicyNodeParams()
    assert from_values(SimRobotParams, defaults(SimRobotParams)) == SimRobotParams()


def test_stamps_are_header_stamps() -> None:
    from real_robot.ros.convert import stamp_to_s

    assert stamp_to_s(SimpleNamespace(sec=3, nanosec=500_000_000)) == 3.5
