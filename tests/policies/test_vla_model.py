"""The VLA network: shapes of both heads, both heads can fit a batch, normalization, schedule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from policies.vla.config import ModelConfig, VisionConfig
from policies.vla.model import VLAModel, count_parameters, feature_grid
from policies.vla.normalize import Affine, merge_stats, normalizer_from_stats
from policies.vla.train import lr_factor

torch.set_num_threads(1)


def small_config(head: str, **overrides: object) -> ModelConfig:
    values: dict[str, object] = dict(
        image_size=(16, 16),
        chunk_size=5,
        language_dim=12,
        d_model=32,
        n_heads=2,
        trunk_layers=1,
        expert_layers=1,
        ff_mult=2,
        dropout=0.0,
        head=head,
        flow_steps=8,
        vision=VisionConfig(channels=(8, 8, 16, 16), groups=4),
    )
    values.update(overrides)
    return ModelConfig(**values)  # type: ignore[arg-type]


def inputs(batch: int, cfg: ModelConfig, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    images = {c: torch.randn(batch, 3, *cfg.image_size, generator=g) for c in cfg.cameras}
    state = torch.randn(batch, cfg.state_dim, generator=g)
    language = torch.randn(batch, cfg.language_dim, generator=g)
    actions = torch.rand(batch, cfg.chunk_size, cfg.action_dim, generator=g) * 2 - 1
    return images, state, language, actions


@pytest.mark.parametrize("head", ["flow", "l1"])
def test_forward_shapes(head: str) -> None:
    cfg = small_config(head)
    model = VLAModel(cfg)
    images, state, language, actions = inputs(3, cfg)
    memory = model.encode(images, state, language)
    grid = feature_grid(cfg.image_size, len(cfg.vision.channels))
    assert memory.shape == (3, 2 + 2 * grid[0] * grid[1], cfg.d_model)
    assert model.sample(memory, torch.Generator().manual_seed(0)).shape == actions.shape
    mask = torch.ones(3, cfg.chunk_size, dtype=torch.bool)
    terms = model.loss(images, state, language, actions, mask)
    assert terms["loss"].ndim == 0 and torch.isfinite(terms["loss"])
    assert ("flow_mse" if head == "flow" else "l1") in terms


def test_default_model_stays_small() -> None:
    # The brief's budget: about 2 M parameters with two 96 px cameras.
    for head in ("flow", "l1"):
        assert count_parameters(VLAModel(ModelConfig(head=head))) < 2_100_000


def test_padding_is_excluded_from_the_loss() -> None:
    cfg = small_config("l1")
    model = VLAModel(cfg).eval()
    images, state, language, actions = inputs(2, cfg)
    mask = torch.ones(2, cfg.chunk_size, dtype=torch.bool)
    mask[:, 3:] = False
    changed = actions.clone()
    changed[:, 3:] += 100.0  # garbage where the mask is 0 must not change the loss
    a = model.loss(images, state, language, actions, mask)["loss"]
    b = model.loss(images, state, language, changed, mask)["loss"]
    assert torch.allclose(a, b)


def overfit(head: str, steps: int, lr: float = 3e-3) -> tuple[list[float], float, float]:
    """Fit one fixed batch; returns losses and the sampled chunk's error before and after."""
    torch.manual_seed(0)
    cfg = small_config(head)
    model = VLAModel(cfg)
    images, state, language, actions = inputs(4, cfg)
    mask = torch.ones(4, cfg.chunk_size, dtype=torch.bool)

    def sample_error() -> float:
        model.eval()
        with torch.no_grad():
            memory = model.encode(images, state, language)
            chunk = model.sample(memory, torch.Generator().manual_seed(1))
        model.train()
        return float((chunk - actions).abs().mean())

    before = sample_error()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        loss = model.loss(images, state, language, actions, mask, g)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, before, sample_error()


def test_flow_matching_overfits_a_batch() -> None:
    losses, before, after = overfit("flow", 400, lr=5e-3)
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])
    # The integrated flow lands near the demonstrated chunk (actions are in [-1, 1]; about
    # 1.0 mean error untrained, about 0.15 after these steps).
    assert after < 0.3 < 0.8 < before


