"""Bags -> dataset episodes (provenance ``real``): segment, decode, align, report what is dropped.

Two passes. ``plan_bag`` reads every message of a bag (so a corrupt or truncated bag fails
here, before anything is written), finds the episodes (``/kizuna/episode`` start/end events, or
the whole bag), builds each episode's control ticks and counts the ticks it will drop and why.
``episode_frames`` then re-reads one episode's time window with images and returns the arrays
``DatasetWriter.add_episode`` takes. Ticks are the action messages (``/kizuna/executed_action``,
else the controller command topic), or a fixed ``rate_hz``; each tick takes the newest joint
state and the newest image of each camera at or before it, within a tolerance.

Interventions: a tick is one when an operator command (``/kizuna/teleop/joint_command``)
arrived within ``intervention_hold_s`` before it (its action is then the operator's command),
or when ``/kizuna/teleop/active`` last said True.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from real_robot import align
from real_robot.bag import (
    ALIGNMENT_BYTES,
    EPISODE_TOPIC,
    EXECUTED_ACTION_TOPIC,
    IMAGE_TYPE,
    LABEL_TOPIC,
    TELEOP_ACTIVE_TOPIC,
    TELEOP_TOPIC,
    BagReader,
    read_custom,
)
from real_robot.recording import parse_event
from real_robot.ros.convert import (
    COMMAND_TOPICS,
    ConvertError,
    JointLayout,
    command_to_action,
    image_to_array,
    joint_state_to_state,
)

CAMERA_TOPIC = re.compile(r"^/camera/([^/]+)/image_raw$")


class IngestError(RuntimeError):
    """Nothing was written: the message names the bag and what to do."""


@dataclass(frozen=True)
class TopicMap:
    """Which bag topic plays which role. ``cameras`` empty: every ``/camera/<name>/image_raw``."""

    joint_states: str = "/joint_states"
    cameras: Mapping[str, str] = field(default_factory=dict)
    action: str = EXECUTED_ACTION_TOPIC  # joints rad + gripper 0..1
    command: str = COMMAND_TOPICS["forward_position_controller"]  # used when no action topic
    teleop: str = TELEOP_TOPIC
    teleop_active: str = TELEOP_ACTIVE_TOPIC
    episode: str = EPISODE_TOPIC
    label: str = LABEL_TOPIC


@dataclass(frozen=True)
class IngestConfig:
    topics: TopicMap = TopicMap()
    layout: JointLayout = JointLayout.for_robot()  # bag joint names of kizuna's joints
    rate_hz: float | None = None  # tick at a fixed rate instead of on action messages
    state_tolerance_s: float = 0.1
    image_tolerance_s: float = 0.2
    intervention_hold_s: float = 0.2
    image_size: tuple[int, int] | None = None  # resize every camera to (height, width)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # instruction, task, robot_id...


@dataclass
class Span:
    """One episode inside a bag: its window, metadata and (after planning) its ticks."""

    start_ns: int
    stop_ns: int
    meta: dict[str, Any]
    success: bool | None
    ticks: int = 0
    dropped: Counter = field(default_factory=Counter)  # ticks, by reason
    unusable: Counter = field(default_factory=Counter)  # messages, by reason


@dataclass
class BagPlan:
    path: Path
    cameras: dict[str, str]  # camera name -> topic
    image_sizes: dict[str, tuple[int, int]]
    action_source: str  # topic, or "next state"
    spans: list[Span]
    padded_messages: int
    rate_hz: float | None


@dataclass
class Streams:
    """Decoded messages of one window: stamps (ns, ascending) and values per role."""

    states: list[tuple[int, np.ndarray]] = field(default_factory=list)
    images: dict[str, list[tuple[int, np.ndarray | None]]] = field(default_factory=dict)
    actions: list[tuple[int, Any]] = field(default_factory=list)
    teleop: list[tuple[int, np.ndarray]] = field(default_factory=list)
    active: list[tuple[int, bool]] = field(default_factory=list)
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    labels: list[tuple[int, bool]] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)  # unusable messages: (stamp, why)
    first_error: dict[str, str] = field(default_factory=dict)
    padded: int = 0


def find_cameras(bag: BagReader, topics: TopicMap) -> dict[str, str]:
    if topics.cameras:
        return dict(topics.cameras)
    found = {}
    for topic, msgtype in sorted(bag.topics.items()):
        if msgtype == IMAGE_TYPE and (match := CAMERA_TOPIC.match(topic)):
            found[match.group(1)] = topic
    return found


def read_streams(
    bag: BagReader,
    config: IngestConfig,
    cameras: Mapping[str, str],
    action_topic: str | None,
    window: tuple[int, int] | None = None,
    keep_images: bool = False,
) -> Streams:
    """Decode a window of the bag (all of it by default); bad messages are counted, not fatal."""
    t = config.topics
    roles = {t.joint_states: "state", t.teleop: "teleop", t.teleop_active: "active"}
    roles |= {t.episode: "event", t.label: "label", **{v: "image" for v in cameras.values()}}
    if action_topic:
        roles[action_topic] = "action"
    camera_of = {topic: name for name, topic in cameras.items()}
    out = Streams(images={name: [] for name in cameras})
    start, stop = window if window else (None, None)
    sizes: dict[str, tuple[int, int]] = {}
    for m in bag.messages(set(roles) & set(bag.topics), start, stop):
        out.padded += m.trailing_bytes > ALIGNMENT_BYTES  # rclpy's quirk, tolerated
        role = roles[m.topic]
        try:
            if role == "state":
                out.states.append(
                    (m.stamp_ns, joint_state_to_state(m.msg, config.layout, m.topic))
                )
            elif role == "image":  # every image of a camera the size of its first
                hw = sizes.setdefault(m.topic, (int(m.msg.height), int(m.msg.width)))
                rgb = image_to_array(m.msg, hw, m.topic)
                rgb = _resize(rgb, config.image_size) if keep_images else None
                out.images[camera_of[m.topic]].append((m.stamp_ns, rgb))
            elif role == "action":
                out.actions.append((m.stamp_ns, m.msg))
            elif role == "teleop":
                out.teleop.append((m.stamp_ns, _action_row(m.msg, config.layout, m.topic)))
            elif role == "active":
                out.active.append((m.stamp_ns, bool(m.msg.data)))
            elif role == "event":
                out.events.append((m.stamp_ns, parse_event(str(m.msg.data))))
            elif role == "label":
                out.labels.append((m.stamp_ns, bool(m.msg.data)))
        except (ConvertError, ValueError) as exc:
            reason = f"unusable {m.topic} message"
            out.bad.append((m.stamp_ns, reason))
            out.first_error.setdefault(reason, str(exc))
    return out


def _action_row(msg: Any, layout: JointLayout, topic: str) -> np.ndarray:
    """A kizuna action message (Float64MultiArray: joints rad + gripper 0..1)."""
    row = np.asarray(msg.data, dtype=float)
    if row.shape != (len(layout.joint_names) + 1,) or not np.isfinite(row).all():
        raise ConvertError(f"{topic}: {row.size} values, expected {len(layout.joint_names) + 1}")
    return row


def _resize(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Nearest-neighbour resize (ingest-time only; the dataset's size is what training sees)."""
    if size is None or rgb.shape[:2] == tuple(size):
        return rgb
    rows = (np.arange(size[0]) * rgb.shape[0] / size[0]).astype(int)
    cols = (np.arange(size[1]) * rgb.shape[1] / size[1]).astype(int)
    return np.ascontiguousarray(rgb[rows][:, cols])


