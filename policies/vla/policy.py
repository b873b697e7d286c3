"""``VLAPolicy``: a checkpoint behind the ``Policy`` interface (Contract 6).

``act(observation)`` turns the env/robot observation (Contract 2) into one action chunk
(Contract 3): absolute joint targets (rad) + gripper (0..1), ``[chunk_size, 8]`` float32.
A model trained on relative actions predicts joint targets minus the current joints; ``act``
adds the observation's (raw) joint state back, so callers always get absolute targets.
The flow head's noise comes from a seeded generator that ``reset()`` re-seeds, so an episode
replays exactly: evaluation is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.vla.checkpoint import Checkpoint, load_checkpoint
from policies.vla.model import resize_images
from policies.vla.normalize import to_absolute

GRIPPER = -1  # the last action dimension: gripper command, 0 closed .. 1 open


class VLAPolicy:
    """Vision-language-action policy; one chunk per ``act`` call."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: str = "cpu",
        flow_steps: int | None = None,
        seed: int = 0,
    ) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.to(device).eval()
        self.normalizer = checkpoint.normalizer
        self.embedder = checkpoint.embedder
        self.device = torch.device(device)
        self.flow_steps = flow_steps or self.model.cfg.flow_steps
        self.seed = seed
        self.chunk_size = self.model.cfg.chunk_size
        self.cameras = tuple(self.model.cfg.cameras)  # what ``act`` needs in the observation
        self.action_dim = self.model.cfg.action_dim
        self.generator = torch.Generator(device=self.device)
        self.reset()

    def reset(self) -> None:
        """Re-seed the flow noise: the same observations give the same chunks again."""
        self.generator.manual_seed(self.seed)

    def _inputs(
        self, observation: Mapping[str, Any]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalized model inputs (images, state, language), and the raw state ``[8]``."""
        cfg = self.model.cfg
        images = observation.get("images") or {}
        absent = [c for c in cfg.cameras if c not in images]
        if absent:
            raise KeyError(
                f"observation has no image from camera(s) {absent}; this policy needs "
                f"{list(cfg.cameras)} (it has {sorted(images)})"
            )
        tensors = {}
        for camera in cfg.cameras:
            # np.array copies: env and ROS arrays may be read-only, which torch warns about.
            pixels = torch.from_numpy(np.array(images[camera], np.uint8)).to(self.device)
            chw = pixels.permute(2, 0, 1)[None].float()  # [1, 3, H, W], 0..255
            # Real cameras may not match the training size: resize rather than refuse.
            chw = resize_images(chw, cfg.image_size)
            tensors[camera] = self.normalizer.normalize_images(camera, chw)
        state = torch.from_numpy(np.array(observation["state"], np.float32)).to(self.device)
        if state.shape != (cfg.state_dim,):
            raise ValueError(f"observation['state'] has shape {tuple(state.shape)}, want [8]")
        language = torch.from_numpy(self._embed(str(observation.get("instruction", ""))))
        return (
            tensors,
            self.normalizer.state.normalize(state)[None],
            language.to(self.device)[None],
            state,
        )

    def _embed(self, instruction: str) -> np.ndarray:
        try:
            return self.embedder.embed(instruction)
        except ImportError as exc:
            known = "; ".join(sorted(self.embedder.cache)) or "none"
            raise ImportError(
                f"{exc}. Instructions this checkpoint knows without the encoder: {known}"
            ) from None

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """One action chunk ``[chunk_size, action_dim]`` float32 for this observation."""
        with torch.inference_mode():
            images, state, language, raw_state = self._inputs(observation)
            normalized = self.model.predict(
                images, state, language, self.generator, self.flow_steps
            )
            actions = self.normalizer.action.unnormalize(normalized[0])
            if self.model.cfg.action_space == "relative":
                actions = to_absolute(actions, raw_state)
        chunk = actions.float().cpu().numpy()
        # The gripper command is 0..1 by contract; joint limits are the safety filter's job.
        chunk[:, GRIPPER] = np.clip(chunk[:, GRIPPER], 0.0, 1.0)
        return chunk.astype(np.float32, copy=False)


def load_vla_policy(
    path: str | Path, device: str = "cpu", flow_steps: int | None = None, seed: int = 0
) -> VLAPolicy:
    """The ``kizuna_vla`` loader that ``policies.base.load_policy`` dispatches to."""
    return VLAPolicy(load_checkpoint(path, device), device, flow_steps, seed)