def test_l1_head_overfits_a_batch() -> None:
    losses, before, after = overfit("l1", 150)
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10])
    assert after < 0.1 < before


def test_normalization_round_trip_and_ranges() -> None:
    rng = np.random.default_rng(0)
    actions = rng.normal([0, 1, -2, 0, 0, 0, 0, 0.5], 0.3, (500, 8)).astype(np.float32)
    actions[:, 4] = 0.25  # a joint that never moved: passes through, no division by zero
    stats = {
        "min": actions.min(0),
        "max": actions.max(0),
        "mean": actions.mean(0),
        "std": actions.std(0),
        "count": np.array([500]),
    }
    x = torch.from_numpy(actions)
    for mode in ("minmax", "meanstd"):
        affine = Affine.from_stats(stats, mode)
        y = affine.normalize(x)
        assert torch.isfinite(y).all()
        assert torch.allclose(affine.unnormalize(y), x, atol=1e-5)
        if mode == "minmax":
            assert y.min() >= -1 - 1e-5 and y.max() <= 1 + 1e-5
    full = {"observation.state": stats, "action": stats}
    normalizer = normalizer_from_stats(full, ["front"], "minmax")
    again = type(normalizer).from_json(normalizer.to_json())
    assert np.array_equal(again.action.scale, normalizer.action.scale)
    assert np.array_equal(again.image_mean["front"], normalizer.image_mean["front"])


def test_merged_stats_pool_mean_and_variance() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (300, 2)), rng.normal(3, 2, (100, 2))

    def stats(x: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "min": x.min(0),
            "max": x.max(0),
            "mean": x.mean(0),
            "std": x.std(0),
            "count": np.array([len(x)]),
        }

    merged = merge_stats([{"f": stats(a)}, {"f": stats(b)}])["f"]
    both = np.concatenate([a, b])
    assert np.allclose(merged["mean"], both.mean(0)) and np.allclose(merged["std"], both.std(0))
    assert np.allclose(merged["min"], both.min(0)) and merged["count"][0] == 400


def test_lr_schedule_warms_up_then_decays() -> None:
    factors = [lr_factor(s, warmup_steps=10, total_steps=110, min_ratio=0.1) for s in range(120)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(factors[10:], factors[11:], strict=False))
    assert factors[110] == pytest.approx(0.1) and factors[119] == pytest.approx(0.1)


def test_spatial_softmax_finds_a_bright_spot() -> None:
    from policies.vla.model import SpatialSoftmax

    layer = SpatialSoftmax(in_channels=1, keypoints=1)
    with torch.no_grad():
        layer.heat.weight.fill_(1.0)
        layer.heat.bias.zero_()
        layer.log_temperature.fill_(-3.0)  # sharp
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 2, 6] = 10.0  # row 2 (y), column 6 (x)
    x, y = layer(image)[0].tolist()
    assert x == pytest.approx(-1 + 2 * 6 / 8, abs=1e-3)
    assert y == pytest.approx(-1 + 2 * 2 / 8, abs=1e-3)


def test_keypoint_tokens_are_added_per_camera_and_train() -> None:
    base = dict(image_size=(32, 32), d_model=16, n_heads=2, trunk_layers=1, expert_layers=1)
    vision = VisionConfig(channels=(4, 8, 8, 8), groups=4, keypoints=3, keypoint_block=1)
    plain = VLAModel(ModelConfig(**base, vision=replace(vision, keypoints=0)))
    model = VLAModel(ModelConfig(**base, vision=vision))
    images = {c: torch.randn(2, 3, 32, 32) for c in model.cfg.cameras}
    state, language = torch.randn(2, 8), torch.randn(2, 384)
    tokens = model.encode(images, state, language).shape[1]
    assert tokens == plain.encode(images, state, language).shape[1] + len(model.cfg.cameras)
    loss = model.loss(images, state, language, torch.randn(2, 10, 8), torch.ones(2, 10))["loss"]
    loss.backward()
    assert model.keypoints["front"].heat.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="keypoint_block"):
        VLAModel(ModelConfig(**base, vision=replace(vision, keypoint_block=7)))
