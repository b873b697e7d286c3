"""The control loop shared by the simulator and the ROS 2 adapter.

Every control period: read the newest observation, check e-stop and watchdog, take the
executor's action for this tick, pass it through the safety filter, command the robot. Policy
inference runs beside the loop (a worker thread on the robot, inline in lock-step simulation)
and feeds the executor; the loop itself never waits on the model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from policies.base import Policy
from real_robot.runtime.chunk_executor import ChunkExecutor
from real_robot.runtime.safety import SafetyFilter, SafetyLimits
from real_robot.runtime.watchdog import EStop, Watchdog


@dataclass
class TimedObservation:
    """Contract 2's observation plus when each stream was last received (seconds)."""

    observation: dict[str, Any]
    stamps_s: dict[str, float]  # "joint_states", "camera/<name>"


class Robot(Protocol):
    """Contract 7: implemented by the simulator adapter and by the ROS 2 adapter."""

    def observe(self) -> TimedObservation | None:
        """The newest observation, or None before any has arrived."""

    def command(self, action: np.ndarray) -> None:
        """Send joint targets (rad) + gripper (0..1) for the next control period."""


@dataclass(frozen=True)
class LoopConfig:
    control_hz: float = 20.0
    replan_every: int = 5  # ticks between inference requests
    joint_state_max_age_s: float = 0.2
    image_max_age_s: float = 0.3
    ensemble_decay: float = 0.1


@dataclass
class TickReport:
    tick: int
    command: np.ndarray | None
    held: bool
    reasons: list[str] = field(default_factory=list)  # e-stop, stale streams, starved, safety


class ControlLoop:
    """Call ``tick(now_s)`` once per control period; ``request_inference`` is done for you."""

    def __init__(
        self,
        robot: Robot,
        policy: Policy,
        cameras: tuple[str, ...],
        config: LoopConfig = LoopConfig(),
        limits: SafetyLimits | None = None,
        threaded: bool = True,
    ) -> None:
        self.robot, self.policy, self.config = robot, policy, config
        self.safety = SafetyFilter(limits or SafetyLimits.for_robot(control_hz=config.control_hz))
        self.executor = ChunkExecutor(policy.action_dim, decay=config.ensemble_decay)
        streams = {"joint_states": config.joint_state_max_age_s}
        streams |= {f"camera/{c}": config.image_max_age_s for c in cameras}
        self.watchdog = Watchdog(streams)
        self.estop = EStop()
        self.threaded = threaded
        self.tick_count = 0
        self._busy = threading.Lock()
        self._started = False
        self.inference_errors = 0

    def start(self, observation: TimedObservation) -> None:
        """Begin from the measured position: the first command is 'stay where you are'."""
        state = np.asarray(observation.observation["state"], dtype=float)
        self.safety.reset(state[:-1], gripper=float(state[-1]))
        self.executor.reset(hold_action=self.safety.hold())
        self.policy.reset()
        self._started = True

    def tick(self, now_s: float) -> TickReport:
        timed = self.robot.observe()
        if timed is None:
            return TickReport(self.tick_count, None, True, ["no observation yet"])
        if not self._started:
            self.start(timed)
        for stream, stamp in timed.stamps_s.items():
            if stream in self.watchdog.max_age_s:
                self.watchdog.feed(stream, stamp)
        tick = self.tick_count
        try:
            reasons = self._hold_reasons(now_s)
            if reasons:
                command = self.safety.hold()
                self.robot.command(command)
                return TickReport(tick, command, True, reasons)
            if tick % self.config.replan_every == 0:
                self._request(timed.observation, tick)
            action, starved = self.executor.next_action(tick)
            result = self.safety.filter(action if action is not None else self.safety.hold())
            self.robot.command(result.command)
            extra = ["starved"] if starved else []
            return TickReport(tick, result.command, False, extra + result.events)
        finally:
            self.tick_count = tick + 1

    def _hold_reasons(self, now_s: float) -> list[str]:
        reasons = [f"estop: {self.estop.reason}"] if self.estop.active else []
        return reasons + [f"stale: {s}" for s in self.watchdog.stale(now_s)]

    def _request(self, observation: dict[str, Any], tick: int) -> None:
        """Ask the policy for a chunk starting at the next tick, unless one is being computed."""
        if not self._busy.acquire(blocking=False):
            return
        if self.threaded:
            threading.Thread(target=self._infer, args=(observation, tick), daemon=True).start()
        else:
            self._infer(observation, tick)

    def _infer(self, observation: dict[str, Any], tick: int) -> None:
        try:
            chunk = self.policy.act(observation)
            # Row 0 is for the tick the observation was taken in; rows for ticks already
            # executed are dropped (tick_count is the tick being, or next to be, executed).
            self.executor.submit(chunk, first_tick=tick, now_tick=self.tick_count)
        except Exception:  # noqa: BLE001 - a failing model must never stop the control loop
            self.inference_errors += 1
        finally:
            self._busy.release()
