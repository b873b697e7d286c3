"""``kizuna ingest``: bags written here (as recorder_node writes them, and as another ROS 2
system would) -> dataset episodes, with drops reported, quirks tolerated, corrupt bags refused.

Bags are written with rosbags' own serializer, no rclpy: the "rclpy padding quirk" is the
8 trailing bytes rclpy appends after an empty trailing array, added by hand (and checked once
against real rclpy where it is installed).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kizuna.cli import main as kizuna
from kizuna.dataset import DatasetReader, check_dataset
from kizuna.robot import PANDA
from real_robot.bag import EpisodeBagWriter, update_custom

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000  # bag log times are wall-clock nanoseconds
SIZE = (16, 24)
JOINTS = [*PANDA.joint_names, "panda_finger_joint1", "panda_finger_joint2"]
STATE = np.array([0.1, -0.3, 0.2, -2.2, 0.3, 1.9, 0.7])


def store() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


TS = store()
T = TS.types


def header(stamp_ns: int) -> Any:
    stamp = T["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return T["std_msgs/msg/Header"](stamp=stamp, frame_id="")


def joint_state(stamp_ns: int, names: list[str], positions: Iterable[float]) -> Any:
    empty = np.zeros(0)
    return T["sensor_msgs/msg/JointState"](
        header(stamp_ns), list(names), np.array(list(positions), float), empty, empty
    )


def image(stamp_ns: int, value: int, encoding: str = "rgb8", size: tuple = SIZE) -> Any:
    h, w = size
    data = np.zeros((h, w, 3), np.uint8)
    data[..., 0], data[..., 1] = value, 255 - value
    if encoding == "bgr8":
        data = data[..., ::-1]
    return T["sensor_msgs/msg/Image"](
        header(stamp_ns), h, w, encoding, 0, 3 * w, np.ascontiguousarray(data).reshape(-1)
    )


def floats(values: Iterable[float]) -> Any:
    layout = T["std_msgs/msg/MultiArrayLayout"]([], 0)
    return T["std_msgs/msg/Float64MultiArray"](layout, np.array(list(values), float))


def string(text: str) -> Any:
    return T["std_msgs/msg/String"](text)


def boolean(value: bool) -> Any:
    return T["std_msgs/msg/Bool"](value)


TYPES = {
    "sensor_msgs/msg/JointState": joint_state,
    "sensor_msgs/msg/Image": image,
}


def write_bag(
    path: Path, messages: list[tuple[str, str, int, Any]], pad: bool = False, **custom: Any
) -> Path:
    """A closed rosbag2 MCAP bag; ``pad`` appends rclpy's 8 bytes to empty-array messages."""
    topics = {topic: msgtype for topic, msgtype, _, _ in messages}
    writer = EpisodeBagWriter(path, topics)
    for topic, msgtype, stamp_ns, msg in sorted(messages, key=lambda m: m[2]):
        raw = TS.serialize_cdr(msg, msgtype)
        if pad and msgtype == "sensor_msgs/msg/JointState":
            raw = bytes(raw) + b"\x00" * 8
        writer.write(topic, stamp_ns, raw)
    writer.finish(custom, sync=False)
    return path


def q_at(t_s: float) -> np.ndarray:
    return STATE + 0.1 * np.sin(t_s + np.arange(7))


def recorder_bag(path: Path, label_after_end: bool | None = True, pad: bool = False) -> Path:
    """Like recorder_node's: 2 s, actions at 20 Hz, joints at 50 Hz, cameras at 20 Hz.

    The front camera stalls from 0.8 s to 1.2 s (ticks there lose their image), an operator
    sends commands from 1.4 s to 1.6 s (interventions), the label comes after the end event.
    """
    js, img, f64 = (
        "sensor_msgs/msg/JointState",
        "sensor_msgs/msg/Image",
        "std_msgs/msg/Float64MultiArray",
    )
    start = {"event": "start", "instruction": "put the red cube in the bin", "robot_id": "cell-3"}
    msgs = [("/kizuna/episode", "std_msgs/msg/String", T0, string(json.dumps(start)))]
    for k in range(100):
        t = T0 + 2 * MS + k * 20 * MS
        state = np.append(q_at((t - T0) / 1e9), [0.03, 0.03])
        msgs.append(("/joint_states", js, t, joint_state(t, JOINTS, state)))
    for k in range(40):
        t_s = k * 0.05
        for camera, lag in (("front", 4), ("wrist", 6)):
            if camera == "front" and 0.8 <= t_s < 1.2:
                continue
            t = T0 + lag * MS + k * 50 * MS
            msgs.append((f"/camera/{camera}/image_raw", img, t, image(t, 5 * k)))
        t = T0 + 10 * MS + k * 50 * MS
        action = np.append(q_at(t_s + 0.05), 0.75)
        msgs.append(("/kizuna/executed_action", f64, t, floats(action)))
        if 1.4 <= t_s < 1.6:
            msgs.append(("/kizuna/teleop/joint_command", f64, t - 3 * MS, floats([0.5] * 8)))
    end = T0 + 2000 * MS
    msgs.append(("/kizuna/episode", "std_msgs/msg/String", end, string('{"event": "end"}')))
    msgs.append(("/kizuna/episode_label", "std_msgs/msg/Bool", end - 1, boolean(False)))
    custom = {"instruction": start["instruction"], "success": label_after_end}
    return write_bag(path, msgs, pad=pad, **custom)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---- the tests --------------------------------------------------------------------------------


