"""Training data: datasets decoded once into memory, batches of (frame, action chunk) sampled.

Each episode's videos are decoded once (``DatasetReader.episode``) into uint8 arrays, resized
to the model's image size if needed, and kept for the whole run. A sample is frame ``t`` of an
episode with the chunk of actions ``t .. t+T-1``; past the episode's end the chunk repeats the
last action and its mask is 0, so padding never counts in the loss. With relative actions
(the default), every row's joint targets are taken relative to the joint state at frame ``t``
(the gripper stays absolute); ``chunk_action_stats`` gives the normalization stats of exactly
those targets. Several datasets (tasks)
mix with configurable weights. Augmentation (shift, brightness, contrast, saturation) runs in
torch on the batch. All randomness comes from one ``torch.Generator``, which training saves
and restores on resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional
from tqdm import tqdm

from kizuna.dataset import DatasetReader
from kizuna.dataset.format import IMAGE_PREFIX
from policies.vla.config import AugmentConfig, CotrainConfig
from policies.vla.model import resize_images
from policies.vla.normalize import Normalizer, to_relative


@dataclass
class Source:
    """One dataset's frames, concatenated over its episodes."""

    root: Path
    states: np.ndarray  # [N, 8] float32
    actions: np.ndarray  # [N, 8] float32
    images: dict[str, np.ndarray]  # camera -> [N, H, W, 3] uint8
    episode_end: np.ndarray  # [N] index one past the last frame of each frame's episode
    instructions: list[str]  # [N] the episode's instruction, per frame
    # [N] relative sampling weight of each frame (co-training); None: all frames alike
    frame_weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.states)


@dataclass
class Batch:
    """Model inputs, normalized; ``actions`` ``[B, T, A]`` with ``action_mask`` ``[B, T]``."""

    images: dict[str, torch.Tensor]
    state: torch.Tensor
    language: torch.Tensor
    actions: torch.Tensor
    action_mask: torch.Tensor


def dataset_cameras(reader: DatasetReader) -> tuple[str, ...]:
    return tuple(key.removeprefix(IMAGE_PREFIX) for key in reader.video_keys)


def dataset_image_size(reader: DatasetReader, camera: str) -> tuple[int, int]:
    height, width = reader.features[IMAGE_PREFIX + camera]["shape"][:2]
    return int(height), int(width)


def _resized(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frames.shape[1:3] == tuple(size):
        return frames
    chw = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    out = resize_images(chw, size).round().clamp(0, 255).to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous().numpy()


def frame_weights(
    interventions: np.ndarray, success: bool | None, cfg: CotrainConfig
) -> np.ndarray:
    """Sampling weights of one episode's frames: interventions up-weighted, and of an episode
    the policy failed only what ``cfg.failed_episodes`` keeps (an unlabelled episode counts as
    good). The policy failed an episode that failed, and one the operator had to take over:
    its frames before the takeover are what led there, not something to imitate."""
    taken_over = np.asarray(interventions).astype(bool)
    weights = np.where(taken_over, cfg.intervention_weight, 1.0)
    if (success is False or taken_over.any()) and cfg.failed_episodes != "all":
        keep = taken_over if cfg.failed_episodes == "interventions" else np.zeros_like(taken_over)
        weights = np.where(keep, weights, 0.0)
    return weights.astype(np.float64)


def load_source(
    root: str | Path,
    cameras: Sequence[str],
    image_size: tuple[int, int],
    progress: bool = True,
    cotrain: CotrainConfig | None = None,
) -> Source:
    """Decode every episode of one dataset into memory."""
    reader = DatasetReader(root)
    missing = [c for c in cameras if IMAGE_PREFIX + c not in reader.video_keys]
    if missing:
        raise ValueError(
            f"{root}: no camera(s) {missing} in this dataset (it has "
            f"{list(dataset_cameras(reader))}); set model.cameras to ones every dataset has"
        )
    cotrain = cotrain or CotrainConfig()
    states, actions, ends, instructions, weights = [], [], [], [], []
    images: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    total = 0
    episodes = range(reader.num_episodes)
    for i in tqdm(episodes, desc=f"decoding {root}", unit="ep", disable=not progress):
        episode = reader.episode(i)
        length = len(episode)
        states.append(np.asarray(episode.states, np.float32))
        actions.append(np.asarray(episode.actions, np.float32))
        for camera in cameras:
            images[camera].append(_resized(episode.images[IMAGE_PREFIX + camera], image_size))
        total += length
        ends.append(np.full(length, total, np.int64))
        instructions += [episode.instruction] * length
        weights.append(frame_weights(episode.interventions, episode.success, cotrain))
    if total == 0:
        raise ValueError(f"{root}: the dataset has no frames to train on")
    frame_w = np.concatenate(weights)
    if frame_w.sum() <= 0:
        raise ValueError(
            f"{root}: no frame has a positive weight (every episode failed and "
            f"cotrain.failed_episodes={cotrain.failed_episodes!r}); label some episodes "
            "successful or set cotrain.failed_episodes=all"
        )
    return Source(
        root=Path(root),
        states=np.concatenate(states),
        actions=np.concatenate(actions),
        images={c: np.concatenate(v) for c, v in images.items()},
        episode_end=np.concatenate(ends),
        instructions=instructions,
        frame_weights=None if np.all(frame_w == 1.0) else frame_w,
    )


class TrainingData:
    """Several sources, mixed by weight; ``sample`` builds one normalized batch."""

    def __init__(
        self,
        sources: Sequence[Source],
        weights: Sequence[float],
        language: dict[str, np.ndarray],
        normalizer: Normalizer,
        chunk_size: int,
        action_space: str = "absolute",
    ) -> None:
        if len(weights) != len(sources):
            raise ValueError(
                f"dataset_weights has {len(weights)} entries for {len(sources)} datasets"
            )
        self.sources = list(sources)
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.normalizer = normalizer
        self.chunk_size = chunk_size
        self.action_space = action_space
        strings = sorted(language)
        self.language = torch.from_numpy(np.stack([language[s] for s in strings]))
        row = {s: i for i, s in enumerate(strings)}
        self.language_rows = [torch.tensor([row[s] for s in src.instructions]) for src in sources]

    @property
    def frames(self) -> int:
        return sum(len(s) for s in self.sources)

    def sample(
        self, batch_size: int, generator: torch.Generator, augment: AugmentConfig | None = None
    ) -> Batch:
        which = torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)
        uniform = torch.rand(batch_size, generator=generator, dtype=torch.float64)
        parts = []
        for k, source in enumerate(self.sources):
            chosen = (which == k).nonzero().flatten()
            if len(chosen):
                if source.frame_weights is None:
                    index = (uniform[chosen] * len(source)).long().clamp(max=len(source) - 1)
                else:  # co-training: interventions up-weighted, failed frames left out
                    weights = torch.from_numpy(source.frame_weights)
                    index = torch.multinomial(weights, len(chosen), True, generator=generator)
                parts.append(self._gather(k, index.numpy()))
        batch = _concat(parts)
        if augment is not None:
            batch.images = {
                c: augment_images(x, augment, generator) for c, x in batch.images.items()
            }
        batch.images = {c: self.normalizer.normalize_images(c, x) for c, x in batch.images.items()}
        return batch

    def _gather(self, k: int, index: np.ndarray) -> Batch:
        """Raw (unnormalized-image) batch of frames ``index`` of source ``k``."""
        source = self.sources[k]
        actions, mask = chunk_targets(source, index, self.chunk_size, self.action_space)
        norm = self.normalizer
        return Batch(
            images={
                c: torch.from_numpy(frames[index]).permute(0, 3, 1, 2).float()
                for c, frames in source.images.items()
            },
            state=norm.state.normalize(torch.from_numpy(source.states[index])),
            language=self.language[self.language_rows[k][torch.from_numpy(index)]],
            actions=norm.action.normalize(torch.from_numpy(actions)),
            action_mask=torch.from_numpy(mask),
        )


