"""``kizuna train``: imitation learning of the VLA policy from LeRobot v3 datasets.

```sh
kizuna train dataset=data/pick_place steps=20000 batch_size=64 out=runs/vla
kizuna train dataset=[data/pick_place,data/stack] dataset_weights=[2,1] out=runs/multi
kizuna train out=runs/vla resume=true           # continue from runs/vla/last, same settings
```

Settings are Hydra overrides of ``config/hydra/train.yaml`` (typed by ``TrainConfig``). The
loop below reads top to bottom: sample a batch, compute the loss, step AdamW and the cosine
schedule, log, and every ``checkpoint_every`` steps write ``<out>/checkpoints/step_XXXXXX/``
atomically and point ``<out>/last`` at it. Ctrl-C writes a checkpoint before exiting.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from kizuna.dataset import DatasetReader
from kizuna.hydra_config import add_overrides_argument
from policies.vla.checkpoint import load_checkpoint, load_vision_weights
from policies.vla.config import ModelConfig, TrainConfig, from_dict, to_dict
from policies.vla.data import (
    TrainingData,
    chunk_action_stats,
    dataset_cameras,
    dataset_image_size,
    load_source,
)
from policies.vla.ema import WeightEMA
from policies.vla.language import InstructionEmbedder, encoder_dim, resolve_encoder_name
from policies.vla.model import VLAModel, count_parameters
from policies.vla.normalize import Normalizer, merge_stats, normalizer_from_stats
from policies.vla.resume import (
    latest_checkpoint,
    read_trainer_json,
    restore_online_weights,
    restore_training_state,
    save_training_checkpoint,
)

# Called after every step with (step, loss terms); returning True stops the run (and saves).
StepCallback = Callable[[int, dict[str, float]], bool | None]


@dataclass
class TrainResult:
    step: int
    last_checkpoint: Path | None
    losses: list[float]  # the loss of every step this call ran
    interrupted: bool = False
    wall_s: float = 0.0


# ---- the pieces ------------------------------------------------------------------------------


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then a cosine down to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def model_config_for(cfg: TrainConfig, reader: DatasetReader, language_dim: int) -> ModelConfig:
    """The model to build: cameras and image size from the first dataset unless set."""
    m = cfg.model
    cameras = m.cameras or dataset_cameras(reader)
    if m.image_size:
        size = (m.image_size[0], m.image_size[-1])  # (side,) or (height, width)
    else:
        size = dataset_image_size(reader, cameras[0])
    return ModelConfig(
        cameras=tuple(cameras),
        image_size=size,
        chunk_size=m.chunk_size,
        action_space=m.action_space,
        language_dim=language_dim,
        d_model=m.d_model,
        n_heads=m.n_heads,
        trunk_layers=m.trunk_layers,
        expert_layers=m.expert_layers,
        dropout=m.dropout,
        head=m.head,
        flow_steps=m.flow_steps,
        vision=m.vision,
    )


def make_optimizer(model: VLAModel, cfg: TrainConfig) -> torch.optim.AdamW:
    # No weight decay on biases, norms and 1-d parameters (the usual transformer recipe).
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


class _NoWriter:
    """Stands in for TensorBoard's SummaryWriter when tensorboard is not installed."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


