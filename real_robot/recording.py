"""What the recorder node does, without ROS: episodes in, one closed rosbag2 bag per episode out.

``EpisodeRecorder`` takes CDR bytes as they arrive (the node subscribes with ``raw=True``, so
nothing is deserialized and re-serialized) and the episode events:

- ``/kizuna/episode`` (std_msgs/String, JSON): ``{"event": "start", "instruction": "...",
  "task": ..., "robot_id": ..., "policy_version": ..., "calibration_id": ...}`` opens
  ``<output_dir>/episode_NNNNNN/``; ``{"event": "end", "success": true|false (optional),
  "reason": "..."}`` closes it. A start while recording closes the open episode first
  (reason ``superseded``); ``max_episode_s`` closes one that never ends (``timeout``).
- ``/kizuna/episode_label`` (std_msgs/Bool) or the ``/kizuna/recorder/label`` service
  (std_srvs/SetBool): the operator's success / failure, for the open episode, or after it has
  ended for the last closed one (its ``metadata.yaml`` is rewritten atomically).

Messages between episodes are not recorded. Nothing is lost: each episode's bag is closed and
fsynced when it ends, so a recorder killed mid-episode loses only the episode in progress.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from real_robot.bag import (
    EPISODE_TOPIC,
    IMAGE_TYPE,
    JOINT_STATE_TYPE,
    KIZUNA_TOPICS,
    EpisodeBagWriter,
    definition,
    episode_dir_name,
    next_episode_index,
    update_custom,
)
from real_robot.ros.convert import COMMAND_INTERFACES, COMMAND_TOPICS, camera_topic
from real_robot.ros.params import ParamError

COMMAND_TYPES = {
    "forward_position_controller": "std_msgs/msg/Float64MultiArray",
    "joint_trajectory_controller": "trajectory_msgs/msg/JointTrajectory",
}
META_FIELDS = ("instruction", "task", "robot_id", "policy_version", "calibration_id")


@dataclass(frozen=True)
class RecorderParams:
    """``recorder_node``: where bags go and what they hold."""

    output_dir: str = ""  # required: one rosbag2 folder per episode is made in here
    joint_states_topic: str = "/joint_states"
    camera_names: tuple[str, ...] = ("front", "wrist")  # /camera/<name>/image_raw
    command_interface: str = "forward_position_controller"  # which controller topic to record
    robot_id: str = ""  # provenance defaults; a start event's fields override them
    calibration_id: str = ""
    policy_version: str = ""
    max_episode_s: float = 600.0  # an episode never ended is closed after this long
    sync: bool = True  # fsync each closed bag (power-loss safety)

    def __post_init__(self) -> None:
        if self.command_interface not in COMMAND_INTERFACES:
            raise ParamError(
                f"parameter 'command_interface' is {self.command_interface!r}; "
                f"expected one of {list(COMMAND_INTERFACES)}"
            )
        if self.max_episode_s <= 0:
            raise ParamError("parameter 'max_episode_s' must be > 0")
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ParamError(f"parameter 'camera_names' repeats a name: {self.camera_names}")

    def check_ready(self) -> None:
        if not self.output_dir:
            raise ParamError("parameter 'output_dir' is empty: set it to a folder for the bags")

    def topics(self) -> dict[str, str]:
        """Every recorded topic -> its ROS 2 type."""
        topics = {self.joint_states_topic: JOINT_STATE_TYPE}
        topics.update({camera_topic(c): IMAGE_TYPE for c in self.camera_names})
        topics[COMMAND_TOPICS[self.command_interface]] = COMMAND_TYPES[self.command_interface]
        topics.update(KIZUNA_TOPICS)
        return topics


def parse_event(text: str) -> dict[str, Any]:
    """A ``/kizuna/episode`` message as a dict; ``ValueError`` saying what is wrong."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{EPISODE_TOPIC}: not JSON ({exc}): {text[:80]!r}") from None
    if not isinstance(event, dict) or event.get("event") not in ("start", "end"):
        raise ValueError(
            f'{EPISODE_TOPIC}: expected {{"event": "start" | "end", ...}}, got {text[:80]!r}'
        )
    if event["event"] == "start" and not str(event.get("instruction", "")).strip():
        raise ValueError(f'{EPISODE_TOPIC}: a start event needs an "instruction"')
    if "success" in event and not isinstance(event["success"], bool | None):
        raise ValueError(f'{EPISODE_TOPIC}: "success" must be true, false or null')
    return event


