"""An exponential moving average of the model's weights: the weights a checkpoint ships.

Imitation policies trained with AdamW on small datasets swing between neighbouring
checkpoints (measured here: 30-45 points of task success between checkpoints 1,000 steps
apart). Averaging the weights over the last few thousand steps (Diffusion Policy, pi0 and
LeRobot all do) removes that noise at no training cost. ``torch.optim.swa_utils.AveragedModel``
keeps the copy; the decay warms up as ``min(decay, (1 + n) / (10 + n))`` so that a short
fine-tune is not dominated by its starting weights.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

from policies.vla.model import VLAModel


def ema_decay_at(updates: int, decay: float) -> float:
    """The decay used for update number ``updates`` (0-based), warmed up."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightEMA:
    """The averaged copy of a model; ``update`` after every optimizer step."""

    def __init__(self, model: VLAModel, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) (0 turns it off), not {decay}")
        self.decay = decay

        def average(
            averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor
        ) -> None:
            weight = 1.0 - ema_decay_at(int(n), self.decay)
            torch._foreach_lerp_(averaged, current, weight)

        # use_buffers: buffers are averaged too (and the copy is a complete model).
        self.averaged = AveragedModel(model, multi_avg_fn=average, use_buffers=True)
        self.averaged.requires_grad_(False)

    @property
    def model(self) -> VLAModel:
        """The averaged network (what evaluation and deployment use)."""
        return self.averaged.module  # type: ignore[return-value]

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    def update(self, model: VLAModel) -> None:
        self.averaged.update_parameters(model)

    def set_updates(self, updates: int) -> None:
        """Resume: continue the decay warm-up where the saved run left it."""
        self.averaged.n_averaged.fill_(updates)
