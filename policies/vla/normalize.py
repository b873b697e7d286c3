"""Normalization of states, actions and images, from a dataset's ``meta/stats.json``.

- actions: ``minmax`` (default) maps each dimension's [min, max] to [-1, 1], the range the
  flow head's Gaussian noise lives in (as pi0's quantile normalization); ``meanstd`` is
  ``(x - mean) / std``. The gripper command (0..1) fits min/max naturally.
- states: always ``meanstd``: proprioception is an input, and outliers there just scale down.
- images: ``(pixel / 255 - mean_c) / std_c`` per channel and camera.

With relative actions (``ModelConfig.action_space``), the action stats describe the chunk
targets the model is trained on: joints minus the state at the chunk's observation, computed
from the training data in memory (``data.chunk_action_stats``), not the dataset's stats.json.

A dimension that never moved (range or std below ``EPS``) gets scale 1, so it passes through
shifted instead of dividing by zero. The stats travel in ``normalization.json`` next to the
weights, so a checkpoint unnormalizes exactly as it was trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

EPS = 1e-6
MODES = ("minmax", "meanstd")
DEFAULT_IMAGE_MEAN = (0.5, 0.5, 0.5)
DEFAULT_IMAGE_STD = (0.25, 0.25, 0.25)
ARM_JOINTS = 7  # action and state dimensions 0..6; dimension 7 (the gripper) stays absolute

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def to_relative(actions: Array, state: Array) -> Array:
    """Chunks ``[..., T, A]`` of absolute actions minus the joint ``state`` ``[..., S]``."""
    out = actions.copy() if isinstance(actions, np.ndarray) else actions.clone()
    out[..., :ARM_JOINTS] -= state[..., None, :ARM_JOINTS]
    return out


def to_absolute(actions: Array, state: Array) -> Array:
    """The inverse of ``to_relative``: relative joint targets plus the joint ``state``."""
    out = actions.copy() if isinstance(actions, np.ndarray) else actions.clone()
    out[..., :ARM_JOINTS] += state[..., None, :ARM_JOINTS]
    return out


@dataclass(frozen=True)
class Affine:
    """``normalized = (x - offset) / scale``, per dimension."""

    offset: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_stats(cls, stats: Mapping[str, np.ndarray], mode: str) -> Affine:
        if mode == "minmax":
            low = np.asarray(stats["min"], np.float64).reshape(-1)
            high = np.asarray(stats["max"], np.float64).reshape(-1)
            offset, half_range = (high + low) / 2, (high - low) / 2
            scale = np.where(half_range > EPS, half_range, 1.0)
        elif mode == "meanstd":
            offset = np.asarray(stats["mean"], np.float64).reshape(-1)
            std = np.asarray(stats["std"], np.float64).reshape(-1)
            scale = np.where(std > EPS, std, 1.0)
        else:
            raise ValueError(f"normalization mode {mode!r} is not one of {MODES}")
        return cls(offset.astype(np.float32), scale.astype(np.float32))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - _like(self.offset, x)) / _like(self.scale, x)

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * _like(self.scale, x) + _like(self.offset, x)


def _like(values: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=x.dtype, device=x.device)


@dataclass(frozen=True)
class Normalizer:
    """Everything the model's inputs and outputs are scaled by."""

    state: Affine
    action: Affine
    action_mode: str
    image_mean: dict[str, np.ndarray]  # camera -> [3]
    image_std: dict[str, np.ndarray]

    def normalize_images(self, camera: str, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0..255 float) ``[B, 3, H, W]`` -> normalized float32."""
        mean = _like(self.image_mean[camera], images.float()).view(1, 3, 1, 1)
        std = _like(self.image_std[camera], images.float()).view(1, 3, 1, 1)
        return (images.float() / 255.0 - mean) / std

    def to_json(self) -> dict[str, Any]:
        def floats(a: np.ndarray) -> list[float]:
            return [float(v) for v in a]  # float32 -> float64 is exact, so JSON round-trips

        return {
            "state": {
                "mode": "meanstd",
                "offset": floats(self.state.offset),
                "scale": floats(self.state.scale),
            },
            "action": {
                "mode": self.action_mode,
                "offset": floats(self.action.offset),
                "scale": floats(self.action.scale),
            },
            "images": {
                cam: {"mean": floats(self.image_mean[cam]), "std": floats(self.image_std[cam])}
                for cam in self.image_mean
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Normalizer:
        def affine(entry: Mapping[str, Any]) -> Affine:
            return Affine(
                np.asarray(entry["offset"], np.float32), np.asarray(entry["scale"], np.float32)
            )

        images = data["images"]
        return cls(
            state=affine(data["state"]),
            action=affine(data["action"]),
            action_mode=data["action"]["mode"],
            image_mean={c: np.asarray(v["mean"], np.float32) for c, v in images.items()},
            image_std={c: np.asarray(v["std"], np.float32) for c, v in images.items()},
        )


def image_stats_for(
    stats: Mapping[str, Mapping[str, np.ndarray]], camera: str
) -> tuple[np.ndarray, np.ndarray]:
    """A camera's per-channel mean/std (0..1) from dataset stats, or generic defaults."""
    entry = stats.get(f"observation.images.{camera}")
    if entry is None:
        return np.asarray(DEFAULT_IMAGE_MEAN, np.float32), np.asarray(
            DEFAULT_IMAGE_STD, np.float32
        )
    std = np.asarray(entry["std"], np.float32).reshape(3)
    return np.asarray(entry["mean"], np.float32).reshape(3), np.maximum(std, 1e-3)


