"""``kizuna demo``: run every shipped task once with the scripted expert, write videos + summary.

The first thing a new user runs: no GPU, no ROS, a few seconds per task.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from kizuna.task import shipped_tasks
from kizuna.video import write_mp4
from sim.env import KizunaEnv
from sim.expert import ScriptedExpert


def run_episode(env: KizunaEnv, seed: int, record: bool) -> dict:
    """One expert episode; returns its outcome and (if ``record``) the rendered frames."""
    env.reset(seed=seed)
    expert = ScriptedExpert(np.random.default_rng(seed))
    expert.reset(env)
    frames = [env.render()] if record else []
    start = time.perf_counter()
    success, reward = False, 0.0
    steps = 0
    while steps < env.spec_task.episode_steps:
        steps += 1
        _, r, terminated, truncated, info = env.step(expert.act())
        reward += r
        if record:
            frames.append(env.render())
        success = success or info["success"]
        if terminated or truncated:
            break
    if record and success:
        frames += frames[-1:] * 10  # linger on the result so the viewer sees it
    return {
        "success": bool(success),
        "steps": steps,
        "return": round(float(reward), 3),
        "wall_s": round(time.perf_counter() - start, 3),
        "frames": frames,
    }


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = args.tasks or shipped_tasks()
    summary = {"backend": args.backend, "seed": args.seed, "tasks": {}}
    print(f"kizuna demo: {len(tasks)} tasks on {args.backend}, videos in {out}/")
    for task in tasks:
        env = KizunaEnv(task, backend=args.backend, cameras=(), render_mode="rgb_array")
        result = run_episode(env, args.seed, record=True)
        env.close()
        frames = result.pop("frames")
        video = out / f"{task}.mp4"
        write_mp4(video, frames, fps=env.spec_task.control_hz)
        result["video"] = str(video)
        summary["tasks"][task] = result
        mark = "success" if result["success"] else "FAILED "
        print(
            f"  {task:12s} {mark} in {result['steps']:3d} steps "
            f"({result['wall_s']:.1f} s)  {video}"
        )
    rate = np.mean([r["success"] for r in summary["tasks"].values()])
    summary["success_rate"] = float(rate)
    print(f"success {rate:.0%} over {len(tasks)} tasks")
    if args.dataset_episodes > 0:
        summary["dataset"] = _small_dataset(out / "dataset", args.dataset_episodes, args.seed)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary in {out / 'summary.json'}")
    return 0


def _small_dataset(root: Path, episodes: int, seed: int) -> dict:
    """A few pick_place demonstrations with both cameras, written and checked like any dataset."""
    from kizuna.dataset import check_dataset
    from sim.datagen import GenerateConfig, generate

    if root.exists():  # the demo's own scratch output from an earlier run
        shutil.rmtree(root)
    cfg = GenerateConfig(task="pick_place", episodes=episodes, workers=2, out=str(root), seed=seed)
    report = generate(cfg)
    check = check_dataset(root)
    print(
        f"dataset: {report.kept} pick_place demos (two 96x96 cameras) in {report.wall_s:.1f} s, "
        f"expert success {report.expert_success_rate:.0%}, check {'ok' if check.ok else 'FAILED'}"
        f"  {root}  (kizuna dataset info {root})"
    )
    return {
        "path": str(root),
        "episodes": report.kept,
        "expert_success_rate": report.expert_success_rate,
        "check_ok": check.ok,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output directory (videos, summary)")
    parser.add_argument("--backend", default="mujoco", choices=["mujoco", "pybullet"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tasks", nargs="*", help="task names or YAML paths (default: all shipped)"
    )
    parser.add_argument(
        "--dataset-episodes",
        type=int,
        default=10,
        help="pick_place demonstrations to write as a LeRobot v3 dataset (0: none)",
    )
