"""``kizuna dataset info | check | merge`` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kizuna.cli import main
from kizuna.dataset import DatasetReader
from kizuna.dataset.synthetic import write_synthetic


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("cli")
    write_synthetic(base / "sim", [5, 6, 7], "sim")  # seeds 0, 1, 2: successes 0 and 2
    write_synthetic(base / "real", [4], "real", first_seed=3)
    return base / "sim", base / "real"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_info(datasets: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["dataset", "info", str(datasets[0])], capsys)
    assert code == 0
    assert "episodes     3  (sim 3, real 0)" in out
    assert "frames       18 at 20 fps" in out
    assert "success      2/3 (66.7%)" in out
    assert "cameras      front 32x48, wrist 24x32" in out
    assert "     2  put the red cube in the bin" in out
    assert "MB" in out


def test_info_json(datasets: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["dataset", "info", "--json", str(datasets[1])], capsys)
    info = json.loads(out)
    assert code == 0
    assert info["sources"] == {"sim": 0, "real": 1}
    assert info["tasks"] == {"place the red block into the blue box": 1}
    assert info["size_bytes"] > 0 and info["frames"] == 4


def test_check_passes_then_fails_naming_the_file(
    datasets: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, _ = _run(["dataset", "check", str(datasets[0])], capsys)
    assert code == 0 and out.startswith("ok: 3 episodes, 18 frames")
    shutil.copytree(datasets[0], tmp_path / "broken")
    (tmp_path / "broken/data/chunk-000/file-002.parquet").write_bytes(b"not parquet")
    monkeypatch.chdir(tmp_path)  # the file is named as the user named the dataset
    code, out, _ = _run(["dataset", "check", "broken"], capsys)
    assert code == 1
    lines = out.splitlines()
    assert all(line.startswith("error: broken/data/chunk-000/file-002.parquet: ") for line in
               lines[:-1])  # fmt: skip
    assert lines[-1].startswith("2 problem(s)")


def test_check_repair_removes_leftovers(
    datasets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ds"
    shutil.copytree(datasets[0], root)
    shutil.copy(root / "data/chunk-000/file-000.parquet", root / "data/chunk-000/file-003.parquet")
    (root / "meta/.info.json.tmp").write_text("{")
    code, out, _ = _run(["dataset", "check", str(root)], capsys)
    assert code == 1 and "file-003.parquet: no episode references this file" in out
    assert "warning:" in out and ".info.json.tmp" in out
    code, out, _ = _run(["dataset", "check", "--repair", str(root)], capsys)
    assert code == 0, out
    assert not (root / "data/chunk-000/file-003.parquet").exists()


def test_merge(
    datasets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "both"
    code, out, _ = _run(["dataset", "merge", *map(str, datasets), "--out", str(out_dir)], capsys)
    assert code == 0
    assert f"merged 4 episodes from 2 datasets into {out_dir}" in out
    assert DatasetReader(out_dir).num_episodes == 4
    code, _, err = _run(["dataset", "merge", str(out_dir), "--out", str(out_dir)], capsys)
    assert code == 1 and "into itself" in err


def test_errors_are_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["dataset", "info", str(tmp_path / "nothing")], capsys)
    assert code == 1
    assert err.startswith("error: ") and "meta/info.json: no such file" in err
    code, _, err = _run(["dataset"], capsys)
    assert code == 2 and "usage" in err