def normalizer_from_stats(
    stats: Mapping[str, Mapping[str, np.ndarray]],
    cameras: Sequence[str],
    action_mode: str = "minmax",
) -> Normalizer:
    """Build from one dataset's (or merged) stats: ``observation.state``, ``action``, images."""
    pairs = {cam: image_stats_for(stats, cam) for cam in cameras}
    return Normalizer(
        state=Affine.from_stats(stats["observation.state"], "meanstd"),
        action=Affine.from_stats(stats["action"], action_mode),
        action_mode=action_mode,
        image_mean={cam: mean for cam, (mean, _) in pairs.items()},
        image_std={cam: std for cam, (_, std) in pairs.items()},
    )


def merge_stats(
    parts: Sequence[Mapping[str, Mapping[str, np.ndarray]]],
) -> dict[str, dict[str, np.ndarray]]:
    """Combine several datasets' stats (min of mins, max of maxes, pooled mean and variance)."""
    merged: dict[str, dict[str, np.ndarray]] = {}
    for key in set.intersection(*(set(p) for p in parts)):
        entries = [p[key] for p in parts]
        counts = np.array([float(np.asarray(e["count"]).reshape(-1)[0]) for e in entries])
        weights = (counts / counts.sum()).reshape(-1, *([1] * np.ndim(entries[0]["mean"])))
        means = np.stack([np.asarray(e["mean"], np.float64) for e in entries])
        variances = np.stack([np.asarray(e["std"], np.float64) ** 2 for e in entries])
        mean = (weights * means).sum(axis=0)
        variance = (weights * (variances + (means - mean) ** 2)).sum(axis=0)
        merged[key] = {
            "min": np.min([e["min"] for e in entries], axis=0),
            "max": np.max([e["max"] for e in entries], axis=0),
            "mean": mean,
            "std": np.sqrt(variance),
            "count": np.array([counts.sum()]),
        }
    return merged


def identity_normalizer(
    cameras: Sequence[str], state_dim: int = 8, action_dim: int = 8
) -> Normalizer:
    """No scaling (tests, and a model trained on already-normalized data)."""
    zeros, ones = np.zeros, np.ones
    return Normalizer(
        state=Affine(zeros(state_dim, np.float32), ones(state_dim, np.float32)),
        action=Affine(zeros(action_dim, np.float32), ones(action_dim, np.float32)),
        action_mode="minmax",
        image_mean={c: np.asarray(DEFAULT_IMAGE_MEAN, np.float32) for c in cameras},
        image_std={c: np.asarray(DEFAULT_IMAGE_STD, np.float32) for c in cameras},
    )
