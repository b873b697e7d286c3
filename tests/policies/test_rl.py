"""RL baselines: the state wrapper, `kizuna rl` end to end, pickle-free checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from safetensors.torch import load_file, save_file

from kizuna.cli import main as cli_main
from kizuna.task import load_task
from policies.base import load_policy
from policies.evaluate import EvalConfig, evaluate
from policies.rl import PPOSettings, RLConfig, make_model, make_train_env
from policies.rl_policy import PRIVILEGED_KEY, observation_layout, save_checkpoint

torch.set_num_threads(1)


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")  # it is wrapped
def test_state_wrapper_is_a_flat_box_of_the_true_scene() -> None:
    env = make_train_env(RLConfig(task="push"))
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    layout = dict(observation_layout(load_task("push")))
    assert obs.shape == env.observation_space.shape == (sum(layout.values()),)
    assert env.action_space.shape == (4,)  # ee_delta
    scene = env.unwrapped.scene_state()
    names = list(layout)
    start = sum(layout[n] for n in names[: names.index("zone.from_tcp_m")])
    np.testing.assert_allclose(
        obs[start : start + 3], scene.fixture_pos_m["zone"] - scene.tcp_pos_m, atol=1e-6
    )
    env.close()


def test_kizuna_rl_sac_end_to_end_without_pickle(tmp_path: Path) -> None:
    out = tmp_path / "rl_reach"
    code = cli_main(
        [
            "rl",
            "task=reach",
            "algo=sac",
            "steps=300",
            f"out={out}",
            "net_arch=[32,32]",
            "sac.learning_starts=100",
            "sac.batch_size=32",
            "eval_episodes=2",
            "eval_videos=0",
        ]
    )
    assert code == 0
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    pickles = [p for p in out.rglob("*") if p.suffix in (".zip", ".pkl", ".pickle", ".pt")]
    assert pickles == []
    config = json.loads((out / "config.json").read_text())
    assert config["type"] == "sb3_state" and config["algo"] == "sac"
    assert config["hyperparameters"]["learning_starts"] == 100
    assert list(out.glob("tb/*/events.out.tfevents.*"))
    report = json.loads((out / "eval" / "reach" / "report.json").read_text())
    assert report["episodes"] == 2 and report["settings"]["action_mode"] == "ee_delta"
    policy = load_policy(out)
    assert (policy.chunk_size, policy.action_dim, policy.action_mode) == (1, 4, "ee_delta")


@pytest.fixture(scope="module")
def ppo_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """A PPO model after a few hundred steps, saved; returns (model, checkpoint dir)."""
    out = tmp_path_factory.mktemp("ppo")
    ppo = PPOSettings(n_steps=128, batch_size=64, n_epochs=2)
    cfg = RLConfig(task="reach", algo="ppo", out=str(out), net_arch=(32, 32), ppo=ppo)
    env = make_train_env(cfg)
    model = make_model(cfg, env)
    model.learn(256)
    env.close()
    return model, save_checkpoint(model, out, load_task("reach"), "reach", {})


def test_loaded_policy_acts_exactly_like_the_trained_model(
    ppo_checkpoint: tuple[object, Path],
) -> None:
    model, path = ppo_checkpoint
    policy = load_policy(path)
    dim = json.loads((path / "config.json").read_text())["observation"]["dim"]
    rng = np.random.default_rng(0)
    for _ in range(20):
        vector = rng.normal(0, 0.5, dim).astype(np.float32)
        expected, _ = model.predict(vector, deterministic=True)
        chunk = policy.act({PRIVILEGED_KEY: vector})
        assert chunk.shape == (1, 4) and chunk.dtype == np.float32
        np.testing.assert_array_equal(chunk[0], expected)


def test_mis_shaped_or_missing_tensors_are_refused(
    ppo_checkpoint: tuple[object, Path], tmp_path: Path
) -> None:
    _, path = ppo_checkpoint
    tensors = load_file(str(path / "model.safetensors"))
    key = next(k for k in tensors if k.endswith("action_net.weight"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((path / "config.json").read_text())
    save_file({**tensors, key: torch.zeros(4, 7)}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match=rf"'{key}' has shape \(4, 7\).*expects \(4, 32\)"):
        load_policy(bad)
    save_file({k: v for k, v in tensors.items() if k != key}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match=f"missing tensor '{key}'"):
        load_policy(bad)


def test_state_policy_needs_the_privileged_observation(
    ppo_checkpoint: tuple[object, Path],
) -> None:
    policy = load_policy(ppo_checkpoint[1])
    with pytest.raises(KeyError, match="PrivilegedStateWrapper"):
        policy.act({"state": np.zeros(8, np.float32), "instruction": "reach"})
    with pytest.raises(ValueError, match="trained on task 'reach'"):
        policy.act({PRIVILEGED_KEY: np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match="evaluate it on the task it was trained on"):
        evaluate(policy, EvalConfig(task="push", episodes=1))


def test_unknown_algo_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["rl", "algo=dqn", f"out={tmp_path}"]) == 2
    assert "choose one of ['ppo', 'sac']" in capsys.readouterr().out
