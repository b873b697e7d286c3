"""ROS 2 messages <-> the observation (Contract 2) and action (Contract 3): pure functions.

Reading never imports ROS: the functions take any object with the message's fields, so they are
unit-tested with plain stand-ins. Building a message imports its package inside the function.

Conventions (ros2_control, Franka-style naming):

- ``/joint_states`` (sensor_msgs/JointState) is matched by joint **name**, in any order; joints
  the node does not know (a second finger, a conveyor) are ignored; a missing joint is an error.
- The gripper is one joint of that message (``gripper_joint``, e.g. ``panda_finger_joint1``),
  its position in metres of finger travel: opening (0 closed .. 1 open) = position /
  ``gripper_max_m``.
- Commands carry the same units. ``forward_position_controller`` (std_msgs/Float64MultiArray):
  the arm joints in ``joint_names`` order, then the gripper joint's position in metres as the
  last element (``gripper_command="last_element"``, a controller configured over the arm joints
  plus the finger joint), or the arm joints only with the gripper sent as its own
  Float64MultiArray ``[position_m]`` to a separate gripper controller
  (``gripper_command="separate"``). ``joint_trajectory_controller``
  (trajectory_msgs/JointTrajectory): the same joints by name, one point at ``control_dt_s``,
  header stamp zero ("start now").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kizuna.robot import PANDA, RobotDescription

ENCODINGS = ("rgb8", "bgr8")
COMMAND_INTERFACES = ("forward_position_controller", "joint_trajectory_controller")
COMMAND_TOPICS = {
    "forward_position_controller": "/forward_position_controller/commands",
    "joint_trajectory_controller": "/joint_trajectory_controller/joint_trajectory",
}
GRIPPER_COMMANDS = ("last_element", "separate")


class ConvertError(ValueError):
    """A message the node cannot use; the text starts with the topic, then the field and fix."""

    @property
    def topic(self) -> str:
        return str(self).split(": ", 1)[0]


@dataclass(frozen=True)
class JointLayout:
    """Which joints, in which order, and how the gripper joint maps to the 0..1 opening."""

    joint_names: tuple[str, ...]
    gripper_joint: str
    gripper_max_m: float  # the gripper joint's position when fully open

    @classmethod
    def for_robot(cls, robot: RobotDescription = PANDA) -> JointLayout:
        return cls(robot.joint_names, robot.gripper_names[0], robot.finger_travel_m)

    @property
    def command_names(self) -> tuple[str, ...]:
        return (*self.joint_names, self.gripper_joint)


def stamp_to_s(stamp: Any) -> float:
    """builtin_interfaces/Time as float seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


# ---- messages -> observation -----------------------------------------------------------------


def joint_state_to_state(
    msg: Any, layout: JointLayout, topic: str = "/joint_states"
) -> np.ndarray:
    """``state`` (float32 [dof + 1]: joints in rad in layout order, then gripper 0..1)."""
    names = [str(n) for n in msg.name]
    positions = np.asarray(msg.position, dtype=float).reshape(-1)
    if len(names) != len(positions):
        raise ConvertError(
            f"{topic}: {len(names)} names but {len(positions)} positions; "
            "a JointState must give one position per name"
        )
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in index:
            raise ConvertError(f"{topic}: joint {name!r} appears twice")
        index[name] = i
    missing = [n for n in layout.command_names if n not in index]
    if missing:
        raise ConvertError(
            f"{topic}: missing joint(s) {missing}; the message has {names}. Set the "
            "parameters joint_names / gripper_joint to the robot's joint names"
        )
    q_rad = positions[[index[n] for n in layout.joint_names]]
    gripper = positions[index[layout.gripper_joint]] / layout.gripper_max_m
    state = np.append(q_rad, np.clip(gripper, 0.0, 1.0))
    if not np.all(np.isfinite(state)):
        bad = [n for n, v in zip(layout.command_names, state, strict=True) if not np.isfinite(v)]
        raise ConvertError(f"{topic}: non-finite position for joint(s) {bad}")
    return state.astype(np.float32)


def image_to_array(msg: Any, image_hw: tuple[int, int], topic: str) -> np.ndarray:
    """sensor_msgs/Image (rgb8 or bgr8, of the expected size) as a fresh HxWx3 uint8 RGB array."""
    encoding = str(msg.encoding).lower()
    if encoding not in ENCODINGS:
        raise ConvertError(
            f"{topic}: encoding {msg.encoding!r} is not supported; publish one of {ENCODINGS}"
        )
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if (h, w) != tuple(image_hw):
        raise ConvertError(
            f"{topic}: image is {h}x{w} (height x width), expected {image_hw[0]}x{image_hw[1]}; "
            "set the camera's resolution or the parameter image_size"
        )
    if step < 3 * w:
        raise ConvertError(f"{topic}: step {step} is less than 3 x width ({3 * w})")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * h:
        raise ConvertError(f"{topic}: data has {data.size} bytes, expected step x height")
    rgb = data[: step * h].reshape(h, step)[:, : 3 * w].reshape(h, w, 3)
    if encoding == "bgr8":
        rgb = rgb[..., ::-1]
    return np.ascontiguousarray(rgb)  # a copy: never keep a view into a message buffer


def camera_topic(camera: str) -> str:
    return f"/camera/{camera}/image_raw"


