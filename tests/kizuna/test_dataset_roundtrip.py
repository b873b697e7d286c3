"""Write episodes, read them back: arrays exactly, images within the video codec's loss."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizuna.dataset import DatasetError, DatasetReader, DatasetWriter, Provenance
from kizuna.dataset.format import default_action_names, default_state_names
from kizuna.dataset.synthetic import (
    CAMERAS,
    FPS,
    synthetic_episode,
    synthetic_provenance,
    write_synthetic,
)

# Mean absolute error (grey levels) allowed between written and decoded smooth images.
IMAGE_TOLERANCE = 8.0


def _writer(root: Path, cameras: dict = CAMERAS, **options: object) -> DatasetWriter:
    return DatasetWriter(
        root, FPS, "kizuna-panda-v1", cameras, default_state_names(), default_action_names(),
        **options,
    )  # fmt: skip


def assert_same_episode(reader: DatasetReader, written: dict) -> None:
    episode = reader.episode(written["index"])
    np.testing.assert_array_equal(episode.states, written["states"])
    np.testing.assert_array_equal(episode.actions, written["actions"])
    np.testing.assert_array_equal(episode.rewards, written["rewards"])
    np.testing.assert_array_equal(episode.interventions, written["interventions"])
    assert episode.dones.tolist() == [False] * (len(episode) - 1) + [True]
    assert episode.instruction == written["instruction"]
    assert episode.provenance == written["provenance"]
    assert episode.success == written["success"]
    np.testing.assert_allclose(episode.timestamps, np.arange(len(episode)) / FPS, atol=1e-6)
    for camera, frames in written["images"].items():
        decoded = episode.images[f"observation.images.{camera}"]
        assert decoded.shape == frames.shape and decoded.dtype == np.uint8
        error = np.abs(decoded.astype(float) - frames.astype(float)).mean()
        assert error < IMAGE_TOLERANCE, f"{camera}: mean abs error {error:.2f}"


def test_round_trip(tmp_path: Path) -> None:
    written = write_synthetic(tmp_path / "ds", [12, 1, 30], source="sim")
    written += write_synthetic(tmp_path / "ds", [7], source="real", first_seed=10)
    reader = DatasetReader(tmp_path / "ds")
    assert reader.num_episodes == 4
    assert len(reader) == 12 + 1 + 30 + 7
    for episode in written:
        assert_same_episode(reader, episode)
    assert reader.provenance(3).source == "real"
    assert reader.provenance(0).randomization["light"] == [1, 0.9]


def test_frames_iterate_in_order_with_decoded_images(tmp_path: Path) -> None:
    written = write_synthetic(tmp_path / "ds", [5, 3])
    frames = list(DatasetReader(tmp_path / "ds").frames())
    assert [f["index"] for f in frames] == list(range(8))
    assert [f["episode_index"] for f in frames] == [0] * 5 + [1] * 3
    last = frames[-1]
    assert last["task"] == written[1]["instruction"]
    assert last["frame_index"] == 2 and last["next.done"]
    np.testing.assert_array_equal(last["observation.state"], written[1]["states"][2])
    assert last["observation.images.front"].shape == (*CAMERAS["front"], 3)
    assert not any("observation.images.front" in f for f in DatasetReader(tmp_path / "ds").frames(
        decode_images=False
    ))  # fmt: skip


def test_task_indices_are_shared_between_episodes(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "ds", [2, 2, 2], instructions=["b task", "a task"])
    reader = DatasetReader(tmp_path / "ds")
    assert reader.tasks == ["b task", "a task"]  # first-seen order
    assert [int(reader.table(i)["task_index"][0].as_py()) for i in range(3)] == [0, 1, 0]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    instructions=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_any_lengths_and_instructions_round_trip(
    lengths: list[int], instructions: list[str], seed: int
) -> None:
    cameras = {"front": CAMERAS["front"]}  # tinier images lose more to 4:2:0 chroma
    with tempfile.TemporaryDirectory() as tmp:
        written = write_synthetic(tmp, lengths, "sim", seed, instructions, cameras)
        reader = DatasetReader(tmp)
        assert len(reader) == sum(lengths)
        used = [instructions[(seed + k) % len(instructions)] for k in range(len(lengths))]
        assert reader.tasks == list(dict.fromkeys(used))
        for episode in written:
            assert_same_episode(reader, episode)


# ---- what the writer refuses -------------------------------------------------------------


def _episode(**changes: object) -> dict:
    episode = {
        **synthetic_episode(4, seed=0),
        "instruction": "pick",
        "provenance": synthetic_provenance("sim"),
        "success": True,
    }
    return {**episode, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"states": np.zeros((4, 7), np.float32)}, "states has shape (4, 7)"),
        ({"actions": np.full((4, 8), np.nan, np.float32)}, "actions holds NaN"),
        ({"rewards": np.zeros(3)}, "rewards has shape (3,)"),
        ({"images": {"front": np.zeros((4, 32, 48, 3), np.uint8)}}, "images are for"),
        (
            {"images": {"front": np.zeros((4, 32, 48, 3), np.uint8), "wrist": np.zeros((4, 2))}},
            "images['observation.images.wrist']",
        ),
        ({"instruction": ""}, "instruction must be a non-empty string"),
        ({"states": np.zeros((0, 8)), "actions": np.zeros((0, 8))}, "at least one frame"),
    ],
)
def test_bad_episodes_are_refused_by_name(tmp_path: Path, changes: dict, message: str) -> None:
    episode = _episode(**changes)
    if "states" in changes and len(changes["states"]) == 0:
        episode.update(rewards=None, interventions=None, images={})
    with _writer(tmp_path / "ds") as writer, pytest.raises(DatasetError) as error:
        writer.add_episode(**episode)
    assert message in str(error.value)
    assert writer.num_episodes == 0


def test_bad_settings_and_provenance_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="both even"):
        _writer(tmp_path / "odd", cameras={"front": (31, 48)})
    with pytest.raises(DatasetError, match="positive integer"):
        DatasetWriter(tmp_path / "x", 12.5, "r", {}, ["a"], ["b"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'sim' or 'real'"):
        Provenance("lab", "ros2", "pick_place", "abc", "panda")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not JSON"):
        Provenance("sim", "mujoco", "pick_place", "abc", "panda", randomization_json="{bad")


def test_reopening_with_other_settings_names_the_field(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "ds", [3])
    with pytest.raises(DatasetError) as error:
        DatasetWriter(
            tmp_path / "ds", 30, "kizuna-panda-v1", CAMERAS, default_state_names(),
            default_action_names(),
        )  # fmt: skip
    assert "field 'fps' is 20" in str(error.value) and "30" in str(error.value)
    names = [*default_state_names()[:-1], "gripper.width_m"]
    with pytest.raises(DatasetError, match=r"features\['observation.state'\]\['names'\]"):
        DatasetWriter(
            tmp_path / "ds", FPS, "kizuna-panda-v1", CAMERAS, names, default_action_names()
        )
    with DatasetWriter.open(tmp_path / "ds") as writer:  # the stored settings: resumes
        assert writer.num_episodes == 1


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    with _writer(tmp_path / "ds"), pytest.raises(DatasetError, match="another DatasetWriter"):
        _writer(tmp_path / "ds")
    with _writer(tmp_path / "ds") as writer:  # released on close
        assert writer.num_episodes == 0


def _pack_like_lerobot(root: Path) -> None:
    """Rewrite a 2-episode kizuna dataset the way LeRobot packs one: both episodes in one
    data file and one mp4 per camera (addressed by index ranges and timestamps), one metadata
    file, and no kizuna columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kizuna.video import write_mp4

    reader = DatasetReader(root)
    lengths = [int(row["length"]) for row in reader.rows]
    data = pa.concat_tables([reader.table(e) for e in range(2)])
    videos = {key: np.concatenate([reader.images(e, key) for e in range(2)]) for key in
              reader.video_keys}  # fmt: skip
    rows = []
    for e, row in enumerate(reader.rows):
        row = {k: v for k, v in row.items() if not k.startswith("kizuna/")}
        row.update({"data/file_index": 0, "meta/episodes/file_index": 0})
        for key in reader.video_keys:
            row[f"videos/{key}/file_index"] = 0
            row[f"videos/{key}/from_timestamp"] = sum(lengths[:e]) / FPS
            row[f"videos/{key}/to_timestamp"] = sum(lengths[: e + 1]) / FPS
        rows.append(row)
    for folder in ("data", "videos", "meta/episodes"):
        for path in (root / folder).rglob("file-*"):
            path.unlink()
    pq.write_table(data, root / "data/chunk-000/file-000.parquet")
    for key, frames in videos.items():
        write_mp4(root / f"videos/{key}/chunk-000/file-000.mp4", list(frames), FPS, crf=10)
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")


