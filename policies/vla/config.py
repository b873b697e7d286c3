"""Typed, frozen configs of the VLA model and its training. Hydra never reaches below here.

``ModelConfig`` is everything needed to rebuild the network; it is written whole into a
checkpoint's ``config.json`` and read back by ``model_config_from_dict``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

# The action head: "flow" (flow matching, pi0/SmolVLA style) or "l1" (ACT-style regression).
HEADS = ("flow", "l1")
# What the model predicts for the arm joints: "relative" (each chunk row's joint targets minus
# the joint state at the chunk's observation, pi0/LeRobot "delta actions") or "absolute"
# (joint targets as they are). The gripper command is absolute either way. A checkpoint whose
# config.json predates this key is "absolute".
ACTION_SPACES = ("relative", "absolute")


@dataclass(frozen=True)
class VisionConfig:
    """The per-camera CNN: one stride-2 conv block per entry of ``channels``."""

    channels: tuple[int, ...] = (32, 64, 128, 128)
    groups: int = 8  # GroupNorm groups: batch-size independent, unlike BatchNorm
    # A user-supplied safetensors file of encoder weights (no package ships vision weights):
    # keys of one ``ImageEncoder`` (applied to every camera) or ``<camera>.<key>``.
    pretrained_path: str | None = None
    freeze: bool = False  # keep the pretrained encoder fixed during training
    share_across_cameras: bool = False  # one encoder for all cameras (fewer parameters)
    # Spatial-softmax keypoints (Levine et al. 2016; robomimic, Diffusion Policy): K expected
    # (x, y) image positions from the feature map after block ``keypoint_block``, one extra
    # token per camera. Sub-pixel "where is it" that coarse grid tokens learn only slowly.
    keypoints: int = 0  # 0: off
    keypoint_block: int = 2  # 0-based; block 2 of 4 is 1/8 of the image size


@dataclass(frozen=True)
class ModelConfig:
    """The network: image tokens + language token + state token -> trunk -> action head."""

    cameras: tuple[str, ...] = ("front", "wrist")
    image_size: tuple[int, int] = (96, 96)  # (height, width) the encoder sees
    state_dim: int = 8  # 7 joints (rad) + gripper (0..1)
    action_dim: int = 8  # joint targets (rad) + gripper command (0..1)
    action_space: str = "absolute"  # of the joint targets: "relative" | "absolute"
    chunk_size: int = 10  # T action steps per chunk (0.5 s at 20 Hz)
    language_dim: int = 384  # the frozen instruction embedding's size (set from the encoder)
    d_model: int = 128
    n_heads: int = 4
    trunk_layers: int = 3
    expert_layers: int = 2  # decoder layers of the action expert
    ff_mult: int = 4
    dropout: float = 0.1
    head: str = "flow"
    flow_steps: int = 10  # Euler steps at inference (flow head)
    # Training times t ~ Beta(a, 1), drawn as U^(1/a); pi0's a = 1.5 favours noisy times
    # (t near 1), where predicting the velocity is hardest.
    flow_time_alpha: float = 1.5
    vision: VisionConfig = field(default_factory=VisionConfig)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"model.head: {self.head!r} is not one of {HEADS}")
        if self.action_space not in ACTION_SPACES:
            raise ValueError(
                f"model.action_space: {self.action_space!r} is not one of {ACTION_SPACES}"
            )
        if self.d_model % self.n_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must divide by n_heads")
        if not self.cameras:
            raise ValueError("model.cameras: the VLA needs at least one camera")


@dataclass(frozen=True)
class LanguageConfig:
    # "auto" (e5 if installed, else minilm, else hash) | "e5" | "minilm" | "hash"
    encoder: str = "auto"
    hash_dim: int = 1024  # buckets of the hash encoder


@dataclass(frozen=True)
class AugmentConfig:
    shift_px: int = 4  # random translation, replicate-padded
    brightness: float = 0.2  # multiply by U(1 - b, 1 + b)
    contrast: float = 0.2  # blend with the image mean by U(1 - c, 1 + c)
    saturation: float = 0.2  # blend with grey by U(1 - s, 1 + s)


@dataclass(frozen=True)
class TrainModelConfig:
    """The model settings a training run may change (cameras and image size default from data)."""

    cameras: tuple[str, ...] = ()  # empty: every camera in the first dataset
    image_size: tuple[int, ...] = ()  # empty: the first dataset's size; or (h, w) or (side,)
    chunk_size: int = 10
    action_space: str = "absolute"  # "relative" (joints minus the current state) | "absolute"
    d_model: int = 128
    n_heads: int = 4
    trunk_layers: int = 3
    expert_layers: int = 2
    dropout: float = 0.1
    head: str = "flow"
    flow_steps: int = 10
    vision: VisionConfig = field(default_factory=VisionConfig)


FAILED_EPISODES = ("all", "interventions", "none")


@dataclass(frozen=True)
class CotrainConfig:
    """How real-robot episodes (success labels, operator interventions) weigh in training.

    Mixing sim and real data is ``dataset_weights``; this sets the weight of frames within
    a dataset, DAgger-style: an operator's takeover is a correction of exactly the states the
    policy gets wrong, so it is sampled ``intervention_weight`` times as often.
    """

    intervention_weight: float = 1.0
    # The frames of an episode the policy failed (labelled failed, or taken over by the
    # operator): "all" train, "interventions" (the operator's corrections only; the policy's
    # own actions that led there are not imitated) or "none".
    failed_episodes: str = "interventions"

    def __post_init__(self) -> None:
        if self.failed_episodes not in FAILED_EPISODES:
            raise ValueError(
                f"cotrain.failed_episodes: {self.failed_episodes!r} is not one of "
                f"{FAILED_EPISODES}"
            )
        if self.intervention_weight < 0:
            raise ValueError("cotrain.intervention_weight must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """``kizuna train`` settings (config/hydra/train.yaml)."""

    dataset: tuple[str, ...] = ()
    dataset_weights: tuple[float, ...] = ()  # empty: in proportion to frames
    out: str = "runs/vla"
    resume: bool = False
    # Fine-tune: a new run starts from this checkpoint's weights, language encoder and
    # normalizer (its model settings win over ``model``); ignored when resuming.
    init_from: str | None = None
    steps: int = 20000
    # Wall-clock budget of this run in minutes (0: none). With one, training stops when it is
    # spent and the learning-rate schedule follows the larger of step and time progress.
    max_minutes: float = 0.0
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    min_lr_ratio: float = 0.1  # the cosine decays to lr * this
    grad_clip_norm: float = 1.0
    # Exponential moving average of the weights (0: off). A checkpoint's model.safetensors
    # holds the averaged weights; the optimizer's own weights travel in its training state.
    ema_decay: float = 0.999
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5  # older step_* directories are deleted; 0 keeps all
    log_every: int = 20
    seed: int = 0
    threads: int = 2  # torch intra-op threads (2 cores here)
    device: str = "cpu"
    action_norm: str = "minmax"  # minmax ([-1, 1]) | meanstd
    model: TrainModelConfig = field(default_factory=TrainModelConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cotrain: CotrainConfig = field(default_factory=CotrainConfig)


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass as JSON-ready nested dicts (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(schema: type, values: dict[str, Any], where: str) -> Any:
    """Rebuild a (nested) frozen dataclass; unknown keys are refused, naming ``where``."""
    names = {f.name for f in dataclasses.fields(schema)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"{where}: unknown {schema.__name__} keys {unknown}; known: {sorted(names)}"
        )
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            value = from_dict(hint, value, f"{where}.{name}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return schema(**kwargs)