def msgs_to_obs(
    joint_state: Any,
    images: Mapping[str, Any],
    cameras: Sequence[str],
    instruction: str,
    layout: JointLayout,
    image_hw: tuple[int, int],
    state_bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The observation (Contract 2) from the newest messages; ``ConvertError`` if unusable.

    ``state_bounds`` (low, high) clip the state as the simulator's observation does, so a
    reading a hair outside a joint limit stays a member of the env's observation space.
    """
    if joint_state is None:
        raise ConvertError("/joint_states: no message received yet")
    state = joint_state_to_state(joint_state, layout)
    if state_bounds is not None:
        state = np.clip(state, state_bounds[0], state_bounds[1]).astype(np.float32)
    obs: dict[str, Any] = {"state": state, "instruction": instruction}
    if cameras:
        arrays = {}
        for camera in cameras:
            topic = camera_topic(camera)
            if images.get(camera) is None:
                raise ConvertError(f"{topic}: no message received yet")
            arrays[camera] = image_to_array(images[camera], image_hw, topic)
        obs["images"] = arrays
    return obs


# ---- action -> command messages --------------------------------------------------------------


def _duration(seconds: float) -> Any:
    from builtin_interfaces.msg import Duration

    nanoseconds = round(seconds * 1e9)
    return Duration(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def action_to_msg(
    action: np.ndarray,
    layout: JointLayout,
    interface: str,
    control_dt_s: float,
    gripper_command: str = "last_element",
) -> tuple[Any, Any | None]:
    """(arm command message, gripper message or None) for one action row (Contract 3)."""
    action = np.asarray(action, dtype=float).reshape(-1)
    dof = len(layout.joint_names)
    if action.shape != (dof + 1,) or not np.all(np.isfinite(action)):
        raise ConvertError(f"action {action} is not {dof} finite joint targets + gripper")
    if gripper_command not in GRIPPER_COMMANDS:
        raise ConvertError(f"gripper_command {gripper_command!r}: expected {GRIPPER_COMMANDS}")
    q_rad = [float(v) for v in action[:dof]]
    gripper_m = float(np.clip(action[dof], 0.0, 1.0)) * layout.gripper_max_m
    together = gripper_command == "last_element"
    from std_msgs.msg import Float64MultiArray

    gripper_msg = None if together else Float64MultiArray(data=[gripper_m])
    if interface == "forward_position_controller":
        return Float64MultiArray(data=q_rad + [gripper_m] if together else q_rad), gripper_msg
    if interface == "joint_trajectory_controller":
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        names = layout.command_names if together else layout.joint_names
        point = JointTrajectoryPoint(
            positions=q_rad + [gripper_m] if together else q_rad,
            time_from_start=_duration(control_dt_s),
        )
        return JointTrajectory(joint_names=list(names), points=[point]), gripper_msg
    raise ConvertError(f"command_interface {interface!r}: expected one of {COMMAND_INTERFACES}")


def command_to_action(msg: Any, layout: JointLayout, previous: np.ndarray) -> np.ndarray:
    """The inverse, for the simulated robot: a controller command as an action row.

    Float64MultiArray by position (arm joints, then optionally the gripper in metres);
    JointTrajectory by joint name (its last point; joints it does not name keep ``previous``).
    """
    dof = len(layout.joint_names)
    action = np.array(previous, dtype=float).copy()
    if hasattr(msg, "joint_names"):
        if not msg.points:
            raise ConvertError("joint_trajectory: no points")
        positions = list(msg.points[-1].positions)
        names = list(msg.joint_names)
        if len(names) != len(positions):
            raise ConvertError("joint_trajectory: joint_names and positions differ in length")
        given = dict(zip(names, positions, strict=True))
        missing = [n for n in layout.joint_names if n not in given]
        if missing:
            raise ConvertError(f"joint_trajectory: missing arm joint(s) {missing}")
        action[:dof] = [given[n] for n in layout.joint_names]
        if layout.gripper_joint in given:
            action[dof] = given[layout.gripper_joint] / layout.gripper_max_m
    else:
        data = list(msg.data)
        if len(data) not in (dof, dof + 1):
            raise ConvertError(f"commands: {len(data)} values, expected {dof} or {dof + 1}")
        action[:dof] = data[:dof]
        if len(data) == dof + 1:
            action[dof] = data[dof] / layout.gripper_max_m
    if not np.all(np.isfinite(action)):
        raise ConvertError(f"command has non-finite values: {action}")
    action[dof] = np.clip(action[dof], 0.0, 1.0)
    return action


# ---- observation -> messages (the simulated robot's side) -----------------------------------


def state_to_joint_state(
    state: np.ndarray, layout: JointLayout, stamp: Any, extra: Mapping[str, float] | None = None
) -> Any:
    """sensor_msgs/JointState of ``state``; ``extra`` adds joints (a mirrored second finger)."""
    from sensor_msgs.msg import JointState

    dof = len(layout.joint_names)
    positions = [float(v) for v in state[:dof]] + [float(state[dof]) * layout.gripper_max_m]
    extra = dict(extra or {})
    msg = JointState(
        name=[*layout.command_names, *extra], position=positions + list(extra.values())
    )
    msg.header.stamp = stamp
    return msg


def array_to_image(rgb: np.ndarray, stamp: Any, frame_id: str) -> Any:
    """HxWx3 uint8 RGB as sensor_msgs/Image (rgb8)."""
    from sensor_msgs.msg import Image

    h, w, _ = rgb.shape
    msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w)
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def diagnostic_array(
    stamp: Any, name: str, level: int, message: str, values: Mapping[str, object]
) -> Any:
    """diagnostic_msgs/DiagnosticArray with one status (level 0 OK, 1 WARN, 2 ERROR)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus(
        level=bytes([level]),
        name=name,
        message=message,
        hardware_id="kizuna",
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg
