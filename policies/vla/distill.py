"""``kizuna distill``: a smaller, fewer-step student VLA trained from a teacher checkpoint.

```sh
kizuna distill teacher=runs/vla/last out=runs/student steps=5000 student.flow_steps=3
kizuna distill teacher=runs/vla/last eval.task=pick_place eval.episodes=50   # + success kept
```

The student is a normal ``kizuna_vla`` checkpoint (``<out>/student``) with the teacher's cameras,
image size, chunk, action space, normalizer and language cache, and a smaller network: by default
half the teacher's widths (``d_model``, vision channels), one layer fewer in trunk and expert, and
3 Euler steps instead of the teacher's 10. It trains on the same data (``dataset=``, default the
teacher's training datasets) with the teacher's sampled chunks as targets, rectified-flow "reflow"
style: for noise ``z`` the teacher integrates its flow to a chunk ``a``; the student learns the
straight path from ``z`` to ``a`` (velocity ``z - a`` at ``t z + (1 - t) a``). Straight paths
are what let a few Euler steps land where the teacher's many do. ``data_weight`` > 0 adds the
ordinary flow loss on the dataset's own actions. With ``eval.task``, teacher and student are
evaluated in simulation on the same seeds and the success the student keeps is reported.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from kizuna.hydra_config import add_overrides_argument
from policies.vla.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from policies.vla.config import AugmentConfig, ModelConfig, TrainConfig, VisionConfig, to_dict
from policies.vla.data import Batch, TrainingData, load_source
from policies.vla.model import FLOW_T_MIN, VLAModel, count_parameters
from policies.vla.train import StopOnInterrupt, lr_factor, make_optimizer

STUDENT_DIR = "student"
REPORT_FILE = "distill_report.json"


@dataclass(frozen=True)
class StudentConfig:
    """The student's network; ``None`` / empty derives the value from the teacher."""

    d_model: int | None = None  # None: half the teacher's
    n_heads: int | None = None  # None: the teacher's, or fewer until it divides d_model
    trunk_layers: int | None = None  # None: the teacher's minus one (at least 1)
    expert_layers: int | None = None  # None: the teacher's minus one (at least 1)
    ff_mult: int | None = None  # None: the teacher's
    channels: tuple[int, ...] = ()  # vision channels; (): half the teacher's
    flow_steps: int = 3  # Euler steps at inference (the teacher's default is 10)
    head: str = "flow"  # flow | l1 (one pass: regresses the teacher's chunks)


@dataclass(frozen=True)
class DistillEvalConfig:
    task: str | None = None  # evaluate teacher and student on this task when set
    episodes: int = 20
    seed: int = 1000
    reality: str | None = None


