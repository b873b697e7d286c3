"""Edge efficiency: torch fp32 vs ONNX fp32 vs ONNX int8 vs a distilled student, one core.

    .venv/bin/python bench/edge.py --checkpoint runs/vla/last --task pick_place --episodes 50 \\
        --distill-steps 5000                         # or --student runs/distill/student
        --flow-steps 3 5                             # + the teacher exported with fewer steps
    .venv/bin/python bench/edge.py --tiny --episodes 2   # smoke run on an untrained tiny model

Per variant, in one process pinned to one core (torch 1 thread, onnxruntime 1 intra-op thread,
numpy's BLAS 1 thread inside the ONNX policy's preprocessing): per-chunk latency p50/p90/p99/
mean (every ``act()`` of the evaluation episodes plus ``--latency-chunks`` replays of
observations seen there), CPU seconds per second of robot motion (process CPU time
inside ``act()`` / (chunks x chunk_size x control_dt): the energy proxy), model size on disk
and the success rate from ``policies.evaluate`` on the same episode seeds, run once per flow-noise
seed (``--noise-seeds``) and pooled. Target (issue #8): ONNX int8
or the student needs >= 3x less CPU per second of motion than torch fp32 and keeps >= 95 % of
its success. Writes ``bench/results/edge.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kizuna.metrics import wilson_interval
from kizuna.task import load_task
from policies.base import load_policy
from policies.evaluate import EvalConfig, evaluate
from policies.export import export_onnx

TARGET_SPEEDUP, TARGET_KEPT = 3.0, 0.95
REPLAY_KEEP = 64  # observations kept from the episodes for the latency replays


class TimedPolicy:
    """Wraps a policy; records wall and process CPU time of every ``act``."""

    def __init__(self, policy: Any, cameras: tuple[str, ...]) -> None:
        self.policy, self.cameras = policy, cameras
        self.chunk_size, self.action_dim = policy.chunk_size, policy.action_dim
        self.wall_s: list[float] = []
        self.cpu_s: list[float] = []
        self.seen: list[Mapping[str, Any]] = []

    def reset(self) -> None:
        self.policy.reset()

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        if len(self.seen) < REPLAY_KEEP:
            self.seen.append(observation)
        wall, cpu = time.perf_counter(), time.process_time()
        chunk = self.policy.act(observation)
        self.cpu_s.append(time.process_time() - cpu)
        self.wall_s.append(time.perf_counter() - wall)
        return chunk


def size_mb(path: Path) -> float:
    weights = (
        path / "model.onnx" if (path / "model.onnx").is_file() else path / "model.safetensors"
    )
    return round(weights.stat().st_size / 1e6, 3)


def measure(name: str, path: Path, args: argparse.Namespace, control_dt_s: float) -> dict:
    onnx = (path / "model.onnx").is_file()
    config = json.loads((path / "config.json").read_text())
    successes = episodes = 0
    timed = None
    for noise_seed in args.noise_seeds:  # the policy's flow-noise stream (its own seed)
        options = {"seed": noise_seed} | ({"threads": 1} if onnx else {})
        policy = load_policy(path, **options)
        if timed is None:
            timed = TimedPolicy(policy, tuple(config["cameras"]))
        timed.policy = policy
        settings = EvalConfig(task=args.task, episodes=args.episodes, seed=args.seed, videos=0)
        report = evaluate(timed, settings)
        successes += report.successes
        episodes += len(report.episodes)
    assert timed is not None
    for _ in range(3):  # warm-up of the replay loop, not counted
        timed.policy.act(timed.seen[0])
    warm = len(timed.wall_s)
    for i in range(args.latency_chunks):
        timed.act(timed.seen[i % len(timed.seen)])
    wall_ms = 1000 * np.asarray(timed.wall_s[1:])  # the very first call pays one-off setup
    cpu = np.asarray(timed.cpu_s[1:])
    motion_s = len(cpu) * timed.chunk_size * control_dt_s
    row = {
        "variant": name,
        "path": str(path),
        "precision": config.get("precision", "fp32"),
        "flow_steps": config.get("flow_steps"),
        "latency_ms": {
            "p50": round(float(np.percentile(wall_ms, 50)), 3),
            "p90": round(float(np.percentile(wall_ms, 90)), 3),
            "p99": round(float(np.percentile(wall_ms, 99)), 3),
            "mean": round(float(wall_ms.mean()), 3),
        },
        "cpu_s_per_motion_s": round(float(cpu.sum() / motion_s), 5),
        "chunks_timed": len(cpu),
        "chunks_in_episodes": warm,
        "model_mb": size_mb(path),
        "success_rate": successes / episodes,
        "successes": successes,
        "episodes": episodes,
        "ci95": [round(x, 4) for x in wilson_interval(successes, episodes)],
        "noise_seeds": list(args.noise_seeds),
    }
    print(f"  {name}: {row['latency_ms']}, CPU s/s {row['cpu_s_per_motion_s']}")
    return row


def make_student(teacher: Path, args: argparse.Namespace, scratch: Path) -> Path:
    from policies.vla.distill import DistillConfig, distill

    dataset = tuple(args.dataset or ())
    if args.tiny and not dataset:
        from kizuna.dataset.synthetic import write_synthetic

        write_synthetic(scratch / "data", [20, 20])
        dataset = (str(scratch / "data"),)
    cfg = DistillConfig(
        teacher=str(teacher),
        dataset=dataset,
        out=str(scratch / "distill"),
        steps=args.distill_steps,
        batch_size=8 if args.tiny else 64,
        threads=1,
    )
    return distill(cfg, progress=False).student


def run(args: argparse.Namespace, scratch: Path) -> dict:
    teacher = args.checkpoint
    if args.tiny:
        from policies.vla.testing import make_tiny_checkpoint

        teacher = make_tiny_checkpoint(scratch / "tiny")
    if teacher is None:
        raise SystemExit("error: pass --checkpoint PATH (a kizuna_vla checkpoint) or --tiny")
    variants = {
        "torch_fp32": teacher,
        "onnx_fp32": export_onnx(teacher, scratch / "onnx"),
        "onnx_int8": export_onnx(teacher, scratch / "onnx-int8", int8=True),
    }
    for steps in args.flow_steps:  # the teacher itself, integrated in fewer Euler steps
        variants[f"onnx_fp32_flow{steps}"] = export_onnx(
            teacher, scratch / f"onnx-flow{steps}", flow_steps=steps
        )
        variants[f"onnx_int8_flow{steps}"] = export_onnx(
            teacher, scratch / f"onnx-int8-flow{steps}", int8=True, flow_steps=steps
        )
    student = args.student
    if student is None and args.distill_steps:
        student = make_student(teacher, args, scratch)
    if student is not None:
        variants["student_torch_fp32"] = student
        variants["student_onnx_int8"] = export_onnx(student, scratch / "student-int8", int8=True)
    control_dt_s = 1.0 / load_task(args.task).control_hz
    print(f"measuring {len(variants)} variants on {args.task}, {args.episodes} episode(s) each")
    rows = [measure(name, Path(path), args, control_dt_s) for name, path in variants.items()]
    return summarize(rows)


def summarize(rows: list[dict]) -> dict:
    base = rows[0]
    for row in rows:
        row["cpu_speedup_vs_torch"] = round(
            base["cpu_s_per_motion_s"] / row["cpu_s_per_motion_s"], 2
        )
        kept = row["success_rate"] / base["success_rate"] if base["success_rate"] else None
        row["success_kept_vs_torch"] = None if kept is None else round(kept, 3)
    # With no teacher successes (an untrained model) "kept" is undefined: only speed is judged.
    met = [
        r["variant"]
        for r in rows[1:]
        if r["variant"].startswith(("onnx_int8", "student_"))
        and r["cpu_speedup_vs_torch"] >= TARGET_SPEEDUP
        and (r["success_kept_vs_torch"] is None or r["success_kept_vs_torch"] >= TARGET_KEPT)
    ]
    return {
        "variants": rows,
        "target": {"speedup": TARGET_SPEEDUP, "kept": TARGET_KEPT, "met_by": met},
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| variant | p50 ms | p99 ms | CPU s / s motion | speed-up | MB | success | kept |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kept = "—" if r["success_kept_vs_torch"] is None else f"{r['success_kept_vs_torch']:.0%}"
        lines.append(
            f"| {r['variant']} | {r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} "
            f"| {r['cpu_s_per_motion_s']:.4f} | {r['cpu_speedup_vs_torch']:.1f}x "
            f"| {r['model_mb']:.2f} | {r['success_rate']:.0%} | {kept} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="the teacher: a trained VLA checkpoint")
    parser.add_argument("--student", type=Path, help="a distilled checkpoint (kizuna distill)")
    parser.add_argument("--distill-steps", type=int, default=0, help="make a student first")
    parser.add_argument("--dataset", nargs="*", help="distillation data (default: teacher's)")
    parser.add_argument("--task", default="reach")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="first episode seed")
    parser.add_argument(
        "--noise-seeds",
        type=int,
        nargs="+",
        default=[0],
        help="flow-noise seeds of each policy; the episodes run once per seed, pooled "
        "(one noise stream alone moved pick_place success by +-5 points over 100 episodes)",
    )
    parser.add_argument("--latency-chunks", type=int, default=200)
    parser.add_argument(
        "--flow-steps",
        type=int,
        nargs="*",
        default=[],
        help="also export the teacher with these fewer Euler steps (fp32 and int8)",
    )
    parser.add_argument("--core", type=int, default=None, help="pin to this CPU (default: first)")
    parser.add_argument("--tiny", action="store_true", help="untrained tiny model (smoke run)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/edge.json"))
    args = parser.parse_args()
    if args.tiny and not args.student and not args.distill_steps:
        args.distill_steps = 20
    core = args.core if args.core is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})  # "one core": physics, rendering and the model share it
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args, Path(tmp))
    report |= {
        "task": args.task,
        "episodes": args.episodes,
        "checkpoint": "tiny (untrained)" if args.tiny else str(args.checkpoint),
        "core": core,
        "torch_version": torch.__version__,
        "load_average_1min": {"before": round(load_before, 2), "after": os.getloadavg()[0]},
        "date": time.strftime("%Y-%m-%d"),
    }
    print(table(report["variants"]))
    print(
        f"target (>= {TARGET_SPEEDUP}x less CPU, >= {TARGET_KEPT:.0%} success kept) met by: "
        f"{', '.join(report['target']['met_by']) or 'none'}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
