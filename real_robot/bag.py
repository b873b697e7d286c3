"""rosbag2 (MCAP) bags, written and read with the ``rosbags`` library: no ROS install needed.

Writing: ``EpisodeBagWriter`` records one episode into one standard rosbag2 directory
(``<out>/episode_000012/``: ``episode_000012.mcap`` + ``metadata.yaml``). rosbags writes
``metadata.yaml`` last and atomically, after the MCAP footer, and ``finish`` then fsyncs both:
a bag directory with a ``metadata.yaml`` is a closed, intact episode; one without is an episode
whose recorder was killed, and readers refuse it. Episode metadata (instruction, label, robot,
policy) lives in ``metadata.yaml``'s ``custom_data`` under ``kizuna.episode`` (JSON), which a
late operator label rewrites atomically.

Reading: ``open_bag`` wraps ``AnyReader`` (types from the definitions the bag embeds, else ROS 2
Jazzy's) and deserializes tolerantly: rclpy serializes a message ending in an empty array
(``JointState.effort = []``) with a few trailing bytes that rosbags calls a "size mismatch".
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

# kizuna's own topics and their types (std_msgs only, so any ROS 2 install can publish them).
EPISODE_TOPIC = "/kizuna/episode"  # std_msgs/String, JSON {"event": "start" | "end", ...}
LABEL_TOPIC = "/kizuna/episode_label"  # std_msgs/Bool: the operator's success / failure
EXECUTED_ACTION_TOPIC = "/kizuna/executed_action"  # Float64MultiArray: joints rad + gripper 0..1
TELEOP_TOPIC = "/kizuna/teleop/joint_command"  # the same layout, sent by an operator
TELEOP_ACTIVE_TOPIC = "/kizuna/teleop/active"  # std_msgs/Bool: an override switch is held
KIZUNA_TOPICS = {
    EPISODE_TOPIC: "std_msgs/msg/String",
    LABEL_TOPIC: "std_msgs/msg/Bool",
    EXECUTED_ACTION_TOPIC: "std_msgs/msg/Float64MultiArray",
    "/kizuna/command_stamp": "std_msgs/msg/Header",
    TELEOP_TOPIC: "std_msgs/msg/Float64MultiArray",
    TELEOP_ACTIVE_TOPIC: "std_msgs/msg/Bool",
    "/kizuna/estop": "std_msgs/msg/Bool",
}
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
IMAGE_TYPE = "sensor_msgs/msg/Image"
CUSTOM_KEY = "kizuna.episode"
METADATA = "metadata.yaml"
EPISODE_DIR = re.compile(r"^episode_(\d{6,})$")
# rclpy's empty-trailing-array quirk leaves 4-8 bytes; more than this is a real mismatch.
MAX_TRAILING_BYTES = 8
# Up to 3 trailing bytes are ordinary CDR alignment padding (rosbags accepts those itself).
ALIGNMENT_BYTES = 3


class BagError(RuntimeError):
    """A bag that cannot be used; the message names the bag and what is wrong with it."""


@functools.cache
def _typestore() -> Any:
    return get_typestore(Stores.ROS2_JAZZY)


@functools.cache
def definition(msgtype: str) -> tuple[str, str]:
    """(message definition, RIHS01 hash) of a ROS 2 type, for a bag connection.

    Cached: building them takes tens of milliseconds, and the recorder must not stall its
    subscriptions at the start of every episode (DDS would queue, then deliver in a burst).
    """
    store = _typestore()
    return store.generate_msgdef(msgtype, ros_version=2)[0], store.hash_rihs01(msgtype)


def episode_dir_name(index: int) -> str:
    return f"episode_{index:06d}"


def next_episode_index(out_dir: Path) -> int:
    """One past the highest ``episode_NNNNNN`` in ``out_dir`` (complete or not): never reuse."""
    found = [
        int(m.group(1)) for p in out_dir.glob("episode_*") if (m := EPISODE_DIR.match(p.name))
    ]
    return max(found, default=-1) + 1


def is_complete(bag_dir: Path) -> bool:
    return (bag_dir / METADATA).is_file()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EpisodeBagWriter:
    """One episode's bag: ``topics`` (name -> ROS 2 type) become connections at open."""

    def __init__(self, bag_dir: Path, topics: Mapping[str, str]) -> None:
        self.bag_dir = bag_dir
        self._writer = Writer(bag_dir, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections = {}
        for topic, msgtype in topics.items():
            msgdef, rihs01 = definition(msgtype)
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, msgdef=msgdef, rihs01=rihs01
            )
        self.counts = dict.fromkeys(topics, 0)

    def write(self, topic: str, stamp_ns: int, raw: bytes) -> None:
        """Append one CDR-serialized message received at ``stamp_ns`` (the bag's log time)."""
        self._writer.write(self._connections[topic], stamp_ns, raw)
        self.counts[topic] += 1

    def finish(self, custom: Mapping[str, Any], sync: bool = True) -> None:
        """Close the MCAP, then write metadata.yaml (with ``custom``) and fsync both."""
        self._writer.set_custom_data(CUSTOM_KEY, json.dumps(custom, sort_keys=True))
        self._writer.close()
        if sync:
            for path in (*self.bag_dir.iterdir(), self.bag_dir, self.bag_dir.parent):
                _fsync(path)


