"""LeRobot checkpoints behind kizuna's ``Policy``, loaded by LeRobot's own classes.

A LeRobot checkpoint is the directory ``PreTrainedPolicy.save_pretrained`` writes:
``config.json`` (``"type"``: ``act``, ``diffusion``, ``smolvla``, ``pi0``, ...; the
``input_features`` and ``output_features``) + ``model.safetensors``, and since LeRobot 0.4 the
normalization as processor pipelines (``policy_preprocessor.json``,
``policy_postprocessor.json`` and their ``*.safetensors`` state). ``load_policy`` sends such a
directory here (``policies.base.LEROBOT_TYPES``). Loading needs ``lerobot`` importable, which it
cannot be in kizuna's own environment (LeRobot pins an older torch): load it in a separate one,
or serve it from there with ``kizuna serve`` and drive it with ``load_policy("ws://...")``.

Observations are mapped as ``lerobot-eval`` maps an env's:

- ``observation.state`` <- ``state`` (float32 ``[1, 8]``),
- ``observation.images.<camera>`` <- ``images[<camera>]`` (uint8 HWC -> float32 ``[1, 3, H, W]``
  in 0..1, resized to the feature's shape; ``observation.image`` <- ``images["front"]``; the
  ``cameras`` option maps other names),
- ``task`` <- ``[instruction]`` (language-conditioned policies: SmolVLA, pi0, ...),

then through the checkpoint's preprocessor, the policy and its postprocessor. By default each
``act`` is one ``select_action`` (a ``[1, D]`` chunk): LeRobot keeps its own action queue and
observation history and re-plans every ``n_action_steps``, exactly as in LeRobot. With
``chunked=True`` (ACT, SmolVLA, pi0/pi0.5 only) ``act`` returns the first ``n_action_steps`` rows
of ``predict_action_chunk``, so kizuna's rollout can re-plan or ensemble them itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.vla.model import resize_images

STATE_KEY = "observation.state"
IMAGES_PREFIX = "observation.images."
SINGLE_IMAGE_KEY = "observation.image"
ACTION_KEY = "action"
# Policy types whose predict_action_chunk reads only the current observation (diffusion and
# VQ-BeT read a history that select_action builds).
CHUNK_TYPES = frozenset({"act", "smolvla", "pi0", "pi05"})
PREPROCESSOR_FILE = "policy_preprocessor.json"


def missing_lerobot_message(path: str | Path, kind: str) -> str:
    return (
        f"{path} is a LeRobot checkpoint (type {kind!r}); loading it needs LeRobot: "
        "`pip install lerobot` in a separate virtual environment (LeRobot pins an older torch "
        "and cannot share kizuna's; README, 'External models'). Or serve it from that "
        "environment with `kizuna serve checkpoint=PATH` and drive it from here with "
        "load_policy('ws://HOST:PORT')"
    )


@dataclass(frozen=True)
class LeRobotFeatures:
    """What a LeRobot checkpoint reads and writes, from its config.json (no LeRobot needed)."""

    kind: str
    state_dim: int | None  # None: the policy reads no state
    images: dict[str, tuple[str, tuple[int, int]]]  # feature key -> (kizuna camera, (H, W))
    action_dim: int
    n_action_steps: int

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(camera for camera, _ in self.images.values())

    @property
    def image_size(self) -> tuple[int, int] | None:
        sizes = [size for _, size in self.images.values()]
        return sizes[0] if sizes else None


def read_features(
    config: Mapping[str, Any], where: str | Path, cameras: Mapping[str, str] | None = None
) -> LeRobotFeatures:
    """Parse ``input_features``/``output_features``; ``cameras`` maps a feature key (or its
    last part) to a kizuna camera. Features kizuna observations lack are refused here."""
    inputs: Mapping[str, Any] = config.get("input_features") or {}
    outputs: Mapping[str, Any] = config.get("output_features") or {}
    if ACTION_KEY not in outputs:
        raise ValueError(f"{where}/config.json: no output_features.action; is it a policy?")
    images, state_dim = {}, None
    for key, feature in inputs.items():
        shape = tuple(int(n) for n in feature.get("shape", ()))
        if key == STATE_KEY:
            state_dim = shape[0]
        elif key == SINGLE_IMAGE_KEY or key.startswith(IMAGES_PREFIX):
            images[key] = (_camera_for(key, cameras), (shape[1], shape[2]))
        else:
            raise ValueError(
                f"{where}/config.json: the policy reads {key!r} ({feature.get('type')}), which "
                "kizuna observations do not have (state, images and the instruction only)"
            )
    return LeRobotFeatures(
        kind=str(config.get("type")),
        state_dim=state_dim,
        images=images,
        action_dim=int(outputs[ACTION_KEY]["shape"][0]),
        n_action_steps=int(config.get("n_action_steps") or 1),
    )


def _camera_for(key: str, cameras: Mapping[str, str] | None) -> str:
    short = key.removeprefix(IMAGES_PREFIX)
    mapping = dict(cameras or {})
    if key in mapping or short in mapping:
        return mapping.get(key, mapping.get(short, short))
    return "front" if key == SINGLE_IMAGE_KEY else short


def lerobot_batch(
    observation: Mapping[str, Any], features: LeRobotFeatures, device: str | torch.device = "cpu"
) -> dict[str, Any]:
    """A kizuna observation (Contract 2) as a LeRobot batch of one, as lerobot-eval builds it."""
    batch: dict[str, Any] = {}
    if features.state_dim is not None:
        state = np.asarray(observation["state"], dtype=np.float32)
        if state.shape != (features.state_dim,):
            raise ValueError(
                f"observation['state'] has shape {state.shape}; this {features.kind} policy "
                f"reads a {features.state_dim}-D observation.state"
            )
        batch[STATE_KEY] = torch.from_numpy(state.copy())[None].to(device)
    images = observation.get("images") or {}
    for key, (camera, size) in features.images.items():
        if camera not in images:
            raise KeyError(
                f"this {features.kind} policy reads {key!r} from camera {camera!r}, which the "
                f"observation lacks (it has {sorted(images)}); map it with cameras={{...}}"
            )
        pixels = torch.from_numpy(np.array(images[camera], dtype=np.uint8)).to(device)
        chw = pixels.permute(2, 0, 1)[None].float() / 255.0  # LeRobot images: 0..1, CHW
        batch[key] = resize_images(chw, size)
    batch["task"] = [str(observation.get("instruction", ""))]
    return batch


class LeRobotPolicy:
    """A LeRobot ``PreTrainedPolicy`` (+ its processors) as a kizuna ``Policy``."""

    action_mode = "joint"

    def __init__(
        self,
        policy: Any,
        features: LeRobotFeatures,
        preprocessor: Any = None,
        postprocessor: Any = None,
        device: str = "cpu",
        chunked: bool = False,
        seed: int | None = None,
    ) -> None:
        if chunked and features.kind not in CHUNK_TYPES:
            raise ValueError(
                f"chunked=True: a {features.kind!r} policy predicts chunks from an observation "
                f"history; use select_action (chunked=False). Chunked types: {sorted(CHUNK_TYPES)}"
            )
        self.policy, self.features = policy, features
        self.preprocessor, self.postprocessor = preprocessor, postprocessor
        self.device, self.chunked, self.seed = device, chunked, seed
        self.chunk_size = features.n_action_steps if chunked else 1
        self.action_dim = features.action_dim
        self.cameras = features.cameras
        if features.image_size is not None:
            self.image_size = features.image_size

    def reset(self) -> None:
        """Clear LeRobot's action queue and observation history (and re-seed torch's global
        RNG when a ``seed`` was given: LeRobot samples diffusion/flow noise from it)."""
        self.policy.reset()
        for pipeline in (self.preprocessor, self.postprocessor):
            if pipeline is not None and hasattr(pipeline, "reset"):
                pipeline.reset()
        if self.seed is not None:
            torch.manual_seed(self.seed)

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """``[chunk_size, action_dim]`` float32: one action, or the chunk's first rows."""
        batch = lerobot_batch(observation, self.features, self.device)
        if self.preprocessor is not None:
            batch = self.preprocessor(batch)
        with torch.inference_mode():
            if self.chunked:
                actions = self.policy.predict_action_chunk(batch)[:, : self.chunk_size]
            else:
                actions = self.policy.select_action(batch)
            if self.postprocessor is not None:
                actions = self.postprocessor(actions)
        chunk = actions.detach().float().cpu().numpy().reshape(-1, self.action_dim)
        return chunk[: self.chunk_size].astype(np.float32, copy=False)


