"""VLA checkpoints (Contract 5): a self-describing directory, safetensors and JSON only.

```
checkpoint/
├── config.json                  # "type": "kizuna_vla", the model config, language encoder
│                                #   name + dim + cached instructions, cameras, image size,
│                                #   chunk size, action space (relative | absolute; absent:
│                                #   absolute), flow steps, kizuna version, training summary
├── model.safetensors            # weights only
├── normalization.json           # the state/action/image statistics the model was trained with
└── language_cache.safetensors   # "embeddings" [N, dim], row i = config.json's instructions[i]
```

Loading never unpickles (no ``torch.load``), and is strict: every missing, unexpected or
mis-shaped tensor is named, with the file, in one error. Directories are written under a
temporary name and renamed into place, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kizuna import __version__
from policies.vla.config import ModelConfig, from_dict, to_dict
from policies.vla.language import InstructionEmbedder
from policies.vla.model import VLAModel
from policies.vla.normalize import Normalizer

CHECKPOINT_TYPE = "kizuna_vla"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NORMALIZATION_FILE = "normalization.json"
LANGUAGE_CACHE_FILE = "language_cache.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and what is wrong."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its normalizer and instruction embedder."""

    path: Path
    model: VLAModel
    normalizer: Normalizer
    embedder: InstructionEmbedder
    meta: dict[str, Any]  # config.json as read

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg


