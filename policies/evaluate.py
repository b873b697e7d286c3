"""Evaluate a policy in simulation: success rate with a confidence interval, time to success,
safety events, videos and a one-page plot.

    kizuna eval checkpoint=runs/vla task=pick_place episodes=50 reality=medium

Python: ``evaluate(policy, EvalConfig(task="reach"))`` -> ``EvalReport`` (benches, the loop,
``kizuna rl``). Episode ``k`` uses seed ``seed + k``, so two checkpoints evaluated with the same
settings meet the same cells.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from kizuna import __version__
from kizuna.hydra_config import add_overrides_argument
from kizuna.metrics import wilson_interval
from kizuna.task import load_task
from policies.base import Policy, is_remote_uri
from policies.rl_policy import PRIVILEGED_KEY, PrivilegedStateWrapper
from policies.rollout import EpisodeResult, run_episode

SAFETY_KEYS = ("arm_contact_steps", "limit_clamps", "nonfinite_actions")


@dataclass(frozen=True)
class EvalConfig:
    """Settings of ``config/hydra/eval.yaml`` (see there for each key)."""

    checkpoint: str | None = None
    task: Any = "reach"  # a task name or YAML path, or a list of them
    episodes: int = 50
    reality: str | None = None
    backend: str | None = None
    randomization: str = "none"
    seed: int = 1000
    videos: int = 4
    video_size: tuple[int, ...] = (240, 320)
    out: str | None = None
    cameras: tuple[str, ...] = ("front", "wrist")
    image_size: int = 96
    language: str = "en"
    replan_every: int | None = None
    ensemble: bool = False
    max_steps: int | None = None
    leaderboard: bool = False  # fixed seeds, no randomization; also write leaderboard.json
    submitter: str = "anonymous"  # the name a leaderboard shows

    @property
    def tasks(self) -> tuple[str, ...]:
        return (self.task,) if isinstance(self.task, str) else tuple(self.task)

    @property
    def reality_tag(self) -> str:
        return f"-{Path(self.reality).stem}" if self.reality else ""

    def out_dir(self, task_name: str) -> Path | None:
        """Where one task's report goes: ``out`` (``out/<task>`` with several tasks), else
        ``<checkpoint>/eval/<task>[-<reality>]``; ``None`` when there is neither (or the
        checkpoint is a ``ws://`` policy server)."""
        name = f"{task_name}{self.reality_tag}"
        if self.out:
            return Path(self.out) / name if len(self.tasks) > 1 else Path(self.out)
        return self._local_checkpoint / "eval" / name if self._local_checkpoint else None

    def summary_dir(self) -> Path | None:
        if self.out:
            return Path(self.out)
        return self._local_checkpoint / "eval" if self._local_checkpoint else None

    @property
    def _local_checkpoint(self) -> Path | None:
        if not self.checkpoint or is_remote_uri(self.checkpoint):
            return None
        return Path(self.checkpoint)


def checkpoint_hash(path: str | Path | None) -> str | None:
    """Content hash of a checkpoint's config.json (what model and settings were evaluated)."""
    config = Path(path) / "config.json" if path else None
    if config is None or not config.is_file():
        return None
    return hashlib.sha256(config.read_bytes()).hexdigest()[:16]


@dataclass
class EvalReport:
    """The outcome of ``evaluate`` for one task; ``as_dict()`` is ``report.json``."""

    task: str
    episodes: list[EpisodeResult]
    meta: dict[str, Any]
    videos: dict[str, list[str]] = field(default_factory=lambda: {"success": [], "failure": []})
    wall_s: float = 0.0

    @property
    def successes(self) -> int:
        return sum(e.success for e in self.episodes)

    @property
    def success_rate(self) -> float:
        return self.successes / len(self.episodes) if self.episodes else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, len(self.episodes))

    @property
    def times_to_success_s(self) -> list[float]:
        return [e.time_to_success_s for e in self.episodes if e.time_to_success_s is not None]

    def safety_totals(self) -> dict[str, int]:
        return {k: sum(getattr(e, k) for e in self.episodes) for k in SAFETY_KEYS}

    def as_dict(self) -> dict[str, Any]:
        times = self.times_to_success_s
        return {
            "task": self.task,
            **self.meta,
            "episodes": len(self.episodes),
            "successes": self.successes,
            "success_rate": self.success_rate,
            "ci95": [round(x, 4) for x in self.ci95],
            "time_to_success_s": {
                "mean": round(float(np.mean(times)), 4) if times else None,
                "median": round(float(np.median(times)), 4) if times else None,
            },
            "safety": {
                "totals": self.safety_totals(),
                "episodes_with_events": sum(e.safety_events > 0 for e in self.episodes),
            },
            "seeds": [e.seed for e in self.episodes],
            "per_episode": [e.as_dict() for e in self.episodes],
            "videos": self.videos,
            "wall_s": round(self.wall_s, 2),
        }


# ---- running ---------------------------------------------------------------------------------