def tensorboard_writer(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("note: tensorboard is not installed (pip install 'kizuna[vla]'); no TB logs")
        return _NoWriter()
    return SummaryWriter(str(log_dir))


# ---- setting up a run ------------------------------------------------------------------------


@dataclass
class Setup:
    model: VLAModel
    normalizer: Normalizer
    embedder: InstructionEmbedder
    data: TrainingData
    resume_from: Path | None


def setup_run(cfg: TrainConfig, progress: bool = True) -> Setup:
    """Build (or reload, for ``resume``) the model, normalizer, embedder and in-memory data."""
    out = Path(cfg.out)
    if not cfg.dataset:
        raise ValueError("no dataset: pass dataset=PATH or dataset=[PATH1,PATH2]")
    readers = [DatasetReader(p) for p in cfg.dataset]
    resume_from = latest_checkpoint(out) if cfg.resume else None
    if cfg.resume and resume_from is None:
        print(f"note: resume=true but {out} has no checkpoint yet; starting from step 0")
    if not cfg.resume and latest_checkpoint(out) is not None:
        raise FileExistsError(
            f"{out} already holds a training run; pass resume=true to continue it, "
            "or out=<new dir>"
        )
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        model, normalizer, embedder = ckpt.model.train(), ckpt.normalizer, ckpt.embedder
        model_cfg = model.cfg
        wanted = cfg.language.encoder
        if wanted != "auto" and resolve_encoder_name(wanted) != embedder.name:
            raise ValueError(
                f"{resume_from}: trained with language encoder {embedder.name!r}, "
                f"not {wanted!r}; resume with language.encoder={embedder.name}"
            )
    elif cfg.init_from:
        # Fine-tuning keeps the checkpoint's normalizer: its weights were trained in that
        # normalized space (a new task's actions, slightly outside its range, stay meaningful).
        ckpt = load_checkpoint(cfg.init_from)
        model, normalizer, embedder = ckpt.model.train(), ckpt.normalizer, ckpt.embedder
        model_cfg = model.cfg
    else:
        name = resolve_encoder_name(cfg.language.encoder)
        embedder = InstructionEmbedder(name, encoder_dim(name, cfg.language.hash_dim))
        model_cfg = model_config_for(cfg, readers[0], embedder.dim)
    sources = [
        load_source(p, model_cfg.cameras, model_cfg.image_size, progress, cfg.cotrain)
        for p in cfg.dataset
    ]
    if resume_from is None and not cfg.init_from:
        stats = merge_stats([r.stats for r in readers])
        if model_cfg.action_space == "relative":  # stats.json describes absolute actions
            stats["action"] = chunk_action_stats(sources, model_cfg.chunk_size)
        normalizer = normalizer_from_stats(stats, model_cfg.cameras, cfg.action_norm)
        model = VLAModel(model_cfg)
        if model_cfg.vision.pretrained_path:
            load_vision_weights(model, model_cfg.vision.pretrained_path)
    if model.cfg.vision.freeze:
        model.vision.requires_grad_(False)
    instructions = sorted({s for src in sources for s in src.instructions})
    embedder.embed_many(instructions)  # each distinct instruction encoded once
    weights = cfg.dataset_weights or tuple(float(len(s)) for s in sources)
    language = {s: embedder.cache[s] for s in instructions}
    data = TrainingData(
        sources, weights, language, normalizer, model.cfg.chunk_size, model.cfg.action_space
    )
    return Setup(model.to(cfg.device), normalizer, embedder, data, resume_from)


# ---- the loop --------------------------------------------------------------------------------


def train(
    cfg: TrainConfig, on_step: StepCallback | None = None, progress: bool = True
) -> TrainResult:
    """Train until ``cfg.steps``; Ctrl-C (KeyboardInterrupt) saves a checkpoint and returns."""
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)  # batches, augmentation, flow noise
    out = Path(cfg.out)
    run = setup_run(cfg, progress)
    model, device = run.model, torch.device(cfg.device)
    optimizer = make_optimizer(model, cfg)
    budget = TimeBudget(cfg.max_minutes * 60.0, cfg.steps)
    schedule = partial(
        lr_factor,
        warmup_steps=cfg.warmup_steps,
        total_steps=cfg.steps,
        min_ratio=cfg.min_lr_ratio,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: schedule(budget.effective_step(s))
    )
    # The average starts at the weights the run starts from (a resumed checkpoint's policy
    # weights are the averaged ones; its online weights are loaded next).
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    step = 0
    if run.resume_from is not None:
        step = restore_training_state(run.resume_from, optimizer, scheduler, generator)
        updates = restore_online_weights(run.resume_from, model)
        if ema is not None:
            ema.set_updates(updates or 0)
        print(f"resumed from {run.resume_from} at step {step}")
    writer = tensorboard_writer(out / "tb")
    print(
        f"training a {count_parameters(model) / 1e6:.2f} M-parameter {model.cfg.head} VLA on "
        f"{run.data.frames} frames ({len(cfg.dataset)} dataset(s)), language "
        f"{run.embedder.name!r}, into {out}"
    )

    def summary() -> dict[str, Any]:
        return {
            "step": step,
            "datasets": list(cfg.dataset),
            "batch_size": cfg.batch_size,
            "loss_ema": loss_ema,
            "seed": cfg.seed,
            "wall_s": round(time.perf_counter() - t0, 1),
            "config": to_dict(cfg),
        }

    def save() -> Path:
        return save_training_checkpoint(
            out,
            step,
            model,
            run.normalizer,
            run.embedder,
            optimizer,
            scheduler,
            generator,
            summary(),
            cfg.keep_checkpoints,
            ema,
        )

    result = TrainResult(step=step, last_checkpoint=run.resume_from, losses=[])
    saved_step = step if run.resume_from is not None else -1
    loss_ema = float("nan")
    t0 = time.perf_counter()
    bar = tqdm(
        initial=step, total=cfg.steps, unit="step", dynamic_ncols=True, disable=not progress
    )
    model.train()
    stop_early = False  # the caller's on_step said stop (a time budget, a target reached)
    with StopOnInterrupt() as stop:
        try:
            budget.start()
            while step < cfg.steps and not (stop.requested or stop_early):
                batch = run.data.sample(cfg.batch_size, generator, cfg.augment)
                terms = model.loss(
                    {c: x.to(device) for c, x in batch.images.items()},
                    batch.state.to(device),
                    batch.language.to(device),
                    batch.actions.to(device),
                    batch.action_mask.to(device),
                    generator,
                )
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                step += 1

                loss = terms["loss"].item()
                result.losses.append(loss)
                loss_ema = loss if math.isnan(loss_ema) else 0.98 * loss_ema + 0.02 * loss
                if step % cfg.log_every == 0 or step == cfg.steps:
                    for name, value in terms.items():
                        writer.add_scalar(f"loss/{name}", value.item(), step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                    writer.add_scalar("train/grad_norm", float(grad_norm), step)
                    lr = scheduler.get_last_lr()[0]
                    bar.set_postfix(loss=f"{loss_ema:.4f}", lr=f"{lr:.2e}", refresh=False)
                bar.update(1)
                if on_step is not None:
                    stop_early = bool(on_step(step, {k: v.item() for k, v in terms.items()}))
                stop_early = stop_early or budget.spent()
                if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop_early:
                    result.last_checkpoint, saved_step = save(), step
        except KeyboardInterrupt:  # a second Ctrl-C, or one raised inside a step
            stop.requested = True
        finally:
            bar.close()
            writer.close()
    if stop.requested:
        result.interrupted = True
        print(f"\ninterrupted at step {step}: saving a checkpoint")
        if saved_step != step:
            result.last_checkpoint = save()
    result.step = step
    result.wall_s = time.perf_counter() - t0
    return result


class TimeBudget:
    """A wall-clock budget (``max_minutes``): ``effective_step`` maps a step to the larger of
    step and time progress, so the cosine schedule ends when the time does."""

    def __init__(self, seconds: float, total_steps: int) -> None:
        self.seconds, self.total_steps = seconds, total_steps
        self.t0: float | None = None

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def fraction(self) -> float:
        if self.seconds <= 0 or self.t0 is None:
            return 0.0
        return (time.perf_counter() - self.t0) / self.seconds

    def effective_step(self, step: int) -> int:
        return max(step, int(self.fraction() * self.total_steps))

    def spent(self) -> bool:
        return self.fraction() >= 1.0


class StopOnInterrupt:
    """The first Ctrl-C asks the loop to stop after the current step (which then saves);
    a second one raises KeyboardInterrupt at once. Only in the main thread."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ---- command line ----------------------------------------------------------------------------

LIST_KEYS = ("dataset", "dataset_weights")


def listify_overrides(overrides: list[str]) -> list[str]:
    """``dataset=data/pp`` -> ``dataset=[data/pp]``: one dataset needs no brackets."""
    fixed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key in LIST_KEYS and not value.startswith("["):
            item = f"{key}=[{value}]"
        fixed.append(item)
    return fixed


def resumed_config(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """With ``resume=true``, the run's saved settings, except the keys given on this command.

    So ``kizuna train out=runs/vla resume=true`` continues with the same datasets, learning
    rate, model and augmentation, and ``... resume=true steps=40000`` only extends it.
    """
    last = latest_checkpoint(Path(cfg.out))
    if not cfg.resume or last is None:
        return cfg
    settings = read_trainer_json(last).get("summary", {}).get("config")
    if settings is None:
        return cfg
    given = to_dict(cfg)
    for item in overrides:
        path = item.partition("=")[0].lstrip("+~").split(".")
        saved, value = settings, given
        for key in path[:-1]:
            saved, value = saved.setdefault(key, {}), value[key]
        saved[path[-1]] = value[path[-1]]
    print(f"resuming {last} with its saved settings (changed here: {', '.join(overrides)})")
    return from_dict(TrainConfig, settings, f"{last / 'trainer_state.json'}: summary.config")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_overrides_argument(
        parser,
        "train",
        "dataset=data/pick_place steps=20000 batch_size=64 out=runs/vla resume=true "
        "model.head=l1 language.encoder=e5",
    )


def main(args: argparse.Namespace) -> int:
    from kizuna.dataset import DatasetError
    from kizuna.hydra_config import compose
    from policies.vla.checkpoint import CheckpointError

    try:
        overrides = listify_overrides(list(args.overrides))
        cfg = resumed_config(compose("train", overrides, TrainConfig), overrides)
        result = train(cfg)
    except (ValueError, FileExistsError, FileNotFoundError, ImportError, DatasetError) as exc:
        kind = "error" if not isinstance(exc, CheckpointError) else "checkpoint error"
        print(f"{kind}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) and "config/hydra" in str(exc) else 1
    rate = len(result.losses) / result.wall_s if result.wall_s else 0.0
    print(
        f"{'stopped' if result.interrupted else 'done'} at step {result.step} "
        f"({len(result.losses)} steps this run, {rate:.2f} steps/s); "
        f"checkpoint {result.last_checkpoint}"
    )
    return 130 if result.interrupted else 0
