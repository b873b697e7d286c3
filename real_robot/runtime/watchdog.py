"""Stale-data watchdog and latching e-stop: the two reasons to hold still.

Holding means sending the last safe command (never zeros, never "home"): the arm stops where it
is. The watchdog clears by itself once every stream is fresh again; the e-stop does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Watchdog:
    """Tracks when each input stream (``joint_states``, ``camera/front``...) last arrived."""

    max_age_s: dict[str, float]
    _last_s: dict[str, float] = field(default_factory=dict)

    def feed(self, stream: str, stamp_s: float) -> None:
        if stream not in self.max_age_s:
            raise KeyError(f"unknown stream {stream!r}; watched: {sorted(self.max_age_s)}")
        self._last_s[stream] = max(stamp_s, self._last_s.get(stream, float("-inf")))

    def stale(self, now_s: float) -> list[str]:
        """Streams never seen or older than their threshold, sorted by name."""
        return sorted(
            name
            for name, max_age in self.max_age_s.items()
            if now_s - self._last_s.get(name, float("-inf")) > max_age
        )

    def age_s(self, stream: str, now_s: float) -> float:
        return now_s - self._last_s.get(stream, float("-inf"))


class EStop:
    """Latching emergency stop: ``trigger`` sets it; only an explicit ``reset`` clears it."""

    def __init__(self) -> None:
        self.active = False
        self.reason = ""
        self.count = 0

    def trigger(self, reason: str) -> None:
        if not self.active:
            self.count += 1
        self.active = True
        self.reason = reason

    def reset(self) -> None:
        self.active = False
        self.reason = ""
