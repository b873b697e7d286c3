"""LeRobot checkpoints behind ``Policy``: detection, the observation mapping, and (where LeRobot
is installed, never in kizuna's own environment) loading one with LeRobot's classes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kizuna.robot import PANDA
from policies.base import checkpoint_type, load_policy
from policies.lerobot_adapter import LeRobotPolicy, lerobot_batch, read_features

MakeObservation = Callable[..., dict[str, Any]]  # the conftest fixture


def lerobot_config(kind: str = "act", size: int = 64, **extra: Any) -> dict[str, Any]:
    """config.json as LeRobot's PreTrainedPolicy.save_pretrained writes it (the parts we read)."""
    visual = {"type": "VISUAL", "shape": [3, size, size]}
    return {
        "type": kind,
        "n_obs_steps": 1,
        "input_features": {
            "observation.state": {"type": "STATE", "shape": [8]},
            "observation.images.front": visual,
            "observation.images.wrist": visual,
        },
        "output_features": {"action": {"type": "ACTION", "shape": [8]}},
        "device": "cuda",
        "chunk_size": 100,
        "n_action_steps": 20,
        **extra,
    }


# ---- without LeRobot -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["act", "diffusion", "smolvla", "pi0", "pi05"])
def test_a_lerobot_config_is_recognised(tmp_path: Path, kind: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(lerobot_config(kind)))
    assert checkpoint_type(tmp_path) == "lerobot"


def test_an_unknown_type_names_the_lerobot_types_too(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"type": "mystery"}))
    with pytest.raises(ValueError, match="unknown checkpoint type 'mystery'.*LeRobot's.*smolvla"):
        checkpoint_type(tmp_path)


def test_without_lerobot_loading_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text(json.dumps(lerobot_config("smolvla")))
    monkeypatch.setitem(sys.modules, "lerobot", None)  # absent, even where it is installed
    with pytest.raises(ImportError, match=r"type 'smolvla'.*pip install lerobot.*kizuna serve"):
        load_policy(tmp_path)


def test_observations_map_onto_lerobot_batch_keys(make_observation: MakeObservation) -> None:
    features = read_features(lerobot_config(size=64), "ckpt")
    assert features.cameras == ("front", "wrist") and features.image_size == (64, 64)
    obs = make_observation()
    batch = lerobot_batch(obs, features)
    assert sorted(batch) == [
        "observation.images.front",
        "observation.images.wrist",
        "observation.state",
        "task",
    ]
    torch.testing.assert_close(batch["observation.state"], torch.from_numpy(obs["state"])[None])
    front = batch["observation.images.front"]
    assert front.shape == (1, 3, 64, 64) and front.dtype == torch.float32  # resized from 96
    assert 0.0 <= float(front.min()) and float(front.max()) <= 1.0
    assert batch["task"] == ["touch the red cube"]


def test_camera_mapping_and_refused_features(make_observation: MakeObservation) -> None:
    config = lerobot_config()
    config["input_features"] = {
        "observation.image": {"type": "VISUAL", "shape": [3, 96, 96]},
        "observation.images.top": {"type": "VISUAL", "shape": [3, 96, 96]},
    }
    features = read_features(config, "ckpt", cameras={"top": "wrist"})
    assert features.cameras == ("front", "wrist") and features.state_dim is None
    assert sorted(lerobot_batch(make_observation(), features)) == [
        "observation.image",
        "observation.images.top",
        "task",
    ]
    with pytest.raises(KeyError, match="camera 'top'.*cameras="):
        lerobot_batch(make_observation(), read_features(config, "ckpt"))
    config["input_features"]["observation.environment_state"] = {"type": "ENV", "shape": [16]}
    with pytest.raises(ValueError, match="observation.environment_state"):
        read_features(config, "ckpt")


class FakeLeRobotPolicy:
    """LeRobot's PreTrainedPolicy interface: a queue of chunk rows behind select_action."""

    def __init__(self) -> None:
        self.calls = 0
        self.queue: list[torch.Tensor] = []

    def reset(self) -> None:
        self.queue = []

    def predict_action_chunk(self, batch: dict[str, Any]) -> torch.Tensor:
        self.calls += 1
        base = batch["observation.state"][:, None, :]  # [1, 1, 8]
        return base + torch.arange(100, dtype=torch.float32)[None, :, None] * 0.01

    def select_action(self, batch: dict[str, Any]) -> torch.Tensor:
        if not self.queue:
            self.queue = list(self.predict_action_chunk(batch)[:, :20].transpose(0, 1))
        return self.queue.pop(0)