class EpisodeRecorder:
    """The recorder's state machine: idle, or writing one episode's bag."""

    def __init__(
        self,
        params: RecorderParams,
        log: Callable[[str], None] = print,
    ) -> None:
        params.check_ready()
        self.params = params
        self.out_dir = Path(params.output_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.topics = params.topics()
        for msgtype in self.topics.values():
            definition(msgtype)  # built now, not while the first episode's messages queue
        self.log = log
        self.writer: EpisodeBagWriter | None = None
        self.meta: dict[str, Any] = {}
        self.last_closed: Path | None = None
        self.closed = 0
        self._closing: threading.Thread | None = None
        self._close_error: BaseException | None = None

    @property
    def recording(self) -> bool:
        return self.writer is not None

    def on_message(self, topic: str, raw: bytes, now_ns: int) -> None:
        """A recorded topic's message (episode events go through ``on_event``)."""
        if self.writer is not None and topic in self.topics:
            self.writer.write(topic, now_ns, raw)

    def on_event(self, text: str, raw: bytes, now_ns: int) -> None:
        try:
            event = parse_event(text)
        except ValueError as exc:
            self.log(f"ignored: {exc}")
            return
        if event["event"] == "start":
            if self.writer is not None:
                self.end(now_ns, "superseded", None)
            self.start(event, now_ns)
            self.on_message(EPISODE_TOPIC, raw, now_ns)
        elif self.writer is None:
            self.log(f"ignored: {EPISODE_TOPIC} end event, but no episode is being recorded")
        else:
            self.on_message(EPISODE_TOPIC, raw, now_ns)
            self.end(now_ns, str(event.get("reason", "ended")), event.get("success"))

    def start(self, event: Mapping[str, Any], now_ns: int) -> Path:
        index = next_episode_index(self.out_dir)
        bag_dir = self.out_dir / episode_dir_name(index)
        defaults = {k: getattr(self.params, k, "") for k in META_FIELDS}
        given = {k: str(event[k]) for k in META_FIELDS if event.get(k)}
        extra = {k: v for k, v in event.items() if k not in (*META_FIELDS, "event")}
        self.meta = {**extra, **defaults, **given, "episode": index, "start_ns": now_ns}
        self.meta["success"] = None
        self.writer = EpisodeBagWriter(bag_dir, self.topics)
        self.log(f"recording episode {index} into {bag_dir}: {self.meta['instruction']!r}")
        return bag_dir

    def end(self, now_ns: int, reason: str, success: bool | None) -> Path | None:
        """Close the open episode's bag (fsynced); ``success`` None keeps any label given."""
        if self.writer is None:
            return None
        writer, self.writer = self.writer, None
        if success is not None:
            self.meta["success"] = success
        self.meta.update(end_ns=now_ns, end_reason=reason, message_counts=writer.counts)
        self._finish(writer, dict(self.meta))
        self.last_closed, self.closed = writer.bag_dir, self.closed + 1
        label = {True: "success", False: "failure", None: "unlabeled"}[self.meta["success"]]
        self.log(f"closed {writer.bag_dir.name} ({reason}, {label})")
        return writer.bag_dir

    def _finish(self, writer: EpisodeBagWriter, meta: dict[str, Any]) -> None:
        """Close the bag in a thread of its own: Ctrl-C raises KeyboardInterrupt only in the
        main thread, so it may interrupt the wait here but never the writing (``wait_closed``
        in ``close`` then waits for it)."""

        def finish() -> None:
            try:
                writer.finish(meta, sync=self.params.sync)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the waiting thread
                self._close_error = exc

        self._closing = threading.Thread(target=finish, name="close-bag")
        self._closing.start()
        self.wait_closed()

    def wait_closed(self) -> None:
        if self._closing is not None:
            self._closing.join()
            self._closing = None
        if self._close_error is not None:
            error, self._close_error = self._close_error, None
            raise error

    def label(self, success: bool, raw: bytes | None, now_ns: int) -> str:
        """The operator's label: for the open episode, else for the last closed one."""
        if self.writer is not None:
            self.meta["success"] = success
            if raw is not None:
                self.on_message("/kizuna/episode_label", raw, now_ns)
            return f"labelled the episode being recorded: {'success' if success else 'failure'}"
        if self.last_closed is None:
            return "no episode to label: none recorded yet"
        update_custom(self.last_closed, success=success, labelled_ns=now_ns)
        return f"labelled {self.last_closed.name}: {'success' if success else 'failure'}"

    def check_timeout(self, now_ns: int) -> None:
        if self.writer is not None:
            if now_ns - int(self.meta["start_ns"]) > self.params.max_episode_s * 1e9:
                self.end(now_ns, "timeout", None)

    def close(self, now_ns: int) -> None:
        """Shutting down: finish a bag being closed, close the open episode (a clean stop
        loses nothing)."""
        self.wait_closed()
        self.end(now_ns, "recorder shutdown", None)
