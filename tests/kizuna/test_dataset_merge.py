"""Merging a sim and a real dataset: re-indexed episodes and tasks, kept provenance, new stats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kizuna.dataset import DatasetError, DatasetReader, check_dataset, merge_datasets
from kizuna.dataset.files import sha256_file
from kizuna.dataset.format import default_action_names, default_state_names
from kizuna.dataset.synthetic import CAMERAS, write_synthetic
from kizuna.dataset.writer import DatasetWriter


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("merge")
    sim = write_synthetic(base / "sim", [6, 9, 4], "sim", instructions=["stack", "push"])
    real = write_synthetic(base / "real", [7, 5], "real", first_seed=10, instructions=["reach"])
    return {"sim": (base / "sim", sim), "real": (base / "real", real)}


def test_merge_sim_and_real(sources: dict, tmp_path: Path) -> None:
    (sim_root, sim), (real_root, real) = sources["sim"], sources["real"]
    placed = merge_datasets([sim_root, real_root], tmp_path / "both")
    assert [(p.name, list(r)) for p, r in placed] == [("sim", [0, 1, 2]), ("real", [3, 4])]
    merged = DatasetReader(tmp_path / "both")
    assert merged.num_episodes == 5 and len(merged) == 6 + 9 + 4 + 7 + 5
    assert merged.tasks == ["stack", "push", "reach"]
    for new_index, written in enumerate(sim + real):
        episode = merged.episode(new_index, decode_images=False)
        np.testing.assert_array_equal(episode.states, written["states"])
        assert episode.instruction == written["instruction"]
        assert episode.provenance == written["provenance"]
        assert episode.success == written["success"]
        table = merged.table(new_index)
        assert set(table["episode_index"].to_pylist()) == {new_index}
        assert merged.tasks[table["task_index"][0].as_py()] == written["instruction"]
    info = merged.info
    assert info["kizuna"]["sources"] == {"sim": 3, "real": 2}
    assert info["total_tasks"] == 3
    # Videos are copied byte for byte; data files are rewritten with the new indices.
    source_video = DatasetReader(real_root).video_file(1, "observation.images.front")
    assert sha256_file(merged.video_file(4, "observation.images.front")) == sha256_file(
        source_video
    )
    states = np.concatenate([w["states"] for w in sim + real]).astype(np.float64)
    np.testing.assert_allclose(merged.stats["observation.state"]["mean"], states.mean(0))
    assert merged.stats["episode_index"]["max"].tolist() == [4.0]
    report = check_dataset(tmp_path / "both", decode_images=True)
    assert report.ok and not report.problems, report.lines()


def test_merge_appends_to_an_existing_destination(sources: dict, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    shutil.copytree(sources["sim"][0], dest)
    placed = merge_datasets([sources["real"][0]], dest)
    assert list(placed[0][1]) == [3, 4]
    assert DatasetReader(dest).num_episodes == 5
    assert check_dataset(dest).ok


def _dataset(root: Path, fps: int = 20, state_names: list[str] | None = None) -> Path:
    with DatasetWriter(
        root, fps, "kizuna-panda-v1", CAMERAS, state_names or default_state_names(),
        default_action_names(),
    ):  # fmt: skip
        pass
    return root


@pytest.mark.parametrize(
    ("other", "field"),
    [
        ({"fps": 30}, "field 'fps' differs"),
        (
            {"state_names": [*default_state_names()[:-1], "gripper.width_m"]},
            "field 'features['observation.state'].names[7]' differs",
        ),
    ],
)
def test_incompatible_datasets_are_refused_naming_both_and_the_field(
    sources: dict, tmp_path: Path, other: dict, field: str
) -> None:
    odd = _dataset(tmp_path / "odd", **other)
    with pytest.raises(DatasetError) as error:
        merge_datasets([sources["sim"][0], odd], tmp_path / "out")
    message = str(error.value)
    assert str(sources["sim"][0]) in message and str(odd) in message
    assert field in message, message
    assert not (tmp_path / "out").exists()


def test_a_corrupted_source_is_refused_by_file_name(sources: dict, tmp_path: Path) -> None:
    real = tmp_path / "real"
    shutil.copytree(sources["real"][0], real)
    video = real / "videos/observation.images.wrist/chunk-000/file-001.mp4"
    video.write_bytes(video.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=str(video)):
        merge_datasets([real], tmp_path / "out")


def test_merging_into_a_source_is_refused(sources: dict) -> None:
    with pytest.raises(DatasetError, match="into itself"):
        merge_datasets([sources["sim"][0]], sources["sim"][0])


def test_info_summarizes_provenance(sources: dict, tmp_path: Path) -> None:
    merge_datasets([sources["sim"][0], sources["real"][0]], tmp_path / "both")
    kizuna = json.loads((tmp_path / "both/meta/info.json").read_text())["kizuna"]
    assert kizuna["backends"] == {"mujoco": 3, "ros2": 2}
    assert kizuna["robot_ids"] == {"kizuna-panda-v1": 3, "panda-cell-3": 2}
    assert kizuna["success"]["episodes"] == sum(
        w["success"] for _, ws in sources.values() for w in ws
    )
