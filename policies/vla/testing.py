"""Tiny, valid VLA checkpoints for tests (of the VLA and of everything that loads policies).

``make_tiny_checkpoint(path)`` writes an untrained two-camera (front, wrist; 96×96) model with
the dependency-free ``hash`` language encoder in well under a second. Its normalization is
centred on the arm's home pose with a small scale, so its (random) chunks stay within a few
tenths of a radian of home: safe to step a simulator with. It predicts absolute actions by
default: relative ones would follow the arm wherever its random chunks push it, step after
step. ``action_space="relative"`` centres the joint deltas on 0 instead (tests of ``act``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kizuna.robot import PANDA
from kizuna.task import load_task, shipped_tasks
from policies.vla.checkpoint import save_checkpoint
from policies.vla.config import ModelConfig, VisionConfig
from policies.vla.language import InstructionEmbedder
from policies.vla.model import VLAModel
from policies.vla.normalize import Affine, identity_normalizer

TINY_HASH_DIM = 128
TINY_ACTION_SCALE = 0.05  # rad per normalized unit: chunks stay near the home pose


def tiny_model_config(
    chunk_size: int = 10, image_size: int = 96, head: str = "flow", action_space: str = "absolute"
) -> ModelConfig:
    """A model small enough to build, run and save in milliseconds."""
    return ModelConfig(
        cameras=("front", "wrist"),
        image_size=(image_size, image_size),
        chunk_size=chunk_size,
        action_space=action_space,
        language_dim=TINY_HASH_DIM,
        d_model=32,
        n_heads=2,
        trunk_layers=1,
        expert_layers=1,
        ff_mult=2,
        dropout=0.0,
        head=head,
        flow_steps=4,
        vision=VisionConfig(channels=(8, 16, 16, 16), groups=4),
    )


def shipped_instructions() -> list[str]:
    """Every phrasing of every shipped task, English and Japanese."""
    texts = []
    for name in shipped_tasks():
        for phrasings in load_task(name).instructions.values():
            texts.extend(phrasings)
    return texts


def make_tiny_checkpoint(
    path: Path,
    seed: int = 0,
    chunk_size: int = 10,
    image_size: int = 96,
    head: str = "flow",
    action_space: str = "absolute",
) -> Path:
    """Write an untrained, loadable ``kizuna_vla`` checkpoint to ``path``; returns ``path``.

    ``policies.base.load_policy(path).act(obs)`` gives ``[chunk_size, 8]`` float32 chunks for
    env observations with ``front`` and ``wrist`` images (resized if not ``image_size``).
    """
    cfg = tiny_model_config(chunk_size, image_size, head, action_space)
    with torch.random.fork_rng():  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = VLAModel(cfg).eval()
    home = np.array([*PANDA.home_q_rad, 1.0], np.float32)  # joints + gripper open
    base = identity_normalizer(cfg.cameras)
    scale = np.full(8, TINY_ACTION_SCALE, np.float32)
    scale[-1] = 0.5  # gripper: 0.5 +- 0.5 spans 0..1
    home[-1] = 0.5
    centre = home.copy()
    if action_space == "relative":
        centre[:-1] = 0.0  # joint deltas around the current joints; the gripper as before
    normalizer = type(base)(
        state=Affine(home.copy(), np.full(8, 0.5, np.float32)),
        action=Affine(centre, scale),
        action_mode="meanstd",
        image_mean=base.image_mean,
        image_std=base.image_std,
    )
    embedder = InstructionEmbedder("hash", TINY_HASH_DIM)
    embedder.embed_many(shipped_instructions())
    summary = {"note": "untrained tiny checkpoint for tests (policies.vla.testing)", "seed": seed}
    return save_checkpoint(Path(path), model, normalizer, embedder, summary)
