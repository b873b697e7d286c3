"""Timestamp alignment for ingest: pure numpy over integer nanoseconds.

A control tick sees, of each stream, the newest message at or before the tick, if that one is
no older than the stream's tolerance; otherwise the tick has no (fresh) data for the stream and
is dropped, with the reason counted.
"""

from __future__ import annotations

import numpy as np

MISSING = -1


def latest_at_or_before(
    ticks_ns: np.ndarray, stamps_ns: np.ndarray, max_age_ns: int
) -> np.ndarray:
    """For each tick, the index of the newest stamp ``<=`` it within ``max_age_ns``, or -1.

    ``stamps_ns`` must be sorted ascending (a bag's log times are); ties pick the last one.
    """
    ticks = np.asarray(ticks_ns, dtype=np.int64)
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    index = np.searchsorted(stamps, ticks, side="right") - 1
    found = index >= 0
    fresh = np.zeros_like(found)
    fresh[found] = ticks[found] - stamps[index[found]] <= max_age_ns
    return np.where(found & fresh, index, MISSING)


def uniform_ticks(start_ns: int, stop_ns: int, rate_hz: float) -> np.ndarray:
    """Ticks every ``1 / rate_hz`` from ``start_ns`` while ``<= stop_ns``."""
    if rate_hz <= 0 or stop_ns < start_ns:
        return np.zeros(0, dtype=np.int64)
    period_ns = 1e9 / rate_hz
    count = int(np.floor((stop_ns - start_ns) / period_ns)) + 1
    return start_ns + np.round(np.arange(count) * period_ns).astype(np.int64)


def tick_rate_hz(ticks_ns: np.ndarray) -> float | None:
    """The typical rate of a tick sequence (None with fewer than two ticks).

    A subscriber that stalled receives its backlog in a burst of sub-millisecond gaps after one
    long gap: the median period, over the gaps longer than a tenth of the mean one, ignores both.
    """
    ticks = np.asarray(ticks_ns, dtype=np.int64)
    if len(ticks) < 2 or ticks[-1] <= ticks[0]:
        return None
    gaps = np.diff(ticks).astype(float)
    gaps = gaps[gaps > 0.1 * gaps.mean()]
    return 1e9 / float(np.median(gaps))


def recent(ticks_ns: np.ndarray, stamps_ns: np.ndarray, hold_ns: int) -> np.ndarray:
    """Per tick: a stamp falls in ``[tick - hold_ns, tick]`` (an operator command is "live")."""
    return latest_at_or_before(ticks_ns, stamps_ns, hold_ns) != MISSING


def level_at(ticks_ns: np.ndarray, stamps_ns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per tick: the last boolean value at or before it (False before the first)."""
    index = latest_at_or_before(ticks_ns, stamps_ns, np.iinfo(np.int64).max)
    values = np.asarray(values, dtype=bool)
    out = np.zeros(len(index), dtype=bool)
    out[index != MISSING] = values[index[index != MISSING]]
    return out
