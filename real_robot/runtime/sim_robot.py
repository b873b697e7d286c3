"""The simulator as a ``Robot`` (Contract 7): the runtime drives it exactly as it drives an arm.

Lock-step: one ``command`` advances the simulation one control period, and the clock is the
simulation's, so a run is reproducible; stamps come from that clock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from real_robot.runtime.loop import TimedObservation


class SimRobot:
    """Wraps a ``sim.env.KizunaEnv``; ``info`` keeps the env's last step info (success...)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self._obs: dict[str, Any] | None = None
        self.info: dict[str, Any] = {}
        self.steps = 0
        self.done = False

    @property
    def time_s(self) -> float:
        return self.steps * self.env.control_dt_s

    def reset(self, seed: int) -> None:
        self._obs, self.info = self.env.reset(seed=seed)
        self.steps, self.done = 0, False

    def observe(self) -> TimedObservation | None:
        if self._obs is None:
            return None
        stamps = {"joint_states": self.time_s}
        stamps |= {f"camera/{c}": self.time_s for c in self._obs.get("images", {})}
        return TimedObservation(self._obs, stamps)

    def command(self, action: np.ndarray) -> None:
        self._obs, _, terminated, truncated, self.info = self.env.step(
            np.asarray(action, dtype=np.float32)
        )
        self.steps += 1
        self.done = bool(terminated or truncated)
