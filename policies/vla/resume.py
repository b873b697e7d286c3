"""What a training checkpoint adds to a policy checkpoint, so ``resume=true`` loses nothing.

```
step_000400/
├── (the policy files: config.json, model.safetensors, normalization.json, language cache)
├── optimizer.safetensors   # every optimizer state tensor, "state.<param>.<name>"
├── rng.safetensors         # torch's global RNG (dropout) and the data/noise generator
├── online_model.safetensors  # with weight EMA: the optimizer's weights (the policy files
│                             # hold the averaged ones)
└── trainer_state.json      # step, optimizer hyper-parameters, scheduler state, config
```

No pickle anywhere: tensors go to safetensors, scalars to JSON. A run directory holds
``checkpoints/step_XXXXXX/`` (each written to a temporary name, then renamed) and ``last``, a
relative symlink re-pointed atomically at the newest one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from policies.vla.checkpoint import (
    CheckpointError,
    atomic_directory,
    check_state_dict,
    model_tensors,
    read_tensors,
    write_policy_files,
)
from policies.vla.ema import WeightEMA
from policies.vla.language import InstructionEmbedder
from policies.vla.model import VLAModel
from policies.vla.normalize import Normalizer

OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
TRAINER_FILE = "trainer_state.json"
ONLINE_FILE = "online_model.safetensors"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's state tensors, flattened to ``state.<param index>.<name>``."""
    state = optimizer.state_dict()["state"]
    return {
        f"state.{index}.{name}": value.detach().cpu().contiguous()
        for index, entries in state.items()
        for name, value in entries.items()
        if isinstance(value, torch.Tensor)
    }


def write_training_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    step: int,
    extra: dict[str, Any],
) -> None:
    """Write optimizer, RNG and trainer state into ``directory`` (next to the policy files)."""
    save_file(optimizer_tensors(optimizer), str(directory / OPTIMIZER_FILE))
    save_file(
        {"torch_global": torch.get_rng_state(), "generator": generator.get_state()},
        str(directory / RNG_FILE),
    )
    groups = optimizer.state_dict()["param_groups"]
    trainer = {
        "step": step,
        "optimizer": {"class": type(optimizer).__name__, "param_groups": groups},
        "scheduler": scheduler.state_dict(),
        **extra,
    }
    (directory / TRAINER_FILE).write_text(json.dumps(trainer, indent=2, default=str) + "\n")


def restore_online_weights(directory: Path, model: VLAModel) -> int | None:
    """With weight EMA: load the optimizer's weights into ``model``; returns the EMA's update
    count, or None for a checkpoint trained without EMA (its policy weights are the online ones).
    """
    trainer = read_trainer_json(directory)
    updates = trainer.get("ema_updates")
    if updates is None:
        return None
    file = directory / ONLINE_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; the run used weight EMA and needs it to resume")
    tensors = read_tensors(file)
    check_state_dict(model.state_dict(), tensors, file)
    model.load_state_dict(tensors)
    return int(updates)


def read_trainer_json(directory: Path) -> dict[str, Any]:
    file = directory / TRAINER_FILE
    if not file.is_file():
        raise CheckpointError(
            f"{file}: missing; {directory} is a policy checkpoint, not a training checkpoint "
            "that resume=true can continue"
        )
    return json.loads(file.read_text())


def restore_training_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
) -> int:
    """Restore optimizer, scheduler and RNGs from ``directory`` in place; returns the step."""
    trainer = read_trainer_json(directory)
    saved = read_tensors(directory / OPTIMIZER_FILE)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in saved.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    groups = trainer["optimizer"]["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])  # JSON turned the tuple into a list
    expected = sum(len(g["params"]) for g in optimizer.param_groups)
    if len(state) not in (0, expected):
        raise CheckpointError(
            f"{directory / OPTIMIZER_FILE}: state for {len(state)} parameters, "
            f"the model has {expected}"
        )
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(trainer["scheduler"])
    rng = read_tensors(directory / RNG_FILE)
    torch.set_rng_state(rng["torch_global"])
    generator.set_state(rng["generator"])
    return int(trainer["step"])


# ---- the run directory: <out>/checkpoints/step_XXXXXX/ and <out>/last ----------------------


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step_{step:06d}"


def latest_checkpoint(out: Path) -> Path | None:
    """``<out>/last`` (a symlink to the newest checkpoint), if there is one."""
    last = out / "last"
    return last.resolve() if last.exists() else None


def point_last_at(out: Path, target: Path) -> None:
    """Atomically re-point ``<out>/last`` (a relative symlink) at ``target``."""
    tmp = out / f".last.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target.relative_to(out))
    os.replace(tmp, out / "last")


def prune_checkpoints(out: Path, keep: int) -> None:
    if keep <= 0:
        return
    steps = sorted((out / "checkpoints").glob("step_*"))
    last = latest_checkpoint(out)
    for old in steps[:-keep]:
        if old.resolve() != last:
            shutil.rmtree(old, ignore_errors=True)


def save_training_checkpoint(
    out: Path,
    step: int,
    model: VLAModel,
    normalizer: Normalizer,
    embedder: InstructionEmbedder,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    summary: dict[str, Any],
    keep: int,
    ema: WeightEMA | None = None,
) -> Path:
    """Policy files + optimizer/RNG/trainer state, atomically; then re-point ``last``.

    With ``ema`` the policy files hold the averaged weights and ``model``'s own (the ones the
    optimizer steps) go to ``online_model.safetensors``.
    """
    final = checkpoint_dir(out, step)
    with atomic_directory(final) as tmp:
        extra: dict[str, Any] = {"summary": summary}
        if ema is None:
            write_policy_files(tmp, model, normalizer, embedder, summary)
        else:
            write_policy_files(tmp, ema.model, normalizer, embedder, summary)
            save_file(model_tensors(model), str(tmp / ONLINE_FILE))
            extra["ema_updates"] = ema.updates
        write_training_state(tmp, optimizer, scheduler, generator, step, extra)
    point_last_at(out, final)
    prune_checkpoints(out, keep)
    return final
