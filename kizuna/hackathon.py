"""``kizuna hackathon``: pick a task, train a small policy within a time budget, get a score.

```sh
kizuna hackathon                                   # prints the menu and asks for a task
kizuna hackathon --task reach --minutes 10 --name team-a
kizuna leaderboard merge hackathon/*/leaderboard.json --out board.html
```

It is ``kizuna adapt`` with student settings: a small VLA trained from scratch (or ``--from`` a
checkpoint), a fixed evaluation (``eval_episodes`` episodes on the leaderboard's seeds, never
shortened by the budget, so every team's score is comparable), and a ``leaderboard.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kizuna.task import TaskSpecError, load_task, shipped_tasks

# Small enough to learn a task in minutes on 2 CPU cores (~0.25 M parameters).
SMALL_MODEL: dict[str, Any] = {
    "d_model": 64,
    "n_heads": 4,
    "trunk_layers": 2,
    "expert_layers": 1,
    "dropout": 0.0,
    "head": "l1",
    "chunk_size": 10,
    "vision": {"channels": [16, 32, 32, 32], "groups": 4},
}


def menu() -> list[tuple[str, str]]:
    """(task, one-line description) of every shipped task."""
    rows = []
    for name in shipped_tasks():
        try:
            rows.append((name, load_task(name).description))
        except TaskSpecError as exc:  # a broken shipped spec should not hide the others
            rows.append((name, f"(invalid: {exc})"))
    return rows


def print_menu(rows: list[tuple[str, str]]) -> None:
    print("kizuna hackathon: pick a task")
    for i, (name, description) in enumerate(rows, 1):
        print(f"  {i}. {name:<12} {description}")


def choose(rows: list[tuple[str, str]], answer: str) -> str:
    answer = answer.strip()
    if answer.isdigit() and 1 <= int(answer) <= len(rows):
        return rows[int(answer) - 1][0]
    if answer in {name for name, _ in rows} or answer.endswith((".yaml", ".yml")):
        return answer
    raise ValueError(f"{answer!r} is not a task number 1..{len(rows)} or a task name")


def run(args: argparse.Namespace, task: str) -> dict[str, Any]:
    """Train and score ``task``; returns the leaderboard record."""
    from kizuna.adapt import AdaptConfig, adapt
    from kizuna.leaderboard import LEADERBOARD_SEED, write_result

    name = load_task(task).name
    out = Path(args.out or f"hackathon/{name}-{args.name}")
    cfg = AdaptConfig(
        task=task,
        init_from=args.init_from,
        out=str(out),
        budget_min=args.minutes,
        episodes=args.episodes,
        workers=args.workers,
        threads=args.threads,
        batch_size=args.batch_size,
        lr=1e-4 if args.init_from else 3e-4,
        warmup_steps=100,
        probe_every=args.probe_every,
        probe_episodes=args.probe_episodes,
        eval_episodes=args.eval_episodes,
        fit_eval_to_budget=False,  # the leaderboard needs every team's episode count
        eval_seed=LEADERBOARD_SEED,
        randomization="none",
        model={} if args.init_from else SMALL_MODEL,
    )
    summary = adapt(cfg, overwrite=args.overwrite)
    report = json.loads((out / "eval" / "report.json").read_text())
    path = write_result(report, args.name, out)
    record = json.loads(path.read_text())
    videos = [v for kind in ("success", "failure") for v in summary["final"]["videos"][kind]]
    low, high = record["ci95"]
    print(
        f"\nSCORE {record['success_rate']:.0%} on {name} ({record['successes']}/"
        f"{record['episodes']}, 95 % CI [{low:.2f}, {high:.2f}])\n"
        f"video  {videos[0] if videos else '(none recorded)'}\n"
        f"report {out / 'report.html'}\nresult {path}  (kizuna leaderboard merge ...)"
    )
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", help="a task name or number from the menu (else: asked)")
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget, all stages")
    parser.add_argument("--name", default="anonymous", help="your team name (on the board)")
    parser.add_argument("--from", dest="init_from", help="start from this VLA checkpoint")
    parser.add_argument("--out", help="output directory (default hackathon/<task>-<name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--episodes", type=int, default=40, help="expert demonstrations")
    parser.add_argument("--eval-episodes", type=int, default=20, help="scored episodes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--probe-every", type=int, default=400, help="steps between probes")
    parser.add_argument("--probe-episodes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="data-generation processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")


def main(args: argparse.Namespace) -> int:
    rows = menu()
    try:
        if args.task:
            task = choose(rows, args.task)
        elif sys.stdin.isatty():
            print_menu(rows)
            task = choose(rows, input("task (number or name): "))
        else:
            print_menu(rows)
            print("pass --task NAME (no terminal to ask on)", file=sys.stderr)
            return 2
        run(args, task)
    except (ValueError, TaskSpecError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
