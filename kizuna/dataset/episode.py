"""One episode on its way into a dataset: validated arrays, stats, video makers, data table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kizuna.dataset import stats as stats_mod
from kizuna.dataset.format import (
    ACTION,
    DONE,
    INTERVENTION,
    REWARD,
    STATE,
    camera_key,
    data_schema,
)
from kizuna.dataset.meta import DatasetError
from kizuna.dataset.provenance import Provenance


@dataclass
class PendingEpisode:
    """One episode, ready to commit: frame columns, image stats, and how to make each video."""

    instruction: str
    provenance: Provenance
    success: bool
    # Non-bookkeeping, non-video frame features (state, action, reward, done, intervention).
    columns: dict[str, np.ndarray]
    image_stats: dict[str, stats_mod.Stats]
    # video key -> function writing that episode's mp4 to the path it is given.
    videos: dict[str, Callable[[Path], Any]]
    # video key -> sha256 the written file must have (merge copies files byte for byte).
    expected_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.columns[STATE])


def pending_episode(
    features: Mapping[str, Mapping[str, Any]],
    encode: Callable[[Path, list[np.ndarray]], Any],
    states: np.ndarray,
    actions: np.ndarray,
    images: Mapping[str, np.ndarray],
    instruction: str,
    provenance: Provenance,
    success: bool,
    rewards: np.ndarray | None = None,
    interventions: np.ndarray | None = None,
    dones: np.ndarray | None = None,
) -> PendingEpisode:
    """Validate ``DatasetWriter.add_episode``'s arguments; errors name the argument."""
    length = len(states)
    columns = {
        STATE: _frames(states, np.float32, (length, *features[STATE]["shape"]), "states"),
        ACTION: _frames(actions, np.float32, (length, *features[ACTION]["shape"]), "actions"),
        REWARD: _frames(_default(rewards, length, 0.0), np.float32, (length,), "rewards"),
        DONE: _frames(_default(dones, length, None), np.bool_, (length,), "dones"),
        INTERVENTION: _frames(
            _default(interventions, length, False), np.bool_, (length,), "interventions"
        ),
    }
    if length < 1:
        raise DatasetError("an episode needs at least one frame")
    if not isinstance(instruction, str) or not instruction:
        raise DatasetError(f"instruction must be a non-empty string, got {instruction!r}")
    if not isinstance(provenance, Provenance):
        raise DatasetError(f"provenance must be a Provenance, got {type(provenance).__name__}")
    frames = _check_images(features, images, length)
    return PendingEpisode(
        instruction=instruction,
        provenance=provenance,
        success=bool(success),
        columns=columns,
        image_stats={key: stats_mod.image_stats(f) for key, f in frames.items()},
        # Encoding waits for commit, which hands each video its temporary path.
        videos={key: partial(_encode, encode, f) for key, f in frames.items()},
    )


def _encode(
    encode: Callable[[Path, list[np.ndarray]], Any], frames: np.ndarray, path: Path
) -> None:
    encode(path, list(frames))


def _check_images(
    features: Mapping[str, Mapping[str, Any]], images: Mapping[str, np.ndarray], length: int
) -> dict[str, np.ndarray]:
    given = {camera_key(name): np.asarray(f) for name, f in images.items()}
    wanted = {key: ft["shape"] for key, ft in features.items() if ft["dtype"] == "video"}
    if set(given) != set(wanted):
        raise DatasetError(f"images are for {sorted(given)}; the dataset has {sorted(wanted)}")
    for key, frames in given.items():
        expected = (length, *wanted[key])
        if frames.shape != expected or frames.dtype != np.uint8:
            raise DatasetError(
                f"images['{key}'] is {frames.dtype} {frames.shape}; expected uint8 {expected}"
            )
    return given


def data_table(
    features: Mapping[str, Mapping[str, Any]],
    episode: PendingEpisode,
    fps: int,
    episode_index: int,
    first_index: int,
    task_index: int,
) -> pa.Table:
    """The episode's ``data/*.parquet`` table, bookkeeping columns filled in."""
    length = episode.length
    frame_index = np.arange(length, dtype=np.int64)
    columns = {
        **episode.columns,
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.full(length, episode_index, dtype=np.int64),
        "index": first_index + frame_index,
        "task_index": np.full(length, task_index, dtype=np.int64),
    }
    schema = data_schema(features)
    return pa.Table.from_arrays([_arrow(columns[f.name], f.type) for f in schema], schema=schema)


def _default(values: Any, length: int, fill: float | bool | None) -> np.ndarray:
    if values is not None:
        return np.asarray(values)
    if fill is None:  # dones: the episode ends on its last frame
        return np.arange(length) == length - 1
    return np.full(length, fill)


def _frames(values: Any, dtype: type, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != shape:
        raise DatasetError(f"{name} has shape {array.shape}; expected {shape} (frames first)")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise DatasetError(f"{name} holds NaN or inf; stats and training would be poisoned")
    return array.astype(dtype)


def _arrow(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    if pa.types.is_fixed_size_list(type_):
        flat = pa.array(np.ascontiguousarray(values).reshape(-1), type_.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, type_.list_size)
    return pa.array(values, type_)
