"""Training: data sampling, ``kizuna train`` end to end, resume, and Ctrl-C saving."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kizuna.cli import main as kizuna_main
from kizuna.dataset import DatasetReader
from kizuna.dataset.synthetic import write_synthetic
from kizuna.hydra_config import compose
from policies.base import load_policy
from policies.vla.checkpoint import load_checkpoint
from policies.vla.config import AugmentConfig, ModelConfig, TrainConfig
from policies.vla.data import Source, TrainingData, augment_images, chunk_action_stats
from policies.vla.ema import WeightEMA, ema_decay_at
from policies.vla.model import VLAModel
from policies.vla.normalize import Affine, identity_normalizer, to_absolute, to_relative
from policies.vla.resume import (
    ONLINE_FILE,
    OPTIMIZER_FILE,
    optimizer_tensors,
    restore_training_state,
)
from policies.vla.train import listify_overrides, make_optimizer, setup_run, train

TINY = [
    "threads=1",
    "batch_size=4",
    "warmup_steps=2",
    "log_every=1",
    "language.encoder=hash",
    "language.hash_dim=32",
    "model.d_model=16",
    "model.n_heads=2",
    "model.trunk_layers=1",
    "model.expert_layers=1",
    "model.chunk_size=4",
    "model.flow_steps=2",
    "model.vision.channels=[4,8,8,8]",
    "model.vision.groups=4",
    "model.dropout=0.1",
]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vla_data")
    write_synthetic(root / "a", [12, 9])  # front 32x48, wrist 24x32: resized to one size
    write_synthetic(root / "b", [10, 8], first_seed=5, instructions=["stack the cubes"])
    return root / "a", root / "b"


def config(*overrides: str) -> TrainConfig:
    return compose("train", listify_overrides([*TINY, *overrides]), TrainConfig)


def test_chunks_are_padded_with_the_last_action_and_masked() -> None:
    frames = 5
    source = Source(
        root=Path("mem"),
        states=np.zeros((frames, 8), np.float32),
        actions=np.arange(frames, dtype=np.float32)[:, None].repeat(8, axis=1),
        images={"front": np.zeros((frames, 8, 8, 3), np.uint8)},
        episode_end=np.array([3, 3, 3, 5, 5]),  # two episodes: frames 0-2 and 3-4
        instructions=["a", "a", "a", "b", "b"],
    )
    language = {"a": np.zeros(4, np.float32), "b": np.ones(4, np.float32)}
    data = TrainingData([source], [1.0], language, identity_normalizer(["front"]), chunk_size=4)
    batch = data._gather(0, np.array([1, 4]))
    assert batch.actions[:, :, 0].tolist() == [[1, 2, 2, 2], [4, 4, 4, 4]]
    assert batch.action_mask.tolist() == [[True, True, False, False], [True, False, False, False]]
    assert batch.language[:, 0].tolist() == [0.0, 1.0]
    g = torch.Generator().manual_seed(0)
    sampled = data.sample(6, g, AugmentConfig())
    assert sampled.images["front"].shape == (6, 3, 8, 8) and sampled.actions.shape == (6, 4, 8)


def random_source(frames: int = 7, seed: int = 0) -> Source:
    rng = np.random.default_rng(seed)
    return Source(
        root=Path("mem"),
        states=rng.normal(0, 1, (frames, 8)).astype(np.float32),
        actions=rng.normal(0, 1, (frames, 8)).astype(np.float32),
        images={"front": np.zeros((frames, 8, 8, 3), np.uint8)},
        episode_end=np.array([4] * 4 + [frames] * (frames - 4)),  # two episodes
        instructions=["a"] * frames,
    )


def test_relative_chunks_plus_the_state_are_the_absolute_actions() -> None:
    source, chunk = random_source(), 3
    language = {"a": np.zeros(4, np.float32)}
    data = TrainingData(
        [source], [1.0], language, identity_normalizer(["front"]), chunk, action_space="relative"
    )
    index = np.arange(len(source))
    batch = data._gather(0, index)
    steps = np.minimum(index[:, None] + np.arange(chunk), source.episode_end[:, None] - 1)
    absolute = source.actions[steps]
    relative = batch.actions.numpy()
    # Every row is relative to the state at the chunk's observation (frame t), not at t + k.
    expected = absolute[..., :7] - source.states[:, None, :7]
    assert np.allclose(relative[..., :7], expected, atol=1e-6)
    assert np.array_equal(relative[..., 7], absolute[..., 7])  # the gripper stays absolute
    assert np.allclose(to_absolute(relative, source.states), absolute, atol=1e-6)
    absolute_data = TrainingData(
        [source], [1.0], language, identity_normalizer(["front"]), chunk, "absolute"
    )
    assert np.array_equal(absolute_data._gather(0, index).actions.numpy(), absolute)
    # Stats cover exactly the unpadded targets.
    stats = chunk_action_stats([source], chunk, action_space="relative")
    valid = relative[batch.action_mask.numpy()]
    assert stats["count"].tolist() == [len(valid)] == [4 * 3 - 3 + 3 * 3 - 3]
    assert np.allclose(stats["min"], valid.min(0)) and np.allclose(stats["max"], valid.max(0))
    assert np.allclose(stats["mean"], valid.mean(0)) and np.allclose(stats["std"], valid.std(0))


def test_relative_round_trip_for_numpy_and_torch() -> None:
    actions, state = np.random.default_rng(1).normal(0, 1, (2, 2, 5, 8)), np.ones((2, 2, 8))
    for a, s in ((actions, state), (torch.from_numpy(actions), torch.from_numpy(state))):
        relative = to_relative(a, s)
        assert relative is not a and np.allclose(np.asarray(to_absolute(relative, s)), actions)
        assert np.allclose(np.asarray(relative)[..., 7], actions[..., 7])
    with pytest.raises(ValueError, match="action_space"):
        ModelConfig(action_space="delta")


@pytest.mark.parametrize("space", ["relative", "absolute"])
def test_action_normalization_follows_the_action_space(
    datasets: tuple[Path, Path], tmp_path: Path, space: str
) -> None:
    a, _ = datasets
    cfg = config(f"dataset={a}", f"out={tmp_path / 'run'}", f"model.action_space={space}")
    run = setup_run(cfg, progress=False)
    assert run.model.cfg.action_space == space and run.data.action_space == space
    if space == "relative":  # from the relative chunk targets in memory, not stats.json
        stats = chunk_action_stats(run.data.sources, run.model.cfg.chunk_size)
    else:
        stats = DatasetReader(a).stats["action"]
    expected = Affine.from_stats(stats, cfg.action_norm)
    assert np.allclose(run.normalizer.action.offset, expected.offset)
    assert np.allclose(run.normalizer.action.scale, expected.scale)


def test_training_records_the_action_space(datasets: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = datasets
    default = train(config(f"dataset={a}", "steps=1", f"out={tmp_path / 'a'}"), progress=False)
    assert load_checkpoint(default.last_checkpoint).config.action_space == "absolute"
    cfg = config(f"dataset={a}", "steps=1", f"out={tmp_path / 'r'}", "model.action_space=relative")
    ckpt = load_checkpoint(train(cfg, progress=False).last_checkpoint)
    assert ckpt.config.action_space == ckpt.meta["model"]["action_space"] == "relative"
    assert ckpt.meta["action_space"] == "relative"


def test_augmentation_keeps_range_and_shape() -> None:
    images = torch.rand(3, 3, 16, 16) * 255
    out = augment_images(images, AugmentConfig(shift_px=2), torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    assert not torch.equal(out, images)


def test_kizuna_train_cli_end_to_end(
    datasets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = datasets
    out = tmp_path / "run"
    argv = ["train", f"dataset=[{a},{b}]", "dataset_weights=[1,3]", f"out={out}", "steps=4"]
    assert kizuna_main([*argv, "checkpoint_every=2", *TINY]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_000002",
        "step_000004",
    ]
    assert (out / "last").resolve().name == "step_000004" and any((out / "tb").iterdir())
    policy = load_policy(out / "last")
    obs = {
        "state": np.zeros(8, np.float32),
        "images": {
            "front": np.zeros((32, 48, 3), np.uint8),
            "wrist": np.zeros((24, 32, 3), np.uint8),
        },
        "instruction": "stack the cubes",
    }
    chunk = policy.act(obs)
    assert chunk.shape == (4, 8) and chunk.dtype == np.float32 and np.isfinite(chunk).all()
    # A second run into the same directory must not silently overwrite it.
    assert kizuna_main([*argv, *TINY]) == 1
    # Resuming needs only the run directory: datasets, model and settings come from `last`.
    assert kizuna_main(["train", f"out={out}", "resume=true", "steps=5"]) == 0
    assert (out / "last").resolve().name == "step_000005"
    # ... but not with another language encoder than the one the checkpoint was trained with.
    assert kizuna_main(["train", f"out={out}", "resume=true", "language.encoder=minilm"]) == 1
    assert "trained with language encoder 'hash'" in capsys.readouterr().err
    assert kizuna_main(["train", f"dataset={a}", "stepz=3"]) == 2


def test_resume_continues_where_the_last_checkpoint_left_off(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = datasets
    common = (f"dataset={a}", "steps=6", "checkpoint_every=2")
    whole = train(config(*common, f"out={tmp_path / 'whole'}"), progress=False)

    def crash_at_5(step: int, losses: dict[str, float]) -> None:
        if step == 5:
            raise RuntimeError("simulated crash")  # not Ctrl-C: nothing is saved

    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated"):
        train(config(*common, f"out={out}"), on_step=crash_at_5, progress=False)
    assert (out / "last").resolve().name == "step_000004"

    # The optimizer state comes back exactly as saved.
    cfg = config(*common, f"out={out}", "resume=true")
    run = setup_run(cfg, progress=False)
    optimizer = make_optimizer(run.model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    assert restore_training_state(run.resume_from, optimizer, scheduler, torch.Generator()) == 4
    saved = load_file(run.resume_from / OPTIMIZER_FILE)
    restored = optimizer_tensors(optimizer)
    assert saved.keys() == restored.keys() and len(saved) > 0
    assert all(torch.equal(saved[k], restored[k]) for k in saved)

    resumed = train(cfg, progress=False)
    assert resumed.step == whole.step == 6 and len(resumed.losses) == 2
    # Model, optimizer, schedule and every RNG restored: the loss curve continues as if the
    # run had never stopped.
    assert np.allclose(resumed.losses, whole.losses[4:], rtol=1e-4, atol=1e-6)
    # ... and so do the averaged weights the checkpoint ships (the EMA's count included).
    shipped = load_file(out / "last" / "model.safetensors")
    expected = load_file(tmp_path / "whole" / "last" / "model.safetensors")
    assert all(torch.allclose(shipped[k], expected[k], atol=1e-6) for k in expected)


def test_checkpoints_ship_the_weight_average_and_keep_the_online_weights(
    datasets: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = datasets
    # Replay the run by hand: the same seed gives the same online weights at every step.
    steps, decay = 5, 0.5
    cfg = config(f"dataset={a}", f"steps={steps}", f"ema_decay={decay}", f"out={tmp_path / 'e'}")
    history: list[dict[str, torch.Tensor]] = []
    online_model = {}

    def record(step: int, losses: dict[str, float]) -> None:
        history.append({k: v.detach().clone() for k, v in online_model["m"].state_dict().items()})

    import policies.vla.train as train_module

    setup = train_module.setup_run

    def capture(*args, **kwargs):  # type: ignore[no-untyped-def]
        run = setup(*args, **kwargs)
        online_model["m"] = run.model
        return run

    monkeypatch.setattr(train_module, "setup_run", capture)
    train(cfg, on_step=record, progress=False)
    assert len(history) == steps
    average = {k: v.clone() for k, v in history[0].items()}  # the first update copies
    for n, weights in enumerate(history[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        average = {k: d * average[k] + (1 - d) * weights[k] for k in average}
    last = tmp_path / "e" / "last"
    shipped = load_file(last / "model.safetensors")
    online = load_file(last / ONLINE_FILE)
    assert all(torch.allclose(shipped[k], average[k], atol=1e-6) for k in average)
    assert all(torch.equal(online[k], history[-1][k]) for k in online)
    assert any(not torch.allclose(shipped[k], online[k]) for k in online)
    # Without EMA the policy weights are the optimizer's and no second copy is written.
    plain = config(f"dataset={a}", "steps=2", "ema_decay=0", f"out={tmp_path / 'p'}")
    train(plain, progress=False)
    assert not (tmp_path / "p" / "last" / ONLINE_FILE).exists()


def test_ema_decay_out_of_range_is_refused() -> None:
    model = VLAModel(ModelConfig(d_model=16, n_heads=2, trunk_layers=1, expert_layers=1))
    with pytest.raises(ValueError, match="ema_decay"):
        WeightEMA(model, 1.0)
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.999) == 0.999


def test_ctrl_c_saves_a_checkpoint_before_exiting(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = datasets

    def interrupt_at_3(step: int, losses: dict[str, float]) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C delivers

    cfg = config(f"dataset={a}", "steps=50", "checkpoint_every=100", f"out={tmp_path / 'r'}")
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN under nohup/background jobs
    result = train(cfg, on_step=interrupt_at_3, progress=False)
    assert result.interrupted and result.step == 3
    assert (tmp_path / "r" / "last").resolve().name == "step_000003"
    assert load_policy(tmp_path / "r" / "last").chunk_size == 4
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_a_time_budget_ends_the_run_and_saves_its_last_step(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = config(f"dataset=[{datasets[0]}]", f"out={tmp_path / 'run'}", "steps=100000")
    cfg = replace(cfg, max_minutes=0.02, checkpoint_every=100000)  # 1.2 s
    result = train(cfg, progress=False)
    assert 0 < result.step < 100000 and not result.interrupted
    assert result.last_checkpoint is not None
    assert result.last_checkpoint.name == f"step_{result.step:06d}"  # nothing trained unsaved