def split_episodes(
    streams: Streams, bag: BagReader, custom: Mapping[str, Any], config: IngestConfig
) -> list[Span]:
    """Episodes from start/end events (or the whole bag), each with metadata and its label."""
    starts = [(s, e) for s, e in streams.events if e["event"] == "start"]
    ends = [(s, e) for s, e in streams.events if e["event"] == "end"]
    bag_stop = bag.end_ns + 1
    if not starts:
        starts = [(bag.start_ns, {"event": "start"})]
    spans = []
    for i, (start_ns, event) in enumerate(starts):
        next_start = starts[i + 1][0] if i + 1 < len(starts) else bag_stop
        end = next(((s, e) for s, e in ends if start_ns <= s < next_start), None)
        meta = {**config.defaults, **custom, **{k: v for k, v in event.items() if v}}
        success: bool | None = None
        if end is not None and isinstance(end[1].get("success"), bool):
            success = end[1]["success"]
        labels = [v for s, v in streams.labels if start_ns <= s < next_start]
        if labels:
            success = labels[-1]
        if len(starts) == 1 and isinstance(custom.get("success"), bool):
            success = custom["success"]  # a late label rewrote the bag's metadata
        if success is None and isinstance(config.defaults.get("success"), bool):
            success = config.defaults["success"]
        spans.append(Span(start_ns, end[0] + 1 if end else next_start, meta, success))
    return spans


