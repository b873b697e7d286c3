"""Synthetic episodes for tests, examples and benchmarks of the dataset format.

Images are smooth moving colour gradients: a video codec reproduces them within a few grey
levels, so a round trip through H.264 can be checked with a tight tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kizuna.dataset.format import default_action_names, default_state_names
from kizuna.dataset.provenance import Provenance, to_json
from kizuna.dataset.writer import DatasetWriter

CAMERAS = {"front": (32, 48), "wrist": (24, 32)}
FPS = 20
INSTRUCTIONS = ("put the red cube in the bin", "place the red block into the blue box")


def smooth_images(length: int, height: int, width: int, phase: float = 0.0) -> np.ndarray:
    """``[T, H, W, 3]`` uint8: diagonal sine gradients drifting in time, one phase per channel."""
    t = np.arange(length)[:, None, None, None] / max(length, 1)
    y = np.linspace(0.0, 1.0, height)[None, :, None, None]
    x = np.linspace(0.0, 1.0, width)[None, None, :, None]
    channel = np.arange(3)[None, None, None, :] / 3.0
    wave = np.sin(2 * np.pi * (0.6 * x + 0.4 * y + 0.5 * t + channel + phase))
    return np.round(127.5 + 90.0 * wave).astype(np.uint8)


def synthetic_episode(
    length: int,
    seed: int,
    cameras: Mapping[str, tuple[int, int]] = CAMERAS,
    dim: int = 8,
) -> dict[str, Any]:
    """``DatasetWriter.add_episode`` arrays: states, actions, images, rewards, interventions."""
    rng = np.random.default_rng(seed)
    states = np.cumsum(rng.normal(0.0, 0.05, (length, dim)), axis=0).astype(np.float32)
    actions = (states + rng.normal(0.0, 0.01, (length, dim))).astype(np.float32)
    phase = float(rng.uniform())
    images = {name: smooth_images(length, h, w, phase) for name, (h, w) in cameras.items()}
    rewards = rng.uniform(0.0, 1.0, length).astype(np.float32)
    interventions = rng.uniform(size=length) < 0.1
    return {
        "states": states,
        "actions": actions,
        "images": images,
        "rewards": rewards,
        "interventions": interventions,
    }


def synthetic_provenance(source: str = "sim", seed: int = 0) -> Provenance:
    """A plausible provenance of either kind, for tests."""
    if source == "sim":
        return Provenance(
            source="sim",
            backend="mujoco",
            task_name="pick_place",
            task_spec_hash="0123456789abcdef",
            robot_id="kizuna-panda-v1",
            randomization_json=to_json({"friction": 0.8 + 0.01 * seed, "light": [1, 0.9]}),
            reality_profile="camera_shift" if seed % 2 else None,
            policy_version="scripted-expert",
            seed=seed,
        )
    return Provenance(
        source="real",
        backend="ros2",
        task_name="pick_place",
        task_spec_hash="0123456789abcdef",
        robot_id="panda-cell-3",
        calibration_id="calib-2025-01-07",
        policy_version="vla-0.3.1",
    )


def synthetic_writer(
    root: str | Path, cameras: Mapping[str, tuple[int, int]] = CAMERAS
) -> DatasetWriter:
    """A writer with the synthetic datasets' settings (resumes an existing one)."""
    return DatasetWriter(
        root, FPS, "kizuna-panda-v1", cameras, default_state_names(), default_action_names()
    )


def synthetic_arguments(
    seed: int,
    length: int,
    source: str = "sim",
    instructions: Sequence[str] = INSTRUCTIONS,
    cameras: Mapping[str, tuple[int, int]] = CAMERAS,
) -> dict[str, Any]:
    """``add_episode`` keyword arguments, all determined by ``seed`` (and ``length``)."""
    return {
        **synthetic_episode(length, seed, cameras),
        "instruction": instructions[seed % len(instructions)],
        "provenance": synthetic_provenance(source, seed),
        "success": seed % 3 != 1,
    }


def write_synthetic(
    root: str | Path,
    lengths: Sequence[int],
    source: str = "sim",
    first_seed: int = 0,
    instructions: Sequence[str] = INSTRUCTIONS,
    cameras: Mapping[str, tuple[int, int]] = CAMERAS,
) -> list[dict[str, Any]]:
    """Append one episode per entry of ``lengths``, seeds counting from ``first_seed``.

    Returns the ``add_episode`` arguments of each, plus the ``index`` it got.
    """
    written = []
    with synthetic_writer(root, cameras) as writer:
        for k, length in enumerate(lengths):
            episode = synthetic_arguments(first_seed + k, length, source, instructions, cameras)
            episode["index"] = writer.add_episode(**episode)
            written.append(episode)
    return written
