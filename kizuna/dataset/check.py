"""Verify a dataset file by file, and say which file is wrong.

Checks the schema of every data file against info.json, row counts against the episode rows,
index continuity across episodes, video frame counts against rows, stored stats against stats
recomputed from the data, the sha256 of every data and video file against kizuna's manifest
(the ``kizuna/sha256/...`` episode columns), and files no episode references (LeRobot's loader
would read a stray data file as frames).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from kizuna.dataset import stats as stats_mod
from kizuna.dataset.check_episode import EpisodeCheck
from kizuna.dataset.files import read_json, read_tasks, temp_files
from kizuna.dataset.format import (
    CODEBASE_VERSION,
    DATA_DIR,
    EPISODES_DIR,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_DIR,
    video_keys,
)
from kizuna.dataset.meta import episode_files, is_kizuna_row, summarize

REQUIRED_INFO = (
    "codebase_version",
    "fps",
    "features",
    "total_episodes",
    "total_frames",
    "total_tasks",
    "chunks_size",
    "data_path",
    "video_path",
)


@dataclass(frozen=True)
class Problem:
    """One finding: the file (relative to the dataset root) and what is wrong with it."""

    path: str
    message: str
    severity: Literal["error", "warning"] = "error"


@dataclass
class CheckReport:
    root: Path
    episodes: int = 0
    frames: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def add(
        self, path: Path | str, message: str, severity: Literal["error", "warning"] = "error"
    ) -> None:
        path = Path(path)  # under the root, or already relative to it
        relative = path.relative_to(self.root) if path.is_relative_to(self.root) else path
        self.problems.append(Problem(relative.as_posix(), message, severity))

    def lines(self) -> list[str]:
        """One line per problem, naming the file as the user would type it."""
        return [f"{p.severity}: {self.root / p.path}: {p.message}" for p in self.problems]


def check_dataset(root: str | Path, decode_images: bool = False) -> CheckReport:
    """Check ``root``; ``decode_images`` also recomputes image stats from the decoded videos."""
    report = CheckReport(Path(root))
    info = _check_info(report)
    if info is None:
        return report
    tasks = _check_tasks(report)
    rows = _read_rows(report)
    _check_indices(report, [row for _, row in rows])
    expected_from = 0
    for meta_file, row in rows:
        EpisodeCheck(report, info, tasks, meta_file, row, expected_from, decode_images).run()
        expected_from += int(row.get("length") or 0)
    report.episodes, report.frames = len(rows), expected_from
    _check_totals(report, info, tasks, [row for _, row in rows])
    _check_strays(report, info, [row for _, row in rows])
    return report


def _check_info(report: CheckReport) -> dict[str, Any] | None:
    path = report.root / INFO_PATH
    try:
        info = read_json(path)
    except (OSError, ValueError) as exc:
        report.add(path, f"cannot read: {exc}")
        return None
    missing = [key for key in REQUIRED_INFO if key not in info]
    if missing:
        report.add(path, f"missing keys {missing}")
        return None
    if info["codebase_version"] != CODEBASE_VERSION:
        report.add(
            path, f"codebase_version is {info['codebase_version']!r}, not {CODEBASE_VERSION!r}"
        )
    return info


def _check_tasks(report: CheckReport) -> list[str]:
    path = report.root / TASKS_PATH
    try:
        schema = pq.read_schema(path)
        if (
            schema.field("task_index").type != pa.int64()
            or schema.field("task").type != pa.string()
        ):
            report.add(path, f"schema is {schema.to_string(show_schema_metadata=False)!r}")
        return read_tasks(report.root)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
        report.add(path, f"cannot read tasks: {exc}")
        return []


def _read_rows(report: CheckReport) -> list[tuple[Path, dict[str, Any]]]:
    rows = []
    for path in episode_files(report.root):
        try:
            rows += [(path, row) for row in pq.read_table(path).to_pylist()]
        except Exception as exc:  # noqa: BLE001
            report.add(path, f"cannot read episode metadata: {exc}")
    return sorted(rows, key=lambda item: item[1].get("episode_index", -1))


def _check_indices(report: CheckReport, rows: list[dict[str, Any]]) -> None:
    indices = [row.get("episode_index") for row in rows]
    if indices != list(range(len(rows))):
        missing = sorted(set(range(len(rows) + 1)) - set(indices))[:5]
        report.add(EPISODES_DIR, f"episode indices are not 0..{len(rows) - 1} (missing {missing})")


def _check_totals(
    report: CheckReport, info: Mapping[str, Any], tasks: list[str], rows: list[dict]
) -> None:
    info_file = report.root / INFO_PATH
    try:
        summary = summarize(rows, info["features"])
    except Exception as exc:  # noqa: BLE001 - malformed rows are reported per episode already
        report.add(EPISODES_DIR, f"cannot summarize episode rows: {exc}")
        return
    expected = {
        "total_episodes": summary.episodes,
        "total_frames": summary.frames,
        "total_tasks": len(tasks),
    }
    for key, value in expected.items():
        if info.get(key) != value:
            report.add(info_file, f"{key} is {info.get(key)}, the episode rows say {value}")
    missing_tasks = [t for t in summary.tasks if t not in tasks]
    if missing_tasks:
        report.add(TASKS_PATH, f"tasks {missing_tasks[:3]} used by episodes are missing")
    try:
        stored = stats_mod.from_json(read_json(report.root / STATS_PATH))
    except (OSError, ValueError) as exc:
        report.add(STATS_PATH, f"cannot read: {exc}")
        return
    for message in stats_mod.compare(summary.stats, stored, rtol=1e-4, atol=1e-5):
        report.add(STATS_PATH, f"does not aggregate the episode stats: {message}")


def _check_strays(report: CheckReport, info: Mapping[str, Any], rows: list[dict]) -> None:
    """Files no episode references: LeRobot would load a stray data file as frames."""
    referenced: set[Path] = set()
    for row in rows:
        if "data/chunk_index" in row:
            referenced.add(
                report.root
                / info["data_path"].format(
                    chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
                )
            )
        for key in video_keys(info["features"]):
            if f"videos/{key}/chunk_index" in row:
                referenced.add(
                    report.root
                    / info["video_path"].format(
                        video_key=key,
                        chunk_index=row[f"videos/{key}/chunk_index"],
                        file_index=row[f"videos/{key}/file_index"],
                    )
                )
    present = list((report.root / DATA_DIR).glob("*/*.parquet"))
    present += list((report.root / VIDEO_DIR).glob("*/*/*.mp4"))
    for path in sorted(set(present) - referenced):
        report.add(
            path,
            "no episode references this file (left by an interrupted write?); "
            "`kizuna dataset check --repair` removes it",
        )
    for path in sorted(temp_files(report.root)):
        report.add(path, "temporary file of an interrupted write", "warning")
    if rows and not all(is_kizuna_row(row) for row in rows):
        report.add(
            EPISODES_DIR, "no kizuna provenance columns: content hashes not verified", "warning"
        )
