"""The ``Robot`` (Contract 7) over ROS 2 messages, and what the policy node reports. No rclpy.

The node's subscription callbacks only store the newest message of each stream with its
arrival time (``on_joint_state``, ``on_image``); ``observe`` builds the observation from them
with ``msgs_to_obs`` when the control loop asks. Arrival times, on the node's monotonic clock,
feed the watchdog, so a sender's clock offset cannot hide a stalled stream. A message that
cannot be used (unknown joint names, wrong encoding or size, missing fields) makes ``observe``
return None: the loop then sends nothing, so the controller keeps its last, safe target (no
motion), and ``problem`` says why for ``/diagnostics``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np

from kizuna.robot import PANDA
from policies.base import Observation, Policy
from real_robot.ros.convert import ConvertError, msgs_to_obs
from real_robot.ros.params import PolicyNodeParams
from real_robot.runtime.loop import ControlLoop, TickReport, TimedObservation
from real_robot.runtime.watchdog import EStop

LEVEL_OK, LEVEL_WARN, LEVEL_ERROR = 0, 1, 2


class RosRobot:
    """Newest messages in, observations out; ``command`` goes to ``send`` (the publisher)."""

    def __init__(self, params: PolicyNodeParams, send: Callable[[np.ndarray], None]) -> None:
        self.params = params
        self._send = send
        low = np.append(PANDA.lower_rad, 0.0).astype(np.float32)
        high = np.append(PANDA.upper_rad, 1.0).astype(np.float32)
        self._bounds = (low, high)
        self.rejected: Counter[str] = Counter()  # topic -> messages refused
        self.clear()

    def clear(self) -> None:
        """Forget every message (on activation: start from data that arrives afterwards)."""
        self._joint_state: Any = None
        self._images: dict[str, Any] = {}
        self._arrival_s: dict[str, float] = {}
        self._refused: tuple[int, ...] = ()  # the message set last refused (counted once)
        self.problem = ""  # why the newest observation was refused, "" when it was fine
        self.observed_stamp: Any = None  # header stamp of the joint states last observed

    def on_joint_state(self, msg: Any, now_s: float) -> None:
        self._joint_state, self._arrival_s["joint_states"] = msg, now_s

    def on_image(self, camera: str, msg: Any, now_s: float) -> None:
        self._images[camera], self._arrival_s[f"camera/{camera}"] = msg, now_s

    def observe(self) -> TimedObservation | None:
        p = self.params
        try:
            obs = msgs_to_obs(
                self._joint_state,
                self._images,
                p.camera_names,
                p.instruction,
                p.layout,
                p.image_hw,
                self._bounds,
            )
        except ConvertError as exc:
            self._refuse(exc)
            return None
        self.problem = ""
        self.observed_stamp = self._joint_state.header.stamp
        return TimedObservation(obs, dict(self._arrival_s))

    def command(self, action: np.ndarray) -> None:
        self._send(action)

    def _refuse(self, exc: ConvertError) -> None:
        self.problem = str(exc)
        messages = (self._joint_state, *(self._images.get(c) for c in self.params.camera_names))
        key = tuple(id(m) for m in messages)
        if key != self._refused and "no message" not in self.problem:
            self.rejected[exc.topic] += 1  # each refused message once, not once per tick
        self._refused = key


def warmup_observation(params: PolicyNodeParams) -> Observation:
    """A well-formed observation (home pose, black images) to run the model once at configure:
    the first inference (allocations, kernel selection) is several times slower than the rest,
    and it should not land in the first control period after activation."""
    state = np.append(PANDA.home_q_rad, 1.0).astype(np.float32)
    images = {c: np.zeros((*params.image_hw, 3), np.uint8) for c in params.camera_names}
    obs: Observation = {"state": state, "instruction": params.instruction}
    return obs | {"images": images} if images else obs


class TimedPolicy:
    """A ``Policy`` that remembers how long each ``act`` took (for ``/diagnostics``)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.chunk_size, self.action_dim = policy.chunk_size, policy.action_dim
        self.latencies_s: deque[float] = deque(maxlen=200)

    def reset(self) -> None:
        self.policy.reset()

    def act(self, observation: Observation) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.policy.act(observation)
        finally:
            self.latencies_s.append(time.perf_counter() - start)


class NodeStatus:
    """Tick reports folded into what ``/diagnostics`` says."""

    def __init__(self) -> None:
        self.ticks = self.held_ticks = 0
        self.reasons: list[str] = []  # of the last tick
        self.reason_counts: Counter[str] = Counter()
        self.history: deque[tuple[float, bool, tuple[str, ...]]] = deque(maxlen=600)

    def record(self, now_s: float, report: TickReport, robot: RosRobot) -> list[str]:
        """Fold one tick in; returns its reasons (a refused input counts as a hold reason)."""
        reasons = list(report.reasons)
        if report.command is None and robot.problem:
            reasons = [f"bad input: {robot.problem}"]
        self.ticks += 1
        self.held_ticks += int(report.held)
        self.reasons = reasons
        # Count kinds, not texts: "stale: camera/front", "bad input: /joint_states", ...
        kinds = (r.split(":")[0] if r.startswith("bad input") else r for r in reasons)
        self.reason_counts.update(kinds)
        self.history.append((now_s, report.held, tuple(reasons)))
        return reasons


def diagnostic_values(
    state: str,
    status: NodeStatus,
    estop: EStop,
    loop: ControlLoop | None,
    robot: RosRobot | None,
) -> tuple[int, str, dict[str, object]]:
    """(level, message, key/values) for the node's DiagnosticStatus."""
    values: dict[str, object] = {"lifecycle_state": state, "ticks": status.ticks}
    values["held_ticks"] = status.held_ticks
    values["hold_reasons"] = "; ".join(status.reasons)
    for reason, count in sorted(status.reason_counts.items()):
        values[f"count/{reason}"] = count
    values["estop_active"] = estop.active
    values["estop_count"] = estop.count
    level, message = LEVEL_OK, state
    if loop is not None:
        for event, count in loop.safety.counts.items():
            values[f"safety/{event}"] = count
        values["inference_errors"] = loop.inference_errors
        values["starved_ticks"] = loop.executor.starved_ticks
        values["dropped_rows"] = loop.executor.dropped_rows
        policy = loop.policy
        if isinstance(policy, TimedPolicy) and policy.latencies_s:
            latencies_ms = 1e3 * np.array(policy.latencies_s)
            values["inference_ms_last"] = f"{latencies_ms[-1]:.1f}"
            values["inference_ms_p50"] = f"{np.percentile(latencies_ms, 50):.1f}"
            values["inference_ms_p99"] = f"{np.percentile(latencies_ms, 99):.1f}"
    if robot is not None:
        values["bad_input"] = robot.problem
        for topic, count in sorted(robot.rejected.items()):
            values[f"rejected{topic}"] = count  # rejected/joint_states, rejected/camera/...
    if status.reasons:
        level, message = LEVEL_WARN, f"{state}: holding ({'; '.join(status.reasons)})"
    if estop.active or (robot is not None and robot.problem):
        level = LEVEL_ERROR
    if estop.active:
        message = f"{state}: e-stop latched ({estop.reason}); call /kizuna/reset_estop"
    return level, message, values