def _stamps(items: list[tuple[int, Any]]) -> np.ndarray:
    return np.array([s for s, _ in items], dtype=np.int64)


def _within(items: list[tuple[int, Any]], lo: int, hi: int) -> list[tuple[int, Any]]:
    return [(s, v) for s, v in items if lo <= s < hi]


def lead_ns(config: IngestConfig) -> int:
    """How far before an episode's start its first ticks may look for data."""
    return int(max(config.state_tolerance_s, config.image_tolerance_s) * 1e9)


def align_span(
    streams: Streams, span: Span, config: IngestConfig, action_source: str
) -> dict[str, Any]:
    """Ticks of one episode and, per tick, which messages it uses; drops counted in ``span``.

    Ticks lie inside the episode's window; the data they use may lie up to ``lead_ns`` before.
    """
    lo, hi = span.start_ns, span.stop_ns
    early = lo - lead_ns(config)
    states = _within(streams.states, early, hi)
    actions = _within(streams.actions, early, hi)
    images = {c: _within(v, early, hi) for c, v in streams.images.items()}
    if config.rate_hz:
        firsts = [v[0][0] for v in (states, *images.values()) if v]
        begin = max([lo, *firsts]) if len(firsts) == 1 + len(images) else hi
        ticks = align.uniform_ticks(begin, hi - 1, config.rate_hz)
    else:
        ticks = _stamps(_within(actions, lo, hi))
        actions = _within(actions, lo, hi)
    keep = np.ones(len(ticks), dtype=bool)
    drops: Counter = Counter()

    def pick(name: str, items: list[tuple[int, Any]], tolerance_s: float) -> np.ndarray:
        index = align.latest_at_or_before(ticks, _stamps(items), int(tolerance_s * 1e9))
        missing = (index == align.MISSING) & keep
        if missing.any():
            drops[f"no {name} within {tolerance_s * 1e3:.0f} ms before the tick"] += int(
                missing.sum()
            )
        keep[:] &= index != align.MISSING
        return index

    state_index = pick("joint state", states, config.state_tolerance_s)
    image_index = {
        c: pick(f"image from '{c}'", v, config.image_tolerance_s) for c, v in images.items()
    }
    if action_source == "next state":  # the next kept tick's state is this tick's target
        action_index = np.arange(len(ticks))
        if keep.any():
            keep[np.flatnonzero(keep)[-1]] = False
            drops["last tick (its action would be the next state)"] += 1
    elif config.rate_hz:
        action_index = pick("action", actions, config.state_tolerance_s)
    else:
        action_index = np.arange(len(ticks))  # each tick is its own action message
    teleop = _within(streams.teleop, early, hi)
    hold_ns = int(config.intervention_hold_s * 1e9)
    teleop_index = align.latest_at_or_before(ticks, _stamps(teleop), hold_ns)
    active = [(s, v) for s, v in streams.active if s < hi]
    held = align.level_at(ticks, _stamps(active), np.array([v for _, v in active], dtype=bool))
    span.ticks, span.dropped = int(keep.sum()), drops
    span.unusable = Counter(r for s, r in streams.bad if lo <= s < hi)
    return {
        "keep": keep, "state": state_index, "images": image_index, "action": action_index,
        "teleop": teleop_index, "held": held, "states": states, "actions": actions,
        "image_items": images, "teleop_items": teleop,
    }  # fmt: skip


