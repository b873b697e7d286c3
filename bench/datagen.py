"""Successful expert demos per minute into a dataset: pick_place, two 96x96 cameras.

    .venv/bin/python bench/datagen.py [--episodes 60] [--repeats 1] [--task pick_place]

Runs `sim.datagen.generate` end to end (rollout, rendering, H.264 encoding, atomic writes) with
1 and then 2 worker processes, in one run; prints demos/min, bytes per demo and the 1 -> 2 worker
scaling, and writes bench/results/datagen.json. Target (issue #3): >= 100 demos/min on 2 cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("LP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from sim.datagen import GenerateConfig, generate  # noqa: E402

TARGET_DEMOS_PER_MIN = 100.0


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def measure(task: str, episodes: int, workers: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix="kizuna-bench-")) / "ds"
    try:
        cfg = GenerateConfig(task=task, episodes=episodes, workers=workers, out=str(out))
        report = generate(cfg)
        size = _dir_bytes(out)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    return {
        "demos_per_min": 60.0 * report.kept / report.wall_s,
        "wall_s": report.wall_s,
        "expert_success_rate": report.expert_success_rate,
        "bytes_per_demo": size / report.kept,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="bench/results/datagen.json")
    args = parser.parse_args()

    results = {}
    for workers in (1, 2):
        runs = [measure(args.task, args.episodes, workers) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        results[f"{workers}_workers"] = {k: round(v, 3) for k, v in med.items()}
        print(
            f"{workers} worker(s): {med['demos_per_min']:6.1f} successful demos/min, "
            f"{med['bytes_per_demo'] / 1e3:6.1f} kB/demo, expert success "
            f"{med['expert_success_rate']:.0%} ({med['wall_s']:.1f} s for {args.episodes})",
            flush=True,
        )
    scaling = results["2_workers"]["demos_per_min"] / results["1_workers"]["demos_per_min"]
    best = results["2_workers"]["demos_per_min"]
    ok = best >= TARGET_DEMOS_PER_MIN
    print(f"scaling 1 -> 2 workers: {scaling:.2f}x")
    print(f"  {'PASS' if ok else 'MISS'}  >= {TARGET_DEMOS_PER_MIN:.0f} demos/min on 2 cores")
    report = {
        "bench": "datagen",
        "task": args.task,
        "cameras": "front+wrist 96x96",
        "episodes_per_run": args.episodes,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "results": results,
        "scaling_1_to_2_workers": round(scaling, 3),
        "target_demos_per_min": TARGET_DEMOS_PER_MIN,
        "meets_target": ok,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
