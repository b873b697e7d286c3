"""Normalization statistics: per episode, and aggregated into ``meta/stats.json``.

LeRobot's conventions: every numeric feature gets ``min``, ``max``, ``mean``, ``std`` over its
frames (shape ``[n]``; ``[1]`` for scalars) and ``count`` (shape ``[1]``, frames). Images get
per-channel stats shaped ``[3, 1, 1]`` with values in 0..1, over a sample of frames, and their
``count`` is the number of sampled frames. Booleans are counted as 0/1 floats.
Episode stats combine exactly (the parallel-variance formula), so ``stats.json`` can always be
rebuilt from the per-episode columns of ``meta/episodes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from kizuna.dataset.format import STAT_NAMES, stat_ndim

Stats = dict[str, np.ndarray]
# Images: at most this many frames per episode, subsampled to at most ~150 px on a side.
IMAGE_SAMPLE_FRAMES = 100
IMAGE_MAX_SIDE = 150


def feature_stats(values: np.ndarray) -> Stats:
    """Stats of a ``[T]`` or ``[T, n]`` array over its frames."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    return {
        "min": array.min(axis=0),
        "max": array.max(axis=0),
        "mean": array.mean(axis=0),
        "std": array.std(axis=0),
        "count": np.array([len(array)], dtype=np.int64),
    }


def image_stats(frames: np.ndarray) -> Stats:
    """Per-channel stats in 0..1 of ``[T, H, W, 3]`` uint8 frames, shaped ``[3, 1, 1]``."""
    count = min(len(frames), IMAGE_SAMPLE_FRAMES)
    picked = np.round(np.linspace(0, len(frames) - 1, count)).astype(int)
    step = max(1, max(frames.shape[1:3]) // IMAGE_MAX_SIDE)
    pixels = frames[picked, ::step, ::step].reshape(-1, 3).astype(np.float64) / 255.0
    stats = feature_stats(pixels)
    shaped = {name: stats[name].reshape(3, 1, 1) for name in ("min", "max", "mean", "std")}
    return {**shaped, "count": np.array([count], dtype=np.int64)}


def table_stats(table: pa.Table, features: Mapping[str, Mapping[str, Any]]) -> dict[str, Stats]:
    """Stats of every non-video feature in one episode's data table."""
    out = {}
    for key, ft in features.items():
        if ft["dtype"] in ("video", "image", "string"):
            continue
        column = table.column(key)
        if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
            values = np.asarray(column.to_pylist(), dtype=np.float64)
        else:
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        out[key] = feature_stats(values)
    return out


def aggregate(stats_list: Iterable[Mapping[str, Stats]]) -> dict[str, Stats]:
    """Combine episode stats: count-weighted means, pooled variances, global min/max."""
    by_feature: dict[str, list[Stats]] = {}
    for stats in stats_list:
        for key, value in stats.items():
            by_feature.setdefault(key, []).append(value)
    return {key: _aggregate_feature(parts) for key, parts in by_feature.items()}


def _aggregate_feature(parts: list[Stats]) -> Stats:
    counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
    means = np.stack([p["mean"] for p in parts])
    variances = np.stack([p["std"] for p in parts]) ** 2
    weights = counts.reshape(-1, *([1] * (means.ndim - 1)))
    total = counts.sum()
    mean = (means * weights).sum(axis=0) / total
    variance = ((variances + (means - mean) ** 2) * weights).sum(axis=0) / total
    return {
        "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
        "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(total)], dtype=np.int64),
    }


def to_json(stats: Mapping[str, Stats]) -> dict[str, dict[str, list]]:
    return {
        key: {name: np.asarray(v).tolist() for name, v in s.items()} for key, s in stats.items()
    }


def from_json(data: Mapping[str, Mapping[str, Any]]) -> dict[str, Stats]:
    return {key: {name: np.asarray(v) for name, v in s.items()} for key, s in data.items()}


def to_row(stats: Mapping[str, Stats]) -> dict[str, list]:
    """Flatten to the ``stats/<feature>/<stat>`` columns of an episode-metadata row."""
    return {f"stats/{key}/{name}": v.tolist() for key, s in stats.items() for name, v in s.items()}


def from_row(
    row: Mapping[str, Any], features: Mapping[str, Mapping[str, Any]]
) -> dict[str, Stats]:
    """The episode stats stored in one episode-metadata row (features without stats skipped)."""
    out = {}
    for key, ft in features.items():
        if f"stats/{key}/mean" not in row or row[f"stats/{key}/mean"] is None:
            continue
        stats = {
            name: np.asarray(row[f"stats/{key}/{name}"], dtype=np.float64) for name in STAT_NAMES
        }
        stats["count"] = stats["count"].astype(np.int64)
        expected_ndim = stat_ndim(ft)
        if stats["mean"].ndim != expected_ndim:
            raise ValueError(
                f"stats/{key}/mean has {stats['mean'].ndim} dims, not {expected_ndim}"
            )
        out[key] = stats
    return out


def compare(
    expected: Mapping[str, Stats],
    actual: Mapping[str, Stats],
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> list[str]:
    """Human-readable differences between two stats dicts (empty when they agree)."""
    problems = []
    for key in sorted(set(expected) | set(actual)):
        if key not in actual or key not in expected:
            problems.append(f"stats for '{key}' missing on one side")
            continue
        for name in STAT_NAMES:
            a, b = np.asarray(expected[key][name]), np.asarray(actual[key][name])
            if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=atol):
                problems.append(f"'{key}' {name} is {_short(b)}, expected {_short(a)}")
    return problems


def _short(values: np.ndarray) -> str:
    return str(np.round(np.asarray(values, dtype=np.float64).ravel(), 6).tolist())
