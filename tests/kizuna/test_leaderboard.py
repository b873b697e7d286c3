"""Leaderboard result files: written by ``kizuna eval leaderboard=true``, ranked by merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kizuna import __version__
from kizuna.cli import main as cli
from kizuna.leaderboard import (
    LEADERBOARD_SEED,
    SCHEMA,
    LeaderboardError,
    checkpoint_sha256,
    merge,
    result_record,
    task_spec_sha256,
)


def fake_report(successes: list[bool], times: list[float | None], task: str = "reach") -> dict:
    n = len(successes)
    return {
        "task": task,
        "task_source": task,
        "reality": None,
        "randomization": "none",
        "backend": "mujoco",
        "episodes": n,
        "seeds": list(range(LEADERBOARD_SEED, LEADERBOARD_SEED + n)),
        "kizuna_version": __version__,
        "checkpoint": None,
        "policy": "VLAPolicy",
        "successes": sum(successes),
        "success_rate": sum(successes) / n,
        "ci95": [0.0, 1.0],
        "per_episode": [
            {"success": s, "time_to_success_s": t} for s, t in zip(successes, times, strict=True)
        ],
    }


def write(path: Path, record: dict) -> Path:
    path.write_text(json.dumps(record))
    return path


def test_record_has_what_makes_results_comparable() -> None:
    record = result_record(fake_report([True, False], [1.5, None]), "team-a")
    assert record["schema"] == SCHEMA and record["submitter"] == "team-a"
    assert record["seeds"] == [LEADERBOARD_SEED, LEADERBOARD_SEED + 1]
    assert record["task_spec_sha256"] == task_spec_sha256("reach")
    assert len(record["task_spec_sha256"]) == 64
    assert record["mean_time_to_success_s"] == 1.5
    assert record["kizuna_version"] == __version__


def test_checkpoint_hash_covers_the_model_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    first = checkpoint_sha256(tmp_path)
    (tmp_path / "trainer_state.json").write_text("{}")  # not a model file
    assert checkpoint_sha256(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert checkpoint_sha256(tmp_path) != first


def test_merge_ranks_by_success_then_time(tmp_path: Path) -> None:
    files = [
        write(tmp_path / "a.json", result_record(fake_report([True, True], [3.0, 3.0]), "slow")),
        write(tmp_path / "b.json", result_record(fake_report([True, False], [1.0, None]), "half")),
        write(tmp_path / "c.json", result_record(fake_report([True, True], [1.0, 1.0]), "fast")),
    ]
    ranked = merge(files, tmp_path / "board.html")
    assert [r["submitter"] for r in ranked] == ["fast", "slow", "half"]
    page = (tmp_path / "board.html").read_text()
    assert page.index("fast") < page.index("slow") < page.index("half")


def test_merge_refuses_mismatched_results(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", result_record(fake_report([True, True], [1.0, 1.0]), "a"))
    b = write(tmp_path / "b.json", result_record(fake_report([True], [1.0]), "b"))
    with pytest.raises(LeaderboardError, match=r"b\.json: episodes is 1 but .*a\.json has 2"):
        merge([a, b], tmp_path / "board.html")
    other = result_record(fake_report([True, True], [1.0, 1.0], task="push"), "c")
    c = write(tmp_path / "c.json", other)
    with pytest.raises(LeaderboardError, match="c.json: task is"):
        merge([a, c], tmp_path / "board.html")
    d = write(tmp_path / "d.json", {"schema": "something else"})
    with pytest.raises(LeaderboardError, match="d.json: not a kizuna-leaderboard"):
        merge([a, d], tmp_path / "board.html")


def test_cli_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path / "a.json", result_record(fake_report([True], [1.0]), "team-a"))
    b = write(tmp_path / "b.json", result_record(fake_report([False], [None], "push"), "team-b"))
    out = tmp_path / "board.html"
    assert cli(["leaderboard", "merge", str(a), "--out", str(out)]) == 0
    assert out.is_file() and "team-a" in capsys.readouterr().out
    assert cli(["leaderboard", "merge", str(a), str(b), "--out", str(out)]) == 2
    assert "task is" in capsys.readouterr().err


def test_eval_writes_a_leaderboard_file(tmp_path: Path) -> None:
    from policies.vla.testing import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "eval"
    args = [
        "eval",
        f"checkpoint={checkpoint}",
        "task=reach",
        "episodes=2",
        "max_steps=5",
        "videos=0",
        "seed=7",  # leaderboard=true replaces it with the fixed seeds
        f"out={out}",
        "leaderboard=true",
        "submitter=team-a",
    ]
    assert cli(args) == 0
    record = json.loads((out / "leaderboard.json").read_text())
    assert record["seeds"] == [LEADERBOARD_SEED, LEADERBOARD_SEED + 1]
    assert record["submitter"] == "team-a" and record["episodes"] == 2
    assert record["checkpoint_sha256"] == checkpoint_sha256(checkpoint)
    assert record["reality_sha256"] is None