@dataclass(frozen=True)
class DistillConfig:
    """``kizuna distill`` settings (config/hydra/distill.yaml)."""

    teacher: str | None = None
    dataset: tuple[str, ...] = ()  # empty: the teacher's training datasets (its config.json)
    dataset_weights: tuple[float, ...] = ()
    out: str = "runs/distill"
    steps: int = 5000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    grad_clip_norm: float = 1.0
    checkpoint_every: int = 1000
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    data_weight: float = 0.0  # plus the ordinary flow loss on the dataset's actions, times this
    student: StudentConfig = field(default_factory=StudentConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: DistillEvalConfig = field(default_factory=DistillEvalConfig)


@dataclass
class DistillResult:
    student: Path
    steps: int
    losses: list[float]
    agreement: float  # mean |student - teacher| chunk, normalized units, on fresh batches
    report: dict[str, Any]


# ---- the pieces ------------------------------------------------------------------------------


def student_config(teacher: ModelConfig, s: StudentConfig) -> ModelConfig:
    """The teacher's interface (cameras, sizes, chunk, action space) with a smaller network."""
    d_model = s.d_model or max(8, teacher.d_model // 2)
    heads = s.n_heads or teacher.n_heads
    while d_model % heads:
        heads -= 1
    channels = s.channels or tuple(max(4, c // 2) for c in teacher.vision.channels)
    vision = VisionConfig(
        channels=tuple(channels),
        groups=min(teacher.vision.groups, min(channels)),
        share_across_cameras=teacher.vision.share_across_cameras,
    )
    return replace(
        teacher,
        d_model=d_model,
        n_heads=heads,
        trunk_layers=s.trunk_layers or max(1, teacher.trunk_layers - 1),
        expert_layers=s.expert_layers or max(1, teacher.expert_layers - 1),
        ff_mult=s.ff_mult or teacher.ff_mult,
        flow_steps=s.flow_steps,
        head=s.head,
        vision=vision,
    )


def teacher_datasets(cfg: DistillConfig, teacher: Checkpoint) -> tuple[str, ...]:
    datasets = cfg.dataset or tuple(teacher.meta.get("training", {}).get("datasets", ()))
    if not datasets:
        raise ValueError(
            f"{teacher.path / 'config.json'}: names no training datasets; pass dataset=PATH"
        )
    return datasets


def training_data(cfg: DistillConfig, teacher: Checkpoint, progress: bool) -> TrainingData:
    """The datasets in memory, normalized with the teacher's stats (the student shares them)."""
    model_cfg = teacher.config
    datasets = teacher_datasets(cfg, teacher)
    sources = [load_source(p, model_cfg.cameras, model_cfg.image_size, progress) for p in datasets]
    instructions = sorted({s for src in sources for s in src.instructions})
    teacher.embedder.embed_many(instructions)  # cached in the teacher unless new
    language = {s: teacher.embedder.cache[s] for s in instructions}
    weights = cfg.dataset_weights or tuple(float(len(s)) for s in sources)
    return TrainingData(
        sources,
        weights,
        language,
        teacher.normalizer,
        model_cfg.chunk_size,
        model_cfg.action_space,
    )


def teacher_chunks(teacher: VLAModel, batch: Batch, noise: Tensor) -> Tensor:
    """The teacher's normalized chunks ``[B, T, A]`` from ``noise`` (its full step count)."""
    from policies.export import euler_sample

    with torch.no_grad():
        memory = teacher.encode(batch.images, batch.state, batch.language)
        if teacher.cfg.head == "l1":
            return teacher.regress(memory)
        return euler_sample(teacher, memory, noise, teacher.cfg.flow_steps)


def distill_loss(
    student: VLAModel,
    teacher: VLAModel,
    batch: Batch,
    generator: torch.Generator,
    data_weight: float = 0.0,
) -> dict[str, Tensor]:
    """Reflow (flow student) or L1 (l1 student) toward the teacher's chunks; ``loss`` sums."""
    shape = batch.actions.shape
    noise = torch.randn(shape, generator=generator)
    target = teacher_chunks(teacher, batch, noise)
    memory = student.encode(batch.images, batch.state, batch.language)
    if student.cfg.head == "l1":
        terms = {"teacher_l1": (student.regress(memory) - target).abs().mean()}
    else:
        uniform = torch.rand(shape[0], generator=generator)
        t = FLOW_T_MIN + (1 - FLOW_T_MIN) * uniform ** (1.0 / student.cfg.flow_time_alpha)
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * target
        error = student.velocity(memory, x_t, t) - (noise - target)
        terms = {"teacher_flow_mse": error.square().mean()}
    if data_weight > 0:
        data = student.loss(
            batch.images, batch.state, batch.language, batch.actions, batch.action_mask, generator
        )
        terms["data_loss"] = data["loss"]
    terms["loss"] = sum(
        (v * (data_weight if k == "data_loss" else 1.0) for k, v in terms.items()),
        start=torch.zeros(()),
    )
    return terms


def agreement(
    student: VLAModel, teacher: VLAModel, data: TrainingData, generator: torch.Generator
) -> float:
    """Mean |student chunk - teacher chunk| (normalized units) from the same noise."""
    from policies.export import euler_sample

    batch = data.sample(32, generator)
    noise = torch.randn(batch.actions.shape, generator=generator)
    with torch.no_grad():
        memory = student.eval().encode(batch.images, batch.state, batch.language)
        if student.cfg.head == "l1":
            chunk = student.regress(memory)
        else:
            chunk = euler_sample(student, memory, noise, student.cfg.flow_steps)
        return float((chunk - teacher_chunks(teacher, batch, noise)).abs().mean())


# ---- the loop --------------------------------------------------------------------------------


def distill(cfg: DistillConfig, progress: bool = True) -> DistillResult:
    """Train the student for ``cfg.steps``; writes ``<out>/student`` and the report JSON."""
    from tqdm import tqdm

    if not cfg.teacher:
        raise ValueError("teacher=PATH is required (a kizuna_vla checkpoint directory)")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    teacher = load_checkpoint(cfg.teacher)
    teacher.model.requires_grad_(False)
    data = training_data(cfg, teacher, progress)
    student = VLAModel(student_config(teacher.config, cfg.student))
    optimizer = make_optimizer(student, TrainConfig(lr=cfg.lr, weight_decay=cfg.weight_decay))
    schedule = partial(
        lr_factor,
        warmup_steps=cfg.warmup_steps,
        total_steps=cfg.steps,
        min_ratio=cfg.min_lr_ratio,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    out = Path(cfg.out)
    sizes = f"{count_parameters(teacher.model):,} -> {count_parameters(student):,}"
    print(f"distilling {cfg.teacher} ({sizes} parameters) on {data.frames} frames into {out}")

    losses: list[float] = []
    t0 = time.perf_counter()

    def save(step: int) -> Path:
        summary = {
            "distilled_from": str(Path(cfg.teacher).resolve()),
            "teacher_flow_steps": teacher.config.flow_steps,
            "step": step,
            "datasets": list(teacher_datasets(cfg, teacher)),
            "loss": losses[-1] if losses else None,
            "wall_s": round(time.perf_counter() - t0, 1),
            "config": to_dict(cfg),
        }
        return save_checkpoint(
            out / STUDENT_DIR, student, teacher.normalizer, teacher.embedder, summary
        )

    step = 0
    bar = tqdm(total=cfg.steps, unit="step", dynamic_ncols=True, disable=not progress)
    student.train()
    with StopOnInterrupt() as stop:
        while step < cfg.steps and not stop.requested:
            batch = data.sample(cfg.batch_size, generator, cfg.augment)
            terms = distill_loss(student, teacher.model, batch, generator, cfg.data_weight)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(terms["loss"].item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            bar.update(1)
            if step % cfg.checkpoint_every == 0:
                save(step)
    bar.close()
    path = save(step)
    kept = agreement(student, teacher.model, data, generator)
    report = {
        "teacher": str(cfg.teacher),
        "student": str(path),
        "steps": step,
        "interrupted": stop.requested,
        "parameters": {
            "teacher": count_parameters(teacher.model),
            "student": count_parameters(student),
        },
        "flow_steps": {"teacher": teacher.config.flow_steps, "student": student.cfg.flow_steps},
        "final_loss": losses[-1] if losses else None,
        "mean_abs_chunk_diff_normalized": kept,
        **evaluate_pair(cfg, path),
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return DistillResult(path, step, losses, kept, report)


def evaluate_pair(cfg: DistillConfig, student: Path) -> dict[str, Any]:
    """Success of teacher and student on ``cfg.eval.task`` (same seeds), and the ratio kept."""
    if not cfg.eval.task or cfg.eval.episodes <= 0:
        return {}
    from policies.base import load_policy
    from policies.evaluate import EvalConfig, evaluate

    settings = EvalConfig(
        task=cfg.eval.task,
        episodes=cfg.eval.episodes,
        seed=cfg.eval.seed,
        reality=cfg.eval.reality,
        videos=0,
    )
    rates = {
        name: evaluate(load_policy(path), settings).success_rate
        for name, path in (("teacher", cfg.teacher), ("student", student))
    }
    kept = rates["student"] / rates["teacher"] if rates["teacher"] > 0 else None
    return {"eval": {**to_dict(cfg.eval), "success": rates, "success_kept": kept}}


# ---- command line ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_overrides_argument(
        parser,
        "distill",
        "teacher=runs/vla/last out=runs/student steps=5000 student.flow_steps=3 "
        "eval.task=pick_place",
    )


def main(args: argparse.Namespace) -> int:
    from kizuna.dataset import DatasetError
    from kizuna.hydra_config import compose
    from policies.vla.train import listify_overrides

    try:
        cfg = compose("distill", listify_overrides(list(args.overrides)), DistillConfig)
        result = distill(cfg)
    except (ValueError, FileNotFoundError, ImportError, DatasetError) as exc:
        print(f"error: {exc}")
        return 2
    evaluation = result.report.get("eval", {})
    print(
        f"student {result.student} after {result.steps} steps: mean |student - teacher| "
        f"{result.agreement:.4f} (normalized units)"
    )
    if evaluation:
        success = evaluation["success"]
        print(
            f"{cfg.eval.task}: teacher {success['teacher']:.0%}, student {success['student']:.0%}"
            f" (kept {evaluation['success_kept'] or 0:.0%})"
        )
    return 0
