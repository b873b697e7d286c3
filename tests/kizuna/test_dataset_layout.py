"""The on-disk layout, field by field, against LeRobotDataset v3.0.

The expected names and templates are spelled out here as literals, copied from LeRobot's
``lerobot/datasets/utils.py`` (v3.0), not imported from kizuna: a typo in kizuna's constants
must fail these tests. The last test replays what LeRobot's loader does, with pyarrow and PyAV.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from kizuna.dataset.synthetic import CAMERAS, FPS, write_synthetic

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_KEYS = {
    "codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks",
    "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "fps", "splits",
    "data_path", "video_path", "features",
}  # fmt: skip
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
VIDEO_KEYS = ["observation.images.front", "observation.images.wrist"]
LENGTHS = [9, 4, 13]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("layout") / "ds"
    # Sim episodes alternate a reality profile and none: nullable columns in some files only.
    written = write_synthetic(root, LENGTHS[:2], "sim")
    written += write_synthetic(root, LENGTHS[2:], "real", first_seed=2)
    return root, written


def _info(root: Path) -> dict:
    return json.loads((root / "meta/info.json").read_text())


def test_info_json_has_lerobot_v3_keys_and_values(dataset: tuple[Path, list[dict]]) -> None:
    root, _ = dataset
    info = _info(root)
    assert INFO_KEYS <= set(info)
    assert set(info) - INFO_KEYS == {"kizuna"}  # kizuna's one extension (LeRobot ignores it)
    assert info["codebase_version"] == "v3.0"
    assert info["data_path"] == DATA_PATH and info["video_path"] == VIDEO_PATH
    assert info["fps"] == FPS and isinstance(info["fps"], int)
    assert info["robot_type"] == "kizuna-panda-v1"
    assert info["chunks_size"] == 1000
    assert info["total_episodes"] == 3 and info["total_frames"] == sum(LENGTHS)
    assert info["total_tasks"] == 2
    assert info["splits"] == {"train": "0:3"}
    kizuna = info["kizuna"]
    assert kizuna["sources"] == {"sim": 2, "real": 1}
    assert kizuna["success"]["episodes"] == 2  # seeds 0, 2 succeed; seed 1 fails


def test_info_features(dataset: tuple[Path, list[dict]]) -> None:
    features = _info(dataset[0])["features"]
    for key, expected in DEFAULT_FEATURES.items():
        assert features[key] == expected
    for key in ("observation.state", "action"):
        assert features[key]["dtype"] == "float32" and features[key]["shape"] == [8]
        assert len(features[key]["names"]) == 8
    assert features["next.reward"] == {"dtype": "float32", "shape": [1], "names": None}
    assert features["next.done"] == {"dtype": "bool", "shape": [1], "names": None}
    assert features["intervention"] == {"dtype": "bool", "shape": [1], "names": None}
    for key, (camera, (height, width)) in zip(VIDEO_KEYS, CAMERAS.items(), strict=True):
        assert key.endswith(camera)
        ft = features[key]
        assert ft["dtype"] == "video" and ft["shape"] == [height, width, 3]
        assert ft["names"] == ["height", "width", "channels"]
        assert ft["info"]["video.height"] == height and ft["info"]["video.width"] == width
        assert ft["info"]["video.codec"] == "h264" and ft["info"]["video.pix_fmt"] == "yuv420p"
        assert ft["info"]["video.fps"] == FPS and ft["info"]["has_audio"] is False


def test_files_sit_at_the_templated_paths(dataset: tuple[Path, list[dict]]) -> None:
    root, _ = dataset
    expected = {"meta/info.json", "meta/stats.json", "meta/tasks.parquet"}
    for e in range(3):
        where = {"chunk_index": 0, "file_index": e}
        expected |= {DATA_PATH.format(**where), EPISODES_PATH.format(**where)}
        expected |= {VIDEO_PATH.format(video_key=key, **where) for key in VIDEO_KEYS}
    present = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")  # the writer's lock file
    }
    assert present == expected


def test_data_files_columns_and_types(dataset: tuple[Path, list[dict]]) -> None:
    root, written = dataset
    info = _info(root)
    table = pq.read_table(root / DATA_PATH.format(chunk_index=0, file_index=1))
    non_video = [k for k, ft in info["features"].items() if ft["dtype"] != "video"]
    assert table.column_names == non_video
    assert table.schema.field("observation.state").type == pa.list_(pa.float32(), 8)
    assert table.schema.field("next.done").type == pa.bool_()
    assert table.schema.field("timestamp").type == pa.float32()
    assert table["index"].to_pylist() == list(range(LENGTHS[0], LENGTHS[0] + LENGTHS[1]))
    assert table["frame_index"].to_pylist() == list(range(LENGTHS[1]))
    assert set(table["episode_index"].to_pylist()) == {1}
    np.testing.assert_allclose(table["timestamp"].to_numpy(), np.arange(LENGTHS[1]) / FPS)
    assert table["intervention"].to_pylist() == written[1]["interventions"].tolist()


def test_episode_metadata_columns(dataset: tuple[Path, list[dict]]) -> None:
    root, _ = dataset
    features = _info(root)["features"]
    table = pq.read_table(root / EPISODES_PATH.format(chunk_index=0, file_index=2))
    row = table.to_pylist()[0]
    lerobot = {
        "episode_index": 2, "tasks": ["put the red cube in the bin"], "length": LENGTHS[2],
        "data/chunk_index": 0, "data/file_index": 2,
        "dataset_from_index": sum(LENGTHS[:2]), "dataset_to_index": sum(LENGTHS),
        "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 2,
    }  # fmt: skip
    for key, value in lerobot.items():
        assert row[key] == value, key
    for key in VIDEO_KEYS:
        assert row[f"videos/{key}/chunk_index"] == 0 and row[f"videos/{key}/file_index"] == 2
        assert row[f"videos/{key}/from_timestamp"] == 0.0
        assert row[f"videos/{key}/to_timestamp"] == pytest.approx(LENGTHS[2] / FPS)
    assert table.schema.field("tasks").type == pa.list_(pa.string())
    for key in features:
        for stat in ("min", "max", "mean", "std", "count"):
            assert f"stats/{key}/{stat}" in row, f"stats/{key}/{stat}"
    lerobot_prefixes = ("stats/", "videos/", "data/", "meta/episodes/")
    extensions = [
        c for c in table.column_names if c not in lerobot and not c.startswith(lerobot_prefixes)
    ]
    assert extensions and all(c.startswith("kizuna/") for c in extensions), extensions
    assert row["kizuna/source"] == "real" and row["kizuna/calibration_id"] == "calib-2025-01-07"
    assert len(row["kizuna/sha256/data"]) == 64


def test_episode_files_share_one_schema(dataset: tuple[Path, list[dict]]) -> None:
    """LeRobot concatenates the episode files: a null column must keep its type."""
    root, _ = dataset
    schemas = [pq.read_schema(p) for p in sorted((root / "meta/episodes").glob("*/*.parquet"))]
    assert all(s.equals(schemas[0], check_metadata=False) for s in schemas)
    assert schemas[0].field("kizuna/reality_profile").type == pa.string()
    assert schemas[0].field("kizuna/seed").type == pa.int64()


def test_tasks_parquet_is_indexed_by_task(dataset: tuple[Path, list[dict]]) -> None:
    root, _ = dataset
    table = pq.read_table(root / "meta/tasks.parquet")
    assert table.schema.field("task_index").type == pa.int64()
    assert table.column("task_index").to_pylist() == [0, 1]  # row i is task i (iloc lookup)
    pandas_meta = json.loads(table.schema.metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["task"]  # pd.read_parquet -> index of task strings
    assert table.column("task").to_pylist() == [
        "put the red cube in the bin",
        "place the red block into the blue box",
    ]


def test_stats_json_shapes_and_values(dataset: tuple[Path, list[dict]]) -> None:
    root, written = dataset
    stats = json.loads((root / "meta/stats.json").read_text())
    features = _info(root)["features"]
    assert set(stats) == set(features)
    for key, ft in features.items():
        assert set(stats[key]) == {"min", "max", "mean", "std", "count"}
        # Frames; for images sampled frames, which is all of them in episodes this short.
        assert stats[key]["count"] == [sum(LENGTHS)]
        shape = np.shape(stats[key]["mean"])
        assert shape == ((3, 1, 1) if ft["dtype"] == "video" else tuple(ft["shape"])), key
    front = np.asarray(stats["observation.images.front"]["mean"])
    assert ((0 <= front) & (front <= 1)).all()
    # Aggregated per-episode stats equal stats over all frames at once.
    states = np.concatenate([w["states"] for w in written]).astype(np.float64)
    np.testing.assert_allclose(stats["observation.state"]["mean"], states.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["std"], states.std(0), rtol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["min"], states.min(0))
    pixels = np.concatenate([w["images"]["front"].reshape(-1, 3) for w in written]) / 255.0
    np.testing.assert_allclose(front.ravel(), pixels.mean(0), rtol=1e-6)


def test_what_lerobots_loader_does_works(dataset: tuple[Path, list[dict]]) -> None:
    """Replays LeRobot v3's loading steps: glob, concatenate, look up by index and timestamp."""
    root, written = dataset
    info = _info(root)
    frames = pads.dataset(sorted(str(p) for p in (root / "data").glob("*/*.parquet"))).to_table()
    assert frames.num_rows == info["total_frames"]
    assert frames["index"].to_pylist() == list(range(frames.num_rows))  # item i is row i
    episodes = pads.dataset(sorted(str(p) for p in (root / "meta/episodes").glob("*/*.parquet")))
    rows = sorted(episodes.to_table().to_pylist(), key=lambda r: r["episode_index"])
    tasks = pq.read_table(root / "meta/tasks.parquet")["task"].to_pylist()
    for row, episode in zip(rows, written, strict=True):
        assert tasks[frames["task_index"][row["dataset_from_index"]].as_py()] == row["tasks"][0]
        for key in VIDEO_KEYS:
            path = root / info["video_path"].format(
                video_key=key,
                chunk_index=row[f"videos/{key}/chunk_index"],
                file_index=row[f"videos/{key}/file_index"],
            )
            with av.open(str(path)) as container:
                times = np.array([float(f.time) for f in container.decode(video=0)])
            query = (
                row[f"videos/{key}/from_timestamp"] + np.arange(episode["states"].shape[0]) / FPS
            )
            # LeRobot's default tolerance_s: every queried timestamp has a frame within 1e-4 s.
            assert np.abs(times[None, :] - query[:, None]).min(axis=1).max() < 1e-4
