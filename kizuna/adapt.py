"""``kizuna adapt TASK.yaml``: a new task spec to a fine-tuned policy and a report, one command.

```sh
kizuna adapt my_cell.yaml --from checkpoints/multitask --budget-min 30
```

Six stages, each named on one status line with the time left in the budget:

1. validate  the task spec (``kizuna.task``) and the base checkpoint;
2. preview   one rendered frame of the scene (``preview.png``);
3. generate  scripted-expert demonstrations (``sim.datagen``), stopped at its budget share;
4. train     fine-tune the checkpoint (``TrainConfig.init_from``) on them, checkpointing every
             ``probe_every`` steps; each checkpoint is evaluated on a few episodes ("probes"),
             which give the success-against-training-time curve; training stops at the target
             success (unless ``--no-early-stop``) or when its budget share is spent;
5. evaluate  the final checkpoint on ``eval_episodes`` episodes (fewer if the budget is short),
             nominal simulator, with videos. A probe is a few episodes and the first to reach
             the target is the lucky one more often than not: when this evaluation misses the
             target and at least ``MIN_RETRAIN_S`` of training time is left, training resumes
             from its last checkpoint (4) and the evaluation runs again;
6. report    ``adapt.json`` and ``report.html`` (``kizuna.report_html``).

Budget: generation may use up to ``generate_share`` of it; training runs until what is left
is the final evaluation's reserve (``eval_share``, or the time the probes measured per
episode); evaluation then fits its episode count to the time left. Stations are imported
lazily (this is a loop module, see ARCHITECTURE.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kizuna.adapt_stages import (
    base_checkpoint_info,
    evaluate_stage,
    generate_stage,
    point,
    render_preview,
    train_stage,
)
from kizuna.task import TaskSpec, TaskSpecError, load_task, resolve_task_path

STAGES = ("validate", "preview", "generate", "train", "evaluate", "report")
BASE_CHECKPOINT_ENV = "KIZUNA_BASE_CHECKPOINT"  # where --from defaults to
MIN_RETRAIN_S = 60.0  # training on after a missed evaluation needs at least this much time


@dataclass(frozen=True)
class AdaptConfig:
    task: str  # a task YAML path (or a shipped task name)
    init_from: str | None = None  # the checkpoint to fine-tune; None trains from scratch
    out: str | None = None  # default runs/adapt/<task name>
    budget_min: float = 30.0
    episodes: int = 60  # expert demonstrations (fewer if the generation share runs out)
    workers: int = 2
    randomization: str = "default"  # of the demonstrations (evaluation is nominal)
    # As the shipped model's data was made: DART noise shows the way back onto the plan, and
    # steps recorded past success show where to stop (a reach that ends on crossing the
    # tolerance taught the policy to drift on once there).
    dart_noise_rad: float = 0.02
    hold_after_success: int = 10
    batch_size: int = 32
    lr: float = 1e-4  # constant after warm-up: a fine-tune, not a run from scratch
    warmup_steps: int = 50
    max_steps: int = 1_000_000  # the budget, not this, ends training
    probe_every: int = 300  # training steps between checkpoints, each evaluated
    probe_episodes: int = 10
    eval_episodes: int = 30
    fit_eval_to_budget: bool = True  # fewer final episodes when the budget is short
    target: float = 0.8  # success rate that counts as done
    early_stop: bool = True  # stop training at the first probe that reaches the target
    videos: int = 2  # of successes and as many failures, in the report
    seed: int = 0
    threads: int = 2  # torch threads for training (evaluation uses one)
    eval_seed: int = 1000
    generate_share: float = 0.3
    eval_share: float = 0.12
    model: Mapping[str, Any] = field(default_factory=dict)  # TrainModelConfig fields (scratch)
    language_encoder: str = "auto"  # scratch only; a fine-tune keeps the checkpoint's

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/adapt/{load_task(self.task).name}")


# ---- budget and the status line -------------------------------------------------------------


class Budget:
    """Wall-clock budget from construction on (monotonic seconds)."""

    def __init__(self, minutes: float) -> None:
        self.start = time.monotonic()
        self.total_s = minutes * 60.0

    def elapsed_s(self) -> float:
        return time.monotonic() - self.start

    def left_s(self) -> float:
        return self.total_s - self.elapsed_s()

    def until(self, fraction: float) -> float:
        """Seconds from now until ``fraction`` of the budget has been used."""
        return fraction * self.total_s - self.elapsed_s()


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}".removeprefix("0:")


class StageProgress:
    """One status line, e.g. ``[3/6 generate] 43/60 episodes, ETA 1:20 | budget left 24:10``.

    On a terminal the line is redrawn in place (at most every ``interval_s``); in a log it is
    printed anew every ``log_interval_s`` so CI logs stay short.
    """

    def __init__(self, budget: Budget, stream: TextIO | None = None) -> None:
        self.budget = budget
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.prefix = ""
        self._last = 0.0

    def stage(self, name: str) -> None:
        self.finish()
        self.prefix = f"[{STAGES.index(name) + 1}/{len(STAGES)} {name}]"
        if self.tty:
            self.update("", force=True)

    def update(self, text: str, eta_s: float | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.5 if self.tty else 15.0):
            return
        self._last = now
        eta = f", ETA {clock(eta_s)}" if eta_s is not None else ""
        line = f"{self.prefix} {text}{eta} | budget left {clock(self.budget.left_s())}"
        if self.tty:
            self.stream.write("\r" + line.ljust(100)[:160])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self, text: str | None = None) -> None:
        if text is not None:
            self.update(text, force=True)
        if self.tty and self.prefix:
            self.stream.write("\n")
            self.stream.flush()
        self.prefix = ""


# ---- the pipeline -----------------------------------------------------------------------------


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --out NEW_DIR, or --overwrite")
        if not any((out / name).exists() for name in ("adapt.json", "data", "train", "eval")):
            raise FileExistsError(f"{out} does not look like an adapt run; not deleting it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def adapt(
    cfg: AdaptConfig, show: StageProgress | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Run every stage; returns the summary also written to ``<out>/adapt.json``."""
    budget = Budget(cfg.budget_min)
    show = show or StageProgress(budget)
    timings: dict[str, float] = {}  # seconds per finished stage
    current, mark = "", time.monotonic()

    def next_stage(name: str) -> None:
        nonlocal current, mark
        if current:
            timings[current] = round(timings.get(current, 0.0) + time.monotonic() - mark, 1)
        current, mark = name, time.monotonic()
        show.stage(name)

    next_stage("validate")
    spec = load_task(cfg.task)
    meta = base_checkpoint_info(cfg.init_from) if cfg.init_from else {}
    out = cfg.out_dir
    _prepare_out(out, overwrite)
    spec_yaml = resolve_task_path(cfg.task).read_text(encoding="utf-8")
    show.finish(f"{spec.name}: spec hash {spec.spec_hash()}, base {cfg.init_from or 'scratch'}")

    next_stage("preview")
    preview = render_preview(cfg.task, out / "preview.png")
    show.finish(str(preview))

    next_stage("generate")
    data = generate_stage(cfg, meta, budget, show)
    show.finish(f"{data['episodes']} episodes, {data['frames']} frames in {data['wall_s']} s")

    next_stage("train")
    training, prober = train_stage(cfg, data["path"], budget, show)
    show.finish(f"{training['steps']} steps in {clock(training['wall_s'])}")
    evaluations: list[dict[str, Any]] = []
    while True:
        next_stage("evaluate")
        report, videos = evaluate_stage(cfg, training["checkpoint"], prober.per_episode_s, budget)
        final = point(report, training["steps"], training["train_s"], budget.elapsed_s())
        final["videos"] = videos
        evaluations.append(final)
        show.finish(f"{final['successes']}/{final['episodes']} successes")
        # A probe saw the target but this evaluation (more episodes) did not: train on while
        # the budget leaves room for more than the evaluation it keeps in reserve.
        if final["success_rate"] >= cfg.target or not training["stopped_at_target"]:
            break
        if budget.left_s() - prober.eval_reserve_s() < MIN_RETRAIN_S:
            break
        next_stage("train")
        show.finish(
            f"the evaluation missed the {cfg.target:.0%} target the probe saw: training on"
        )
        training, prober = train_stage(cfg, data["path"], budget, show, prober)
        show.finish(f"{training['steps']} steps in {clock(training['wall_s'])}")

    next_stage("report")
    summary = _summary(cfg, spec, spec_yaml, data, training, prober.points, final, budget)
    summary["evaluations"] = [{k: v for k, v in e.items() if k != "videos"} for e in evaluations]
    summary["stages_s"] = timings  # the report stage itself (seconds) is not in it
    summary["total_wall_s"] = round(budget.elapsed_s(), 1)
    write_outputs(summary, out)
    show.finish(f"{out / 'report.html'}")
    return summary


