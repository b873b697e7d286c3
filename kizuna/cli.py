"""The ``kizuna`` command: one entry point, one subcommand per job.

Subcommands are registered in ``COMMANDS`` below, an explicit literal: name -> (help, a function
that adds the subcommand's arguments, a function that runs it and returns the exit code). The
work lives in the station's module, imported inside those functions, and only the chosen
subcommand's arguments are built, so ``kizuna --help`` and ``kizuna tasks`` start without
loading MuJoCo, torch or rclpy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import yaml

from kizuna import __version__
from kizuna.task import TaskSpecError, load_task, shipped_tasks

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int | None]


# ---- tasks: list, show and validate task specs ---------------------------------------------


def _tasks_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tasks_command", metavar="{show,validate}")
    show = sub.add_parser("show", help="print a task spec, validated and with defaults, as YAML")
    show.add_argument("task", metavar="NAME|PATH", help="a shipped task name or a .yaml file")
    validate = sub.add_parser("validate", help="check task files; exit 1 if any is refused")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="task .yaml files")


def _tasks_run(args: argparse.Namespace) -> int:
    if args.tasks_command == "show":
        return _tasks_show(args.task)
    if args.tasks_command == "validate":
        return _tasks_validate(args.paths)
    return _tasks_list()


def _tasks_list() -> int:
    """One line per shipped task: name, object and fixture counts, spec hash, description."""
    status = 0
    print(f"{'TASK':<12} {'OBJECTS':>7} {'FIXTURES':>8}  {'SPEC HASH':<16}  DESCRIPTION")
    for name in shipped_tasks():
        try:
            spec = load_task(name)
        except TaskSpecError as exc:
            print(exc, file=sys.stderr)
            status = 1
            continue
        print(
            f"{spec.name:<12} {len(spec.objects):>7} {len(spec.fixtures):>8}  "
            f"{spec.spec_hash():<16}  {spec.description}"
        )
    return status


def _tasks_show(name_or_path: str) -> int:
    try:
        spec = load_task(name_or_path)
    except TaskSpecError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"# {spec.name}: spec hash {spec.spec_hash()}")
    print(
        yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True), end=""
    )
    return 0


def _tasks_validate(paths: Sequence[str]) -> int:
    status = 0
    for path in paths:
        try:
            spec = load_task(path)
        except TaskSpecError as exc:
            print(exc, file=sys.stderr)
            status = 1
        else:
            print(f"ok  {path}  ({spec.name}, spec hash {spec.spec_hash()})")
    return status


# ---- demo: sim/demo.py ---------------------------------------------------------------------


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from sim.demo import add_arguments  # the station owns its options

    add_arguments(parser)


def _demo_run(args: argparse.Namespace) -> int | None:
    from sim.demo import main

    return main(args)


# ---- dataset: kizuna/dataset/cli.py --------------------------------------------------------


def _dataset_arguments(parser: argparse.ArgumentParser) -> None:
    from kizuna.dataset.cli import add_arguments  # pyarrow and PyAV load only for this command

    add_arguments(parser)


def _dataset_run(args: argparse.Namespace) -> int:
    from kizuna.dataset.cli import main

    return main(args)


# ---- generate: sim/datagen.py -------------------------------------------------------------


def _generate_arguments(parser: argparse.ArgumentParser) -> None:
    from sim.datagen import add_arguments

    add_arguments(parser)


def _generate_run(args: argparse.Namespace) -> int:
    from sim.datagen import main

    return main(args)


# ---- eval: policies/evaluate.py ------------------------------------------------------------


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    from policies.evaluate import add_arguments

    add_arguments(parser)


def _eval_run(args: argparse.Namespace) -> int:
    from policies.evaluate import main

    return main(args)


# ---- rl: policies/rl.py --------------------------------------------------------------------


def _rl_arguments(parser: argparse.ArgumentParser) -> None:
    from policies.rl import add_arguments

    add_arguments(parser)


def _rl_run(args: argparse.Namespace) -> int:
    from policies.rl import main

    return main(args)


# ---- train: policies/vla/train.py --------------------------------------------------------


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from policies.vla.train import add_arguments

    add_arguments(parser)


def _train_run(args: argparse.Namespace) -> int:
    from policies.vla.train import main

    return main(args)


# ---- deploy: real_robot/deploy.py ----------------------------------------------------------


def _deploy_arguments(parser: argparse.ArgumentParser) -> None:
    from real_robot.deploy import add_arguments

    add_arguments(parser)


def _deploy_run(args: argparse.Namespace) -> int:
    from real_robot.deploy import main

    return main(args)


# ---- serve: policies/serve.py ------------------------------------------------------------


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    from policies.serve import add_arguments

    add_arguments(parser)


def _serve_run(args: argparse.Namespace) -> int:
    from policies.serve import main

    return main(args)


# ---- the registry --------------------------------------------------------------------------

COMMANDS: dict[str, tuple[str, AddArguments, Run]] = {
    "tasks": ("list, show or validate task specs (config/tasks)", _tasks_arguments, _tasks_run),
    "demo": ("scripted episodes of every task: videos + summary", _demo_arguments, _demo_run),
    "dataset": ("inspect, check or merge datasets (LeRobot v3)", _dataset_arguments, _dataset_run),
    "generate": (
        "expert demonstrations into a dataset (task=... episodes=N workers=K)",
        _generate_arguments,
        _generate_run,
    ),
    "eval": (
        "evaluate a checkpoint in sim: success, CI, safety, videos (checkpoint=... task=...)",
        _eval_arguments,
        _eval_run,
    ),
    "rl": (
        "SB3 baseline (SAC/PPO) on a state-based task -> checkpoint + eval (task=... algo=...)",
        _rl_arguments,
        _rl_run,
    ),
    "train": (
        "imitation-train the VLA policy on datasets (dataset=... steps=N out=...)",
        _train_arguments,
        _train_run,
    ),
    "deploy": (
        "run a checkpoint through the robot runtime: in sim, or as ROS 2 nodes (--backend ros)",
        _deploy_arguments,
        _deploy_run,
    ),
    "serve": (
        "serve a checkpoint over openpi's websocket protocol (checkpoint=... host=... port=...)",
        _serve_arguments,
        _serve_run,
    ),
    # Next, one line each, run functions importing lazily from their station:
    # "calibrate" (calibration) ...
}


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
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        subparser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_arguments(subparser)
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
    _, _, run = COMMANDS[args.command]
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
