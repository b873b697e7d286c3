"""`kizuna demo` writes a playable video per task, a small dataset and a summary."""

from __future__ import annotations

import json
from pathlib import Path

from kizuna.cli import main
from kizuna.video import count_frames


def test_demo_writes_videos_and_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--tasks", "reach", "pick_place", "--dataset-episodes", "2"]
    argv.append("--experts-only")  # stage 1; the policy stages: tests/kizuna/test_demo_stages.py
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == {"reach", "pick_place"}
    for task, result in summary["tasks"].items():
        assert result["success"], f"the scripted expert should solve {task} on seed 0"
        # One frame after reset, one per step, then a pause on the result.
        assert count_frames(out / f"{task}.mp4") == result["steps"] + 1 + 10
    assert summary["success_rate"] == 1.0
    assert summary["dataset"]["episodes"] == 2 and summary["dataset"]["check_ok"]