def _summary(
    cfg: AdaptConfig,
    spec: TaskSpec,
    spec_yaml: str,
    data: dict[str, Any],
    training: dict[str, Any],
    probes: list[dict[str, Any]],
    final: dict[str, Any],
    budget: Budget,
) -> dict[str, Any]:
    # A probe (a few episodes) may stop training at the target, but only the final evaluation
    # (more episodes) confirms it: the time to target is when that evaluation ended.
    probed = [p for p in probes if p["success_rate"] >= cfg.target]
    confirmed = final["success_rate"] >= cfg.target
    from kizuna import __version__

    return {
        "task": spec.name,
        "task_file": str(resolve_task_path(cfg.task)),
        "spec_hash": spec.spec_hash(),
        "spec_yaml": spec_yaml,
        "target": cfg.target,
        "time_to_target_s": final["wall_s"] if confirmed else None,
        "first_probe_at_target_s": probed[0]["wall_s"] if probed else None,
        "subtitle": f"fine-tuned from {cfg.init_from}"
        if cfg.init_from
        else "trained from scratch",
        "run": {
            "base checkpoint": cfg.init_from,
            "budget (min)": cfg.budget_min,
            "wall clock (min)": round(budget.elapsed_s() / 60, 2),
            "policy": training["checkpoint"],
            "kizuna version": __version__,
            "evaluation": f"nominal simulator, seeds {cfg.eval_seed}..",
        },
        "data": data,
        "training": training,
        "probes": probes,
        "final": final,
    }


