"""``kizuna hackathon``: the menu, the choice, and a whole (tiny) run to a score file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kizuna.cli import main as cli
from kizuna.hackathon import choose, menu
from kizuna.leaderboard import LEADERBOARD_SEED, SCHEMA
from kizuna.task import shipped_tasks


def test_menu_lists_every_shipped_task_with_a_description() -> None:
    rows = menu()
    assert [name for name, _ in rows] == shipped_tasks()
    assert all(description for _, description in rows)


def test_choose_by_number_or_name() -> None:
    rows = menu()
    assert choose(rows, "1") == rows[0][0]
    assert choose(rows, " reach ") == "reach"
    with pytest.raises(ValueError, match="not a task number"):
        choose(rows, "99")


def test_without_a_terminal_it_asks_for_task(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["hackathon"]) == 2  # pytest's stdin is not a terminal
    captured = capsys.readouterr()
    assert "reach" in captured.out and "--task" in captured.err


@pytest.mark.slow
def test_hackathon_run_writes_video_score_and_result(tmp_path: Path) -> None:
    out = tmp_path / "team"
    argv = ["hackathon", "--task", "reach", "--minutes", "0.3", "--name", "team-a"]
    argv += ["--out", str(out), "--episodes", "3", "--eval-episodes", "2", "--workers", "1"]
    argv += ["--probe-every", "4", "--probe-episodes", "1", "--batch-size", "4", "--threads", "1"]
    assert cli(argv) == 0
    record = json.loads((out / "leaderboard.json").read_text())
    assert record["schema"] == SCHEMA and record["submitter"] == "team-a"
    assert record["episodes"] == 2, "a fixed count, never cut by the budget"
    assert record["seeds"] == [LEADERBOARD_SEED, LEADERBOARD_SEED + 1]
    assert list((out / "eval" / "videos").glob("*.mp4")), "a video"
    summary = json.loads((out / "adapt.json").read_text())
    assert summary["training"]["init_from"] is None, "a small model from scratch"
    assert summary["total_wall_s"] < 0.3 * 60 + 25