def make_env(policy: Policy, cfg: EvalConfig, task: str, render: bool) -> gym.Env:
    """The env the policy expects: its cameras, image size and action mode when it says."""
    import sim  # noqa: F401  (registers kizuna/Task-v0; evaluation needs the simulator)

    env = gym.make(
        "kizuna/Task-v0",
        task=task,
        backend=cfg.backend,
        cameras=tuple(getattr(policy, "cameras", cfg.cameras)),
        image_size=getattr(policy, "image_size", cfg.image_size),
        randomization={"none": False, "default": True}.get(cfg.randomization, cfg.randomization),
        reality=cfg.reality,
        action_mode=getattr(policy, "action_mode", "joint"),
        language=cfg.language,
        render_mode="rgb_array" if render else None,
        render_size=tuple(cfg.video_size),
    )
    if getattr(policy, "observation", None) == PRIVILEGED_KEY:
        try:  # sim-only RL baselines read the true scene state, laid out as in training
            env = PrivilegedStateWrapper(env, getattr(policy, "layout", None))
        except ValueError:
            env.close()
            raise
    return env


def _meta(policy: Policy, cfg: EvalConfig, task: str, env: gym.Env) -> dict[str, Any]:
    spec = env.unwrapped.spec_task
    return {
        "task_source": task,
        "task_spec_hash": spec.spec_hash(),
        "checkpoint": str(cfg.checkpoint) if cfg.checkpoint else None,
        # A remote policy (policies.remote) reports its server's checkpoint hash.
        "checkpoint_config_hash": checkpoint_hash(cfg.checkpoint)
        or getattr(policy, "checkpoint_config_hash", None),
        "policy": type(policy).__name__,
        "reality": cfg.reality,
        "backend": env.unwrapped.backend_name,
        "randomization": cfg.randomization,
        "kizuna_version": __version__,
        "control_hz": spec.control_hz,
        "settings": {
            "action_mode": env.unwrapped.action_mode,
            "cameras": list(env.unwrapped.cameras),
            "image_size": list(env.unwrapped.image_hw),
            "replan_every": cfg.replan_every,
            "ensemble": cfg.ensemble,
            "max_steps": cfg.max_steps,
            "language": cfg.language,
        },
    }


def _keep_video(report: EvalReport, result: EpisodeResult, out: Path, cfg: EvalConfig) -> None:
    """Write the first ``cfg.videos`` successes and failures (in seed order) as mp4."""
    from kizuna.video import write_mp4

    kind = "success" if result.success else "failure"
    if len(report.videos[kind]) >= cfg.videos or not result.frames:
        return
    path = out / "videos" / f"{kind}_seed{result.seed}.mp4"
    write_mp4(path, result.frames, fps=report.meta["control_hz"])
    report.videos[kind].append(str(path.relative_to(out)))


def _wants_frames(report: EvalReport, cfg: EvalConfig) -> bool:
    # Rendering costs more than physics: stop once both kinds have their videos.
    return any(len(v) < cfg.videos for v in report.videos.values())