def test_a_recorder_bag_round_trips_with_drops_reported_and_interventions(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bag = recorder_bag(tmp_path / "recordings" / "episode_000000")
    data = tmp_path / "data"
    report = tmp_path / "report.json"
    assert kizuna(["ingest", str(bag.parent), "--into", str(data), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    (episode_report,) = json.loads(report.read_text())["bags"][0]["episodes"]
    # The last front image before the stall is at 0.754 s: ticks at 0.96..1.16 s lose it.
    assert episode_report["dropped"] == {"no image from 'front' within 200 ms before the tick": 5}
    assert "dropped 5: no image from 'front'" in out
    episode = DatasetReader(data).episode(0)
    assert len(episode) == 40 - 5 == episode_report["frames"]
    assert episode.success is True  # the late label (custom data) wins over the in-bag False
    assert episode.provenance is not None and episode.provenance.source == "real"
    assert episode.provenance.robot_id == "cell-3"
    assert episode.instruction == "put the red cube in the bin"
    # State: the latest joint state at or before each tick, gripper = finger / 0.04.
    assert np.allclose(episode.states[0, :7], q_at(0.002), atol=1e-6)
    assert np.allclose(episode.states[:, 7], 0.75)
    # Interventions: operator commands at 1.407..1.557 s, held 200 ms: ticks 1.41..1.71 s.
    assert episode.interventions.sum() == 7
    assert np.allclose(episode.actions[episode.interventions], 0.5)
    assert np.allclose(episode.actions[~episode.interventions][:, 7], 0.75)
    # Images: the newest before the tick (value 5 k for the frame of tick k), through H.264.
    assert abs(int(episode.images["observation.images.front"][0, 8, 8, 0]) - 0) <= 6
    assert abs(int(episode.images["observation.images.wrist"][10, 8, 8, 0]) - 50) <= 6
    assert check_dataset(data).ok
    assert kizuna(["dataset", "check", str(data)]) == 0


def test_rclpy_padding_quirk_is_tolerated_and_counted(tmp_path: Path) -> None:
    bag = recorder_bag(tmp_path / "padded", pad=True)
    data = tmp_path / "data"
    report_file = tmp_path / "r.json"
    assert kizuna(["ingest", str(bag), "--into", str(data), "--report", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["bags"][0]["padded_messages"] == 100
    assert DatasetReader(data).num_episodes == 1


def test_real_rclpy_serialization_quirk_is_what_we_tolerate() -> None:
    serialization = pytest.importorskip("rclpy.serialization")
    from sensor_msgs.msg import JointState

    from real_robot.bag import deserialize

    raw = serialization.serialize_message(JointState(name=["a"], position=[1.0]))
    with pytest.raises(Exception, match="size mismatch"):
        TS.deserialize_cdr(raw, "sensor_msgs/msg/JointState")
    msg, trailing = deserialize(TS, raw, "sensor_msgs/msg/JointState")
    assert list(msg.name) == ["a"] and 0 < trailing <= 8


def other_system_bag(path: Path) -> Path:
    """No kizuna topics: shuffled + extra joints under other names, a bgr8 camera elsewhere,
    JointTrajectory commands at 10 Hz."""
    rng = np.random.default_rng(0)
    names = [f"arm_j{i}" for i in range(1, 8)] + ["finger_l", "finger_r", "conveyor"]
    jt = "trajectory_msgs/msg/JointTrajectory"
    msgs = []
    for k in range(30):
        t = T0 + k * 33 * MS
        values = np.append(q_at(k * 0.033), [0.02, 0.02, 7.0])
        order = rng.permutation(len(names))
        js = joint_state(t, [names[i] for i in order], values[order])
        msgs.append(("/my_robot/joint_states", "sensor_msgs/msg/JointState", t, js))
        msgs.append(("/cam0/image_raw", "sensor_msgs/msg/Image", t + MS, image(t, 100, "bgr8")))
    for k in range(9):
        t = T0 + 20 * MS + k * 100 * MS
        point = T["trajectory_msgs/msg/JointTrajectoryPoint"](
            np.append(q_at(k * 0.1), 0.04), np.zeros(0), np.zeros(0), np.zeros(0),
            T["builtin_interfaces/msg/Duration"](0, 100 * MS),
        )  # fmt: skip
        traj = T[jt](header(0), [*names[:7], "finger_l"], [point])
        msgs.append(("/arm_controller/joint_trajectory", jt, t, traj))
    return write_bag(path, msgs)


def test_a_bag_from_another_ros2_system_with_a_topic_and_joint_mapping(tmp_path: Path) -> None:
    bag = other_system_bag(tmp_path / "other")
    data = tmp_path / "data"
    argv = ["ingest", str(bag), "--into", str(data), "--instruction", "stack the cups"]
    argv += ["--topic", "joint_states=/my_robot/joint_states"]
    argv += ["--topic", "camera.front=/cam0/image_raw"]
    argv += ["--topic", "command=/arm_controller/joint_trajectory", "--label", "failure"]
    argv += [f"--joint=panda_joint{i}=arm_j{i}" for i in range(1, 8)]
    argv += ["--gripper-joint", "finger_l"]
    assert kizuna(argv) == 0
    reader = DatasetReader(data)
    assert reader.fps == 10
    episode = reader.episode(0)
    assert len(episode) == 9 and episode.success is False
    assert episode.provenance is not None and episode.provenance.robot_id == "unknown"
    assert np.allclose(episode.actions[:, :7], [q_at(k * 0.1) for k in range(9)], atol=1e-6)
    assert np.allclose(episode.actions[:, 7], 1.0) and np.allclose(episode.states[:, 7], 0.5)
    red = int(episode.images["observation.images.front"][0, 4, 4, 0])
    assert red == pytest.approx(100, abs=6)  # bgr8 came out as rgb
    assert check_dataset(data).ok


def test_rate_ticks_with_next_state_actions_when_a_bag_has_no_actions(tmp_path: Path) -> None:
    msgs = []
    for k in range(30):
        t = T0 + k * 50 * MS
        msgs.append(
            (
                "/joint_states",
                "sensor_msgs/msg/JointState",
                t,
                joint_state(t, JOINTS, [*q_at(k), 0.0, 0.0]),
            )
        )
        msgs.append(("/camera/front/image_raw", "sensor_msgs/msg/Image", t, image(t, 9)))
    bag = write_bag(tmp_path / "plain", msgs)
    data = tmp_path / "data"
    assert (
        kizuna(["ingest", str(bag), "--into", str(data), "--rate", "20", "--instruction", "x"])
        == 0
    )
    episode = DatasetReader(data).episode(0)
    assert len(episode) == 29  # the last tick has no next state
    assert np.allclose(episode.actions[:-1], episode.states[1:], atol=1e-6)


def test_a_corrupt_bag_is_refused_and_the_dataset_is_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "data"
    good = recorder_bag(tmp_path / "good")
    assert kizuna(["ingest", str(good), "--into", str(data)]) == 0
    before = tree_digest(data)
    truncated = shutil.copytree(good, tmp_path / "truncated")
    mcap = next(truncated.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    fresh = recorder_bag(tmp_path / "fresh")
    assert kizuna(["ingest", str(fresh), str(truncated), "--into", str(data)]) == 1
    err = capsys.readouterr().err
    assert str(truncated) in err and "corrupt" in err and "nothing was written" in err
    assert tree_digest(data) == before
    # A bag without a camera the dataset has: named, with the fix.
    msgs = [("/joint_states", "sensor_msgs/msg/JointState", T0, joint_state(T0, JOINTS, [0] * 9))]
    blind = write_bag(tmp_path / "blind", msgs)
    assert kizuna(["ingest", str(blind), "--into", str(data)]) == 1
    err = capsys.readouterr().err
    assert "missing topic(s) camera.front (/camera/front/image_raw)" in err and "--topic" in err
    assert tree_digest(data) == before
    # A new dataset is not even created.
    assert kizuna(["ingest", str(truncated), "--into", str(tmp_path / "new")]) == 1
    assert not (tmp_path / "new").exists()


def test_a_cut_off_recording_is_skipped_in_a_folder_and_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recordings = tmp_path / "recordings"
    recorder_bag(recordings / "episode_000000")
    cut = shutil.copytree(recordings / "episode_000000", recordings / "episode_000001")
    (cut / "metadata.yaml").unlink()  # what a SIGKILL mid-episode leaves
    update_custom(recordings / "episode_000000", success=False)  # a late operator label
    data = tmp_path / "data"
    assert kizuna(["ingest", str(recordings), "--into", str(data)]) == 0
    assert "episode_000001: skipped, incomplete recording" in capsys.readouterr().out
    assert DatasetReader(data).episode(0).success is False
    assert kizuna(["ingest", str(cut), "--into", str(data)]) == 1
    assert "no metadata.yaml: the recording was cut off" in capsys.readouterr().err
