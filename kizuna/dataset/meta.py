"""Dataset-level metadata derived from the episode rows: info.json, tasks and the summary.

The episode rows (``meta/episodes/*.parquet``) are the source of truth. ``info.json``,
``stats.json`` and ``tasks.parquet`` are caches of them, rebuilt by folding the rows through a
``Summary``; the writer folds one row at a time, a resumed writer or the checker fold them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from kizuna.dataset import stats as stats_mod
from kizuna.dataset.format import (
    CODEBASE_VERSION,
    DATA_FILES_SIZE_IN_MB,
    DATA_PATH,
    EPISODES_DIR,
    KIZUNA_FORMAT_VERSION,
    VIDEO_FILES_SIZE_IN_MB,
    VIDEO_PATH,
    video_keys,
)
from kizuna.dataset.provenance import (
    INTERVENTION_FRAMES,
    SUCCESS,
    Provenance,
    kizuna_columns,
)


class DatasetError(Exception):
    """A dataset cannot be written, read or merged; the message names the file or field."""


def episode_files(root: Path) -> list[Path]:
    """The episode-metadata files, in LeRobot's (sorted-name) order."""
    return sorted((root / EPISODES_DIR).glob("*/*.parquet"))


def read_episode_rows(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every episode row with the file it came from, sorted by episode_index.

    Raises ``DatasetError`` naming the file when one cannot be read.
    """
    rows = []
    for path in episode_files(root):
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
            raise DatasetError(f"{path}: cannot read episode metadata: {exc}") from None
        rows += [(path, row) for row in table.to_pylist()]
    return sorted(rows, key=lambda item: item[1].get("episode_index", -1))


def is_kizuna_row(row: Mapping[str, Any]) -> bool:
    return all(f.name in row for f in kizuna_columns([]))


@dataclass
class Summary:
    """Running totals over episode rows: what info.json and stats.json are made of."""

    features: dict[str, dict[str, Any]]
    episodes: int = 0
    frames: int = 0
    tasks: list[str] = field(default_factory=list)
    stats: dict[str, stats_mod.Stats] = field(default_factory=dict)
    counters: dict[str, Counter] = field(default_factory=dict)
    successes: int = 0
    intervention_frames: int = 0
    intervention_episodes: int = 0

    def add(self, row: Mapping[str, Any]) -> None:
        """Fold in one episode row (rows must come in episode_index order)."""
        self.episodes += 1
        self.frames += int(row["length"])
        for task in row["tasks"]:
            if task not in self.tasks:
                self.tasks.append(task)
        episode_stats = stats_mod.from_row(row, self.features)
        self.stats = (
            stats_mod.aggregate([self.stats, episode_stats]) if self.stats else episode_stats
        )
        self._count("instruction", row["tasks"][0])
        if is_kizuna_row(row):
            self._add_kizuna(row)

    def _add_kizuna(self, row: Mapping[str, Any]) -> None:
        provenance = Provenance.from_columns(row)
        for name in ("source", "backend", "task_name", "reality_profile", "robot_id"):
            self._count(name, getattr(provenance, name))
        for name in ("calibration_id", "policy_version"):
            self._count(name, getattr(provenance, name))
        self.successes += bool(row[SUCCESS])
        self.intervention_frames += int(row[INTERVENTION_FRAMES])
        self.intervention_episodes += int(row[INTERVENTION_FRAMES]) > 0

    def _count(self, name: str, value: Any) -> None:
        self.counters.setdefault(name, Counter())[value if value is not None else "none"] += 1

    def counts(self, name: str) -> dict[str, int]:
        return dict(self.counters.get(name, Counter()).most_common())

    def kizuna_info(self) -> dict[str, Any]:
        """The ``kizuna`` block of info.json: a provenance summary (LeRobot ignores it)."""
        return {
            "format_version": KIZUNA_FORMAT_VERSION,
            "episode_columns": [f.name for f in kizuna_columns(video_keys(self.features))],
            "sources": {"sim": 0, "real": 0, **self.counts("source")},
            "success": {
                "episodes": self.successes,
                "rate": round(self.successes / self.episodes, 4) if self.episodes else None,
            },
            "interventions": {
                "frames": self.intervention_frames,
                "episodes": self.intervention_episodes,
            },
            **{
                f"{name}s": self.counts(name)
                for name in ("backend", "task_name", "reality_profile", "robot_id")
            },
            "calibration_ids": self.counts("calibration_id"),
            "policy_versions": self.counts("policy_version"),
        }


def summarize(rows: Iterable[Mapping[str, Any]], features: dict[str, dict[str, Any]]) -> Summary:
    summary = Summary(features)
    for row in rows:
        summary.add(row)
    return summary


def build_info(
    summary: Summary, fps: int, robot_type: str, chunks_size: int, kizuna: bool = True
) -> dict[str, Any]:
    """info.json, LeRobot's keys in LeRobot's order, then kizuna's summary."""
    info: dict[str, Any] = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": summary.episodes,
        "total_frames": summary.frames,
        "total_tasks": len(summary.tasks),
        "chunks_size": chunks_size,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": fps,
        "splits": {"train": f"0:{summary.episodes}"} if summary.episodes else {},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if video_keys(summary.features) else None,
        "features": summary.features,
    }
    if kizuna:
        info["kizuna"] = summary.kizuna_info()
    return info
