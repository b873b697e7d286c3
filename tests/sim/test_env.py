"""The Gymnasium env on both backends: API contract, determinism, action modes, reality."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

import sim  # noqa: F401  (registers the kizuna/* ids)
from kizuna.kinematics import forward_kinematics
from kizuna.robot import PANDA
from sim.env import EE_STEP_M, KizunaEnv
from sim.registration import TASK_IDS

BACKENDS = ["mujoco", "pybullet"]


def _make(env_id: str = "kizuna/PickPlace-v0", **kwargs) -> KizunaEnv:
    kwargs.setdefault("image_size", 32)
    return gym.make(env_id, **kwargs).unwrapped


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("env_id", sorted(TASK_IDS))
def test_check_env_passes_for_every_id(env_id: str, backend: str) -> None:
    if backend == "pybullet":
        pytest.importorskip("pybullet")
    env = _make(env_id, backend=backend, randomization=True)
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_rollout(backend: str) -> None:
    if backend == "pybullet":
        pytest.importorskip("pybullet")

    def rollout() -> list[np.ndarray]:
        env = _make(backend=backend, randomization=True)
        obs, _ = env.reset(seed=7)
        env.action_space.seed(7)
        trace = [obs["state"], obs["images"]["front"]]
        for _ in range(5):
            obs, reward, *_ = env.step(env.action_space.sample())
            trace += [obs["state"], obs["images"]["wrist"], np.array([reward])]
        env.close()
        return trace

    a, b = rollout(), rollout()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_other_seed_other_layout() -> None:
    env = _make()
    env.reset(seed=1)
    first = env.scene_state().object_pos_m["cube"]
    env.reset(seed=2)
    assert not np.allclose(first, env.scene_state().object_pos_m["cube"])
    env.close()


@pytest.mark.parametrize("language", ["en", "ja"])
def test_observation_is_a_member_of_the_space(language: str) -> None:
    env = _make(language=language)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["instruction"] in env.spec_task.instructions[language]
    assert obs["state"].shape == (PANDA.dof + 1,)
    assert set(obs["images"]) == {"front", "wrist"}
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert set(info["reward_terms"]) >= {"tcp_to_object", "object_to_goal", "success"}
    assert isinstance(info["success"], bool)
    env.close()


def test_any_task_yaml_path_makes_an_env(tmp_path: Path) -> None:
    data = yaml.safe_load(Path("config/tasks/push.yaml").read_text())
    data["name"] = "push_blue"
    data["objects"][0]["color"] = "blue"
    path = tmp_path / "push_blue.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    env = _make("kizuna/Task-v0", task=str(path), cameras=())
    obs, _ = env.reset(seed=0)
    assert env.spec_task.name == "push_blue"
    assert "images" not in obs, "state-only observation when no camera is asked for"
    env.close()


def test_episode_truncates_at_the_spec_length() -> None:
    env = _make("kizuna/Reach-v0", cameras=())
    env.reset(seed=0)
    hold = np.concatenate([PANDA.home_q_rad, [1.0]]).astype(np.float32)
    steps, truncated = 0, False
    while not truncated:
        *_, truncated, _ = env.step(hold)
        steps += 1
    assert steps == env.spec_task.episode_steps
    env.close()


def test_ee_delta_moves_the_tcp_by_the_commanded_step() -> None:
    env = _make("kizuna/Reach-v0", cameras=(), action_mode="ee_delta")
    env.reset(seed=0)
    start = env.scene_state().tcp_pos_m
    for _ in range(5):
        env.step(np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32))
    for _ in range(10):  # settle
        env.step(np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32))
    moved = env.scene_state().tcp_pos_m - start
    assert moved[0] == pytest.approx(5 * EE_STEP_M, abs=0.01)
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01
    env.close()


def test_malformed_actions_are_refused_with_a_clear_error() -> None:
    env = _make(cameras=())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(PANDA.action_dim, np.nan))
    env.close()


def _first_moving_step(env: KizunaEnv, target: np.ndarray) -> int:
    env.reset(seed=0)
    q0 = env.sim.joint_positions().copy()
    for step in range(1, 10):
        env.step(target)
        if np.abs(env.sim.joint_positions() - q0).max() > 0.01:
            return step
    return 99


def test_reality_latency_delays_motion(tmp_path: Path) -> None:
    target = np.concatenate([np.array(PANDA.home_q_rad) + 0.3, [1.0]]).astype(np.float32)
    target[:-1] = np.clip(target[:-1], PANDA.lower_rad, PANDA.upper_rad)
    nominal = _first_moving_step(_make(cameras=()), target)
    profile = tmp_path / "laggy.yaml"
    profile.write_text(yaml.safe_dump({"name": "laggy", "control_latency_steps": 2}))
    laggy = _first_moving_step(_make(cameras=(), reality=str(profile)), target)
    assert laggy == nominal + 2


def test_reality_joint_offsets_show_in_the_observation(tmp_path: Path) -> None:
    offset = [0.05, 0, 0, 0, 0, 0, 0]
    profile = tmp_path / "offset.yaml"
    profile.write_text(yaml.safe_dump({"name": "offset", "joint_offset_rad": offset}))
    env = _make(cameras=(), reality=str(profile))
    obs, _ = env.reset(seed=0)
    true_q = env.sim.joint_positions()
    assert obs["state"][0] - true_q[0] == pytest.approx(0.05, abs=1e-4)
    env.close()


def test_hard_profile_runs_on_its_own_backend() -> None:
    pytest.importorskip("pybullet")
    env = _make(cameras=("front",), reality="hard")
    assert env.backend_name == "pybullet"
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.close()


def test_forward_kinematics_agree_across_backends() -> None:
    pytest.importorskip("pybullet")
    rng = np.random.default_rng(0)
    envs = [_make(backend=b, cameras=()) for b in ("mujoco", "pybullet")]
    for env in envs:
        env.reset(seed=0)
    for _ in range(20):
        q = rng.uniform(PANDA.lower_rad, PANDA.upper_rad)
        poses = []
        for env in envs:
            env.sim.set_joint_positions(q)
            poses.append(env.sim.tcp_pose())
        assert np.linalg.norm(poses[0][:3, 3] - poses[1][:3, 3]) < 1e-3
        assert np.linalg.norm(poses[0][:3, 3] - forward_kinematics(q)[:3, 3]) < 1e-3
    for env in envs:
        env.close()
