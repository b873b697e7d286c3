"""The checks of one episode: its data file, its videos, its stats (see ``check.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kizuna.dataset import stats as stats_mod
from kizuna.dataset.files import sha256_file
from kizuna.dataset.format import data_schema, stat_ndim, video_keys
from kizuna.dataset.provenance import SHA256_DATA, sha256_video_column
from kizuna.video import count_frames, read_mp4

if TYPE_CHECKING:
    from kizuna.dataset.check import CheckReport

# Decoded images differ from the encoded ones by the codec's loss: stats agree this closely.
IMAGE_STATS_ATOL = 0.03


class EpisodeCheck:
    """The checks of one episode row: its data file, its videos, its stats."""

    def __init__(
        self,
        report: CheckReport,
        info: dict[str, Any],
        tasks: list[str],
        meta_file: Path,
        row: dict[str, Any],
        expected_from: int,
        decode_images: bool,
    ) -> None:
        self.report, self.info, self.tasks, self.row = report, info, tasks, row
        self.meta_file, self.expected_from, self.decode_images = (
            meta_file,
            expected_from,
            decode_images,
        )
        self.index = row.get("episode_index")
        self.features: dict[str, dict[str, Any]] = info["features"]

    def run(self) -> None:
        try:
            self._run()
        except KeyError as exc:  # a row without one of LeRobot's columns
            self.problem(self.meta_file, f"episode row lacks the column {exc}")

    def _run(self) -> None:
        self._check_ranges()
        table = self._check_data()
        if table is not None:
            self._check_columns(table)
            self._check_stats(table)
        for key in video_keys(self.features):
            self._check_video(key)

    def problem(self, path: Path | str, message: str) -> None:
        self.report.add(path, f"episode {self.index}: {message}")

    def _check_ranges(self) -> None:
        start, stop, length = (
            self.row.get(k) for k in ("dataset_from_index", "dataset_to_index", "length")
        )
        if start != self.expected_from or stop is None or stop - start != length:
            self.problem(
                self.meta_file,
                f"dataset_from_index..to_index is {start}..{stop} for length {length}; "
                f"expected {self.expected_from}..{self.expected_from + (length or 0)}",
            )

    def _data_file(self) -> Path:
        return self.report.root / self.info["data_path"].format(
            chunk_index=self.row["data/chunk_index"], file_index=self.row["data/file_index"]
        )

    def _check_data(self) -> pa.Table | None:
        path = self._data_file()
        if not path.is_file():
            self.problem(path, "data file is missing")
            return None
        self._check_hash(path, self.row.get(SHA256_DATA))
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001
            self.problem(path, f"unreadable parquet: {exc}")
            return None
        expected = data_schema(self.features)
        if not table.schema.remove_metadata().equals(expected):
            self.problem(
                path,
                f"schema differs from info.json features: {_schema_diff(table.schema, expected)}",
            )
            return None
        if not pc.all(pc.equal(table["episode_index"], self.index)).as_py():
            table = table.filter(pc.equal(table["episode_index"], self.index))
        if table.num_rows != self.row.get("length"):
            rel = path.relative_to(self.report.root).as_posix()
            self.problem(
                self.meta_file,
                f"length is {self.row.get('length')} but {rel} has {table.num_rows} rows",
            )
        return table

    def _check_hash(self, path: Path, recorded: str | None) -> None:
        if recorded is not None and sha256_file(path) != recorded:
            self.problem(
                path,
                "sha256 differs from the one recorded when it was written "
                "(corrupted, truncated or edited)",
            )

    def _check_columns(self, table: pa.Table) -> None:
        path, n = self._data_file(), table.num_rows
        start = self.row.get("dataset_from_index") or 0
        expectations = {
            "frame_index": np.arange(n),
            "index": start + np.arange(n),
        }
        for name, expected in expectations.items():
            if not np.array_equal(table[name].to_numpy(), expected):
                self.problem(
                    path, f"'{name}' is not continuous ({expected[:1].tolist()} onwards expected)"
                )
        timestamps = table["timestamp"].to_numpy().astype(np.float64)
        if not np.allclose(timestamps, np.arange(n) / self.info["fps"], atol=1e-4):
            self.problem(path, f"timestamps are not frame_index / fps ({self.info['fps']})")
        task_index = set(table["task_index"].to_pylist())
        tasks = [self.tasks[i] for i in task_index if 0 <= i < len(self.tasks)]
        if len(tasks) != len(task_index) or set(tasks) != set(self.row.get("tasks") or []):
            self.problem(
                path,
                f"task_index {sorted(task_index)} does not match tasks {self.row.get('tasks')}",
            )

    def _check_stats(self, table: pa.Table) -> None:
        try:
            stored = stats_mod.from_row(self.row, self.features)
        except ValueError as exc:
            self.problem(self.meta_file, f"bad stats: {exc}")
            return
        numeric = {k: v for k, v in stored.items() if stat_ndim(self.features[k]) == 1}
        for message in stats_mod.compare(stats_mod.table_stats(table, self.features), numeric):
            self.problem(self.meta_file, f"stats disagree with the data: {message}")

    def _check_video(self, key: str) -> None:
        path = self.report.root / self.info["video_path"].format(
            video_key=key,
            chunk_index=self.row[f"videos/{key}/chunk_index"],
            file_index=self.row[f"videos/{key}/file_index"],
        )
        if not path.is_file():
            self.problem(path, f"video for '{key}' is missing")
            return
        self._check_hash(path, self.row.get(sha256_video_column(key)))
        window = self.row[f"videos/{key}/from_timestamp"], self.row[f"videos/{key}/to_timestamp"]
        try:
            frames = count_frames(path, *window)
        except Exception as exc:  # noqa: BLE001 - PyAV raises many kinds for broken files
            self.problem(path, f"cannot decode video: {exc}")
            return
        if frames != self.row.get("length"):
            self.problem(
                path, f"video has {frames} frames, the episode {self.row.get('length')} rows"
            )
        elif self.decode_images:
            self._check_image_stats(key, path, window)

    def _check_image_stats(self, key: str, path: Path, window: tuple[float, float]) -> None:
        height, width = self.features[key]["shape"][:2]
        decoded = stats_mod.image_stats(read_mp4(path, *window)[:, :height, :width])
        stored = stats_mod.from_row(self.row, self.features).get(key)
        if stored is None:
            self.problem(self.meta_file, f"no stats for '{key}'")
            return
        for name in ("mean", "std"):
            if not np.allclose(decoded[name], stored[name], atol=IMAGE_STATS_ATOL):
                self.problem(
                    path,
                    f"'{key}' {name} {stored[name].ravel().round(3).tolist()} "
                    f"but the video decodes to {decoded[name].ravel().round(3).tolist()}",
                )


def _schema_diff(actual: pa.Schema, expected: pa.Schema) -> str:
    missing = [n for n in expected.names if n not in actual.names]
    extra = [n for n in actual.names if n not in expected.names]
    typed = [
        f"'{f.name}' is {actual.field(f.name).type}, expected {f.type}"
        for f in expected
        if f.name in actual.names and actual.field(f.name).type != f.type
    ]
    parts = ([f"missing {missing}"] if missing else []) + (
        [f"unexpected {extra}"] if extra else []
    )
    return "; ".join(parts + typed) or "column order differs"