def read_custom(bag_dir: Path) -> dict[str, Any]:
    """The ``kizuna.episode`` custom data of a bag (empty for bags kizuna did not record)."""
    try:
        document = yaml.safe_load((bag_dir / METADATA).read_text())
        text = (document["rosbag2_bagfile_information"].get("custom_data") or {}).get(CUSTOM_KEY)
        return json.loads(text) if text else {}
    except (OSError, yaml.YAMLError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise BagError(f"{bag_dir}: unreadable {METADATA} custom_data ({exc})") from None


def update_custom(bag_dir: Path, **values: Any) -> dict[str, Any]:
    """Merge ``values`` into a closed bag's ``kizuna.episode`` (metadata.yaml, atomically)."""
    path = bag_dir / METADATA
    document = yaml.safe_load(path.read_text())
    info = document["rosbag2_bagfile_information"]
    custom = {**read_custom(bag_dir), **values}
    info["custom_data"] = {**(info.get("custom_data") or {}), CUSTOM_KEY: json.dumps(custom)}
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    _fsync(tmp)
    os.replace(tmp, path)
    return custom


# ---- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    stamp_ns: int  # the bag's log (receive) time
    msg: Any
    trailing_bytes: int  # bytes after the message: alignment (<= 3) or rclpy's quirk (4-8)


class BagReader:
    """An open bag: its topics and types, and tolerant message iteration."""

    def __init__(self, path: Path, reader: Any) -> None:
        self.path = path
        self._reader = reader
        self.topics: dict[str, str] = {c.topic: c.msgtype for c in reader.connections}
        self.counts: dict[str, int] = {}
        for c in reader.connections:
            self.counts[c.topic] = self.counts.get(c.topic, 0) + c.msgcount

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time)

    def messages(
        self, topics: set[str], start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[BagMessage]:
        """Messages of ``topics`` in log-time order, in ``[start_ns, stop_ns)``."""
        connections = [c for c in self._reader.connections if c.topic in topics]
        if not connections:
            return
        try:
            for conn, stamp_ns, raw in self._reader.messages(connections, start_ns, stop_ns):
                msg, trailing = deserialize(self._reader.typestore, raw, conn.msgtype)
                yield BagMessage(conn.topic, conn.msgtype, int(stamp_ns), msg, trailing)
        except BagError as exc:
            raise BagError(f"{self.path}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - rosbags raises many kinds on corrupt data
            raise BagError(
                f"{self.path}: corrupt bag, reading messages failed ({type(exc).__name__}: "
                f"{exc}); the file is damaged or truncated, re-copy it from the robot"
            ) from None


def deserialize(typestore: Any, raw: bytes | memoryview, msgtype: str) -> tuple[Any, int]:
    """(message, trailing bytes) from CDR; up to ``MAX_TRAILING_BYTES`` of padding tolerated."""
    if len(raw) < 4 or bytes(raw[:2]) not in (b"\x00\x00", b"\x00\x01"):
        raise BagError(f"a {msgtype} message is not CDR (bad encapsulation header)")
    msgdef = typestore.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
    try:
        msg, pos = func(memoryview(raw)[4:], 0, msgdef.cls, typestore)
    except Exception as exc:  # noqa: BLE001 - struct / unicode / index errors alike
        raise BagError(f"a {msgtype} message does not deserialize ({exc})") from None
    trailing = len(raw) - 4 - pos
    if trailing > MAX_TRAILING_BYTES:
        raise BagError(f"a {msgtype} message has {trailing} unexplained trailing bytes")
    return msg, max(trailing, 0)


@contextmanager
def open_bag(path: Path) -> Iterator[BagReader]:
    """Open a rosbag2 directory; ``BagError`` saying what is wrong when it cannot be used."""
    if not path.is_dir():
        raise BagError(f"{path}: not a rosbag2 directory (expected a folder with {METADATA})")
    if not is_complete(path):
        raise BagError(
            f"{path}: no {METADATA}: the recording was cut off (recorder killed mid-episode) "
            "or this is not a rosbag2 bag; it cannot be ingested"
        )
    reader = AnyReader([path], default_typestore=_typestore())
    try:
        reader.open()
    except Exception as exc:  # noqa: BLE001 - ReaderError, OverflowError, ... on bad files
        raise BagError(
            f"{path}: corrupt bag, cannot open it ({type(exc).__name__}: {exc}); "
            "the file is damaged or truncated, re-copy it from the robot"
        ) from None
    try:
        yield BagReader(path, reader)
    finally:
        reader.close()
