"""``kizuna loop`` end to end on a tiny checkpoint, and the stand-in operator's decisions."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from kizuna.dataset import DatasetReader, check_dataset
from kizuna.loop import LoopConfig, run_loop
from kizuna.loop_collect import Operator, OperatorConfig
from policies.base import load_policy
from policies.vla.testing import make_tiny_checkpoint


class Scene:
    """An env stand-in whose TCP moves ``speed_m`` per step along x."""

    def __init__(self, speed_m: float) -> None:
        self.speed_m, self.steps = speed_m, 0

    def scene_state(self) -> Any:
        self.steps += 1
        return SimpleNamespace(tcp_pos_m=np.array([self.speed_m * self.steps, 0.0, 0.3]))


class FakeExpert:
    def __init__(self, rng: np.random.Generator) -> None: ...

    def reset(self, env: Any) -> None: ...


@pytest.mark.parametrize(
    ("kind", "speed_m", "fraction", "takes_over_at"),
    [
        ("expert", 0.01, 1.0, None),  # moving 1 cm a step, time left: the policy keeps going
        ("expert", 0.0, 1.0, 5),  # stalled for stall_steps: take over
        ("expert", 0.01, 0.3, 30),  # moving, but late: take over at 30 % of 100 steps
        ("none", 0.0, 0.1, None),  # no operator: the policy is on its own
    ],
)
def test_the_operator_takes_over_when_the_policy_stalls_or_runs_late(
    kind: str, speed_m: float, fraction: float, takes_over_at: int | None, monkeypatch
) -> None:
    import sim.expert

    monkeypatch.setattr(sim.expert, "ScriptedExpert", FakeExpert)
    cfg = OperatorConfig(kind=kind, stall_steps=5, takeover_fraction=fraction)
    operator, scene = Operator(cfg, episode_steps=100, seed=0), Scene(speed_m)
    took = None
    for step in range(100):
        operator.watch(scene, step)
        if operator.in_control and took is None:
            took = step
    assert took == takes_over_at


@pytest.mark.slow
def test_loop_records_interventions_fine_tunes_and_reports(tmp_path: Path) -> None:
    checkpoint = make_tiny_checkpoint(tmp_path / "start", image_size=32)
    cfg = LoopConfig(
        task="reach",
        reality="easy",
        checkpoint=str(checkpoint),
        sim_episodes=2,
        real_episodes=2,
        eval_episodes=2,
        train_minutes=0.05,
        batch_size=4,
        nominal_eval=False,
        out=str(tmp_path / "loop"),
        # The untrained policy stalls at once; the operator finishes the task.
        operator=OperatorConfig(stall_steps=3, takeover_fraction=0.1, extra_steps=100),
    )
    report = run_loop(cfg)
    (it,) = report["iterations"]
    assert it["operator_takeovers"] == 2
    real = DatasetReader(it["real_dataset"])
    assert check_dataset(it["real_dataset"]).ok
    for i in range(real.num_episodes):
        episode = real.episode(i, decode_images=False)
        assert episode.provenance.source == "real" and episode.provenance.reality_profile == "easy"
        assert episode.interventions.any() and not episode.interventions[0]
        assert episode.success  # the operator finished the task
    assert load_policy(it["checkpoint"]).act is not None  # the fine-tuned checkpoint loads
    saved = json.loads((Path(cfg.out) / "loop_report.json").read_text())
    assert saved["iterations"][0]["after"]["episodes"] == 2
    assert (Path(cfg.out) / "loop_report.png").stat().st_size > 1000