def _import_lerobot(path: Path, kind: str) -> tuple[Any, Any]:
    """LeRobot's policy factory module and ``PreTrainedConfig`` (0.4+, and the older layout)."""
    try:
        from lerobot.configs.policies import PreTrainedConfig
    except ImportError as exc:
        raise ImportError(f"{missing_lerobot_message(path, kind)} ({exc})") from exc
    try:
        from lerobot.policies import factory
    except ImportError:  # LeRobot < 0.3 kept the policies under lerobot.common
        from lerobot.common.policies import factory  # type: ignore[no-redef]
    return factory, PreTrainedConfig


def _processors(factory: Any, config: Any, path: Path, device: str) -> tuple[Any, Any]:
    """The checkpoint's pre/post-processors (its normalization), or none for LeRobot < 0.4."""
    if not hasattr(factory, "make_pre_post_processors"):
        return None, None  # LeRobot < 0.4: normalization lives inside the model
    if not (path / PREPROCESSOR_FILE).is_file():
        raise ValueError(
            f"{path}: no {PREPROCESSOR_FILE}; a checkpoint from LeRobot < 0.4 keeps its "
            "normalization in the weights: convert it with LeRobot's "
            "lerobot/processor/migrate_policy_normalization.py, or load it with LeRobot < 0.4"
        )
    return factory.make_pre_post_processors(
        config,
        pretrained_path=str(path),
        preprocessor_overrides={"device_processor": {"device": device}},
    )


def load_lerobot_policy(
    path: str | Path,
    device: str = "cpu",
    chunked: bool = False,
    cameras: Mapping[str, str] | None = None,
    seed: int | None = None,
    **_: Any,
) -> LeRobotPolicy:
    """``load_policy`` entry for LeRobot checkpoints (``policies.base.LEROBOT_TYPES``)."""
    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    features = read_features(config, path, cameras)
    factory, pretrained_config = _import_lerobot(path, features.kind)
    lerobot_config = pretrained_config.from_pretrained(str(path))
    lerobot_config.device = device  # the saved one is where it trained (often cuda)
    policy_class = factory.get_policy_class(features.kind)
    policy = policy_class.from_pretrained(str(path), config=lerobot_config)
    policy.eval()
    preprocessor, postprocessor = _processors(factory, lerobot_config, path, device)
    return LeRobotPolicy(policy, features, preprocessor, postprocessor, device, chunked, seed)
