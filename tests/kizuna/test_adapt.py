"""``kizuna adapt`` end to end on a tiny checkpoint and a tiny budget; its budget and CLI."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from kizuna.adapt import (
    AdaptConfig,
    Budget,
    StageProgress,
    adapt,
    add_arguments,
    clock,
    config_from_args,
)

NEW_TASK = Path(__file__).parents[2] / "bench" / "tasks" / "reach_left_blue.yaml"


def tiny(tmp_path: Path, **overrides: object) -> AdaptConfig:
    settings = {
        "task": str(NEW_TASK),
        "out": str(tmp_path / "run"),
        "budget_min": 0.5,
        "episodes": 3,
        "workers": 1,
        "batch_size": 4,
        "probe_every": 4,
        "probe_episodes": 1,
        "eval_episodes": 2,
        "videos": 1,
        "threads": 1,
    }
    return AdaptConfig(**(settings | overrides))  # type: ignore[arg-type]


@pytest.mark.slow
def test_adapt_end_to_end_from_a_checkpoint(tmp_path: Path) -> None:
    from policies.vla.testing import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path / "base")
    log = io.StringIO()
    # target 0: the first probe "reaches" it, so training stops there (fast, deterministic).
    cfg = tiny(tmp_path, init_from=str(checkpoint), target=0.0)
    summary = adapt(cfg, StageProgress(Budget(cfg.budget_min), log))

    out = Path(cfg.out or "")
    assert (out / "preview.png").stat().st_size > 1000
    assert summary["data"]["episodes"] >= 2 and summary["data"]["frames"] > 0
    # Demonstrations as the shipped model's were made: DART noise, steps held past success.
    from kizuna.dataset import DatasetReader

    reader = DatasetReader(summary["data"]["path"])
    for episode in range(reader.num_episodes):
        row = reader.row(episode)
        assert json.loads(row["kizuna/randomization_json"])["dart_noise_rad"] == 0.02
    assert summary["data"]["hold_after_success"] == 10  # datagen's own tests check holding
    assert summary["training"]["init_from"] == str(checkpoint)
    assert summary["training"]["steps"] > 0 and summary["probes"], "probes give the curve"
    assert summary["training"]["stopped_at_target"]
    assert summary["first_probe_at_target_s"] == summary["probes"][0]["wall_s"]
    # Only the final evaluation confirms the target: the time to it is when that one ended.
    assert summary["time_to_target_s"] == summary["final"]["wall_s"]
    assert summary["final"]["episodes"] >= 1
    assert summary["total_wall_s"] < 0.5 * 60 + 30, "the budget holds (plus slack)"
    assert set(summary["stages_s"]) == {"validate", "preview", "generate", "train", "evaluate"}
    assert json.loads((out / "adapt.json").read_text())["task"] == "reach_left_blue"
    page = (out / "report.html").read_text()
    assert "data:video/mp4;base64," in page and "reach_left_blue" in page
    for stage in ("[1/6 validate]", "[3/6 generate]", "[4/6 train]", "[6/6 report]"):
        assert stage in log.getvalue()
    # The fine-tune kept the base checkpoint's model and normalizer.
    base = json.loads((checkpoint / "config.json").read_text())
    tuned = json.loads(Path(summary["training"]["checkpoint"], "config.json").read_text())
    assert tuned["model"] == base["model"]
    norm = (checkpoint / "normalization.json").read_text()
    assert Path(summary["training"]["checkpoint"], "normalization.json").read_text() == norm


@pytest.mark.slow
def test_a_missed_evaluation_resumes_training_while_time_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probes that "reach" the target (forced) but an evaluation that misses it (an untrained
    policy): training resumes from its last checkpoint, and the evaluation runs again."""
    import kizuna.adapt as adapt_module
    from kizuna.adapt_stages import Prober
    from policies.vla.testing import make_tiny_checkpoint

    real_probe = Prober.probe

    def lucky_probe(self: Prober, checkpoint: Path) -> dict:
        result = real_probe(self, checkpoint)
        result["success_rate"] = 1.0  # the same dict sits in self.points
        return result

    monkeypatch.setattr(Prober, "probe", lucky_probe)
    monkeypatch.setattr(adapt_module, "MIN_RETRAIN_S", 1.0)
    checkpoint = make_tiny_checkpoint(tmp_path / "base")
    cfg = tiny(tmp_path, init_from=str(checkpoint), target=0.5, budget_min=0.75)
    summary = adapt(cfg, StageProgress(Budget(cfg.budget_min), io.StringIO()))

    evaluations = summary["evaluations"]
    assert len(evaluations) >= 2, "a missed evaluation with time left trains on"
    assert all(e["success_rate"] < 0.5 for e in evaluations)  # the untrained policy
    steps = [e["step"] for e in evaluations]
    assert steps == sorted(steps) and steps[0] < steps[-1], "resumed, not restarted"
    assert summary["final"]["step"] == steps[-1] == summary["training"]["steps"]
    assert summary["time_to_target_s"] is None
    probed = [p["step"] for p in summary["probes"]]
    assert len(set(probed)) == len(probed), "no checkpoint is probed twice"
    assert summary["total_wall_s"] < 0.75 * 60 + 30, "the budget holds (plus slack)"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_adapt_starts_from_the_shipped_checkpoint_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kizuna import paths

    monkeypatch.delenv("KIZUNA_BASE_CHECKPOINT", raising=False)
    assert config_from_args(parse(str(NEW_TASK))).init_from == str(paths.shipped_checkpoint())
    # Without one shipped (a trimmed install), it asks for --from.
    shipped = paths.shipped_checkpoint
    monkeypatch.setattr(paths, "shipped_checkpoint", lambda: shipped("not-shipped"))
    with pytest.raises(ValueError, match="--from CHECKPOINT"):
        config_from_args(parse(str(NEW_TASK)))
    cfg = config_from_args(parse(str(NEW_TASK), "--from", "ckpt", "--budget-min", "5"))
    assert cfg.init_from == "ckpt" and cfg.budget_min == 5.0 and cfg.early_stop
    assert (cfg.dart_noise_rad, cfg.hold_after_success) == (0.02, 10)
    args = ("--from", "ckpt", "--dart-noise-rad", "0", "--hold-after-success", "0")
    cfg = config_from_args(parse(str(NEW_TASK), *args))
    assert (cfg.dart_noise_rad, cfg.hold_after_success) == (0.0, 0)
    assert config_from_args(parse(str(NEW_TASK), "--scratch")).init_from is None


