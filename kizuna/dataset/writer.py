"""Write episodes into a LeRobot v3 dataset, one episode per file, safe against SIGKILL.

File rolling: each episode gets its own data parquet, its own mp4 per camera and its own
episode-metadata parquet, at ``chunk-{e // chunks_size}/file-{e % chunks_size}``. v3 allows
this (a chunk holds up to ``chunks_size`` files); packing several episodes per file would mean
rewriting or re-muxing a growing file for every new episode, and a file that is being
rewritten is exactly what a kill must never leave behind.

Atomicity: an episode's videos and data file are written under temporary names, then moved into
place with ``os.replace``; its metadata row goes last. An episode exists once its metadata row
does, and by then all of its files do. info.json, stats.json and tasks.parquet are caches
rewritten (atomically) after every episode; opening a dataset rebuilds them from the rows,
deletes temporary files and files of episodes that never got their row, and continues the
numbering.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kizuna.dataset import stats as stats_mod
from kizuna.dataset.episode import PendingEpisode, data_table, pending_episode
from kizuna.dataset.files import (
    fsync_path,
    read_json,
    sha256_file,
    temp_files,
    temp_path,
    write_json_atomic,
    write_parquet,
    write_tasks,
)
from kizuna.dataset.format import (
    ACTION,
    DATA_DIR,
    DEFAULT_CHUNKS_SIZE,
    EPISODES_DIR,
    INFO_PATH,
    INTERVENTION,
    STATE,
    STATS_PATH,
    VIDEO_DIR,
    build_features,
    camera_key,
    chunk_and_file,
    data_path,
    episodes_path,
    episodes_schema,
    first_difference,
    parse_chunk_file,
    video_keys,
    video_path,
)
from kizuna.dataset.meta import DatasetError, Summary, build_info, is_kizuna_row, read_episode_rows
from kizuna.dataset.provenance import (
    INTERVENTION_FRAMES,
    SHA256_DATA,
    SUCCESS,
    Provenance,
    sha256_video_column,
)
from kizuna.video import write_mp4

LOCK_PATH = "meta/.writer.lock"


class DatasetWriter:
    """Create or resume a kizuna dataset (LeRobot v3 layout) at ``root``.

    ``cameras`` maps a camera name (``front``) to its image size ``(height, width)``, both even
    (H.264's yuv420p needs even sizes). ``fps`` is the control rate, an integer as in LeRobot.
    An existing dataset at ``root`` must have the same settings; ``DatasetWriter.open(root)``
    takes them from its info.json. ``sync=True`` also fsyncs every file (power-loss safety).
    """

    def __init__(
        self,
        root: str | Path,
        fps: int,
        robot_id: str,
        cameras: Mapping[str, tuple[int, int]],
        state_names: Sequence[str],
        action_names: Sequence[str],
        *,
        chunks_size: int = DEFAULT_CHUNKS_SIZE,
        crf: int = 23,
        gop: int | None = None,
        sync: bool = False,
    ) -> None:
        _check_settings(fps, cameras, state_names, action_names, chunks_size)
        self.root = Path(root)
        self.fps = int(fps)
        self.robot_id = robot_id
        self.cameras = {camera_key(name): tuple(size) for name, size in cameras.items()}
        self.features = build_features(self.fps, cameras, state_names, action_names)
        self.chunks_size = chunks_size
        self._encode = partial(write_mp4, fps=self.fps, crf=crf, gop=gop)
        self._sync = sync
        self._lock: int | None = _lock(self.root)
        self.summary = Summary(self.features)
        try:
            self._resume()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, root: str | Path, **options: Any) -> DatasetWriter:
        """Resume an existing kizuna dataset with the settings stored in its info.json."""
        info_file = Path(root) / INFO_PATH
        if not info_file.is_file():
            raise DatasetError(f"{info_file}: no such file; is {root} a kizuna dataset?")
        info = read_json(info_file)
        features = info["features"]
        cameras = {key: tuple(features[key]["shape"][:2]) for key in video_keys(features)}
        return cls(
            root,
            fps=info["fps"],
            robot_id=info["robot_type"],
            cameras=cameras,
            state_names=features[STATE]["names"],
            action_names=features[ACTION]["names"],
            chunks_size=info["chunks_size"],
            **options,
        )

    # ---- resume ------------------------------------------------------------------------

    def _resume(self) -> None:
        info_file = self.root / INFO_PATH
        if info_file.is_file():
            self._check_same_settings(read_json(info_file))
        elif any((self.root / d).exists() for d in (EPISODES_DIR, DATA_DIR, VIDEO_DIR)):
            raise DatasetError(
                f"{info_file}: missing, but {self.root} holds dataset files; "
                "refusing to write into it (restore meta/info.json or use a new folder)"
            )
        rows = [row for _, row in read_episode_rows(self.root)]
        for expected, row in enumerate(rows):
            if row.get("episode_index") != expected:
                raise DatasetError(
                    f"{self.root / EPISODES_DIR}: episode {expected} has no metadata row but "
                    f"later ones do; run `kizuna dataset check {self.root}`"
                )
            if not is_kizuna_row(row):
                raise DatasetError(
                    f"{self.root}: episode {expected} has no kizuna provenance columns; "
                    "DatasetWriter appends only to datasets kizuna wrote"
                )
            self.summary.add(row)
        self._remove_leftovers()
        self._write_metadata()

    def _check_same_settings(self, info: Mapping[str, Any]) -> None:
        if "kizuna" not in info:
            raise DatasetError(
                f"{self.root / INFO_PATH}: not written by kizuna (no 'kizuna' block); "
                "DatasetWriter appends only to kizuna datasets"
            )
        wanted = {
            "fps": self.fps,
            "robot_type": self.robot_id,
            "chunks_size": self.chunks_size,
            "features": self.features,
        }
        for name, value in wanted.items():
            found = first_difference(info.get(name), value, name)
            if found:
                field, stored, asked = found
                raise DatasetError(
                    f"{self.root / INFO_PATH}: field '{field}' is {stored!r}, but this writer "
                    f"was asked for {asked!r}; use DatasetWriter.open() to keep the dataset's "
                    "settings, or write to a new folder"
                )

    def _remove_leftovers(self) -> None:
        """Delete temp files and the files of episodes that never got a metadata row."""
        for tmp in list(temp_files(self.root)):
            tmp.unlink(missing_ok=True)
        folders = [self.root / DATA_DIR, self.root / EPISODES_DIR]
        folders += [self.root / VIDEO_DIR / key for key in video_keys(self.features)]
        for folder in folders:
            for path in list(folder.glob("chunk-*/file-*")):
                where = parse_chunk_file(path)
                if where and where[0] * self.chunks_size + where[1] >= self.summary.episodes:
                    path.unlink()

    # ---- writing -----------------------------------------------------------------------

    @property
    def num_episodes(self) -> int:
        return self.summary.episodes

    def add_episode(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        images: Mapping[str, np.ndarray],
        instruction: str,
        provenance: Provenance,
        success: bool,
        rewards: np.ndarray | None = None,
        interventions: np.ndarray | None = None,
        dones: np.ndarray | None = None,
    ) -> int:
        """Write one episode; returns its episode_index once all of its files are in place.

        ``states`` and ``actions`` are ``[T, n]``; ``images`` maps each camera to ``[T, H, W, 3]``
        uint8. ``rewards`` default to 0, ``interventions`` (operator took over) to False,
        ``dones`` to True on the last frame only.
        """
        episode = pending_episode(
            self.features,
            self._encode,
            states,
            actions,
            images,
            instruction,
            provenance,
            success,
            rewards,
            interventions,
            dones,
        )
        return self.commit(episode)

    def commit(self, episode: PendingEpisode) -> int:
        """Write an episode's files, the metadata row last, and refresh info/stats/tasks."""
        index = self.summary.episodes
        chunk, file = chunk_and_file(index, self.chunks_size)
        tasks = self.summary.tasks
        task_index = (
            tasks.index(episode.instruction) if episode.instruction in tasks else len(tasks)
        )
        table = data_table(
            self.features, episode, self.fps, index, self.summary.frames, task_index
        )
        staged: list[tuple[Path, Path]] = []  # (temporary, final): videos, data, then the row
        try:
            hashes = {
                key: self._stage_video(key, chunk, file, episode, staged) for key in episode.videos
            }
            data_file = self.root / data_path(chunk, file)
            data_tmp = self._stage(data_file, partial(write_parquet, table=table), staged)
            row = self._meta_row(episode, index, table, hashes, sha256_file(data_tmp))
            schema = episodes_schema(self.features)
            write_row = partial(_write_row, row=row, schema=schema)
            self._stage(self.root / episodes_path(chunk, file), write_row, staged)
            self._move_into_place(staged)
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
        self.summary.add(row)
        self._write_metadata()
        return index

    def _move_into_place(self, staged: list[tuple[Path, Path]]) -> None:
        """os.replace every staged file, the metadata row last: then the episode exists.

        With ``sync``, file contents and folder entries reach the disk before the row does,
        so the order also holds across a power cut.
        """
        files, (row_tmp, row_file) = staged[:-1], staged[-1]
        if self._sync:
            for tmp, _ in staged:
                fsync_path(tmp)
        for tmp, final in files:
            os.replace(tmp, final)
        if self._sync:
            for folder in {final.parent for _, final in files}:
                fsync_path(folder)
        os.replace(row_tmp, row_file)
        if self._sync:
            fsync_path(row_file.parent)

    def _stage(
        self, final: Path, write: Callable[[Path], Any], staged: list[tuple[Path, Path]]
    ) -> Path:
        """Write ``final``'s content to its temporary name (listed first, so it is cleaned up
        even if writing fails half-way)."""
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(final)
        staged.append((tmp, final))
        write(tmp)
        return tmp

    def _stage_video(
        self,
        key: str,
        chunk: int,
        file: int,
        episode: PendingEpisode,
        staged: list[tuple[Path, Path]],
    ) -> str:
        final = self.root / video_path(key, chunk, file)
        digest = sha256_file(self._stage(final, episode.videos[key], staged))
        if key in episode.expected_sha256 and digest != episode.expected_sha256[key]:
            raise DatasetError(f"video for '{key}' does not match its recorded sha256")
        return digest

    def _meta_row(
        self,
        episode: PendingEpisode,
        index: int,
        table: pa.Table,
        video_hashes: Mapping[str, str],
        data_hash: str,
    ) -> dict[str, Any]:
        chunk, file = chunk_and_file(index, self.chunks_size)
        length = episode.length
        row: dict[str, Any] = {
            "episode_index": index,
            "tasks": [episode.instruction],
            "length": length,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": self.summary.frames,
            "dataset_to_index": self.summary.frames + length,
        }
        for key in video_keys(self.features):
            row[f"videos/{key}/chunk_index"] = chunk
            row[f"videos/{key}/file_index"] = file
            row[f"videos/{key}/from_timestamp"] = 0.0
            row[f"videos/{key}/to_timestamp"] = length / self.fps
            row[sha256_video_column(key)] = video_hashes[key]
        row["meta/episodes/chunk_index"] = chunk
        row["meta/episodes/file_index"] = file
        episode_stats = {**stats_mod.table_stats(table, self.features), **episode.image_stats}
        row.update(stats_mod.to_row(episode_stats))
        row.update(episode.provenance.to_columns())
        row[SUCCESS] = episode.success
        row[INTERVENTION_FRAMES] = int(episode.columns[INTERVENTION].sum())
        row[SHA256_DATA] = data_hash
        return row

    def _write_metadata(self) -> None:
        """Rewrite tasks.parquet, stats.json, then info.json (each atomically)."""
        write_tasks(self.root, self.summary.tasks, self._sync)
        write_json_atomic(
            self.root / STATS_PATH, stats_mod.to_json(self.summary.stats), self._sync
        )
        info = build_info(self.summary, self.fps, self.robot_id, self.chunks_size)
        write_json_atomic(self.root / INFO_PATH, info, self._sync)

    # ---- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Release the dataset for other writers (a killed process releases it too)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_row(path: Path, row: dict[str, Any], schema: pa.Schema) -> None:
    write_parquet(path, pa.Table.from_pylist([row], schema=schema))


def _check_settings(
    fps: int,
    cameras: Mapping[str, tuple[int, int]],
    state_names: Sequence[str],
    action_names: Sequence[str],
    chunks_size: int,
) -> None:
    if int(fps) != fps or fps <= 0:
        raise DatasetError(f"fps must be a positive integer (LeRobot stores it as one), got {fps}")
    for name, size in cameras.items():
        if len(size) != 2 or any(int(s) <= 0 or int(s) % 2 for s in size):
            raise DatasetError(
                f"camera '{name}': image size {tuple(size)} must be (height, width), both even "
                "(H.264 yuv420p)"
            )
    for label, names in (("state_names", state_names), ("action_names", action_names)):
        if not names or len(set(names)) != len(names):
            raise DatasetError(f"{label} must be non-empty and unique, got {list(names)}")
    if chunks_size < 1:
        raise DatasetError(f"chunks_size must be >= 1, got {chunks_size}")


def _lock(root: Path) -> int:
    """An exclusive lock on the dataset: two writers would hand out the same episode index."""
    path = root / LOCK_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatasetError(f"{root}: another DatasetWriter has this dataset open") from None
    return fd
