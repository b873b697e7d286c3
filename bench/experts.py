"""Success rate of the scripted expert on every shipped task, nominal and randomized.

    .venv/bin/python bench/experts.py [--episodes 100] [--backend mujoco] [--workers 2]

Prints a table and writes bench/results/experts_<backend>.json. Targets (issue #3): >= 95 %
nominal and >= 85 % under default randomization, over >= 100 episodes per task.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
for _var in ("OMP_NUM_THREADS", "LP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from kizuna.metrics import wilson_interval  # noqa: E402

TARGETS = {"nominal": 0.95, "randomized": 0.85}


def run_chunk(task: str, backend: str, randomized: bool, seeds: list[int]) -> list[dict]:
    from sim.demo import run_episode
    from sim.env import KizunaEnv

    env = KizunaEnv(task, backend=backend, cameras=(), randomization=randomized)
    results = []
    for seed in seeds:
        outcome = run_episode(env, seed, record=False)
        results.append({"seed": seed, "success": outcome["success"], "steps": outcome["steps"]})
    env.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--backend", default="mujoco")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", nargs="*")
    parser.add_argument("--out")
    args = parser.parse_args()

    from kizuna.task import shipped_tasks

    tasks = args.tasks or shipped_tasks()
    report: dict = {"bench": "experts", "backend": args.backend, "episodes": args.episodes}
    results: dict = {}
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        for task in tasks:
            for mode in ("nominal", "randomized"):
                seeds = list(range(args.episodes))
                chunks = [seeds[i :: args.workers] for i in range(args.workers)]
                futures = [
                    pool.submit(run_chunk, task, args.backend, mode == "randomized", c)
                    for c in chunks
                ]
                episodes = [e for f in futures for e in f.result()]
                wins = sum(e["success"] for e in episodes)
                rate = wins / len(episodes)
                low, high = wilson_interval(wins, len(episodes))
                steps = [e["steps"] for e in episodes if e["success"]]
                results.setdefault(task, {})[mode] = {
                    "success_rate": rate,
                    "ci95": [round(low, 3), round(high, 3)],
                    "median_steps": float(np.median(steps)) if steps else None,
                    "failed_seeds": [e["seed"] for e in episodes if not e["success"]],
                    "meets_target": rate >= TARGETS[mode],
                }
                print(
                    f"{task:12s} {mode:10s} {rate:6.1%}  [{low:.2f}, {high:.2f}]  "
                    f"{'PASS' if rate >= TARGETS[mode] else 'MISS'}",
                    flush=True,
                )
    report["results"] = results
    report["wall_s"] = round(time.perf_counter() - start, 1)
    out = Path(args.out or f"bench/results/experts_{args.backend}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out} ({report['wall_s']} s)")


if __name__ == "__main__":
    main()