def test_reads_and_checks_lerobots_packed_files(tmp_path: Path) -> None:
    from kizuna.dataset import check_dataset

    written = write_synthetic(tmp_path / "ds", [6, 9])
    _pack_like_lerobot(tmp_path / "ds")
    reader = DatasetReader(tmp_path / "ds")
    for episode in written:
        loaded = reader.episode(episode["index"])
        np.testing.assert_array_equal(loaded.states, episode["states"])
        assert loaded.provenance is None and loaded.success is None
        for camera, frames in episode["images"].items():
            decoded = loaded.images[f"observation.images.{camera}"]
            assert decoded.shape == frames.shape
            assert np.abs(decoded.astype(float) - frames).mean() < IMAGE_TOLERANCE
    report = check_dataset(tmp_path / "ds")
    assert report.ok, report.lines()
    assert [p.message for p in report.warnings] == [
        "no kizuna provenance columns: content hashes not verified"
    ]
    with pytest.raises(DatasetError, match="no kizuna provenance columns"):
        DatasetWriter.open(tmp_path / "ds")


def test_sync_mode_writes_the_same_dataset(tmp_path: Path) -> None:
    from kizuna.dataset import check_dataset

    with _writer(tmp_path / "ds", sync=True) as writer:
        assert writer.add_episode(**_episode()) == 0
    assert check_dataset(tmp_path / "ds").ok
    np.testing.assert_array_equal(
        DatasetReader(tmp_path / "ds").episode(0).states, _episode()["states"]
    )


def test_a_failed_commit_leaves_nothing_behind(tmp_path: Path) -> None:
    from kizuna.dataset import check_dataset
    from kizuna.dataset.files import temp_files

    def broken_encoder(path: Path, frames: list) -> None:
        path.write_bytes(b"half a video")
        raise OSError("disk full")

    with _writer(tmp_path / "ds") as writer:
        good_encoder, writer._encode = writer._encode, broken_encoder
        with pytest.raises(OSError, match="disk full"):
            writer.add_episode(**_episode(instruction="never written"))
        assert writer.num_episodes == 0 and not list(temp_files(tmp_path / "ds"))
        writer._encode = good_encoder
        assert writer.add_episode(**_episode()) == 0
    assert DatasetReader(tmp_path / "ds").tasks == ["pick"]
    assert check_dataset(tmp_path / "ds").ok
