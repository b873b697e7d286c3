"""Issue #9's targets: one multi-task VLA trained on this CPU, evaluated per task.

    .venv/bin/python bench/train_eval.py --data data2 --tasks reach push pick_place \\
        --minutes 60 --episodes 50 --out runs/multitask [train overrides ...]

1. Datasets ``<data>/<task>`` (generated when missing: ``--demos`` successful expert
   episodes, DART noise ``--noise``, ``--hold reach=10``: record 10 steps past success so
   the data shows where to stop, not only how to arrive).
2. Training: ``kizuna train`` on all of them at once (one model, instruction-conditioned),
   for ``--minutes`` of wall clock (``max_minutes``: the learning-rate schedule follows the
   clock). Extra arguments are Hydra overrides of config/hydra/train.yaml.
3. Optional model selection (``--select-last N``): the N newest checkpoints scored on
   validation seeds (5000..), the best mean success kept; the figures below never see those.
4. Evaluation: ``--episodes`` per task in the nominal simulator (seeds 1000..), success with
   a 95 % Wilson interval; and the policy's inference time per chunk (two 96x96 cameras,
   one thread, median and p99 over 200 chunks).

Prints a table and writes ``bench/results/train_eval.json``. Not a test: it takes an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

TARGETS = {"reach": 0.95, "push": 0.80, "pick_place": 0.80}  # stack and insert: reported
LATENCY_BUDGET_MS = 20.0


def ensure_dataset(root: Path, task: str, demos: int, noise: float, hold: int = 0) -> float:
    """Generate ``root`` if it is missing; returns the seconds it took (0 when it existed)."""
    from kizuna.hydra_config import compose
    from sim.datagen import GenerateConfig, generate

    if (root / "meta" / "info.json").is_file():
        return 0.0
    start = time.perf_counter()
    overrides = [
        f"task={task}",
        f"episodes={demos}",
        f"out={root}",
        "language=all",
        f"action_noise_rad={noise}",
        f"hold_after_success={hold}",
    ]
    generate(compose("generate", overrides, GenerateConfig))
    return time.perf_counter() - start


def parse_hold(items: list[str]) -> dict[str, int]:
    """``["reach=10"]`` -> ``{"reach": 10}``; a malformed item stops the run before any work."""
    hold = {}
    for item in items:
        task, sep, steps = item.partition("=")
        if not sep or not steps.isdigit():
            raise SystemExit(f"--hold {item!r}: expected TASK=STEPS, e.g. reach=10")
        hold[task] = int(steps)
    return hold


def train_for(minutes: float, datasets: list[Path], out: Path, overrides: list[str]):
    """Train one model on every dataset for ``minutes`` of wall clock (``max_minutes``)."""
    from kizuna.hydra_config import compose
    from policies.vla.config import TrainConfig
    from policies.vla.train import listify_overrides, train

    dataset = f"dataset=[{','.join(map(str, datasets))}]"
    overrides = listify_overrides([dataset, f"out={out}", f"max_minutes={minutes}", *overrides])
    started = time.perf_counter()
    result = train(compose("train", overrides, TrainConfig))
    return result, {
        "steps": result.step,
        "loop_s": result.wall_s,
        "wall_s_incl_data_loading": time.perf_counter() - started,
        "steps_per_s": result.step / result.wall_s if result.wall_s else 0.0,
    }


def select_checkpoint(
    run: Path, tasks: list[str], last: int, episodes: int, seed: int
) -> tuple[Path, list[dict]]:
    """Model selection on validation seeds (``seed``.., apart from the reported evaluation's
    1000..): the checkpoint among the ``last`` newest with the best mean success."""
    from policies.evaluate import EvalConfig, evaluate_tasks
    from policies.vla.policy import load_vla_policy

    torch.set_num_threads(1)
    candidates = sorted((run / "checkpoints").glob("step_*"))[-last:]
    scored = []
    for checkpoint in candidates:
        cfg = EvalConfig(
            checkpoint=str(checkpoint), task=tasks, episodes=episodes, seed=seed, videos=0
        )
        rates = {r.task: r.success_rate for r in evaluate_tasks(load_vla_policy(checkpoint), cfg)}
        scored.append({"checkpoint": checkpoint.name, "val_success": rates})
        print(f"  validation {checkpoint.name}: {rates}")
    best = max(scored, key=lambda row: sum(row["val_success"].values()))
    return run / "checkpoints" / best["checkpoint"], scored


def latency_ms(checkpoint: Path, repeats: int = 200) -> dict[str, float]:
    from policies.vla.policy import load_vla_policy

    torch.set_num_threads(1)
    policy = load_vla_policy(checkpoint)
    rng = np.random.default_rng(0)
    obs = {
        "state": np.zeros(8, np.float32),
        "images": {c: rng.integers(0, 256, (96, 96, 3), np.uint8) for c in ("front", "wrist")},
        "instruction": "reach the green marker",
    }
    for _ in range(10):
        policy.act(obs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        policy.act(obs)
        times.append((time.perf_counter() - start) * 1e3)
    return {"p50": statistics.median(times), "p99": float(np.percentile(times, 99))}


def evaluate_all(checkpoint: Path, tasks: list[str], episodes: int, out: Path) -> list[dict]:
    from policies.evaluate import EvalConfig, evaluate_tasks
    from policies.vla.policy import load_vla_policy

    # One thread: on a shared 2-core machine two OpenMP threads wait on each other.
    torch.set_num_threads(1)
    policy = load_vla_policy(checkpoint)
    cfg = EvalConfig(checkpoint=str(checkpoint), task=tasks, episodes=episodes, out=str(out))
    rows = []
    for report in evaluate_tasks(policy, cfg, progress=True):
        low, high = report.ci95
        target = TARGETS.get(report.task)
        rows.append(
            {
                "task": report.task,
                "episodes": len(report.episodes),
                "success_rate": report.success_rate,
                "ci95": [low, high],
                "target": target,
                "meets_target": None if target is None else report.success_rate >= target,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--tasks", nargs="+", default=["reach", "push", "pick_place"])
    parser.add_argument("--demos", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.02, help="DART noise std (rad)")
    parser.add_argument(
        "--hold",
        nargs="*",
        default=["reach=10"],
        metavar="TASK=STEPS",
        help="steps recorded past success, per task (generated datasets only)",
    )
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs/multitask"))
    parser.add_argument("--skip-train", action="store_true", help="evaluate <out>/last only")
    parser.add_argument(
        "--select-last",
        type=int,
        default=0,
        help="pick among the N newest checkpoints by success on validation seeds (0: last)",
    )
    parser.add_argument("--select-episodes", type=int, default=30)
    parser.add_argument("--select-seed", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=Path("bench/results/train_eval.json"))
    args, overrides = parser.parse_known_args()
    os.environ.setdefault("MUJOCO_GL", "egl")

    datasets = [args.data / task for task in args.tasks]
    hold = parse_hold(args.hold)
    datagen_s = {
        t: ensure_dataset(d, t, args.demos, args.noise, hold.get(t, 0))
        for t, d in zip(args.tasks, datasets, strict=True)
    }
    train_info: dict = {}
    if not args.skip_train:
        _, train_info = train_for(args.minutes, datasets, args.out, overrides)
    checkpoint = (args.out / "last").resolve()
    selection: list[dict] = []
    if args.select_last > 0:
        checkpoint, selection = select_checkpoint(
            args.out, args.tasks, args.select_last, args.select_episodes, args.select_seed
        )
        print(f"selected {checkpoint.name} on validation seeds {args.select_seed}..")
    if args.skip_train:  # the run's own record of how it was trained
        summary = json.loads((checkpoint / "trainer_state.json").read_text())["summary"]
        train_info = {
            "steps": summary["step"],
            "loop_s": summary["wall_s"],
            "from": "trainer_state",
        }
    rows = evaluate_all(checkpoint, args.tasks, args.episodes, args.out / "eval")
    latency = latency_ms(checkpoint)

    print(f"\ncheckpoint {checkpoint}; training {train_info}")
    print(f"{'task':<12} {'success':>8}  {'95% CI':<14} target")
    for row in rows:
        low, high = row["ci95"]
        mark = {True: "PASS", False: "MISS", None: "(reported)"}[row["meets_target"]]
        target = f"{row['target']:.0%}" if row["target"] else "-"
        rate = f"{row['success_rate']:>8.0%}"
        print(f"{row['task']:<12} {rate}  [{low:.2f}, {high:.2f}]   {target} {mark}")
    ok = latency["p50"] <= LATENCY_BUDGET_MS
    print(
        f"inference per chunk: p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms "
        f"(budget {LATENCY_BUDGET_MS} ms: {'PASS' if ok else 'MISS'})"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "checkpoint": str(checkpoint),
        "datasets": [str(d) for d in datasets],
        "datagen_s": datagen_s,
        "demos": args.demos,
        "dart_noise_rad": args.noise,
        "hold_after_success": hold,
        "train": train_info,
        "overrides": overrides,
        "selection": selection,
        "eval": rows,
        "latency_ms": latency,
        "load_average": os.getloadavg(),
    }
    args.json.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