def test_select_action_and_chunked_modes(make_observation: MakeObservation) -> None:
    features = read_features(lerobot_config(), "ckpt")
    obs = make_observation()
    stepwise = LeRobotPolicy(FakeLeRobotPolicy(), features)
    stepwise.reset()
    rows = [stepwise.act(obs) for _ in range(3)]
    assert stepwise.chunk_size == 1 and all(r.shape == (1, 8) for r in rows)
    np.testing.assert_allclose(rows[2][0], obs["state"] + 0.02, atol=1e-6)
    chunked = LeRobotPolicy(FakeLeRobotPolicy(), features, chunked=True)
    chunk = chunked.act(obs)
    assert chunked.chunk_size == 20 and chunk.shape == (20, 8) and chunk.dtype == np.float32
    np.testing.assert_allclose(chunk[:3], np.concatenate(rows), atol=1e-6)
    diffusion = read_features(lerobot_config("diffusion"), "ckpt")
    with pytest.raises(ValueError, match="observation history"):
        LeRobotPolicy(FakeLeRobotPolicy(), diffusion, chunked=True)


# ---- with LeRobot (a separate environment; skipped in kizuna's own) --------------------------


def _save_tiny_act(path: Path) -> None:
    """A tiny ACT checkpoint written by LeRobot itself: weights + normalization processors."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    visual = PolicyFeature(FeatureType.VISUAL, (3, 96, 96))
    config = ACTConfig(
        input_features={
            "observation.state": PolicyFeature(FeatureType.STATE, (8,)),
            "observation.images.front": visual,
            "observation.images.wrist": visual,
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (8,))},
        device="cpu",
        chunk_size=10,
        n_action_steps=10,
        dim_model=64,
        n_heads=2,
        dim_feedforward=128,
        n_encoder_layers=1,
        n_decoder_layers=1,
        use_vae=False,
        pretrained_backbone_weights=None,  # no download
    )
    torch.manual_seed(0)
    home = torch.tensor([*PANDA.home_q_rad, 1.0], dtype=torch.float32)
    pixels = {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25)}
    stats = {
        "observation.state": {"mean": home, "std": torch.full((8,), 0.5)},
        "action": {"mean": home, "std": torch.full((8,), 0.05)},
        "observation.images.front": pixels,
        "observation.images.wrist": pixels,
    }
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
    ACTPolicy(config).save_pretrained(path)
    preprocessor.save_pretrained(path)
    postprocessor.save_pretrained(path)


def _lerobot_reference(path: Path, obs: dict[str, Any], steps: int) -> np.ndarray:
    """The same checkpoint driven as lerobot-eval drives it."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    config = PreTrainedConfig.from_pretrained(str(path))
    policy = ACTPolicy.from_pretrained(str(path), config=config).eval()
    overrides = {"device_processor": {"device": "cpu"}}
    pre, post = make_pre_post_processors(
        config, pretrained_path=str(path), preprocessor_overrides=overrides
    )
    policy.reset()
    rows = []
    for _ in range(steps):
        batch = {"observation.state": torch.from_numpy(obs["state"])[None]}
        batch["task"] = [obs["instruction"]]
        for camera, pixels in obs["images"].items():
            chw = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
            batch[f"observation.images.{camera}"] = chw
        with torch.inference_mode():
            rows.append(post(policy.select_action(pre(batch))).numpy())
    return np.concatenate(rows)


def test_a_lerobot_act_checkpoint_loads_and_matches_lerobot(
    tmp_path: Path, make_observation: MakeObservation
) -> None:
    pytest.importorskip("lerobot")
    _save_tiny_act(tmp_path)
    assert checkpoint_type(tmp_path) == "lerobot"
    policy = load_policy(tmp_path, device="cpu")
    assert isinstance(policy, LeRobotPolicy) and policy.cameras == ("front", "wrist")
    obs = make_observation()
    policy.reset()
    ours = np.concatenate([policy.act(obs) for _ in range(3)])
    np.testing.assert_allclose(ours, _lerobot_reference(tmp_path, obs, 3), atol=1e-6)
    chunked = load_policy(tmp_path, chunked=True)
    chunked.reset()
    np.testing.assert_allclose(chunked.act(obs)[:3], ours, atol=1e-6)
