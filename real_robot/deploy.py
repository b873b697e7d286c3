"""``kizuna deploy``: run a checkpoint through the robot runtime (safety filter, chunk executor,
watchdog, e-stop) on the simulator directly (``--backend sim``), or start the ROS 2 nodes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from policies.base import load_policy
from real_robot.runtime.loop import ControlLoop, LoopConfig
from real_robot.runtime.sim_robot import SimRobot


def run_sim(args: argparse.Namespace) -> dict:
    from sim.env import KizunaEnv  # the simulated robot: imported only for --backend sim

    policy = load_policy(args.checkpoint)
    cameras = tuple(getattr(policy, "cameras", ("front", "wrist")))
    image_size = getattr(policy, "image_size", 96)
    env = KizunaEnv(
        args.task,
        backend=args.engine,
        cameras=cameras,
        image_size=image_size,
        reality=args.reality,
        render_mode="rgb_array" if args.video else None,
    )
    robot = SimRobot(env)
    episodes, frames = [], []
    for k in range(args.episodes):
        robot.reset(seed=args.seed + k)
        loop = ControlLoop(
            robot,
            policy,
            cameras,
            LoopConfig(control_hz=env.spec_task.control_hz, replan_every=args.replan_every),
            threaded=False,
        )
        events: dict[str, int] = {}
        success = False
        while not robot.done:
            report = loop.tick(robot.time_s)
            for reason in report.reasons:
                events[reason] = events.get(reason, 0) + 1
            success = success or bool(robot.info.get("success"))
            if args.video and k == 0:
                frames.append(env.render())
        episodes.append(
            {"seed": args.seed + k, "success": success, "steps": robot.steps, "events": events}
        )
        print(
            f"  episode {k}: {'success' if success else 'failure'} in {robot.steps} steps"
            + (f", safety/runtime events {events}" if events else "")
        )
    env.close()
    if args.video and frames:
        from kizuna.video import write_mp4

        write_mp4(args.video, frames, fps=env.spec_task.control_hz)
    rate = float(np.mean([e["success"] for e in episodes]))
    return {
        "checkpoint": str(args.checkpoint),
        "task": args.task,
        "reality": args.reality,
        "success_rate": rate,
        "episodes": episodes,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory")
    parser.add_argument(
        "--backend",
        choices=["sim", "ros"],
        default="sim",
        help="sim: drive the simulator directly; ros: start the ROS 2 nodes",
    )
    parser.add_argument("--task", default="pick_place", help="task name or YAML path")
    parser.add_argument("--engine", default=None, help="physics engine for --backend sim")
    parser.add_argument("--reality", default=None, help="reality profile name or path")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--replan-every", type=int, default=5, help="ticks between inferences")
    parser.add_argument("--video", default=None, help="mp4 of the first episode")
    parser.add_argument("--report", default=None, help="write the JSON report here")


def main(args: argparse.Namespace) -> int:
    if args.backend == "ros":
        print("error: --backend ros needs the ROS 2 nodes (issue #4, in progress)")
        return 2
    result = run_sim(args)
    print(f"success {result['success_rate']:.0%} over {len(result['episodes'])} episodes")
    if args.report:
        Path(args.report).write_text(json.dumps(result, indent=2))
    return 0
