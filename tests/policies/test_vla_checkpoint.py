"""VLA checkpoints and the policy: round trip, strict loading with named errors, act()."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from kizuna.robot import PANDA
from policies.base import Policy, load_policy
from policies.vla.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_vision_weights,
    save_checkpoint,
)
from policies.vla.model import VLAModel
from policies.vla.policy import VLAPolicy, load_vla_policy
from policies.vla.testing import make_tiny_checkpoint, tiny_model_config

torch.set_num_threads(1)


def observation(seed: int = 0, size: int = 96, instruction: str = "put the red cube in the bin"):
    rng = np.random.default_rng(seed)
    return {
        "state": rng.normal(0, 0.3, 8).astype(np.float32),
        "images": {
            cam: rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            for cam in ("front", "wrist")
        },
        "instruction": instruction,
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("vla") / "tiny")


def copy_of(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "copy"))


def test_load_policy_gives_chunks(tiny: Path) -> None:
    policy = load_policy(tiny)
    assert isinstance(policy, Policy) and isinstance(policy, VLAPolicy)
    chunk = policy.act(observation())
    assert chunk.shape == (policy.chunk_size, policy.action_dim) == (10, 8)
    assert chunk.dtype == np.float32 and np.isfinite(chunk).all()
    assert (chunk[:, -1] >= 0).all() and (chunk[:, -1] <= 1).all()  # gripper 0..1


def test_act_is_deterministic_after_reset(tiny: Path) -> None:
    policy = load_policy(tiny)
    first, second = policy.act(observation()), policy.act(observation())
    assert not np.array_equal(first, second)  # fresh flow noise per chunk
    policy.reset()
    assert np.array_equal(policy.act(observation()), first)
    # Another instance with the same seed agrees, one with another seed does not.
    assert np.array_equal(load_vla_policy(tiny).act(observation()), first)
    assert not np.array_equal(load_vla_policy(tiny, seed=1).act(observation()), first)


def test_other_image_sizes_and_unknown_instructions(tiny: Path) -> None:
    policy = load_policy(tiny, flow_steps=2)
    assert policy.act(observation(size=64, instruction="赤いキューブを拾って")).shape == (10, 8)
    with pytest.raises(KeyError, match="wrist"):
        obs = observation()
        del obs["images"]["wrist"]
        policy.act(obs)


def test_tiny_checkpoint_options(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "t", seed=3, chunk_size=4, head="l1")
    assert load_policy(path).act(observation()).shape == (4, 8)


def test_round_trip_gives_identical_actions(tiny: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(tiny)
    again = save_checkpoint(tmp_path / "again", ckpt.model, ckpt.normalizer, ckpt.embedder)
    a, b = load_vla_policy(tiny), load_vla_policy(again)
    for seed in range(3):
        assert np.array_equal(a.act(observation(seed)), b.act(observation(seed)))
    assert json.loads((again / "config.json").read_text())["language"] == ckpt.meta["language"]


def test_missing_tensor_is_named(tiny: Path, tmp_path: Path) -> None:
    path = copy_of(tiny, tmp_path)
    weights = load_file(path / "model.safetensors")
    del weights["action_out.bias"]
    save_file(weights, path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*missing tensors: action_out"):
        load_policy(path)


def test_wrong_shape_and_unexpected_tensors_are_named(tiny: Path, tmp_path: Path) -> None:
    path = copy_of(tiny, tmp_path)
    weights = load_file(path / "model.safetensors")
    weights["state_proj.weight"] = torch.zeros(3, 3)
    weights["extra.weight"] = torch.zeros(1)
    save_file(weights, path / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_policy(path)
    message = str(info.value)
    assert "unexpected tensors: extra.weight" in message
    assert "state_proj.weight: file [3, 3]" in message and "model.safetensors" in message


def test_corrupt_weights_file_is_refused(tiny: Path, tmp_path: Path) -> None:
    path = copy_of(tiny, tmp_path)
    (path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_policy(path)


def test_unknown_type_and_missing_files(tiny: Path, tmp_path: Path) -> None:
    path = copy_of(tiny, tmp_path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "type": "mystery"}))
    with pytest.raises(ValueError, match="unknown checkpoint type 'mystery'"):
        load_policy(path)
    with pytest.raises(CheckpointError, match="is not 'kizuna_vla'"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps(config))
    (path / "normalization.json").unlink()
    with pytest.raises(CheckpointError, match="normalization.json: missing"):
        load_policy(path)


def test_language_cache_must_match_config(tiny: Path, tmp_path: Path) -> None:
    path = copy_of(tiny, tmp_path)
    save_file({"embeddings": torch.zeros(2, 5)}, path / "language_cache.safetensors")
    with pytest.raises(CheckpointError, match="language_cache.safetensors"):
        load_policy(path)


def test_pretrained_vision_weights_load_strictly(tmp_path: Path) -> None:
    model = VLAModel(tiny_model_config())
    donor = VLAModel(tiny_model_config())
    file = tmp_path / "encoder.safetensors"
    save_file(dict(donor.vision["front"].state_dict()), file)
    load_vision_weights(model, file)  # one encoder's keys: used for every camera
    for camera in ("front", "wrist"):
        got = model.vision[camera].state_dict()["layers.0.weight"]
        assert torch.equal(got, donor.vision["front"].state_dict()["layers.0.weight"])
    save_file({"layers.0.weight": torch.zeros(1)}, file)
    with pytest.raises(CheckpointError, match=r"encoder\.safetensors.*missing tensors"):
        load_vision_weights(model, file)


def test_known_instructions_need_no_language_package(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copy_of(tiny, tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["language"]["encoder"] = "e5"  # as if trained with e5 ...
    (path / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)  # ... now absent
    policy = load_policy(path)
    assert policy.act(observation(instruction="put the red cube in the bin")).shape == (10, 8)
    with pytest.raises(ImportError, match=r"kizuna\[vla\].*knows without the encoder: .*bin"):
        policy.act(observation(instruction="a brand-new instruction"))


def zero_head(path: Path, out: Path) -> Path:
    """A copy of checkpoint ``path`` whose action head outputs exactly 0 (normalized)."""
    ckpt = load_checkpoint(path)
    torch.nn.init.zeros_(ckpt.model.action_out.weight)
    torch.nn.init.zeros_(ckpt.model.action_out.bias)
    return save_checkpoint(out, ckpt.model, ckpt.normalizer, ckpt.embedder)


def test_tiny_checkpoint_is_absolute_and_stays_near_home(tiny: Path) -> None:
    policy = load_vla_policy(tiny)
    assert policy.model.cfg.action_space == "absolute"
    home = np.asarray(PANDA.home_q_rad, np.float32)
    for seed in range(3):  # states far from home: absolute targets stay near home anyway
        assert np.abs(policy.act(observation(seed))[:, :7] - home).max() < 0.5


def test_config_without_action_space_loads_as_absolute(tiny: Path, tmp_path: Path) -> None:
    path = copy_of(tiny, tmp_path)
    config = json.loads((path / "config.json").read_text())
    del config["model"]["action_space"], config["action_space"]  # as written before the key
    (path / "config.json").write_text(json.dumps(config))
    assert load_checkpoint(path).config.action_space == "absolute"
    assert np.array_equal(
        load_vla_policy(path).act(observation()), load_vla_policy(tiny).act(observation())
    )


@pytest.mark.parametrize("head", ["l1", "flow"])
def test_relative_act_adds_the_observed_state(tmp_path: Path, head: str) -> None:
    path = make_tiny_checkpoint(tmp_path / "rel", head=head, action_space="relative")
    assert json.loads((path / "config.json").read_text())["model"]["action_space"] == "relative"
    policy = load_vla_policy(zero_head(path, tmp_path / "zero"))
    assert policy.model.cfg.action_space == "relative"
    for seed in range(2):
        obs = observation(seed)
        chunk = policy.act(obs)
        # Output ~0 means "stay": the absolute targets are the observation's (raw) joints; the
        # flow head's zero velocity leaves its noise, 0.05 rad per normalized unit.
        tolerance = 1e-6 if head == "l1" else 0.3
        assert np.abs(chunk[:, :7] - obs["state"][:7]).max() < tolerance
        if head == "l1":  # the gripper stays absolute: the normalization's centre
            assert np.allclose(chunk[:, 7], 0.5)
    # The same zeroed head on an absolute checkpoint goes to the normalization's centre, home.
    absolute = load_vla_policy(
        zero_head(make_tiny_checkpoint(tmp_path / "abs", head="l1"), tmp_path / "zero_abs")
    )
    home = np.asarray(PANDA.home_q_rad, np.float32)
    assert np.allclose(absolute.act(observation())[:, :7], home, atol=1e-6)
