"""``kizuna tasks``: list the shipped task specs, show one, validate task files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from kizuna.task import TaskSpecError, load_task, shipped_tasks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tasks_command", metavar="{show,validate}")
    show = sub.add_parser("show", help="print a task spec, validated and with defaults, as YAML")
    show.add_argument("task", metavar="NAME|PATH", help="a shipped task name or a .yaml file")
    validate = sub.add_parser("validate", help="check task files; exit 1 if any is refused")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="task .yaml files")


def main(args: argparse.Namespace) -> int:
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