# ---- writing ---------------------------------------------------------------------------------


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``final`` by renames."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # re-saving the same step (e.g. Ctrl-C right after a periodic save)
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def checkpoint_config(
    model: VLAModel, embedder: InstructionEmbedder, instructions: list[str], training: Mapping
) -> dict[str, Any]:
    cfg = model.cfg
    return {
        "type": CHECKPOINT_TYPE,
        "format_version": FORMAT_VERSION,
        "kizuna_version": __version__,
        # The robot side reads these few top-level keys without knowing the model.
        "cameras": list(cfg.cameras),
        "image_size": list(cfg.image_size),
        "state_dim": cfg.state_dim,
        "action_dim": cfg.action_dim,
        "chunk_size": cfg.chunk_size,
        "action_space": cfg.action_space,  # of the model's output; act() returns absolute
        "flow_steps": cfg.flow_steps,
        "head": cfg.head,
        "language": {"encoder": embedder.name, "dim": embedder.dim, "instructions": instructions},
        "model": to_dict(cfg),
        "training": dict(training),
    }


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as safetensors wants it: detached, on the CPU, contiguous."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def write_policy_files(
    directory: Path,
    model: VLAModel,
    normalizer: Normalizer,
    embedder: InstructionEmbedder,
    training: Mapping[str, Any] | None = None,
) -> None:
    """Write the four policy files into an existing ``directory``."""
    instructions = sorted(embedder.cache)
    config = checkpoint_config(model, embedder, instructions, training or {})
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    save_file(model_tensors(model), str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    (directory / NORMALIZATION_FILE).write_text(json.dumps(normalizer.to_json(), indent=2) + "\n")
    embeddings = np.zeros((0, embedder.dim), np.float32)
    if instructions:
        embeddings = np.stack([embedder.cache[s] for s in instructions]).astype(np.float32)
    save_file({"embeddings": torch.from_numpy(embeddings)}, str(directory / LANGUAGE_CACHE_FILE))


def save_checkpoint(
    path: str | Path,
    model: VLAModel,
    normalizer: Normalizer,
    embedder: InstructionEmbedder,
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write a policy checkpoint directory atomically; returns its path."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        write_policy_files(tmp, model, normalizer, embedder, training)
    return path


# ---- reading ---------------------------------------------------------------------------------


def check_state_dict(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], file: Path
) -> None:
    """``load_state_dict(strict=True)``'s check, but naming every bad tensor and the file."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: file {list(found[k].shape)}, model {list(expected[k].shape)}"
        for k in sorted(set(expected) & set(found))
        if found[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    if shapes:
        problems.append(f"mis-shaped tensors: {'; '.join(shapes)}")
    if problems:
        raise CheckpointError(
            f"{file}: does not match the model its config.json describes ({'; '.join(problems)})"
        )


def read_tensors(file: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; a VLA checkpoint needs it")
    try:
        return load_file(str(file), device=device)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from None


def read_config(path: Path) -> dict[str, Any]:
    file = path / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; is {path} a checkpoint directory?")
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from None
    if meta.get("type") != CHECKPOINT_TYPE:
        raise CheckpointError(
            f"{file}: checkpoint type {meta.get('type')!r} is not {CHECKPOINT_TYPE!r}; "
            "policies.load_policy picks the loader by type"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: format_version {meta.get('format_version')!r}; this kizuna reads "
            f"{FORMAT_VERSION}"
        )
    return meta


def _read_embedder(path: Path, meta: Mapping[str, Any]) -> InstructionEmbedder:
    language = meta["language"]
    file = path / LANGUAGE_CACHE_FILE
    embeddings = read_tensors(file).get("embeddings")
    instructions = list(language["instructions"])
    if embeddings is None or tuple(embeddings.shape) != (len(instructions), language["dim"]):
        shape = None if embeddings is None else list(embeddings.shape)
        raise CheckpointError(
            f"{file}: 'embeddings' has shape {shape}; config.json lists {len(instructions)} "
            f"instructions of a {language['dim']}-d {language['encoder']!r} encoder"
        )
    cache = dict(zip(instructions, embeddings.numpy(), strict=True))
    return InstructionEmbedder(language["encoder"], int(language["dim"]), cache)


def load_checkpoint(path: str | Path, device: str = "cpu") -> Checkpoint:
    """Rebuild the model from ``config.json`` and load its weights strictly."""
    path = Path(path)
    meta = read_config(path)
    try:
        # Checkpoints from before relative actions were the default predicted absolute ones.
        values = {"action_space": "absolute", **meta["model"]}
        cfg = from_dict(ModelConfig, values, f"{path / CONFIG_FILE}: model")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: bad model config ({exc})") from None
    if meta["language"]["dim"] != cfg.language_dim:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: language dim {meta['language']['dim']} differs from the "
            f"model's language_dim {cfg.language_dim}"
        )
    model = VLAModel(cfg)
    weights = read_tensors(path / WEIGHTS_FILE, device)
    check_state_dict(model.state_dict(), weights, path / WEIGHTS_FILE)
    model.load_state_dict(weights, strict=True)
    normalizer = read_normalizer(path, cfg)
    return Checkpoint(path, model.to(device).eval(), normalizer, _read_embedder(path, meta), meta)


def read_normalizer(path: Path, cfg: ModelConfig) -> Normalizer:
    file = path / NORMALIZATION_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; a VLA checkpoint needs its normalization stats")
    try:
        normalizer = Normalizer.from_json(json.loads(file.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{file}: unreadable normalization stats ({exc!r})") from None
    sizes = {
        "state": (normalizer.state.offset.size, cfg.state_dim),
        "action": (normalizer.action.offset.size, cfg.action_dim),
    }
    for name, (found, wanted) in sizes.items():
        if found != wanted:
            raise CheckpointError(f"{file}: {name} stats have {found} entries, model {wanted}")
    absent = [c for c in cfg.cameras if c not in normalizer.image_mean]
    if absent:
        raise CheckpointError(f"{file}: no image stats for camera(s) {absent}")
    return normalizer


def load_vision_weights(model: VLAModel, file: str | Path) -> None:
    """Load user-supplied image-encoder weights (safetensors) into every camera's encoder.

    The file holds the keys of one ``ImageEncoder`` (``layers.0.weight`` ...), used for every
    camera, or ``<camera>.<key>`` per camera (``front.layers.0.weight`` ...).
    """
    file = Path(file)
    tensors = read_tensors(file)
    for name, encoder in model.vision.items():
        prefix = f"{name}."
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        chosen = own or tensors
        check_state_dict(encoder.state_dict(), chosen, file)
        encoder.load_state_dict(chosen, strict=True)
