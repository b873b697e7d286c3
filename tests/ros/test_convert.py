"""Messages <-> observation and action (real_robot/ros/convert.py), without DDS.

Reading is tested with plain stand-ins for the messages (no ROS needed); building uses the
message classes of the ``ros`` extra (those tests are marked ``ros``; no DDS involved).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizuna.robot import PANDA
from real_robot.ros.convert import (
    COMMAND_INTERFACES,
    ENCODINGS,
    ConvertError,
    JointLayout,
    action_to_msg,
    command_to_action,
    image_to_array,
    joint_state_to_state,
    msgs_to_obs,
)

LAYOUT = JointLayout.for_robot()
HOME = np.append(PANDA.home_q_rad, 0.5)  # joints rad + gripper half open
EXTRA_NAMES = ("panda_finger_joint2", "conveyor_joint", "camera_pan")


def joint_state(names: list[str], positions: list[float]) -> SimpleNamespace:
    stamp = SimpleNamespace(sec=1, nanosec=0)
    return SimpleNamespace(name=names, position=positions, header=SimpleNamespace(stamp=stamp))


def ordered_joint_state(state: np.ndarray = HOME) -> SimpleNamespace:
    positions = [*state[:7], state[7] * LAYOUT.gripper_max_m]
    return joint_state(list(LAYOUT.command_names), [float(p) for p in positions])


def image(rgb: np.ndarray, encoding: str = "rgb8", pad: int = 0) -> SimpleNamespace:
    h, w, _ = rgb.shape
    pixels = rgb[..., ::-1] if encoding == "bgr8" else rgb
    rows = np.concatenate([pixels.reshape(h, 3 * w), np.zeros((h, pad), np.uint8)], axis=1)
    return SimpleNamespace(
        encoding=encoding, height=h, width=w, step=3 * w + pad, data=rows.tobytes()
    )


# ---- joint states ----------------------------------------------------------------------------


def test_ordered_joint_state_gives_the_state() -> None:
    state = joint_state_to_state(ordered_joint_state(), LAYOUT)
    assert state.dtype == np.float32 and state.shape == (8,)
    np.testing.assert_allclose(state, HOME, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    order=st.permutations(range(8 + len(EXTRA_NAMES))),
    extra=st.lists(st.floats(-10, 10), min_size=3, max_size=3),
)
def test_joint_names_are_matched_by_name_in_any_order_and_extras_are_ignored(
    order: list[int], extra: list[float]
) -> None:
    names = [*LAYOUT.command_names, *EXTRA_NAMES]
    positions = [*HOME[:7], HOME[7] * LAYOUT.gripper_max_m, *extra]
    msg = joint_state([names[i] for i in order], [float(positions[i]) for i in order])
    np.testing.assert_allclose(joint_state_to_state(msg, LAYOUT), HOME, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(missing=st.sampled_from(LAYOUT.command_names))
def test_a_missing_joint_is_an_error_naming_it(missing: str) -> None:
    msg = ordered_joint_state()
    keep = [i for i, n in enumerate(msg.name) if n != missing]
    msg = joint_state([msg.name[i] for i in keep], [msg.position[i] for i in keep])
    with pytest.raises(ConvertError, match=missing):
        joint_state_to_state(msg, LAYOUT)


@pytest.mark.parametrize(
    ("names", "positions", "match"),
    [
        (list(LAYOUT.command_names), [0.0] * 7, "8 names but 7 positions"),
        ([*LAYOUT.command_names, "panda_joint1"], [0.0] * 9, "appears twice"),
        (list(LAYOUT.command_names), [0.0] * 6 + [float("nan"), 0.0], "non-finite"),
        (["joint_a", "joint_b"], [0.0, 0.0], "missing joint"),
    ],
)
def test_malformed_joint_states_are_refused(names: list, positions: list, match: str) -> None:
    with pytest.raises(ConvertError, match=match):
        joint_state_to_state(joint_state(names, positions), LAYOUT)


def test_gripper_position_in_metres_becomes_the_opening() -> None:
    state = joint_state_to_state(ordered_joint_state(np.append(HOME[:7], 1.0)), LAYOUT)
    assert state[7] == pytest.approx(1.0)
    over = ordered_joint_state()
    over.position[7] = 0.09  # a finger reading past full travel is clipped, not refused
    assert joint_state_to_state(over, LAYOUT)[7] == 1.0


# ---- images ---------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    encoding=st.sampled_from(["rgb8", "bgr8", "RGB8"]),
    pad=st.integers(0, 5),
)
def test_rgb_and_bgr_images_with_row_padding_become_hxwx3_rgb(
    seed: int, encoding: str, pad: int
) -> None:
    rgb = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    out = image_to_array(image(rgb, encoding.lower(), pad), (6, 8), "/camera/front/image_raw")
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@settings(max_examples=30, deadline=None)
@given(encoding=st.text(min_size=0, max_size=12).filter(lambda e: e.lower() not in ENCODINGS))
def test_other_encodings_are_refused_naming_the_topic(encoding: str) -> None:
    msg = image(np.zeros((4, 4, 3), np.uint8))
    msg.encoding = encoding
    with pytest.raises(ConvertError, match=r"/camera/wrist/image_raw: encoding"):
        image_to_array(msg, (4, 4), "/camera/wrist/image_raw")


def test_wrong_size_short_data_and_bad_step_are_refused() -> None:
    topic = "/camera/front/image_raw"
    with pytest.raises(ConvertError, match="is 4x6 .* expected 96x96"):
        image_to_array(image(np.zeros((4, 6, 3), np.uint8)), (96, 96), topic)
    short = image(np.zeros((4, 4, 3), np.uint8))
    short.data = short.data[:-1]
    with pytest.raises(ConvertError, match="bytes"):
        image_to_array(short, (4, 4), topic)
    narrow = image(np.zeros((4, 4, 3), np.uint8))
    narrow.step = 4
    with pytest.raises(ConvertError, match="step"):
        image_to_array(narrow, (4, 4), topic)


def test_msgs_to_obs_builds_contract_2_and_needs_every_camera() -> None:
    rgb = np.full((4, 4, 3), 7, np.uint8)
    obs = msgs_to_obs(
        ordered_joint_state(), {"front": image(rgb)}, ("front",), "go", LAYOUT, (4, 4)
    )
    assert set(obs) == {"state", "images", "instruction"} and obs["instruction"] == "go"
    np.testing.assert_array_equal(obs["images"]["front"], rgb)
    with pytest.raises(ConvertError, match="/camera/wrist/image_raw: no message"):
        cameras = ("front", "wrist")
        msgs_to_obs(ordered_joint_state(), {"front": image(rgb)}, cameras, "go", LAYOUT, (4, 4))
    with pytest.raises(ConvertError, match="/joint_states"):
        msgs_to_obs(None, {}, (), "go", LAYOUT, (4, 4))


# ---- commands -------------------------------------------------------------------------------

limits = zip(PANDA.lower_rad, PANDA.upper_rad, strict=True)
actions = st.tuples(*[st.floats(lo, hi) for lo, hi in limits], st.floats(0.0, 1.0)).map(np.array)


@pytest.mark.ros  # builds std_msgs / trajectory_msgs messages
def test_forward_position_command_layout() -> None:
    arm, gripper = action_to_msg(HOME, LAYOUT, "forward_position_controller", 0.05)
    assert gripper is None
    np.testing.assert_allclose(arm.data, [*HOME[:7], 0.5 * LAYOUT.gripper_max_m])
    arm, gripper = action_to_msg(HOME, LAYOUT, "forward_position_controller", 0.05, "separate")
    assert len(arm.data) == 7 and list(gripper.data) == [0.5 * LAYOUT.gripper_max_m]


@pytest.mark.ros  # builds std_msgs / trajectory_msgs messages
def test_joint_trajectory_command_has_one_point_at_control_dt() -> None:
    msg, _ = action_to_msg(HOME, LAYOUT, "joint_trajectory_controller", 1 / 30)
    assert list(msg.joint_names) == list(LAYOUT.command_names)
    assert len(msg.points) == 1
    t = msg.points[0].time_from_start
    assert t.sec == 0 and t.nanosec == 33_333_333
    assert msg.header.stamp.sec == 0 and msg.header.stamp.nanosec == 0  # "start now"


@pytest.mark.ros  # builds std_msgs / trajectory_msgs messages
@settings(max_examples=40, deadline=None)
@given(action=actions, interface=st.sampled_from(list(COMMAND_INTERFACES)))
def test_commands_round_trip_through_the_simulated_robot(
    action: np.ndarray, interface: str
) -> None:
    msg, _ = action_to_msg(action, LAYOUT, interface, 0.05)
    back = command_to_action(msg, LAYOUT, previous=HOME)
    np.testing.assert_allclose(back, action, atol=1e-9)


@pytest.mark.ros  # builds std_msgs / trajectory_msgs messages
def test_trajectory_commands_are_read_by_name_and_arm_only_keeps_the_gripper() -> None:
    msg, _ = action_to_msg(HOME, LAYOUT, "joint_trajectory_controller", 0.05)
    order = [3, 0, 7, 5, 1, 6, 2, 4]
    msg.joint_names = [msg.joint_names[i] for i in order]
    msg.points[0].positions = [msg.points[0].positions[i] for i in order]
    np.testing.assert_allclose(command_to_action(msg, LAYOUT, np.zeros(8)), HOME)
    arm, _ = action_to_msg(HOME, LAYOUT, "forward_position_controller", 0.05, "separate")
    previous = np.append(np.zeros(7), 0.25)
    assert command_to_action(arm, LAYOUT, previous)[7] == 0.25


@pytest.mark.ros  # builds std_msgs / trajectory_msgs messages
def test_bad_commands_and_actions_are_refused() -> None:
    from std_msgs.msg import Float64MultiArray

    with pytest.raises(ConvertError, match="expected 7 or 8"):
        command_to_action(Float64MultiArray(data=[0.0] * 3), LAYOUT, HOME)
    with pytest.raises(ConvertError, match="finite"):
        action_to_msg(np.full(8, np.nan), LAYOUT, "forward_position_controller", 0.05)
    with pytest.raises(ConvertError, match="command_interface"):
        action_to_msg(HOME, LAYOUT, "effort_controller", 0.05)