def build_frames(aligned: Mapping[str, Any], config: IngestConfig, source: str) -> dict[str, Any]:
    """``add_episode`` arrays from an alignment (images must have been kept)."""
    keep = np.flatnonzero(aligned["keep"])
    state_rows = aligned["state"][keep]
    states = np.stack([aligned["states"][i][1] for i in state_rows]).astype(np.float32)
    actions = []
    for row, k in enumerate(keep):
        if source == "next state":
            following = keep[row + 1] if row + 1 < len(keep) else k
            actions.append(aligned["states"][aligned["state"][following]][1].astype(float))
            continue
        msg = aligned["actions"][aligned["action"][k]][1]
        if source == config.topics.action:
            actions.append(_action_row(msg, config.layout, source))
        else:
            actions.append(command_to_action(msg, config.layout, states[row]))
    teleop = aligned["teleop"][keep]
    live = teleop != align.MISSING
    for row in np.flatnonzero(live):
        actions[row] = aligned["teleop_items"][teleop[row]][1]
    images = {
        camera: np.stack([items[i][1] for i in aligned["images"][camera][keep]])
        for camera, items in aligned["image_items"].items()
    }
    return {
        "states": states,
        "actions": np.asarray(actions, dtype=np.float32),
        "images": images,
        "interventions": live | aligned["held"][keep],
    }


def plan_bag(bag: BagReader, config: IngestConfig, cameras: Mapping[str, str] | None) -> BagPlan:
    """Everything about a bag except its images; ``IngestError`` when it cannot be ingested."""
    t = config.topics
    cameras = dict(cameras) if cameras is not None else find_cameras(bag, t)
    needed = {"joint_states": t.joint_states} | {f"camera.{c}": v for c, v in cameras.items()}
    absent = [f"{role} ({topic})" for role, topic in needed.items() if topic not in bag.topics]
    if absent:
        have = ", ".join(f"{k} [{v.split('/')[-1]}]" for k, v in sorted(bag.topics.items()))
        raise IngestError(
            f"{bag.path}: missing topic(s) {', '.join(absent)}; the bag has: {have}. "
            "Map them with --topic ROLE=TOPIC (e.g. --topic camera.front=/cam0/image_raw)"
        )
    action_topic = next((x for x in (t.action, t.command) if bag.counts.get(x)), None)
    if action_topic is None and not config.rate_hz:
        raise IngestError(
            f"{bag.path}: no action topic ({t.action}) and no command topic ({t.command}) "
            "with messages; map one with --topic action=... / command=..., or pass --rate HZ "
            "(ticks at a fixed rate; each tick's action is then the next tick's state)"
        )
    streams = read_streams(bag, config, cameras, action_topic)
    for role, topic in needed.items():
        items = streams.states if role == "joint_states" else streams.images[role[7:]]
        if not items:
            reason = f"unusable {topic} message"
            detail = streams.first_error.get(reason, "the topic has no messages")
            raise IngestError(f"{bag.path}: no usable {role} message ({topic}): {detail}")
    sizes = {c: config.image_size or _first_image_size(bag, v) for c, v in cameras.items()}
    spans = split_episodes(streams, bag, read_custom(bag.path), config)
    source = action_topic or "next state"
    for span in spans:
        align_span(streams, span, config, source)
    rate = config.rate_hz or align.tick_rate_hz(_stamps(streams.actions))
    return BagPlan(bag.path, cameras, sizes, source, spans, streams.padded, rate)


def _first_image_size(bag: BagReader, topic: str) -> tuple[int, int]:
    for m in bag.messages({topic}):
        return int(m.msg.height), int(m.msg.width)
    raise IngestError(f"{bag.path}: {topic} has no messages")


def episode_frames(bag: BagReader, plan: BagPlan, span: Span, config: IngestConfig) -> dict:
    """The ``add_episode`` arrays of one planned episode (re-reads its window with images)."""
    action_topic = None if plan.action_source == "next state" else plan.action_source
    window = (span.start_ns - lead_ns(config), span.stop_ns)
    streams = read_streams(bag, config, plan.cameras, action_topic, window, keep_images=True)
    # Operator override switch: its last value before the window still holds.
    before = bag.messages({config.topics.teleop_active}, 0, window[0])
    streams.active = [(m.stamp_ns, bool(m.msg.data)) for m in before] + streams.active
    aligned = align_span(
        streams, Span(span.start_ns, span.stop_ns, {}, None), config, plan.action_source
    )
    return build_frames(aligned, config, plan.action_source)
