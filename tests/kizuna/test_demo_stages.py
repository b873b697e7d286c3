"""``kizuna demo`` past the experts: the shipped VLA, fine-tuning it, and the robot runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kizuna.cli import main
from kizuna.video import count_frames


@pytest.mark.slow
def test_demo_runs_the_shipped_policy_fine_tunes_and_deploys(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--tasks", "reach", "--dataset-episodes", "2"]
    argv += ["--policy-episodes", "1", "--train-minutes", "0.05"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["policy"]) == {"reach", "push", "pick_place"}
    for task, result in summary["policy"].items():
        assert result["episodes"] == 1 and 0.0 <= result["success_rate"] <= 1.0, task
        assert result["videos"] and count_frames(Path(result["videos"][0])) > 1
    assert summary["taught"]["pick_place"]["episodes"] == 1
    assert (out / "taught" / "last" / "model.safetensors").is_file()
    deploy = summary["deploy"]
    assert deploy["task"] == "reach" and len(deploy["episodes"]) == 1
    assert count_frames(Path(deploy["video"])) > 1
    assert set(summary["stages_s"]) == {"experts", "policy", "teach", "deploy"}
