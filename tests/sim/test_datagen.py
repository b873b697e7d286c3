"""`kizuna generate`: expert episodes into a checked dataset, in parallel, surviving SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kizuna.dataset import DatasetReader, check_dataset
from kizuna.hydra_config import compose
from kizuna.task import load_task
from sim.datagen import ExecutionNoise, GenerateConfig, RayConfig, generate


def _cfg(out: Path, **kwargs) -> GenerateConfig:
    base = {"task": "reach", "episodes": 4, "workers": 1, "image_size": 32, "out": str(out)}
    return GenerateConfig(**{**base, **kwargs})


def _seeds(root: Path) -> list[int]:
    reader = DatasetReader(root)
    return [reader.provenance(i).seed for i in range(reader.num_episodes)]


def test_generate_writes_a_checked_dataset_with_provenance(tmp_path: Path) -> None:
    out = tmp_path / "reach"
    report = generate(_cfg(out, workers=2, randomization="default"))
    assert report.kept == 4 and report.expert_success_rate > 0.5
    assert check_dataset(out).ok
    reader = DatasetReader(out)
    assert reader.num_episodes == 4
    episode = reader.episode(0)
    assert episode.success
    assert episode.images["observation.images.front"].shape[1:] == (32, 32, 3)
    provenance = reader.provenance(0)
    assert provenance.source == "sim" and provenance.backend == "mujoco"
    assert provenance.task_spec_hash == load_task("reach").spec_hash()
    assert "mass_scale" in provenance.randomization["physics"]
    seeds = _seeds(out)  # two workers finish out of order; each seed is written once
    assert len(set(seeds)) == 4 and max(seeds) < report.attempts + 2  # + those in flight


def test_an_existing_dataset_is_not_overwritten_without_resume(tmp_path: Path) -> None:
    out = tmp_path / "reach"
    generate(_cfg(out, episodes=1))
    with pytest.raises(FileExistsError, match="resume=true"):
        generate(_cfg(out, episodes=1))


def test_failures_are_dropped_by_default_and_kept_when_asked(tmp_path: Path) -> None:
    # An episode too short for the expert: every attempt fails.
    data = yaml.safe_load(Path("config/tasks/pick_place.yaml").read_text())
    data.update(name="too_short", episode_steps=5)
    task = tmp_path / "too_short.yaml"
    task.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(RuntimeError, match="kept 0 of 2 episodes after 4 attempts"):
        generate(_cfg(tmp_path / "dropped", task=str(task), episodes=2, max_attempts_factor=2))
    report = generate(_cfg(tmp_path / "kept", task=str(task), episodes=2, keep_failures=True))
    reader = DatasetReader(tmp_path / "kept")
    assert report.kept == 2 and not any(reader.episode(i).success for i in range(2))


def test_sigkill_keeps_finished_episodes_and_resume_continues(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "kizuna.cli", "generate", "task=reach", "episodes=200"]
    cmd += ["workers=1", "image_size=32", f"out={out}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(list((out / "meta" / "episodes").glob("chunk-*/file-*.parquet"))) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader = DatasetReader(out)
    kept = reader.num_episodes
    assert kept >= 3
    for i in range(kept):  # every episode finished before the kill is intact and readable
        episode = reader.episode(i)
        assert episode.success and len(episode.states) == len(episode.actions) > 0
    # (info.json, a cache, may lag one episode behind the rows; resuming rebuilds it.)
    generate(_cfg(out, episodes=kept + 2, resume=True))
    seeds = _seeds(out)
    assert len(seeds) == kept + 2 and len(set(seeds)) == len(seeds), "no seed written twice"
    assert check_dataset(out).ok


def test_hydra_overrides_become_a_typed_config() -> None:
    cfg = compose("generate", ["task=push", "episodes=7", "ray.address=auto"], GenerateConfig)
    assert cfg == GenerateConfig(task="push", episodes=7, ray=RayConfig(address="auto"))
    assert isinstance(cfg.cameras, tuple)
    with pytest.raises(ValueError, match="episodez"):
        compose("generate", ["episodez=7"], GenerateConfig)
    with pytest.raises(ValueError, match="episodes"):
        compose("generate", ["episodes=many"], GenerateConfig)


def test_generate_on_a_local_ray_instance(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    import ray

    out = tmp_path / "ray"
    try:
        report = generate(_cfg(out, episodes=3, ray=RayConfig(address="local", num_workers=2)))
    finally:
        ray.shutdown()
    assert report.kept == 3
    assert check_dataset(out).ok


def test_hold_after_success_records_the_stop(tmp_path: Path) -> None:
    short = generate(_cfg(tmp_path / "short", episodes=2))
    held = generate(_cfg(tmp_path / "held", episodes=2, hold_after_success=6))
    assert short.kept == held.kept == 2
    a, b = DatasetReader(tmp_path / "short"), DatasetReader(tmp_path / "held")
    for i in range(2):
        stopped, holding = a.episode(i), b.episode(i)
        assert holding.success
        assert len(holding.actions) == len(stopped.actions) + 6  # same seed, six more frames
        np.testing.assert_array_equal(holding.actions[: len(stopped.actions)], stopped.actions)
        # The recorded tail is the expert settling at the goal, not a new motion.
        motion = np.abs(np.diff(holding.actions[-7:, :7], axis=0)).max(axis=1)
        assert motion.max() < 0.05 and motion[-1] <= motion[0] + 1e-6


@given(
    std=st.floats(0.0, 0.2),
    seed=st.integers(0, 2**32 - 1),
    action=arrays(np.float32, 8, elements=st.floats(-3, 3, width=32)),
)
def test_dart_noise_moves_joint_targets_only(std: float, seed: int, action: np.ndarray) -> None:
    noise = ExecutionNoise(std, 7, np.random.default_rng(seed))
    for _ in range(3):
        noisy = noise.apply(action)
        assert noisy[7] == action[7]  # the gripper command is never perturbed
        assert np.all(np.isfinite(noisy))
        if std == 0:
            np.testing.assert_array_equal(noisy, action)


def test_dart_noise_is_smooth_with_the_stated_std() -> None:
    noise = ExecutionNoise(0.05, 7, np.random.default_rng(0))
    values = np.array([noise.apply(np.zeros(8, np.float32))[:7] for _ in range(20000)])
    assert abs(values.std() - 0.05) < 0.005
    lag1 = np.corrcoef(values[:-1, 0], values[1:, 0])[0, 1]
    assert abs(lag1 - ExecutionNoise.CORRELATION) < 0.03  # correlated: it drifts, not jitters


def test_dart_records_clean_targets_and_its_noise_level(tmp_path: Path) -> None:
    clean = generate(_cfg(tmp_path / "clean", episodes=2))
    noisy = generate(_cfg(tmp_path / "noisy", episodes=2, action_noise_rad=0.03))
    assert clean.kept == noisy.kept == 2
    a, b = DatasetReader(tmp_path / "clean"), DatasetReader(tmp_path / "noisy")
    assert b.provenance(0).randomization["dart_noise_rad"] == 0.03
    # The recorded states drift off the clean run's, because the noisy targets were executed.
    first_clean, first_noisy = a.episode(0), b.episode(0)
    n = min(len(first_clean), len(first_noisy))
    assert np.abs(first_clean.states[:n, :7] - first_noisy.states[:n, :7]).max() > 0.01
