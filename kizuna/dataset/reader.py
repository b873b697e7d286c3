"""Read a LeRobot v3 dataset: episodes with decoded images, or frames for training.

The reader is driven by the episode rows, never by globbing data files, so the leftovers of an
interrupted write are invisible to it. It reads kizuna datasets (one episode per file) and
LeRobot's packed ones (many episodes per file, addressed by index ranges and video timestamps).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kizuna.dataset import stats as stats_mod
from kizuna.dataset.files import read_json, read_tasks
from kizuna.dataset.format import (
    ACTION,
    DONE,
    INFO_PATH,
    INTERVENTION,
    REWARD,
    STATE,
    STATS_PATH,
    video_keys,
)
from kizuna.dataset.meta import DatasetError, is_kizuna_row, read_episode_rows
from kizuna.dataset.provenance import SUCCESS, Provenance
from kizuna.video import read_mp4


@dataclass(frozen=True)
class Episode:
    """One episode, decoded. Arrays are frames-first; images are ``[T, H, W, 3]`` uint8."""

    index: int
    instruction: str
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    interventions: np.ndarray
    timestamps: np.ndarray
    images: dict[str, np.ndarray]
    # None for a dataset written without kizuna's provenance columns (plain LeRobot).
    provenance: Provenance | None
    success: bool | None

    def __len__(self) -> int:
        return len(self.states)


class DatasetReader:
    """A LeRobotDataset-like view of ``root``: ``len()`` frames, ``episode(i)``, ``frames()``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_file = self.root / INFO_PATH
        if not info_file.is_file():
            raise DatasetError(f"{info_file}: no such file; is {self.root} a LeRobot v3 dataset?")
        self.info: dict[str, Any] = read_json(info_file)
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.fps: int = self.info["fps"]
        self.tasks = read_tasks(self.root)
        self.rows = [row for _, row in read_episode_rows(self.root)]
        self.video_keys = video_keys(self.features)

    def __len__(self) -> int:
        """Frames, as ``len(LeRobotDataset)``."""
        return sum(int(row["length"]) for row in self.rows)

    @property
    def num_episodes(self) -> int:
        return len(self.rows)

    @property
    def stats(self) -> dict[str, stats_mod.Stats]:
        return stats_mod.from_json(read_json(self.root / STATS_PATH))

    def row(self, episode_index: int) -> dict[str, Any]:
        """The episode-metadata row (LeRobot's columns and kizuna's)."""
        if not 0 <= episode_index < len(self.rows):
            raise IndexError(f"episode {episode_index} out of range 0..{len(self.rows) - 1}")
        return self.rows[episode_index]

    def provenance(self, episode_index: int) -> Provenance | None:
        row = self.row(episode_index)
        return Provenance.from_columns(row) if is_kizuna_row(row) else None

    def data_file(self, episode_index: int) -> Path:
        row = self.row(episode_index)
        return self.root / self.info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )

    def video_file(self, episode_index: int, key: str) -> Path:
        row = self.row(episode_index)
        return self.root / self.info["video_path"].format(
            video_key=key,
            chunk_index=row[f"videos/{key}/chunk_index"],
            file_index=row[f"videos/{key}/file_index"],
        )

    def table(self, episode_index: int) -> pa.Table:
        """The episode's rows of its data file (the whole file, for kizuna's layout)."""
        table = pq.read_table(self.data_file(episode_index))
        if pc.all(pc.equal(table["episode_index"], episode_index)).as_py():
            return table
        return table.filter(pc.equal(table["episode_index"], episode_index))

    def images(self, episode_index: int, key: str) -> np.ndarray:
        """Decode one camera of one episode: ``[T, H, W, 3]`` uint8, cropped to its shape."""
        row = self.row(episode_index)
        frames = read_mp4(
            self.video_file(episode_index, key),
            start_s=row[f"videos/{key}/from_timestamp"],
            end_s=row[f"videos/{key}/to_timestamp"],
        )
        height, width = self.features[key]["shape"][:2]
        return frames[:, :height, :width]  # the encoder pads odd sizes by a pixel

    def episode(self, episode_index: int, decode_images: bool = True) -> Episode:
        row = self.row(episode_index)
        table = self.table(episode_index)
        images = {}
        if decode_images:
            images = {key: self.images(episode_index, key) for key in self.video_keys}
        return Episode(
            index=episode_index,
            instruction=row["tasks"][0],
            states=column_array(table, STATE),
            actions=column_array(table, ACTION),
            rewards=column_array(table, REWARD),
            dones=column_array(table, DONE),
            interventions=column_array(table, INTERVENTION),
            timestamps=column_array(table, "timestamp"),
            images=images,
            provenance=self.provenance(episode_index),
            success=bool(row[SUCCESS]) if is_kizuna_row(row) else None,
        )

    def frames(
        self, episodes: Iterable[int] | None = None, decode_images: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Yield one dict per frame, keyed like LeRobot's items (plus ``task``).

        Each episode's videos are decoded once, when the iteration reaches it.
        """
        for episode_index in range(self.num_episodes) if episodes is None else episodes:
            table = self.table(episode_index)
            columns = {name: column_array(table, name) for name in table.column_names}
            if decode_images:
                columns.update({key: self.images(episode_index, key) for key in self.video_keys})
            task = self.rows[episode_index]["tasks"][0]
            for i in range(table.num_rows):
                frame = {name: values[i] for name, values in columns.items()}
                frame["task"] = task
                yield frame


def column_array(table: pa.Table, name: str) -> np.ndarray:
    """A column as numpy: fixed-size lists become ``[T, n]`` arrays; absent ones are empty."""
    if name not in table.column_names:
        return np.zeros(0)
    column = table[name].combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
    if pa.types.is_list(column.type):
        return np.asarray(column.to_pylist())
    return column.to_numpy(zero_copy_only=False)
