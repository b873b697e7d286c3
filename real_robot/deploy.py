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
    parser.add_argument("--engine", default=None, help="physics engine: mujoco or pybullet")
    parser.add_argument("--reality", default=None, help="reality profile name or path")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--replan-every", type=int, default=5, help="ticks between inferences")
    parser.add_argument("--video", default=None, help="mp4 of the first episode (sim)")
    parser.add_argument(
        "--instruction", default=None, help="ros: instruction (default: the task's first, English)"
    )
    parser.add_argument(
        "--episode-steps", type=int, default=None, help="ros: episode length (default: the task's)"
    )
    parser.add_argument(
        "--command-interface",
        choices=["forward_position_controller", "joint_trajectory_controller"],
        default="forward_position_controller",
        help="ros: the controller interface the policy node commands",
    )
    parser.add_argument(
        "--rt-priority",
        type=int,
        default=0,
        help="ros: run the nodes under `chrt -f N` (SCHED_FIFO; needs CAP_SYS_NICE); 0: off",
    )
    parser.add_argument(
        "--record",
        default=None,
        metavar="DIR",
        help="ros: also run recorder_node, one rosbag2 bag per episode in DIR (kizuna ingest)",
    )
    parser.add_argument("--report", default=None, help="write the JSON report here")


def run_ros(args: argparse.Namespace) -> dict | None:
    """The policy node and the simulated robot node as processes, over DDS."""
    try:
        from real_robot.ros.deploy_ros import DeployError, run_nodes
    except ImportError as exc:
        print(f"error: --backend ros needs rclpy ({exc}); pip install -e '.[ros]'")
        return None
    try:
        return run_nodes(args)
    except DeployError as exc:
        print(f"error: {exc}")
        return None


def main(args: argparse.Namespace) -> int:
    try:
        result = run_ros(args) if args.backend == "ros" else run_sim(args)
    except KeyboardInterrupt:
        return 130
    if result is None:
        return 2
    print(f"success {result['success_rate']:.0%} over {len(result['episodes'])} episodes")
    if args.report:
        Path(args.report).write_text(json.dumps(result, indent=2))
    return 0
