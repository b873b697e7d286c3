"""Residual RL: the bounded residual, the env, training end to end, checkpoints, re-centring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kizuna.cli import main as cli_main
from policies.base import load_policy
from policies.evaluate import EvalConfig, evaluate
from policies.residual import (
    ACTION_DIM,
    ACTION_HIGH,
    ACTION_LOW,
    OBS_DIM,
    ResidualActor,
    ResidualPolicy,
    ResidualScale,
    executed_action,
    export_actor,
    load_actor,
    residual_command,
    save_residual_checkpoint,
)
from policies.residual_cli import (
    ResidualConfig,
    make_model,
    make_residual_env,
    recentred_randomization,
)
from policies.vla.testing import make_tiny_checkpoint
from sim.env import KizunaEnv
from sim.randomization import WIDE_SCALE

torch.set_num_threads(1)
IMAGE = 32  # px: rendering stays cheap


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("base") / "vla"
    return make_tiny_checkpoint(path, chunk_size=5, image_size=IMAGE)


def _cfg(base: Path, out: Path, **kw: object) -> ResidualConfig:
    return ResidualConfig(
        base=str(base), task="reach", out=str(out), image_size=IMAGE, net_arch=(16, 16), **kw
    )


# ---- the bound -------------------------------------------------------------------------------

floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=200, deadline=None)
@given(
    base=arrays(np.float32, ACTION_DIM, elements=st.floats(-3.0, 3.0, width=32)),
    r=arrays(np.float32, ACTION_DIM, elements=floats),
    joints=st.floats(0.0, 0.5),
    gripper=st.floats(0.0, 1.0),
)
def test_residual_is_bounded_whatever_the_agent_outputs(
    base: np.ndarray, r: np.ndarray, joints: float, gripper: float
) -> None:
    scale = ResidualScale(joints, gripper).vector()
    command = residual_command(base, r, scale)
    assert np.all(np.isfinite(command))
    assert np.all(np.abs(command - base) <= scale * (1 + 1e-12) + 1e-12)
    executed = executed_action(base, r, scale)
    assert executed.dtype == np.float32 and np.all(np.isfinite(executed))


# ---- the env ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")  # it is wrapped
def test_residual_env_passes_the_gymnasium_checker(base_checkpoint: Path, tmp_path: Path) -> None:
    env = make_residual_env(_cfg(base_checkpoint, tmp_path), load_policy(base_checkpoint), "none")
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (OBS_DIM,) and env.action_space.shape == (ACTION_DIM,)
    _, reward_zero, *_, info = env.step(np.zeros(ACTION_DIM, np.float32))
    np.testing.assert_allclose(info["executed_action"], info["base_action"], atol=1e-6)
    assert info["reward_terms"]["residual"] == 0.0
    _, _, _, _, info = env.step(np.ones(ACTION_DIM, np.float32))
    assert info["reward_terms"]["residual"] == -ACTION_DIM
    moved = info["executed_action"] - info["base_action"]
    assert np.all(np.abs(moved) <= env.scale + 1e-6)
    env.close()


# ---- training, checkpoint, evaluation --------------------------------------------------------


def test_kizuna_residual_trains_saves_and_compares(base_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "residual"
    args = [f"base={base_checkpoint}", "task=reach", "algo=sac", "steps=200", f"out={out}"]
    args += [f"image_size={IMAGE}", "net_arch=[16,16]", "sac.learning_starts=100"]
    args += ["sac.batch_size=32", "eval_episodes=1", "randomization=none"]
    assert cli_main(["residual", *args]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["type"] == "kizuna_residual" and config["algo"] == "sac"
    assert (out / Path(config["base_checkpoint"]) / "config.json").is_file()  # relative path
    pickles = [p for p in out.rglob("*") if p.suffix in (".zip", ".pkl", ".pickle", ".pt")]
    assert pickles == []
    comparison = json.loads((out / "eval" / "comparison.json").read_text())
    assert comparison["base"]["episodes"] == comparison["residual"]["episodes"] == 1
    policy = load_policy(out)
    assert isinstance(policy, ResidualPolicy) and (policy.chunk_size, policy.action_dim) == (1, 8)
    report = evaluate(policy, EvalConfig(task="reach", episodes=1, videos=0, image_size=IMAGE))
    assert len(report.episodes) == 1 and report.episodes[0].steps > 0
    assert report.safety_totals()["nonfinite_actions"] == 0


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_actor_weights_round_trip_gives_identical_actions(
    base_checkpoint: Path, tmp_path: Path, algo: str
) -> None:
    cfg = _cfg(base_checkpoint, tmp_path, algo=algo)
    env = make_residual_env(cfg, load_policy(base_checkpoint), "none")
    model = make_model(cfg, env)  # untrained: the weights are random, which is what matters
    actor = export_actor(model)
    out = save_residual_checkpoint(tmp_path / "ckpt", actor, base_checkpoint, cfg.scale, algo)
    spec = json.loads((out / "config.json").read_text())["actor"]
    loaded = load_actor(spec, out / "model.safetensors")
    rng = np.random.default_rng(0)
    for _ in range(10):
        vector = rng.normal(0, 1, OBS_DIM).astype(np.float32)
        expected, _ = model.predict(vector, deterministic=True)
        np.testing.assert_array_equal(loaded.act(vector), actor.act(vector))
        np.testing.assert_allclose(loaded.act(vector), expected, atol=1e-6)
    env.close()


def test_actor_with_wrong_weights_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    actor = ResidualActor(OBS_DIM, (16,), "ReLU", squash=True)
    save_file({"body.0.weight": torch.zeros(3, 3)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing tensor 'mean.weight'"):
        load_actor(actor.spec, tmp_path / "model.safetensors")


# ---- re-centred randomization ----------------------------------------------------------------


def test_recentred_randomization_is_centred_on_the_fitted_profile(tmp_path: Path) -> None:
    # A sysid-style profile: gain and damping fitted, latency 1, mass/friction not identified.
    profile = tmp_path / "reality.yaml"
    fitted = {"actuator_gain_scale": 0.8, "joint_damping_scale": 1.5}
    profile.write_text(yaml.safe_dump({"name": "cell", **fitted, "control_latency_steps": 1}))
    path = recentred_randomization(tmp_path, tmp_path / "randomization.yaml", spread=0.1)
    env = KizunaEnv("reach", cameras=(), randomization=path)
    ranges = env.randomization
    for name, value in fitted.items():
        low, high = getattr(ranges, name)
        assert (low + high) / 2 == pytest.approx(value)
        assert high - low == pytest.approx(0.2 * value)
    assert ranges.action_latency_steps == (0, 2)
    assert ranges.mass_scale == ranges.friction_scale == WIDE_SCALE
    env.reset(seed=0)
    physics = env.episode_params.physics
    assert 0.72 <= physics.actuator_gain_scale <= 0.88
    env.close()


def test_sysid_report_decides_what_counts_as_fitted(tmp_path: Path) -> None:
    # Damping stated but reported unidentified: wide; gain's 2 SE (0.3) beats spread=0.1.
    profile = {"name": "cell", "actuator_gain_scale": 0.8, "joint_damping_scale": 1.5}
    (tmp_path / "reality.yaml").write_text(yaml.safe_dump(profile))
    report = {
        "identified": {"actuator_gain_scale": True, "joint_damping_scale": False},
        "std_error": {"actuator_gain_scale": 0.15, "joint_damping_scale": 0.4},
    }
    (tmp_path / "sysid.json").write_text(json.dumps(report))
    path = recentred_randomization(tmp_path / "reality.yaml", tmp_path / "r.yaml", spread=0.1)
    ranges = KizunaEnv("reach", cameras=(), randomization=path).randomization
    assert ranges.actuator_gain_scale == pytest.approx((0.8 * 0.7, 0.8 * 1.3))
    assert ranges.joint_damping_scale == WIDE_SCALE
    assert ranges.action_latency_steps == (0, 2)  # latency not stated: wide
    assert "not identified" in path.read_text().splitlines()[0]


def test_zero_residual_plays_the_base_chunks_row_by_row(
    base_checkpoint: Path, make_observation: object
) -> None:
    base = load_policy(base_checkpoint)
    actor = ResidualActor(OBS_DIM, (8,), "ReLU", squash=True)
    torch.nn.init.zeros_(actor.mean.weight)
    torch.nn.init.zeros_(actor.mean.bias)  # r = tanh(0) = 0 for every input
    policy = ResidualPolicy(base, actor, ResidualScale(), replan_every=3)
    obs = make_observation(size=IMAGE)  # type: ignore[operator]
    policy.reset()
    rows = np.concatenate([policy.act(obs) for _ in range(6)])
    base.reset()
    first = base.act(obs)[:3]
    second = base.act(obs)[:3]  # re-queried after 3 steps (same observation, next noise draw)
    expected = np.clip(np.concatenate([first, second]), ACTION_LOW, ACTION_HIGH)
    np.testing.assert_allclose(rows, expected, atol=1e-6)
    assert policy.planner.calls == 2 and policy.cameras == ("front", "wrist")
