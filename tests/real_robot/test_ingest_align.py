"""Tick alignment (real_robot/align.py): properties over arbitrary stamps and ticks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from real_robot import align

stamps_st = st.lists(st.integers(0, 10**6), max_size=40).map(sorted).map(np.array)
ticks_st = st.lists(st.integers(0, 10**6), max_size=40).map(np.array)


@settings(max_examples=300, deadline=None)
@given(stamps=stamps_st, ticks=ticks_st, max_age=st.integers(0, 2 * 10**5))
def test_latest_at_or_before_is_the_newest_fresh_stamp_or_missing(
    stamps: np.ndarray, ticks: np.ndarray, max_age: int
) -> None:
    index = align.latest_at_or_before(ticks, stamps, max_age)
    assert index.shape == ticks.shape
    for tick, i in zip(ticks, index, strict=True):
        eligible = [j for j, s in enumerate(stamps) if s <= tick]
        if eligible and tick - stamps[eligible[-1]] <= max_age:
            assert i == eligible[-1]  # the newest at or before, never one from the future
            assert stamps[i] <= tick and tick - stamps[i] <= max_age
        else:
            assert i == align.MISSING  # none yet, or the newest is stale: dropped


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 10**12),
    length=st.integers(0, 5 * 10**9),
    rate=st.floats(0.5, 500.0),
)
def test_uniform_ticks_stay_in_the_window_at_the_rate(
    start: int, length: int, rate: float
) -> None:
    ticks = align.uniform_ticks(start, start + length, rate)
    period_ns = 1e9 / rate
    assert ticks[0] == start and ticks[-1] <= start + length  # inside the window
    assert ticks[-1] + period_ns > start + length - 1  # and it is filled: no tick missing
    assert np.all(np.abs(np.diff(ticks) - period_ns) <= 1.0)  # evenly spaced (ns rounding)


@settings(max_examples=200, deadline=None)
@given(
    stamps=stamps_st,
    ticks=ticks_st,
    values=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_level_at_is_the_last_value_at_or_before(
    stamps: np.ndarray, ticks: np.ndarray, values: list[bool]
) -> None:
    values_arr = np.array(values[: len(stamps)], dtype=bool)
    held = align.level_at(ticks, stamps, values_arr)
    for tick, h in zip(ticks, held, strict=True):
        before = [v for s, v in zip(stamps, values_arr, strict=True) if s <= tick]
        assert h == (before[-1] if before else False)


def test_the_tick_rate_ignores_a_stall_and_the_burst_after_it() -> None:
    period = 50_000_000
    ticks = list(np.arange(20) * period)
    ticks += [ticks[-1] + 8 * period + k * 200_000 for k in range(7)]  # a 400 ms stall, a burst
    ticks += [ticks[-1] + period * (k + 1) for k in range(10)]
    assert abs(align.tick_rate_hz(np.array(ticks)) - 20.0) < 0.01