def write_outputs(summary: dict[str, Any], out: Path) -> None:
    from kizuna.report_html import adapt_report_html, write_page

    (out / "adapt.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_page(out / "report.html", adapt_report_html(summary, out / "preview.png"))


# ---- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", metavar="TASK.yaml", help="the new task spec (or a shipped name)")
    parser.add_argument(
        "--from",
        dest="init_from",
        default=os.environ.get(BASE_CHECKPOINT_ENV),
        metavar="CHECKPOINT",
        help=f"the VLA checkpoint to fine-tune (default ${BASE_CHECKPOINT_ENV}, else the "
        "shipped multi-task checkpoint)",
    )
    parser.add_argument("--scratch", action="store_true", help="train from scratch, no --from")
    parser.add_argument("--budget-min", type=float, default=30.0, help="wall clock, all stages")
    parser.add_argument("--out", help="output directory (default runs/adapt/<task>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    defaults = AdaptConfig(task="")
    helps = {
        "episodes": "expert demonstrations to generate",
        "eval_episodes": "episodes of the final evaluation",
        "probe_every": "training steps between evaluated checkpoints",
        "probe_episodes": "episodes per checkpoint evaluation (the success curve)",
        "batch_size": "training batch size",
        "threads": "torch threads for training (1 on a busy machine)",
        "lr": "learning rate (constant after warm-up)",
        "target": "success rate that ends training early",
        "workers": "data-generation processes",
        "dart_noise_rad": "DART execution noise of the demonstrations (rad)",
        "hold_after_success": "steps recorded past success in each demonstration",
        "seed": "first demonstration seed and training seed",
    }
    for name, text in helps.items():
        kind = float if name in ("lr", "target", "dart_noise_rad") else int
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")
    parser.add_argument("--no-early-stop", action="store_true", help="train for the whole budget")


def config_from_args(args: argparse.Namespace) -> AdaptConfig:
    if not args.init_from and not args.scratch:
        from kizuna.paths import shipped_checkpoint

        try:  # the multi-task VLA that ships with kizuna
            args.init_from = str(shipped_checkpoint())
        except FileNotFoundError:
            pass
    if not args.init_from and not args.scratch:
        raise ValueError(
            "adapt fine-tunes an existing checkpoint: pass --from CHECKPOINT (or set "
            f"${BASE_CHECKPOINT_ENV}), or --scratch to train a new model"
        )
    return AdaptConfig(
        task=args.task,
        init_from=None if args.scratch else args.init_from,
        out=args.out,
        budget_min=args.budget_min,
        episodes=args.episodes,
        workers=args.workers,
        dart_noise_rad=args.dart_noise_rad,
        hold_after_success=args.hold_after_success,
        batch_size=args.batch_size,
        lr=args.lr,
        probe_every=args.probe_every,
        probe_episodes=args.probe_episodes,
        eval_episodes=args.eval_episodes,
        target=args.target,
        early_stop=not args.no_early_stop,
        seed=args.seed,
        threads=args.threads,
    )


def main(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        summary = adapt(cfg, overwrite=args.overwrite)
    except (TaskSpecError, ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (TaskSpecError, ValueError)) else 1
    final, low_high = summary["final"], summary["final"]["ci95"]
    reached = summary["time_to_target_s"]
    print(
        f"{summary['task']}: success {final['success_rate']:.0%} "
        f"({final['successes']}/{final['episodes']}, 95 % CI [{low_high[0]:.2f}, "
        f"{low_high[1]:.2f}]); target {summary['target']:.0%} "
        + (f"reached after {clock(reached)}" if reached is not None else "not reached")
        + f"\nreport {cfg.out_dir / 'report.html'}\npolicy {summary['training']['checkpoint']}"
    )
    return 0