def evaluate(
    policy: Policy,
    cfg: EvalConfig,
    task: str | None = None,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> EvalReport:
    """Run ``cfg.episodes`` episodes of ``task`` (default: the config's only task).

    With an output directory (``out_dir``, else ``cfg.out_dir``) writes ``report.json``,
    ``report.png`` and ``videos/*.mp4`` there; without one, only returns the report.
    """
    if task is None:
        if len(cfg.tasks) != 1:
            raise ValueError(f"evaluate() runs one task; got {list(cfg.tasks)}: pass task=...")
        task = cfg.tasks[0]
    name = load_task(task).name
    out = Path(out_dir) if out_dir is not None else cfg.out_dir(name)
    record = out is not None and cfg.videos > 0
    env = make_env(policy, cfg, task, render=record)
    report = EvalReport(name, [], _meta(policy, cfg, task, env))
    seeds = range(cfg.seed, cfg.seed + cfg.episodes)
    bar = _progress_bar(len(seeds), name) if progress else None
    start = time.perf_counter()
    try:
        for seed in seeds:
            frames = record and _wants_frames(report, cfg)
            result = run_episode(
                env, policy, seed, cfg.replan_every, frames, cfg.max_steps, cfg.ensemble
            )
            if frames and out is not None:
                _keep_video(report, result, out, cfg)
            result.frames = []  # keep memory flat over many episodes
            report.episodes.append(result)
            if bar is not None:
                bar.set_postfix(success=f"{report.successes}/{len(report.episodes)}")
                bar.update()
    finally:
        env.close()
        if bar is not None:
            bar.close()
    report.wall_s = time.perf_counter() - start
    if out is not None:
        write_report(report, out)
    return report


def _progress_bar(total: int, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=f"eval {name}", unit="ep", dynamic_ncols=True)


def evaluate_tasks(policy: Policy, cfg: EvalConfig, progress: bool = False) -> list[EvalReport]:
    """``evaluate`` each of ``cfg.tasks``; with several, also a summary table (json + md)."""
    reports = [evaluate(policy, cfg, task, progress=progress) for task in cfg.tasks]
    where = cfg.summary_dir()
    if len(reports) > 1 and where is not None:
        where.mkdir(parents=True, exist_ok=True)
        tag = cfg.reality_tag
        rows = [_summary_row(r) for r in reports]
        (where / f"summary{tag}.json").write_text(json.dumps(rows, indent=2))
        (where / f"summary{tag}.md").write_text(summary_table(reports) + "\n")
    return reports


# ---- writing -------------------------------------------------------------------------------


def write_report(report: EvalReport, out: str | Path) -> Path:
    """``report.json`` and ``report.png`` into ``out``; returns the json path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report.as_dict(), indent=2))
    plot_report(report, out / "report.png")
    return path


def plot_report(report: EvalReport, path: str | Path) -> None:
    """Success with its CI, the histogram of time to success, safety event totals."""
    # Figure without pyplot: the Agg canvas, no global backend state, works headless.
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("report.png needs matplotlib: pip install matplotlib") from exc

    fig = Figure(figsize=(12, 3.6), layout="constrained")
    ax_rate, ax_time, ax_safety = fig.subplots(1, 3)
    low, high = report.ci95
    rate = report.success_rate
    ax_rate.bar(["success"], [rate], color="tab:green", width=0.5)
    ax_rate.errorbar([0], [rate], yerr=[[rate - low], [high - rate]], color="k", capsize=8)
    ax_rate.set_ylim(0, 1)
    ax_rate.set_xlim(-1, 1)
    ax_rate.set_title(f"{report.task}: {rate:.0%} of {len(report.episodes)} (95 % CI)")
    times = report.times_to_success_s
    ax_time.hist(times, bins=max(5, min(20, len(times))), color="tab:blue")
    ax_time.set_xlabel("time to success (s)")
    ax_time.set_ylabel("episodes")
    ax_time.set_title("time to success" if times else "time to success (no successes)")
    totals = [report.safety_totals()[k] for k in SAFETY_KEYS]
    ax_safety.bar(["arm contacts", "limit clamps", "NaN/inf"], totals, color="tab:red")
    ax_safety.set_ylim(0, max(1, *totals) * 1.1)
    ax_safety.set_ylabel("steps, all episodes")
    ax_safety.set_title("safety events")
    fig.suptitle(f"{report.meta.get('checkpoint') or report.meta['policy']}", fontsize=9)
    fig.savefig(path, dpi=80)


def _summary_row(report: EvalReport) -> dict[str, Any]:
    d = report.as_dict()
    return {k: d[k] for k in ("task", "episodes", "success_rate", "ci95", "time_to_success_s")} | {
        "safety": d["safety"]["totals"]
    }


def summary_table(reports: list[EvalReport]) -> str:
    """A markdown table, one row per task."""
    lines = [
        "| task | success | 95 % CI | median time to success | safety events |",
        "|---|---|---|---|---|",
    ]
    for r in reports:
        times = r.times_to_success_s
        median = f"{np.median(times):.2f} s" if times else "—"
        low, high = r.ci95
        lines.append(
            f"| {r.task} | {r.success_rate:.0%} ({r.successes}/{len(r.episodes)}) "
            f"| [{low:.2f}, {high:.2f}] | {median} | {sum(r.safety_totals().values())} |"
        )
    return "\n".join(lines)


# ---- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_overrides_argument(
        parser,
        "eval",
        "checkpoint=runs/vla task=pick_place episodes=50 reality=medium 'task=[reach,push]'",
    )


def main(args: argparse.Namespace) -> int:
    from kizuna.hydra_config import compose
    from kizuna.task import TaskSpecError
    from policies.base import load_policy

    try:
        cfg = compose("eval", args.overrides, EvalConfig)
        if cfg.leaderboard:
            from kizuna.leaderboard import leaderboard_config

            cfg = leaderboard_config(cfg)
        if not cfg.checkpoint:
            raise ValueError("checkpoint=PATH is required (a checkpoint directory)")
        policy = load_policy(cfg.checkpoint)
        reports = evaluate_tasks(policy, cfg, progress=True)
    except (ValueError, FileNotFoundError, ConnectionError, TimeoutError, TaskSpecError) as exc:
        print(f"error: {exc}")
        return 2
    for report in reports:
        where = cfg.out_dir(report.task)
        written = where / "report.json" if where else "not written (pass out=DIR)"
        low, high = report.ci95
        print(
            f"{report.task}: success {report.success_rate:.0%} "
            f"({report.successes}/{len(report.episodes)}, 95 % CI [{low:.2f}, {high:.2f}]); "
            f"safety events {report.safety_totals()}; report {written}"
        )
        if cfg.leaderboard and where is not None:
            from kizuna.leaderboard import write_result

            print(f"  leaderboard file {write_result(report.as_dict(), cfg.submitter, where)}")
    if len(reports) > 1:
        print(summary_table(reports))
    return 0
