"""check_dataset finds each kind of damage and names the damaged file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kizuna.dataset import check_dataset
from kizuna.dataset.files import sha256_file
from kizuna.dataset.synthetic import smooth_images, write_synthetic
from kizuna.video import write_mp4

DATA_1 = "data/chunk-000/file-001.parquet"
META_1 = "meta/episodes/chunk-000/file-001.parquet"
FRONT_1 = "videos/observation.images.front/chunk-000/file-001.mp4"
WRIST_2 = "videos/observation.images.wrist/chunk-000/file-002.mp4"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("check") / "ds"
    write_synthetic(root, [6, 8, 5])
    return root


@pytest.fixture
def dataset(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    return root


def test_a_sound_dataset_passes(pristine: Path) -> None:
    report = check_dataset(pristine, decode_images=True)
    assert report.ok and not report.problems, report.lines()
    assert (report.episodes, report.frames) == (3, 19)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_length(path: Path) -> None:
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["length"] += 1
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def _stray_copy(path: Path) -> None:
    shutil.copy(path, path.with_name("file-007.parquet"))


def _edit_stats(path: Path) -> None:
    stats = json.loads(path.read_text())
    stats["action"]["mean"][0] += 0.5
    path.write_text(json.dumps(stats))


@pytest.mark.parametrize(
    ("damage", "victim", "named", "says"),
    [
        (_truncate, DATA_1, DATA_1, "sha256 differs"),
        (_truncate, DATA_1, DATA_1, "unreadable parquet"),
        (_flip_bytes, FRONT_1, FRONT_1, "sha256 differs"),
        (Path.unlink, WRIST_2, WRIST_2, "video for 'observation.images.wrist' is missing"),
        (Path.unlink, DATA_1, DATA_1, "data file is missing"),
        (_edit_length, META_1, META_1, f"length is 9 but {DATA_1} has 8 rows"),
        (_edit_length, META_1, "meta/info.json", "total_frames is 19, the episode rows say 20"),
        (_stray_copy, DATA_1, "data/chunk-000/file-007.parquet", "no episode references"),
        (_edit_stats, "meta/stats.json", "meta/stats.json", "'action' mean"),
    ],
)
def test_damage_is_reported_by_file_name(
    dataset: Path, damage: Callable[[Path], None], victim: str, named: str, says: str
) -> None:
    damage(dataset / victim)
    report = check_dataset(dataset)
    assert not report.ok
    hits = [p for p in report.errors if p.path == named and says in p.message]
    assert hits, "\n".join(report.lines())
    assert any(str(dataset / named) in line for line in report.lines())


def test_a_recorded_frame_count_must_match_the_video(dataset: Path) -> None:
    """A video with the wrong number of frames (but a matching hash) is caught by counting."""
    video = dataset / FRONT_1
    write_mp4(video, list(smooth_images(7, 32, 48)), fps=20)
    table = pq.read_table(dataset / META_1)
    rows = table.to_pylist()
    rows[0]["kizuna/sha256/videos/observation.images.front"] = sha256_file(video)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), dataset / META_1)
    report = check_dataset(dataset)
    assert [p.message for p in report.errors] == [
        "episode 1: video has 7 frames, the episode 8 rows"
    ]