def chunk_targets(
    source: Source, index: np.ndarray, chunk_size: int, action_space: str
) -> tuple[np.ndarray, np.ndarray]:
    """The unnormalized action chunks ``[B, T, A]`` of frames ``index``, and their mask."""
    steps = index[:, None] + np.arange(chunk_size)[None]  # [B, T]
    end = source.episode_end[index][:, None]
    mask = steps < end
    steps = np.minimum(steps, end - 1)  # repeat the episode's last action past its end
    actions = source.actions[steps]
    if action_space == "relative":
        actions = to_relative(actions, source.states[index])
    return actions, mask


def chunk_action_stats(
    sources: Sequence[Source], chunk_size: int, action_space: str = "absolute"
) -> dict[str, np.ndarray]:
    """min/max/mean/std/count of every unpadded chunk target of every frame of ``sources``."""
    rows = []
    for source in sources:
        actions, mask = chunk_targets(source, np.arange(len(source)), chunk_size, action_space)
        rows.append(actions[mask].astype(np.float64))
    values = np.concatenate(rows)
    return {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": values.mean(axis=0),
        "std": values.std(axis=0),
        "count": np.array([len(values)]),
    }


def _concat(parts: Sequence[Batch]) -> Batch:
    return Batch(
        images={c: torch.cat([p.images[c] for p in parts]) for c in parts[0].images},
        state=torch.cat([p.state for p in parts]),
        language=torch.cat([p.language for p in parts]),
        actions=torch.cat([p.actions for p in parts]),
        action_mask=torch.cat([p.action_mask for p in parts]),
    )


def augment_images(
    images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """``[B, 3, H, W]`` 0..255 float: random shift, then per-image colour jitter."""
    batch = images.shape[0]
    if cfg.shift_px > 0:
        images = random_shift(images, cfg.shift_px, generator)

    def factors(amount: float) -> torch.Tensor:
        u = torch.rand(batch, 1, 1, 1, generator=generator)
        return 1.0 + amount * (2 * u - 1)

    images = images * factors(cfg.brightness)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * factors(cfg.contrast) + mean
    grey = images.mean(dim=1, keepdim=True)
    images = (images - grey) * factors(cfg.saturation) + grey
    return images.clamp(0.0, 255.0)


def random_shift(images: torch.Tensor, pad_px: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``pad_px`` pixels (DrQ-style: replicate-pad, crop)."""
    batch, _, height, width = images.shape
    padded = functional.pad(images, (pad_px,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * pad_px + 1, (batch, 2), generator=generator).tolist()
    return torch.stack(
        [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)]
    )
