"""The stages of ``kizuna adapt`` (see ``kizuna.adapt``): each a function of the run's config.

Stations (sim, policies) are imported inside the functions: ``kizuna`` never imports them at
module level (ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kizuna.metrics import wilson_interval

if TYPE_CHECKING:
    from kizuna.adapt import AdaptConfig, Budget, StageProgress

PROBE_SEED = 5000  # probes use other cells than the final evaluation (seed 1000, as kizuna eval)
MIN_EPISODES = 2  # a dataset smaller than this is no basis for training


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads. Batch-1 inference wants one: on a loaded 2-core machine
    two threads made the VLA's act() 60x slower (OpenMP threads spinning against each other)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def base_checkpoint_info(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a ``kizuna_vla`` checkpoint, refusing anything else by name."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"--from {path}: no config.json there; pass a checkpoint dir")
    meta = json.loads(config.read_text())
    if meta.get("type") != "kizuna_vla":
        raise ValueError(
            f"{config}: type {meta.get('type')!r}; adapt fine-tunes kizuna_vla checkpoints"
        )
    return meta


def render_preview(task: str, path: Path, seed: int = 0) -> Path:
    """The scene at reset, from the front camera, as a PNG."""
    from PIL import Image

    from sim.env import KizunaEnv

    env = KizunaEnv(task, cameras=(), render_mode="rgb_array", render_size=(360, 480))
    try:
        env.reset(seed=seed)
        frame = env.render()
    finally:
        env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path)
    return path


class _OutOfTimeError(Exception):
    """Raised from generate()'s progress callback: its finally-block keeps the dataset valid."""


def generate_stage(
    cfg: AdaptConfig, meta: Mapping[str, Any], budget: Budget, show: StageProgress
) -> dict[str, Any]:
    from sim.datagen import GenerateConfig, generate

    cameras = tuple(meta.get("cameras", ("front", "wrist")))
    size = meta.get("image_size", [96, 96])
    gen = GenerateConfig(
        task=str(cfg.task),
        episodes=cfg.episodes,
        workers=cfg.workers,
        out=str(cfg.out_dir / "data"),
        cameras=cameras,
        image_size=int(size[0]),
        randomization=cfg.randomization,
        seed=cfg.seed,
        action_noise_rad=cfg.dart_noise_rad,
        hold_after_success=cfg.hold_after_success,
    )
    stopped = False
    last: Any = None

    def progress(report: Any) -> None:
        nonlocal last
        last = report
        rate = report.kept / report.wall_s if report.wall_s else 0.0
        eta = (cfg.episodes - report.kept) / rate if rate else None
        show.update(f"{report.kept}/{cfg.episodes} episodes", eta)
        if budget.until(cfg.generate_share) <= 0 and report.kept >= MIN_EPISODES:
            raise _OutOfTimeError

    start = time.monotonic()
    try:
        report = generate(gen, progress)
    except _OutOfTimeError:
        report, stopped = last, True
    data = {
        "path": str(gen.out_dir),
        "episodes": report.kept,
        "attempts": report.attempts,
        "expert_success_rate": round(report.expert_success_rate, 4),
        "stopped_by_budget": stopped,
        "wall_s": round(time.monotonic() - start, 1),
        "randomization": cfg.randomization,
        "dart_noise_rad": cfg.dart_noise_rad,
        "hold_after_success": cfg.hold_after_success,
        "cameras": list(cameras),
    }
    from kizuna.dataset import DatasetReader

    data["frames"] = len(DatasetReader(gen.out_dir))
    return data


def point(report: Any, step: int, train_s: float, wall_s: float) -> dict[str, Any]:
    n, k = len(report.episodes), report.successes
    return {
        "step": step,
        "train_s": round(train_s, 1),
        "wall_s": round(wall_s, 1),
        "episodes": n,
        "successes": k,
        "success_rate": k / n if n else 0.0,
        "ci95": [round(x, 4) for x in wilson_interval(k, n)],
    }


def _train_config(cfg: AdaptConfig, data_dir: str) -> Any:
    from policies.vla.config import LanguageConfig, TrainConfig, TrainModelConfig, from_dict

    model = from_dict(TrainModelConfig, dict(cfg.model), "adapt model") if cfg.model else None
    return TrainConfig(
        dataset=(data_dir,),
        out=str(cfg.out_dir / "train"),
        init_from=cfg.init_from,
        steps=cfg.max_steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        min_lr_ratio=1.0,  # constant rate: the budget, not a schedule, ends training
        checkpoint_every=cfg.probe_every,
        keep_checkpoints=3,
        seed=cfg.seed,
        threads=cfg.threads,
        model=model or TrainModelConfig(),
        language=LanguageConfig(encoder=cfg.language_encoder),
    )


