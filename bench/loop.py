"""Issue #5's target: one feedback-loop iteration on a "real" cell the policy never saw.

    .venv/bin/python bench/loop.py [--checkpoint DIR] [--task pick_place] \\
        [--reality hard medium] [--real-episodes 20] [--eval-episodes 50] [--train-minutes 10]

For each reality profile: nominal-sim success of the start checkpoint, zero-shot success on
the profile, and success after one ``kizuna loop`` iteration with ``--real-episodes`` recorded
episodes (operator takeovers included). Target: after >= 90 % of nominal and >= zero-shot + 20
points. Prints a table, writes ``bench/results/loop.json``. Not a test: it takes a while.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    from kizuna.hydra_config import compose
    from kizuna.loop import LoopConfig, run_loop

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--reality", nargs="+", default=["hard"])
    parser.add_argument("--real-episodes", type=int, default=20)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--train-minutes", type=float, default=10.0)
    parser.add_argument("--sim-dataset", default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_loop"))
    parser.add_argument("--json", type=Path, default=Path("bench/results/loop.json"))
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")

    rows = []
    for profile in args.reality:
        overrides = [
            f"task={args.task}",
            f"reality={profile}",
            f"real_episodes={args.real_episodes}",
            f"eval_episodes={args.eval_episodes}",
            f"train_minutes={args.train_minutes}",
            f"out={args.out / profile}",
            "iterations=1",
        ]
        if args.checkpoint:
            overrides.append(f"checkpoint={args.checkpoint}")
        if args.sim_dataset:
            overrides.append(f"sim_dataset={args.sim_dataset}")
        report = run_loop(compose("loop", overrides, LoopConfig))
        it = report["iterations"][0]
        nominal = report["nominal"]["success_rate"]
        zero, after = it["before"]["success_rate"], it["after"]["success_rate"]
        rows.append(
            {
                "reality": profile,
                "nominal": report["nominal"],
                "zero_shot": it["before"],
                "after_one_iteration": it["after"],
                "operator_takeovers": it["operator_takeovers"],
                "iteration_wall_s": it["wall_s"],
                "meets_target": after >= 0.9 * nominal and after >= zero + 0.20,
            }
        )
    print(f"\n{'profile':<10} {'nominal':>8} {'zero-shot':>10} {'after 1':>8}  target")
    for r in rows:
        n, z, a = (r[k]["success_rate"] for k in ("nominal", "zero_shot", "after_one_iteration"))
        mark = "PASS" if r["meets_target"] else "MISS"
        print(f"{r['reality']:<10} {n:>8.0%} {z:>10.0%} {a:>8.0%}  {mark}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"task": args.task, "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
