"""Combine kizuna datasets (sim and real, say) into one, re-indexing episodes and tasks.

Videos are copied byte for byte (no re-encoding, so no extra loss) and checked against their
recorded sha256 on the way; data files are rewritten with the new episode, frame and task
indices; stats are recomputed for the numeric features and carried over for the images. Each
episode goes through ``DatasetWriter.commit``, so a merge killed half-way resumes like any write.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from kizuna.dataset import stats as stats_mod
from kizuna.dataset.files import read_json, sha256_file
from kizuna.dataset.format import (
    ACTION,
    DONE,
    INFO_PATH,
    INTERVENTION,
    REWARD,
    STATE,
    first_difference,
    stat_ndim,
    video_keys,
)
from kizuna.dataset.meta import DatasetError, is_kizuna_row
from kizuna.dataset.provenance import SHA256_DATA, SUCCESS, Provenance, sha256_video_column
from kizuna.dataset.reader import DatasetReader, column_array
from kizuna.dataset.writer import DatasetWriter, PendingEpisode

# Settings that must agree between merged datasets (features are compared key by key).
MUST_MATCH = ("fps", "robot_type")
FRAME_COLUMNS = (STATE, ACTION, REWARD, DONE, INTERVENTION)


def merge_datasets(sources: Sequence[str | Path], dest: str | Path) -> list[tuple[Path, range]]:
    """Append every episode of ``sources``, in order, to ``dest`` (created if absent).

    Returns, per source, the episode indices its episodes got in ``dest``. Refuses, naming both
    datasets and the field, when fps, robot type or features differ.
    """
    if not sources:
        raise DatasetError("merge needs at least one source dataset")
    dest = Path(dest)
    readers = [_open_source(Path(src), dest) for src in sources]
    first = readers[0]
    for other in readers[1:]:
        check_compatible(first.root, first.info, other.root, other.info)
    if (dest / INFO_PATH).is_file():
        check_compatible(dest, read_json(dest / INFO_PATH), first.root, first.info)
        writer = DatasetWriter.open(dest)
    else:
        writer = _new_writer(dest, first.info)
    placed = []
    with writer:
        for reader in readers:
            start = writer.num_episodes
            for episode_index in range(reader.num_episodes):
                writer.commit(_pending(reader, episode_index))
            placed.append((reader.root, range(start, writer.num_episodes)))
    return placed


def _open_source(root: Path, dest: Path) -> DatasetReader:
    if root.resolve() == dest.resolve():
        raise DatasetError(f"{root}: cannot merge a dataset into itself; choose another --out")
    reader = DatasetReader(root)
    if not all(is_kizuna_row(row) for row in reader.rows):
        raise DatasetError(
            f"{root}: episodes lack kizuna's provenance columns; merge reads kizuna datasets "
            "(one episode per file, with provenance)"
        )
    return reader


def check_compatible(
    a: Path, info_a: Mapping[str, Any], b: Path, info_b: Mapping[str, Any]
) -> None:
    """Raise ``DatasetError`` naming both datasets and the first field that differs."""
    for name in MUST_MATCH:
        found = first_difference(info_a.get(name), info_b.get(name), name)
        if found:
            _refuse(a, b, *found)
    features_a, features_b = info_a["features"], info_b["features"]
    if sorted(features_a) != sorted(features_b):
        _refuse(a, b, "features (keys)", sorted(features_a), sorted(features_b))
    for key in features_a:
        for prop in ("dtype", "shape", "names"):
            name = f"features['{key}'].{prop}"
            found = first_difference(features_a[key].get(prop), features_b[key].get(prop), name)
            if found:
                _refuse(a, b, *found)


def _refuse(a: Path, b: Path, field: str, value_a: Any, value_b: Any) -> None:
    raise DatasetError(
        f"cannot merge {a} and {b}: field '{field}' differs ({a}: {value_a!r}, {b}: {value_b!r})"
    )


def _new_writer(dest: Path, info: Mapping[str, Any]) -> DatasetWriter:
    features = info["features"]
    return DatasetWriter(
        dest,
        fps=info["fps"],
        robot_id=info["robot_type"],
        cameras={key: tuple(features[key]["shape"][:2]) for key in video_keys(features)},
        state_names=features[STATE]["names"],
        action_names=features[ACTION]["names"],
        chunks_size=info["chunks_size"],
    )


def _pending(reader: DatasetReader, episode_index: int) -> PendingEpisode:
    """One source episode, re-packaged for the destination writer."""
    row = reader.row(episode_index)
    _verify(reader, reader.data_file(episode_index), row[SHA256_DATA])
    for key in reader.video_keys:
        _verify(reader, reader.video_file(episode_index, key), row[sha256_video_column(key)])
    table = reader.table(episode_index)
    stored = stats_mod.from_row(row, reader.features)
    videos, expected = {}, {}
    for key in reader.video_keys:
        videos[key] = partial(shutil.copyfile, reader.video_file(episode_index, key))
        expected[key] = row[sha256_video_column(key)]
    return PendingEpisode(
        instruction=row["tasks"][0],
        provenance=Provenance.from_columns(row),
        success=bool(row[SUCCESS]),
        columns={name: column_array(table, name) for name in FRAME_COLUMNS},
        image_stats={k: v for k, v in stored.items() if stat_ndim(reader.features[k]) == 3},
        videos=videos,
        expected_sha256=expected,
    )


def _verify(reader: DatasetReader, path: Path, recorded: str) -> None:
    """Refuse to carry a corrupted source file into the merged dataset."""
    if not path.is_file() or sha256_file(path) != recorded:
        raise DatasetError(
            f"{path}: missing or its sha256 differs from the recorded one; run "
            f"`kizuna dataset check {reader.root}` before merging"
        )