class Prober:
    """Evaluates each new checkpoint of a training run on a few episodes (the curve's points)."""

    def __init__(self, cfg: AdaptConfig, run_dir: Path, budget: Budget) -> None:
        self.cfg, self.run_dir, self.budget = cfg, run_dir, budget
        self.points: list[dict[str, Any]] = []
        self.probe_s = 0.0  # evaluation time inside the training stage (not training time)
        self.per_episode_s: float | None = None
        self.start = time.monotonic()
        self.steps_run = 0  # optimizer steps over every train_stage call
        self._seen: Path | None = None

    def mark_seen(self, checkpoint: Path | None) -> None:
        """Do not probe ``checkpoint`` (the final evaluation scores it)."""
        if checkpoint is not None:
            self._seen = Path(checkpoint)

    def new_checkpoint(self) -> Path | None:
        from policies.vla.resume import latest_checkpoint

        last = latest_checkpoint(self.run_dir)
        if last is None or last == self._seen:
            return None
        self._seen = last
        return last

    def probe(self, checkpoint: Path) -> dict[str, Any]:
        from policies.base import load_policy
        from policies.evaluate import EvalConfig, evaluate

        t0 = time.monotonic()
        probe_cfg = EvalConfig(
            task=str(self.cfg.task), episodes=self.cfg.probe_episodes, seed=PROBE_SEED
        )
        with torch_threads(1):
            report = evaluate(load_policy(checkpoint), probe_cfg)
        self.probe_s += time.monotonic() - t0
        self.per_episode_s = (time.monotonic() - t0) / max(1, self.cfg.probe_episodes)
        step = int(checkpoint.name.split("_")[-1])  # step_000300
        result = point(report, step, self.train_s(), self.budget.elapsed_s())
        self.points.append(result)
        return result

    def train_s(self) -> float:
        return time.monotonic() - self.start - self.probe_s

    def eval_reserve_s(self) -> float:
        """Time to keep for the final evaluation and the report."""
        share = self.cfg.eval_share * self.budget.total_s
        if self.per_episode_s is None:
            return share + 5.0
        return min(self.per_episode_s * self.cfg.eval_episodes * 1.1, 2 * share) + 5.0

    def status(self) -> str:
        if not self.points:
            return ""
        last, best = self.points[-1], max(p["success_rate"] for p in self.points)
        return f", last eval {last['successes']}/{last['episodes']} (best {best:.0%})"


def train_stage(
    cfg: AdaptConfig,
    data_dir: str,
    budget: Budget,
    show: StageProgress,
    prober: Prober | None = None,
) -> tuple[dict[str, Any], Prober]:
    """Train with probes until the target or the training share of the budget is used.

    With a ``prober`` from an earlier call, the run resumes from its last checkpoint (the same
    optimizer state and step count): what ``adapt`` does when the final evaluation did not
    confirm what a probe saw and time is left."""
    from policies.vla.train import train

    tcfg = _train_config(cfg, data_dir)
    if prober is None:
        prober = Prober(cfg, Path(tcfg.out), budget)
    else:
        tcfg = replace(tcfg, resume=True)
    target_before = len(prober.points)

    def on_step(step: int, terms: dict[str, float]) -> bool:
        checkpoint = prober.new_checkpoint()  # saved after the previous step's callback
        if checkpoint is not None:
            show.update(f"step {step}: evaluating {checkpoint.name}", force=True)
            if prober.probe(checkpoint)["success_rate"] >= cfg.target and cfg.early_stop:
                return True
        left = budget.left_s() - prober.eval_reserve_s()
        show.update(f"step {step}, loss {terms['loss']:.4f}{prober.status()}", left)
        return left <= 0

    result = train(tcfg, on_step=on_step, progress=False)
    prober.steps_run += len(result.losses)
    prober.mark_seen(result.last_checkpoint)  # the final evaluation scores this one
    train_s = prober.train_s()
    reached = any(p["success_rate"] >= cfg.target for p in prober.points[target_before:])
    training = {
        "init_from": cfg.init_from,
        "steps": result.step,
        "wall_s": round(time.monotonic() - prober.start, 1),
        "train_s": round(train_s, 1),
        "steps_per_s": round(prober.steps_run / max(1e-9, train_s), 2),
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "final_loss": round(result.losses[-1], 5) if result.losses else None,
        "checkpoint": str(result.last_checkpoint),
        "stopped_at_target": reached and cfg.early_stop,
        "probe_every_steps": cfg.probe_every,
        "probe_episodes": cfg.probe_episodes,
    }
    return training, prober


def evaluate_stage(
    cfg: AdaptConfig, checkpoint: str, per_episode_s: float | None, budget: Budget
) -> tuple[Any, dict[str, Any]]:
    from policies.base import load_policy
    from policies.evaluate import EvalConfig, evaluate

    episodes = cfg.eval_episodes
    if per_episode_s and cfg.fit_eval_to_budget:  # fit to the time left (>= the probes' count)
        fits = int((budget.left_s() - 5.0) / (per_episode_s * 1.2))
        episodes = max(min(cfg.probe_episodes, cfg.eval_episodes), min(episodes, fits))
    out = cfg.out_dir / "eval"
    ecfg = EvalConfig(
        checkpoint=checkpoint,
        task=str(cfg.task),
        episodes=episodes,
        seed=cfg.eval_seed,
        videos=cfg.videos,
        out=str(out),
    )
    with torch_threads(1):
        report = evaluate(load_policy(checkpoint), ecfg, progress=True)
    videos = {kind: [str(out / p) for p in paths] for kind, paths in report.videos.items()}
    return report, videos
