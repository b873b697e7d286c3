"""The one ``Policy`` interface (Contract 6) and ``load_policy``, all the robot side needs.

Observation (Contract 2, the env's observation): ``{"state": float32 [8] (7 joints rad +
gripper 0..1), "images": {camera: uint8 [H, W, 3]}, "instruction": str}``.
Action chunk (Contract 3): float32 ``[T, 8]``: absolute joint targets (rad) + gripper (0..1),
one row per control period, the first row for the very next period.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

Observation = dict[str, Any]


@runtime_checkable
class Policy(Protocol):
    """What every policy does: kizuna's VLA, an ONNX export, a remote (openpi) model, RL."""

    #: Steps per chunk that ``act`` returns.
    chunk_size: int
    #: Rows of an action (8: 7 joint targets + gripper).
    action_dim: int

    def reset(self) -> None:
        """Forget any per-episode state (queued actions, caches) before a new episode."""

    def act(self, observation: Observation) -> np.ndarray:
        """An action chunk ``[chunk_size, action_dim]`` float32 for this observation."""


# checkpoint "type" (config.json) -> (module, loader function taking the checkpoint path).
# One explicit literal: no import-time registration.
POLICIES: dict[str, tuple[str, str]] = {
    "kizuna_vla": ("policies.vla.policy", "load_vla_policy"),
    # a VLA exported by `kizuna export` (model.onnx), run by onnxruntime without torch
    "kizuna_vla_onnx": ("policies.onnx_policy", "load_onnx_policy"),
    "sb3_state": ("policies.rl_policy", "load_sb3_policy"),
    # a frozen base checkpoint + a bounded RL residual (kizuna residual): policies/residual.py
    "kizuna_residual": ("policies.residual", "load_residual_policy"),
    # a policy server (ws://host:port, or a config.json naming one): policies/remote.py
    "remote": ("policies.remote", "load_remote_policy"),
    # a LeRobot checkpoint (its own config.json "type", see LEROBOT_TYPES); needs lerobot
    "lerobot": ("policies.lerobot_adapter", "load_lerobot_policy"),
}
# LeRobot's policy types (the "type" its PreTrainedPolicy.save_pretrained writes) -> "lerobot".
LEROBOT_TYPES = frozenset(
    {"act", "diffusion", "groot", "pi0", "pi05", "pi0_fast", "smolvla", "tdmpc", "vqbet", "xvla"}
)


def is_remote_uri(source: str | Path) -> bool:
    """``ws://`` or ``wss://``: a policy server, not a checkpoint directory."""
    return str(source).startswith(("ws://", "wss://"))


def checkpoint_type(path: Path) -> str:
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"{path}: not a checkpoint (no config.json); a checkpoint is a directory with "
            "config.json, model.safetensors and normalization stats"
        )
    try:
        kind = json.loads(config.read_text())["type"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{config}: cannot read the checkpoint type ({exc})") from None
    if kind in LEROBOT_TYPES:
        return "lerobot"
    if kind not in POLICIES:
        raise ValueError(
            f"{config}: unknown checkpoint type {kind!r}; known: {sorted(POLICIES)} and "
            f"LeRobot's {sorted(LEROBOT_TYPES)}"
        )
    return kind


def load_policy(path: str | Path, **options: Any) -> Policy:
    """Load any supported policy: a checkpoint directory, or ``ws://host:port`` (a policy
    server, ``policies.remote.RemotePolicy``)."""
    source: str | Path = str(path) if is_remote_uri(path) else Path(path)
    kind = "remote" if isinstance(source, str) else checkpoint_type(source)
    module_name, loader = POLICIES[kind]
    return getattr(importlib.import_module(module_name), loader)(source, **options)
