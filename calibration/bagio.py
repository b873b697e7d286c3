"""rosbag2 (MCAP) bags for calibration, read and written with ``rosbags`` (no ROS install).

Topics (kizuna's ROS conventions): ``/joint_states`` (sensor_msgs/JointState, joints matched by
name), ``/forward_position_controller/commands`` (std_msgs/Float64MultiArray: the arm joints in
order, then optionally the gripper joint's position in metres), ``/camera/<name>/image_raw``
(sensor_msgs/Image, rgb8 or bgr8). Times are the bag's log times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.intrinsics import CalibrationError
from kizuna.robot import PANDA, RobotDescription

JOINT_STATES = "/joint_states"
COMMANDS = "/forward_position_controller/commands"
MAX_TRAILING_BYTES = 8  # rclpy pads a message ending in an empty array (JointState.effort=[])


def camera_topic(camera: str) -> str:
    return f"/camera/{camera}/image_raw"


@dataclass
class Recording:
    """Joint states, commands and images of one bag, as arrays (times in seconds)."""

    state_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    q_rad: np.ndarray = field(default_factory=lambda: np.zeros((0, PANDA.dof)))
    gripper: np.ndarray = field(default_factory=lambda: np.zeros(0))  # opening 0..1
    command_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    commands: np.ndarray = field(default_factory=lambda: np.zeros((0, PANDA.dof + 1)))
    images: dict[str, list[tuple[float, np.ndarray]]] = field(default_factory=dict)


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def deserialize(typestore: Any, raw: bytes, msgtype: str) -> Any:
    """CDR to a message, tolerating rclpy's few trailing padding bytes."""
    msgdef = typestore.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
    msg, pos = func(memoryview(raw)[4:], 0, msgdef.cls, typestore)
    if len(raw) - 4 - pos > MAX_TRAILING_BYTES:
        raise CalibrationError(f"a {msgtype} message has {len(raw) - 4 - pos} trailing bytes")
    return msg


def _image(msg: Any, where: str) -> np.ndarray:
    if msg.encoding not in ("rgb8", "bgr8"):
        raise CalibrationError(f"{where}: image encoding {msg.encoding!r}, expected rgb8/bgr8")
    rows = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)
    image = rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
    return image[:, :, ::-1].copy() if msg.encoding == "bgr8" else image.copy()


def read_bag(path: str | Path, robot: RobotDescription = PANDA) -> Recording:
    """Everything calibration needs from one bag directory (or .mcap file)."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    bag_dir = path.parent if path.suffix == ".mcap" else path
    if not (bag_dir / "metadata.yaml").is_file():
        raise CalibrationError(f"{bag_dir}: not a rosbag2 directory (no metadata.yaml)")
    states, commands, images = [], [], {}
    with AnyReader([bag_dir], default_typestore=_typestore()) as reader:
        for conn, stamp_ns, raw in reader.messages(reader.connections):
            t_s = stamp_ns * 1e-9
            if conn.topic == JOINT_STATES:
                states.append((t_s, deserialize(reader.typestore, raw, conn.msgtype)))
            elif conn.topic == COMMANDS:
                data = deserialize(reader.typestore, raw, conn.msgtype).data
                commands.append((t_s, np.asarray(data, float)))
            elif conn.topic.startswith("/camera/") and conn.topic.endswith("/image_raw"):
                msg = deserialize(reader.typestore, raw, conn.msgtype)
                name = conn.topic.split("/")[2]
                images.setdefault(name, []).append((t_s, _image(msg, f"{bag_dir}: {conn.topic}")))
    return Recording(
        *_states(states, robot, bag_dir), *_commands(commands, robot, bag_dir), images
    )


def _states(states: list, robot: RobotDescription, where: Path) -> tuple:
    if not states:
        return np.zeros(0), np.zeros((0, robot.dof)), np.zeros(0)
    names = list(robot.joint_names)
    t, q, grip = [], [], []
    for t_s, msg in states:
        index = {str(n): i for i, n in enumerate(msg.name)}
        missing = [n for n in names if n not in index]
        if missing:
            raise CalibrationError(f"{where}: {JOINT_STATES} lacks joints {missing}")
        t.append(t_s)
        q.append([msg.position[index[n]] for n in names])
        finger = index.get(robot.gripper_names[0])
        grip.append(1.0 if finger is None else msg.position[finger] / robot.finger_travel_m)
    return np.array(t), np.array(q), np.clip(np.array(grip), 0.0, 1.0)


def _commands(commands: list, robot: RobotDescription, where: Path) -> tuple:
    if not commands:
        return np.zeros(0), np.zeros((0, robot.dof + 1))
    rows = []
    for _, data in commands:
        if len(data) not in (robot.dof, robot.dof + 1):
            raise CalibrationError(
                f"{where}: {COMMANDS} has {len(data)} values, expected {robot.dof} joints "
                "(+ the gripper position in m)"
            )
        opening = data[robot.dof] / robot.finger_travel_m if len(data) > robot.dof else 1.0
        rows.append([*data[: robot.dof], opening])
    return np.array([t for t, _ in commands]), np.array(rows)


def write_bag(path: str | Path, rec: Recording, robot: RobotDescription = PANDA) -> Path:
    """A rosbag2 MCAP directory holding ``rec`` (for tests, benchmarks and sim recordings)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = _typestore()
    types = ts.types
    header = types["std_msgs/msg/Header"]
    stamp = types["builtin_interfaces/msg/Time"]
    layout = types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    path = Path(path)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        js = writer.add_connection(JOINT_STATES, "sensor_msgs/msg/JointState", typestore=ts)
        cmd = writer.add_connection(COMMANDS, "std_msgs/msg/Float64MultiArray", typestore=ts)
        names = [*robot.joint_names, robot.gripper_names[0]]
        for t_s, q, g in zip(rec.state_t_s, rec.q_rad, rec.gripper, strict=True):
            h = header(
                stamp=stamp(sec=int(t_s), nanosec=int(round(t_s % 1 * 1e9)) % 10**9), frame_id=""
            )
            pos = np.append(q, g * robot.finger_travel_m)
            msg = types["sensor_msgs/msg/JointState"](h, names, pos, np.zeros(0), np.zeros(0))
            writer.write(js, int(round(t_s * 1e9)), ts.serialize_cdr(msg, msg.__msgtype__))
        for t_s, c in zip(rec.command_t_s, rec.commands, strict=True):
            data = np.append(c[: robot.dof], c[robot.dof] * robot.finger_travel_m)
            msg = types["std_msgs/msg/Float64MultiArray"](layout, data)
            writer.write(cmd, int(round(t_s * 1e9)), ts.serialize_cdr(msg, msg.__msgtype__))
        for camera, frames in rec.images.items():
            conn = writer.add_connection(
                camera_topic(camera), "sensor_msgs/msg/Image", typestore=ts
            )
            for t_s, image in frames:
                h = header(stamp=stamp(sec=int(t_s), nanosec=0), frame_id=camera)
                hh, ww = image.shape[:2]
                msg = types["sensor_msgs/msg/Image"](
                    h, hh, ww, "rgb8", 0, ww * 3, image.reshape(-1)
                )
                writer.write(conn, int(round(t_s * 1e9)), ts.serialize_cdr(msg, msg.__msgtype__))
    return path
