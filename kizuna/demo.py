"""``kizuna demo`` (``make demo``): the whole stack once, on a CPU, in a few minutes.

1. experts   the scripted expert on every shipped task (a video each) and a small dataset;
2. policy    the shipped multi-task VLA in the simulator: success and a video per task;
3. teach     fine-tune that VLA on the demo dataset for ``--train-minutes`` and evaluate it;
4. deploy    the robot runtime (safety filter, chunk executor, watchdog) driving the sim.

Everything lands in ``--out`` with a ``summary.json``. Stages 2-4 need torch (the ``vla``
extra); ``--experts-only`` runs stage 1 alone. The stations are imported lazily, per stage.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

POLICY_TASKS = ("reach", "push", "pick_place")  # what the shipped checkpoint was trained on


def stage(number: int, name: str, text: str) -> float:
    print(f"\n[{number}/4 {name}] {text}", flush=True)
    return time.perf_counter()


def evaluate_checkpoint(
    checkpoint: Path, tasks: tuple[str, ...], episodes: int, out: Path
) -> dict[str, Any]:
    """``kizuna eval`` of ``checkpoint`` on ``tasks``: success, CI and a video per task."""
    import torch

    from policies.base import load_policy
    from policies.evaluate import EvalConfig, evaluate_tasks

    torch.set_num_threads(1)
    policy = load_policy(checkpoint)
    cfg = EvalConfig(
        checkpoint=str(checkpoint), task=list(tasks), episodes=episodes, out=str(out), videos=1
    )
    results = {}
    for report in evaluate_tasks(policy, cfg, progress=True):
        low, high = report.ci95
        videos = report.videos["success"] + report.videos["failure"]
        where = cfg.out_dir(report.task)
        results[report.task] = {
            "success_rate": report.success_rate,
            "ci95": [low, high],
            "episodes": len(report.episodes),
            "videos": [str(where / v) for v in videos] if where else [],
        }
        print(
            f"  {report.task:12s} success {report.success_rate:.0%} "
            f"({report.successes}/{len(report.episodes)}, 95% CI [{low:.2f}, {high:.2f}])"
        )
    return results


def teach(checkpoint: Path, dataset: Path, minutes: float, out: Path) -> Path:
    """Fine-tune ``checkpoint`` on ``dataset`` for ``minutes``; returns the new checkpoint."""
    from kizuna.loop import fine_tune

    if out.exists():  # the demo's own scratch output from an earlier run
        shutil.rmtree(out)
    return fine_tune(checkpoint, [dataset], out, minutes, warmup_steps=50)


def deploy(checkpoint: Path, out: Path) -> dict[str, Any]:
    """One episode through the robot runtime on the simulator (``kizuna deploy``)."""
    from real_robot.deploy import run_sim

    args = argparse.Namespace(
        checkpoint=str(checkpoint),
        task="reach",
        engine="mujoco",
        reality=None,
        episodes=1,
        seed=1000,
        replan_every=5,  # as `kizuna deploy` (its default)
        video=str(out / "deploy_reach.mp4"),
    )
    result = run_sim(args)
    result["video"] = args.video
    return result


def main(args: argparse.Namespace) -> int:
    from kizuna.paths import shipped_checkpoint
    from sim import demo as expert_demo

    out = Path(args.out)
    t0 = stage(1, "experts", "the scripted expert on every shipped task, and a small dataset")
    code = expert_demo.main(args)
    summary = json.loads((out / "summary.json").read_text())
    summary["stages_s"] = {"experts": round(time.perf_counter() - t0, 1)}
    if not args.experts_only:
        checkpoint = shipped_checkpoint()
        t0 = stage(2, "policy", f"the shipped multi-task VLA ({checkpoint.name}) in the sim")
        summary["policy"] = evaluate_checkpoint(
            checkpoint, POLICY_TASKS, args.policy_episodes, out / "policy"
        )
        summary["stages_s"]["policy"] = round(time.perf_counter() - t0, 1)
        if "dataset" in summary and args.train_minutes > 0:
            t0 = stage(
                3, "teach", f"fine-tune it on the demo dataset for {args.train_minutes} min"
            )
            taught = teach(checkpoint, out / "dataset", args.train_minutes, out / "taught")
            summary["taught"] = evaluate_checkpoint(
                taught, ("pick_place",), args.policy_episodes, out / "taught_eval"
            )
            summary["stages_s"]["teach"] = round(time.perf_counter() - t0, 1)
        t0 = stage(4, "deploy", "the robot runtime (safety filter, chunk executor) on the sim")
        summary["deploy"] = deploy(checkpoint, out)
        summary["stages_s"]["deploy"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nkizuna demo done: {out / 'summary.json'}")
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sim import demo as expert_demo

    expert_demo.add_arguments(parser)
    parser.add_argument(
        "--experts-only", action="store_true", help="stage 1 only (no torch needed)"
    )
    parser.add_argument(
        "--policy-episodes", type=int, default=5, help="evaluation episodes per task"
    )
    parser.add_argument(
        "--train-minutes",
        type=float,
        default=2.0,
        help="fine-tuning budget of stage 3 (0: skip the stage)",
    )
