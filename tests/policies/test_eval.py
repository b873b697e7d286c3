"""Rollout and evaluation: chunk execution, replanning, ensembling, safety events, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import sim  # noqa: F401  (registers the kizuna/* ids)
from kizuna.cli import main as cli_main
from kizuna.metrics import wilson_interval
from kizuna.task import load_task
from kizuna.video import count_frames
from policies.evaluate import EvalConfig, evaluate
from policies.rl_policy import PRIVILEGED_KEY, observation_layout
from policies.rollout import ChunkExecutor, run_episode
from sim.env import EE_STEP_M, KizunaEnv
from sim.expert import ScriptedExpert

torch.set_num_threads(1)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---- test policies -------------------------------------------------------------------------


class ExpertChunkPolicy:
    """Privileged, test-only: the scripted expert's next T actions as a chunk."""

    action_dim = 8

    def __init__(self, env: KizunaEnv, chunk_size: int) -> None:
        self.env, self.chunk_size = env, chunk_size

    def reset(self) -> None:
        self.expert = ScriptedExpert(np.random.default_rng(0))
        self.expert.reset(self.env)

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        return np.stack([self.expert.act() for _ in range(self.chunk_size)])


class CountingPolicy:
    """Holds still; the gripper column carries the row index (0.0, 0.1, ...) so the executed
    action tells which row of which chunk was played."""

    action_dim = 8

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size, self.calls = chunk_size, 0

    def reset(self) -> None:
        self.calls = 0

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        self.calls += 1
        chunk = np.tile(observation["state"], (self.chunk_size, 1))
        chunk[:, -1] = np.arange(self.chunk_size) / 10
        return chunk


class BadPolicy:
    """Rows: NaN, far past a joint limit, +inf, then a legal hold."""

    action_dim, chunk_size = 8, 4

    def reset(self) -> None:
        pass

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        hold = observation["state"]
        beyond = hold.copy()
        beyond[0] = 50.0  # rad: far outside joint 1's range
        return np.stack([np.full(8, np.nan), beyond, np.full(8, np.inf), hold])


class ReachController:
    """Privileged, test-only ee_delta policy: step towards the marker. With ``fail_every=2``
    every second episode it holds still instead, so an evaluation has both outcomes."""

    action_dim, chunk_size = 4, 1
    action_mode = "ee_delta"
    cameras: tuple[str, ...] = ()
    observation = PRIVILEGED_KEY

    def __init__(self, fail_every: int = 0) -> None:
        layout = observation_layout(load_task("reach"))
        starts = np.cumsum([0] + [size for _, size in layout])
        i = [name for name, _ in layout].index("marker.from_tcp_m")
        self.slice = slice(starts[i], starts[i] + 3)
        self.fail_every, self.episode = fail_every, -1

    def reset(self) -> None:
        self.episode += 1

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        if self.fail_every and self.episode % self.fail_every == 1:
            return np.array([[0.0, 0.0, 0.0, 1.0]], np.float32)
        delta = observation[PRIVILEGED_KEY][self.slice] / EE_STEP_M
        return np.array([[*np.clip(delta, -1, 1), 1.0]], np.float32)


