"""Time from a new task YAML to a policy with >= 80 % success, fine-tuning a checkpoint.

    .venv/bin/python bench/adapt.py --from CHECKPOINT [--budget-min 30] [--tasks a.yaml b.yaml]

For each new task (default: bench/tasks/*.yaml, built from the shipped object types and
predicates, never shipped themselves) it runs ``kizuna adapt`` on this machine, wall clock with
everything included (validation, preview, data generation, fine-tuning, probes, final
evaluation, report), and records the wall time at which the final evaluation
(``--eval-episodes``) confirmed the target; a probe of ``--probe-episodes`` episodes reaching
it stops training early, and its time is recorded beside. Target (issue #7):
<= 30 min per task, on the 2-core CPU machine, in the nominal simulator. Writes
bench/results/adapt.json.

A smoke run on a tiny untrained checkpoint (never reaches the target; checks the plumbing):

    .venv/bin/python bench/adapt.py --tiny --budget-min 1 --episodes 4 --probe-every 10 \\
        --probe-episodes 2 --eval-episodes 2 --out bench/results/adapt_smoke.json
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
for _var in ("OMP_NUM_THREADS", "LP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_MIN = 30.0


def _minutes(seconds: float | None) -> float | None:
    return round(seconds / 60, 2) if seconds is not None else None


def run_task(task: Path, args: argparse.Namespace, checkpoint: str, runs: Path) -> dict:
    from kizuna.adapt import AdaptConfig, adapt

    shared = ("budget_min", "episodes", "batch_size", "lr", "probe_every", "probe_episodes")
    shared += ("eval_episodes", "target", "seed", "threads")
    shared += ("dart_noise_rad", "hold_after_success")
    cfg = AdaptConfig(
        task=str(task),
        init_from=checkpoint,
        out=str(runs / task.stem),
        **{name: getattr(args, name) for name in shared},
    )
    start = time.perf_counter()
    summary = adapt(cfg, overwrite=True)
    wall_s = time.perf_counter() - start
    reached_s = summary["time_to_target_s"]
    final = summary["final"]
    return {
        "task": summary["task"],
        "task_file": str(task.relative_to(ROOT)) if task.is_relative_to(ROOT) else str(task),
        "spec_hash": summary["spec_hash"],
        "time_to_target_min": _minutes(reached_s),
        "reached_target": reached_s is not None,
        "first_probe_at_target_min": _minutes(summary["first_probe_at_target_s"]),
        "meets_target": reached_s is not None and reached_s / 60 <= TARGET_MIN,
        "wall_min": round(wall_s / 60, 2),
        "final": {k: final[k] for k in ("episodes", "successes", "success_rate", "ci95")},
        "probes": [
            {k: p[k] for k in ("step", "train_s", "wall_s", "successes", "episodes")}
            for p in summary["probes"]
        ],
        "data": {k: summary["data"][k] for k in ("episodes", "frames", "wall_s")},
        "training": {k: summary["training"][k] for k in ("steps", "train_s", "steps_per_s")},
        "stages_s": summary["stages_s"],
        "report": str(Path(cfg.out or "") / "report.html"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="init_from", help="the multi-task checkpoint")
    parser.add_argument("--tiny", action="store_true", help="an untrained tiny checkpoint")
    parser.add_argument("--tasks", nargs="*", type=Path)
    parser.add_argument("--budget-min", type=float, default=TARGET_MIN)
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--probe-every", type=int, default=300)
    parser.add_argument("--probe-episodes", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=30)
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dart-noise-rad", type=float, default=0.02)
    parser.add_argument("--hold-after-success", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    parser.add_argument("--runs", type=Path, help="adapt output dirs (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "adapt.json")
    args = parser.parse_args()
    if not args.init_from and not args.tiny:
        parser.error("pass --from CHECKPOINT (the shipped multi-task VLA), or --tiny")
    tasks = args.tasks or sorted((ROOT / "bench" / "tasks").glob("*.yaml"))
    runs = args.runs or Path(tempfile.mkdtemp(prefix="kizuna-bench-adapt-"))
    checkpoint = args.init_from
    if args.tiny:
        from policies.vla.testing import make_tiny_checkpoint

        checkpoint = str(make_tiny_checkpoint(runs / "tiny_checkpoint"))

    results = []
    for task in tasks:
        print(f"\n=== {task.name}: adapt --from {checkpoint} --budget-min {args.budget_min}")
        results.append(run_task(task, args, checkpoint, runs))
    report = {
        "bench": "adapt",
        "target": f"<= {TARGET_MIN:g} min to >= {args.target:.0%} success per new task",
        "checkpoint": checkpoint,
        "tiny_checkpoint": args.tiny,
        "settings": {k: v for k, v in vars(args).items() if k not in ("tasks", "runs", "out")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "tasks": results,
        "all_meet_target": all(r["meets_target"] for r in results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n{'task':<20} {'to target (min)':>16} {'final success':>14} {'wall (min)':>11}")
    for r in results:
        reached = r["time_to_target_min"]
        f = r["final"]
        print(
            f"{r['task']:<20} {reached if reached is not None else 'not reached':>16} "
            f"{f['successes']:>6}/{f['episodes']:<3} {f['success_rate']:>4.0%} {r['wall_min']:>11}"
        )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
