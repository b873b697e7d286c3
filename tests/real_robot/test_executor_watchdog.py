"""Chunk executor (late chunks, blending, starvation), watchdog and latching e-stop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from real_robot.runtime.chunk_executor import ChunkExecutor
from real_robot.runtime.watchdog import EStop, Watchdog


def _ramp(start: float, n: int, dim: int = 2) -> np.ndarray:
    return np.repeat(np.arange(start, start + n, dtype=float)[:, None], dim, axis=1)


def test_rows_play_in_order_then_starve_on_the_last_action() -> None:
    ex = ChunkExecutor(action_dim=2)
    ex.submit(_ramp(0, 3), first_tick=0, now_tick=0)
    played = [ex.next_action(t) for t in range(5)]
    assert [a[0][0] for a in played] == [0, 1, 2, 2, 2]
    assert [starved for _, starved in played] == [False, False, False, True, True]
    assert ex.starved_ticks == 2


def test_a_late_chunk_drops_the_rows_already_in_the_past() -> None:
    ex = ChunkExecutor(action_dim=2)
    late = ex.submit(_ramp(10, 5), first_tick=3, now_tick=5)
    assert late == 2 and ex.dropped_rows == 2
    action, starved = ex.next_action(5)
    assert action[0] == 12 and not starved


def test_a_chunk_entirely_in_the_past_is_dropped_whole() -> None:
    ex = ChunkExecutor(action_dim=2)
    ex.reset(hold_action=np.array([7.0, 7.0]))
    assert ex.submit(_ramp(0, 3), first_tick=0, now_tick=10) == 10
    action, starved = ex.next_action(10)
    assert starved and action[0] == 7.0


def test_overlapping_chunks_are_blended_not_switched() -> None:
    ex = ChunkExecutor(action_dim=1, decay=0.0)  # equal weights: a plain mean
    ex.submit(np.zeros((10, 1)), first_tick=0, now_tick=0)
    ex.submit(np.ones((10, 1)), first_tick=5, now_tick=5)
    assert ex.next_action(4)[0][0] == 0.0
    assert ex.next_action(5)[0][0] == pytest.approx(0.5)
    assert ex.next_action(10)[0][0] == 1.0


@settings(max_examples=100, deadline=None)
@given(
    offsets=st.lists(st.floats(-0.05, 0.05), min_size=2, max_size=8),
    period=st.integers(1, 10),
    latency=st.integers(0, 4),
)
def test_blending_never_jumps_more_than_the_plans_differ(
    offsets: list[float], period: int, latency: int
) -> None:
    """Plans that each move smoothly (0.01/tick) and disagree by at most 0.1 never produce a
    step larger than that disagreement plus the plan's own speed."""
    ex = ChunkExecutor(action_dim=1, decay=0.1)
    previous = None
    tick = 0
    for k, offset in enumerate(offsets):
        start = k * period
        plan = (np.arange(start, start + 20) * 0.01 + offset)[:, None]
        ex.submit(plan, first_tick=start, now_tick=start + latency)
        for _ in range(period):
            action, _ = ex.next_action(tick)
            if previous is not None and action is not None:
                assert abs(action[0] - previous[0]) <= 0.1 + 0.01 + 1e-9
            previous = action
            tick += 1


def test_malformed_chunks_are_refused() -> None:
    with pytest.raises(ValueError, match="chunk shape"):
        ChunkExecutor(action_dim=8).submit(np.zeros((5, 3)), 0, 0)


def test_watchdog_flags_silent_and_old_streams_and_recovers() -> None:
    dog = Watchdog({"joint_states": 0.1, "camera/front": 0.2})
    assert dog.stale(0.0) == ["camera/front", "joint_states"]  # never seen
    dog.feed("joint_states", 1.0)
    dog.feed("camera/front", 1.0)
    assert dog.stale(1.05) == []
    assert dog.stale(1.15) == ["joint_states"]
    assert dog.stale(1.25) == ["camera/front", "joint_states"]
    dog.feed("joint_states", 1.3)
    dog.feed("camera/front", 1.3)
    assert dog.stale(1.31) == []
    dog.feed("camera/front", 0.5)  # an out-of-order old message does not rewind the clock
    assert dog.age_s("camera/front", 1.31) == pytest.approx(0.01)
    with pytest.raises(KeyError, match="watched"):
        dog.feed("lidar", 1.0)


def test_estop_latches_until_an_explicit_reset() -> None:
    stop = EStop()
    stop.trigger("operator")
    stop.trigger("operator again")
    assert stop.active and stop.count == 1
    stop.reset()
    assert not stop.active