class ActionLog(gym.Wrapper):
    """Remembers every action the env was stepped with."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[np.ndarray] = []

    def step(self, action: np.ndarray) -> Any:
        self.actions.append(np.array(action))
        return self.env.step(action)


def _env(task: str = "reach", **kwargs: Any) -> KizunaEnv:
    return KizunaEnv(task, cameras=(), **kwargs)


# ---- rollout -------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "seed"), [("reach", 0), ("pick_place", 0)])
def test_expert_chunks_reach_success(task: str, seed: int) -> None:
    env = _env(task)
    result = run_episode(env, ExpertChunkPolicy(env, chunk_size=5), seed)
    env.close()
    assert result.success
    assert result.steps == result.steps_to_success  # the env terminates on success
    assert result.time_to_success_s == pytest.approx(result.steps / env.spec_task.control_hz)
    assert result.policy_calls == math.ceil(result.steps / 5)
    assert result.nonfinite_actions == 0 and result.limit_clamps == 0


@pytest.mark.parametrize("replan_every", [1, 3, 4, None])
def test_replanning_cadence(replan_every: int | None) -> None:
    env = ActionLog(_env())
    policy = CountingPolicy(chunk_size=4)
    result = run_episode(env, policy, seed=1, replan_every=replan_every, max_steps=10)
    env.close()
    every = replan_every or 4
    assert result.steps == 10 and not result.success
    assert policy.calls == result.policy_calls == math.ceil(10 / every)
    # Step t plays row (t mod every) of the chunk queried last.
    played_rows = [round(a[-1] * 10) for a in env.actions]
    assert played_rows == [t % every for t in range(10)]


def test_replan_every_longer_than_chunk_is_refused() -> None:
    env = _env()
    with pytest.raises(ValueError, match="1..chunk_size"):
        run_episode(env, CountingPolicy(chunk_size=2), seed=0, replan_every=3)
    env.close()


def test_temporal_ensembling_weights_older_chunks_more() -> None:
    executor = ChunkExecutor(ensemble=True, ensemble_k=0.5)
    executor.add(0, np.array([[0.0], [1.0], [2.0]]))
    executor.add(1, np.array([[10.0], [11.0], [12.0]]))
    action, nonfinite = executor.action(1)  # rows 1.0 (oldest) and 10.0
    weights = np.exp(-0.5 * np.arange(2))
    assert action == pytest.approx((1.0 * weights[0] + 10.0 * weights[1]) / weights.sum())
    assert not nonfinite
    executor.add(2, np.array([[np.nan], [0.0], [0.0]]))
    action, nonfinite = executor.action(2)  # the NaN vote is dropped and counted
    assert nonfinite and action == pytest.approx(
        (2.0 * weights[0] + 11.0 * weights[1]) / weights.sum()
    )


def test_ensemble_rollout_queries_every_step() -> None:
    env = _env()
    policy = CountingPolicy(chunk_size=4)
    result = run_episode(env, policy, seed=0, max_steps=6, ensemble=True)
    env.close()
    assert result.policy_calls == 6


def test_nan_and_out_of_limit_actions_are_counted_and_contained() -> None:
    env = ActionLog(_env())
    result = run_episode(env, BadPolicy(), seed=2, max_steps=12)
    low, high = env.action_space.low, env.action_space.high
    assert result.steps == 12
    assert result.nonfinite_actions == 6  # NaN and inf rows, three chunks
    assert result.limit_clamps == 3
    for action in env.actions:
        assert np.all(np.isfinite(action))
        assert np.all(action >= low) and np.all(action <= high)
    state = env.unwrapped.sim.joint_positions()
    assert np.all(state >= env.unwrapped.robot.lower_rad - 1e-3)
    assert np.all(state <= env.unwrapped.robot.upper_rad + 1e-3)
    env.close()


def test_wrong_chunk_shape_and_action_mode_are_refused() -> None:
    env = _env()
    policy = CountingPolicy(chunk_size=2)
    policy.act = lambda obs: np.zeros((2, 7), np.float32)  # one column short
    with pytest.raises(ValueError, match=r"expected \[T >= 1, 8\]"):
        run_episode(env, policy, seed=0)
    with pytest.raises(ValueError, match="action_mode='ee_delta'"):
        run_episode(env, ReachController(), seed=0)
    env.close()


# ---- evaluation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (0, 0, (0.0, 1.0)),
        (0, 10, (0.0, 0.2775)),
        (5, 10, (0.2366, 0.7634)),
        (10, 10, (0.7225, 1.0)),
    ],
)
def test_wilson_interval_known_values(
    successes: int, n: int, expected: tuple[float, float]
) -> None:
    assert wilson_interval(successes, n) == pytest.approx(expected, abs=1e-4)


def test_evaluate_writes_report_plot_and_videos(tmp_path: Path) -> None:
    cfg = EvalConfig(task="reach", episodes=4, seed=7, videos=1, video_size=(48, 64))
    report = evaluate(ReachController(fail_every=2), cfg, out_dir=tmp_path, progress=True)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["successes"] == 2 and data["success_rate"] == 0.5
    assert data["ci95"] == pytest.approx(wilson_interval(2, 4), abs=1e-4)
    assert data["seeds"] == [7, 8, 9, 10]
    assert data["task_spec_hash"] == load_task("reach").spec_hash()
    assert data["settings"]["action_mode"] == "ee_delta" and data["settings"]["cameras"] == []
    times = [e["time_to_success_s"] for e in data["per_episode"] if e["success"]]
    assert data["time_to_success_s"]["median"] == pytest.approx(np.median(times))
    assert set(data["safety"]["totals"]) == {
        "arm_contact_steps",
        "limit_clamps",
        "nonfinite_actions",
    }
    for key in ("checkpoint", "checkpoint_config_hash", "reality", "kizuna_version", "backend"):
        assert key in data
    assert report.success_rate == 0.5
    # One video of each kind, one frame per step plus the first.
    episodes = {e["seed"]: e for e in data["per_episode"]}
    assert len(data["videos"]["success"]) == len(data["videos"]["failure"]) == 1
    for video in data["videos"]["success"] + data["videos"]["failure"]:
        seed = int(video.split("seed")[1].removesuffix(".mp4"))
        assert count_frames(tmp_path / video) == episodes[seed]["steps"] + 1
    png = (tmp_path / "report.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000


def _eval_cli(checkpoint: Path, *overrides: str) -> int:
    args = ["eval", f"checkpoint={checkpoint}", "videos=1", "video_size=[48,64]", *overrides]
    return cli_main(args)


def test_kizuna_eval_cli_on_a_tiny_vla_checkpoint(tmp_path: Path) -> None:
    testing = pytest.importorskip("policies.vla.testing")
    checkpoint = testing.make_tiny_checkpoint(tmp_path / "vla", chunk_size=4)
    code = _eval_cli(checkpoint, "task=[reach,push]", "episodes=2", "max_steps=6")
    assert code == 0
    for task in ("reach", "push"):
        data = json.loads((checkpoint / "eval" / task / "report.json").read_text())
        assert data["episodes"] == 2 and data["checkpoint"] == str(checkpoint)
        assert data["checkpoint_config_hash"] and data["settings"]["cameras"] == ["front", "wrist"]
        assert all(e["steps"] == 6 and e["policy_calls"] == 2 for e in data["per_episode"])
        assert (checkpoint / "eval" / task / "report.png").read_bytes().startswith(PNG_MAGIC)
    summary = (checkpoint / "eval" / "summary.md").read_text()
    assert "| reach |" in summary and "| push |" in summary


def test_kizuna_eval_cli_refuses_a_missing_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _eval_cli(tmp_path / "nowhere", "episodes=1") == 2
    assert "not a checkpoint" in capsys.readouterr().out
