"""What ``kizuna deploy --backend ros`` starts: node parameters and process command lines.

Plain Python (no rclpy), so the plan is testable without ROS.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from kizuna.paths import config_dir
from kizuna.task import load_task

# The demo.launch.py arguments ``ros2 launch`` is given (lists stay with the YAML defaults).
LAUNCH_ARGUMENTS = (
    *("task", "reality", "backend", "episode_steps", "seed"),
    *("checkpoint_dir", "instruction", "replan_every", "command_interface", "control_hz"),
)


class DeployError(RuntimeError):
    """A deployment that cannot go on; the message says why."""


def checkpoint_cameras(checkpoint: Path) -> tuple[list[str], list[int]]:
    """The cameras and image size a checkpoint's config.json names (VLA defaults otherwise)."""
    try:
        config = json.loads((checkpoint / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DeployError(f"{checkpoint}: cannot read config.json ({exc})") from None
    cameras = config.get("cameras", ["front", "wrist"])
    return list(cameras), list(config.get("image_size", [96, 96]))


def node_parameters(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(policy_node, sim_robot_node) parameter overrides for this run."""
    spec = load_task(args.task)
    cameras, image_size = checkpoint_cameras(Path(args.checkpoint))
    hz = float(spec.control_hz)
    policy = {
        "checkpoint_dir": str(Path(args.checkpoint).resolve()),
        "instruction": args.instruction or spec.instructions["en"][0],
        "camera_names": cameras,
        "image_size": image_size,
        "control_hz": hz,
        "replan_every": args.replan_every,
        "command_interface": args.command_interface,
    }
    sim = {
        "task": args.task,
        "reality": args.reality or "",
        "backend": args.engine or "",
        "cameras": cameras,
        "image_size": image_size,
        "control_hz": hz,
        "episode_steps": args.episode_steps or 0,
        "seed": args.seed,
    }
    return policy, sim


def recorder_parameters(args: argparse.Namespace, policy: dict[str, Any]) -> dict[str, Any] | None:
    """recorder_node parameter overrides when ``--record DIR`` is given, else None."""
    if not getattr(args, "record", None):
        return None
    return {
        "output_dir": str(Path(args.record).resolve()),
        "camera_names": policy["camera_names"],
        "command_interface": policy["command_interface"],
        "robot_id": "sim_robot_node",
        "policy_version": policy["checkpoint_dir"],
    }


def _ros_arg(name: str, value: Any) -> str:
    # JSON is YAML: strings come out quoted (so "yes" or "" stay strings), lists as [..].
    return f"{name}:={json.dumps(value)}"


def ros2_launch_available() -> bool:
    return shutil.which("ros2") is not None and importlib.util.find_spec("launch_ros") is not None


def node_commands(
    policy: dict[str, Any],
    sim: dict[str, Any],
    rt_priority: int = 0,
    use_launch: bool | None = None,
    recorder: dict[str, Any] | None = None,
) -> list[list[str]]:
    """The processes to start: one ``ros2 launch``, or the two nodes directly.

    ``rt_priority`` > 0 runs the nodes under ``chrt -f`` (SCHED_FIFO), as a robot PC should
    run its control processes: on a loaded machine it is the difference between a few and tens
    of milliseconds of period jitter (bench/ros_loop.py).
    """
    prefix = ["chrt", "-f", str(rt_priority)] if rt_priority > 0 else []
    if ros2_launch_available() if use_launch is None else use_launch:
        values = {**sim, **policy}
        launch_args = [f"{k}:={values[k]}" for k in LAUNCH_ARGUMENTS] + ["autostart:=false"]
        if recorder:
            launch_args += ["record:=true", f"record_dir:={recorder['output_dir']}"]
        launch_prefix = ["--launch-prefix", " ".join(prefix)] if prefix else []
        return [["ros2", "launch", *launch_prefix, "kizuna", "demo.launch.py", *launch_args]]
    commands = []
    nodes = [("sim_robot_node", sim), ("policy_node", policy)]
    nodes += [("recorder_node", recorder)] if recorder else []
    for module, params in nodes:
        params_file = config_dir() / "ros" / f"{module}.yaml"
        overrides = [a for k, v in params.items() for a in ("-p", _ros_arg(k, v))]
        # The recorder writes files: it never runs under SCHED_FIFO.
        node_prefix = prefix if module != "recorder_node" else []
        commands.append(
            [*node_prefix, sys.executable, "-m", f"real_robot.ros.{module}", "--ros-args"]
            + ["--params-file", str(params_file), *overrides]
        )
    return commands
