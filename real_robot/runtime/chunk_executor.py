"""Keep action chunks flowing at a fixed control rate, whatever the model's latency.

A chunk is stamped with the control tick its first row is meant for. When it arrives late,
the rows whose ticks are already past are dropped; where it overlaps the chunk being executed,
the two are blended (temporal ensembling, ACT-style: a weighted mean over every chunk that has
a row for this tick, older chunks weighted ``exp(-decay * age)``), so the arm never jumps from
one plan to the next. When no chunk covers the current tick the executor repeats its last
action and says so (``starved``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class _Chunk:
    first_tick: int
    actions: np.ndarray  # [T, action_dim]

    def row(self, tick: int) -> np.ndarray | None:
        i = tick - self.first_tick
        return self.actions[i] if 0 <= i < len(self.actions) else None


class ChunkExecutor:
    """Blend and schedule chunks; ``next_action(tick)`` once per control period."""

    def __init__(self, action_dim: int, decay: float = 0.1, max_chunks: int = 8) -> None:
        self.action_dim = action_dim
        self.decay = decay
        self._chunks: deque[_Chunk] = deque(maxlen=max_chunks)
        self._last: np.ndarray | None = None
        self.dropped_rows = 0
        self.starved_ticks = 0

    def reset(self, hold_action: np.ndarray | None = None) -> None:
        self._chunks.clear()
        self._last = None if hold_action is None else np.asarray(hold_action, float).copy()

    def submit(self, actions: np.ndarray, first_tick: int, now_tick: int) -> int:
        """Add a chunk whose row 0 is for ``first_tick``; returns how many rows were too late."""
        actions = np.asarray(actions, dtype=float)
        if actions.ndim != 2 or actions.shape[1] != self.action_dim:
            raise ValueError(f"chunk shape {actions.shape}, expected [T, {self.action_dim}]")
        late = max(0, now_tick - first_tick)
        self.dropped_rows += min(late, len(actions))
        if late < len(actions):
            self._chunks.append(_Chunk(first_tick + late, actions[late:]))
        return late

    def next_action(self, tick: int) -> tuple[np.ndarray | None, bool]:
        """The action for ``tick`` and whether the executor is starved (repeating its last)."""
        rows, weights = [], []
        for chunk in self._chunks:
            row = chunk.row(tick)
            if row is not None:
                age = tick - chunk.first_tick  # older plans have larger age at this tick
                rows.append(row)
                weights.append(np.exp(-self.decay * age))
        while self._chunks and self._chunks[0].first_tick + len(self._chunks[0].actions) <= tick:
            self._chunks.popleft()
        if not rows:
            self.starved_ticks += 1
            return (None if self._last is None else self._last.copy()), True
        w = np.array(weights) / np.sum(weights)
        action = np.tensordot(w, np.array(rows), axes=1)
        self._last = action
        return action.copy(), False

    def remaining(self, tick: int) -> int:
        """Rows still planned from ``tick`` on (by the newest chunk)."""
        if not self._chunks:
            return 0
        newest = self._chunks[-1]
        return max(0, newest.first_tick + len(newest.actions) - tick)
