"""The ``kizuna`` command: one entry point, one subcommand per job.

Subcommands are registered in ``COMMANDS`` below, an explicit literal: name -> (help, the
station module that does the work). Only the chosen subcommand's module is imported and only its
arguments are built, so ``kizuna --help`` and ``kizuna tasks`` start without
loading MuJoCo, torch or rclpy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from kizuna import __version__

# name -> (help, the module that does the work). Each module has ``add_arguments(parser)`` and
# ``main(args) -> exit code``; it is imported only when its subcommand runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "tasks": ("list, show or validate task specs (config/tasks)", "kizuna.task_cli"),
    "demo": (
        "the whole stack once on a CPU: experts, the shipped VLA, fine-tuning, deployment",
        "kizuna.demo",
    ),
    "dataset": ("inspect, check or merge datasets (LeRobot v3)", "kizuna.dataset.cli"),
    "generate": (
        "expert demonstrations into a dataset (task=... episodes=N workers=K)",
        "sim.datagen",
    ),
    "train": (
        "imitation-train the VLA policy on datasets (dataset=... steps=N out=...)",
        "policies.vla.train",
    ),
    "distill": (
        "train a smaller, fewer-step student from a VLA teacher (teacher=... dataset=... out=...)",
        "policies.vla.distill",
    ),
    "export": (
        "export a VLA checkpoint to ONNX for onnxruntime, optionally int8 (CHECKPOINT --int8)",
        "policies.export",
    ),
    "eval": (
        "evaluate a checkpoint in sim: success, CI, safety, videos (checkpoint=... task=...)",
        "policies.evaluate",
    ),
    "rl": (
        "SB3 baseline (SAC/PPO) on a state-based task -> checkpoint + eval (task=... algo=...)",
        "policies.rl",
    ),
    "residual": (
        "RL residual on a frozen VLA in randomized sim -> checkpoint + base vs residual eval",
        "policies.residual_cli",
    ),
    "serve": (
        "serve a checkpoint over openpi's websocket protocol (checkpoint=... host=... port=...)",
        "policies.serve",
    ),
    "deploy": (
        "run a checkpoint through the robot runtime: in sim, or as ROS 2 nodes (--backend ros)",
        "real_robot.deploy",
    ),
    "calibrate": (
        "intrinsics, hand-eye, sysid (real -> sim), scene registration (STEP ... --help)",
        "calibration.cli",
    ),
    "ingest": (
        "rosbag2 bags (recorder_node, any ROS 2 arm) -> dataset episodes (BAG... --into DATASET)",
        "real_robot.ingest_cli",
    ),
    "adapt": (
        "teach a new task: TASK.yaml -> data -> fine-tuned VLA -> eval -> HTML report",
        "kizuna.adapt",
    ),
    "hackathon": (
        "pick a task, train a small policy in a time budget, get a video and a score",
        "kizuna.hackathon",
    ),
    "leaderboard": (
        "merge leaderboard result files (kizuna eval leaderboard=true) into a ranked HTML table",
        "kizuna.leaderboard",
    ),
    "loop": (
        "deploy -> record on the 'real' cell -> fine-tune -> redeploy, with before/after success",
        "kizuna.loop",
    ),
}


def _module(command: str) -> ModuleType:
    return importlib.import_module(COMMANDS[command][1])


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of ``command`` only (``None``: of no subcommand).

    Adding just the chosen subcommand's arguments keeps each station's import cost, and any
    import failure, to its own subcommand: ``kizuna tasks`` never imports MuJoCo.
    """
    parser = argparse.ArgumentParser(
        prog="kizuna", description="kizuna: sim-to-real robot learning on ROS 2."
    )
    parser.add_argument("--version", action="version", version=f"kizuna {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (help_text, _) in COMMANDS.items():
        subparser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _module(name).add_arguments(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kizuna`` console script; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The subcommand is the first argument that is not an option (the top level has only
    # --help and --version).
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return int(_module(args.command).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