def test_adapt_refuses_a_bad_spec_and_a_bad_checkpoint(tmp_path: Path) -> None:
    from kizuna.task import TaskSpecError

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nepisode_steps: 10\ninstructions: [go]\nsucess: []\n")
    with pytest.raises(TaskSpecError, match="bad.yaml: field 'sucess'"):
        adapt(tiny(tmp_path, task=str(bad)), StageProgress(Budget(1), io.StringIO()))
    (tmp_path / "notackpt").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        cfg = tiny(tmp_path, init_from=str(tmp_path / "notackpt"))
        adapt(cfg, StageProgress(Budget(1), io.StringIO()))


def test_adapt_never_deletes_a_directory_it_did_not_write(tmp_path: Path) -> None:
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    quiet = StageProgress(Budget(1), io.StringIO())
    with pytest.raises(FileExistsError, match="pass --out NEW_DIR"):
        adapt(tiny(tmp_path, out=str(keep)), quiet)
    with pytest.raises(FileExistsError, match="does not look like an adapt run"):
        adapt(tiny(tmp_path, out=str(keep)), quiet, overwrite=True)
    assert (keep / "notes.txt").read_text() == "mine"


def test_budget_and_clock() -> None:
    budget = Budget(minutes=10)
    assert 599 < budget.left_s() <= 600
    assert 179 < budget.until(0.3) <= 180
    assert clock(83) == "01:23" and clock(3723) == "1:02:03" and clock(-5) == "00:00"
