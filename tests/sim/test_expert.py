"""The spec-driven scripted expert solves every shipped task on both backends, and a new task
built from the shipped predicates without any new code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from kizuna.task import shipped_tasks
from sim.env import KizunaEnv
from sim.expert import ACCEL_M_S2, OPEN, ScriptedExpert, Waypoint


def _solve(env: KizunaEnv, seed: int) -> tuple[bool, list[np.ndarray]]:
    env.reset(seed=seed)
    expert = ScriptedExpert(np.random.default_rng(seed))
    expert.reset(env)
    tcp_path = []
    for _ in range(env.spec_task.episode_steps):
        *_, terminated, truncated, info = env.step(expert.act())
        tcp_path.append(info["tcp_pos_m"].copy())
        if terminated or truncated:
            break
    return bool(info["success"]), tcp_path


@pytest.mark.parametrize("backend", ["mujoco", "pybullet"])
@pytest.mark.parametrize("task", shipped_tasks())
def test_expert_solves_every_shipped_task(task: str, backend: str) -> None:
    if backend == "pybullet":
        pytest.importorskip("pybullet")
    env = KizunaEnv(task, backend=backend, cameras=(), randomization=True)
    wins = sum(_solve(env, seed)[0] for seed in range(3))
    env.close()
    assert wins == 3


def test_expert_trajectories_vary_between_seeds() -> None:
    env = KizunaEnv("reach", cameras=())
    env.reset(seed=0)
    layout = env._layout
    paths = []
    for seed in (1, 2):
        env.reset(seed=0, options={"layout": layout})  # same scene, different expert draw
        expert = ScriptedExpert(np.random.default_rng(seed))
        expert.reset(env)
        paths.append([env.step(expert.act())[-1]["tcp_pos_m"].copy() for _ in range(8)])
    env.close()
    assert np.abs(np.array(paths[0]) - np.array(paths[1])).max() > 0.005


def test_a_new_yaml_task_gets_an_expert_without_code(tmp_path: Path) -> None:
    # A kitting variant: a green cylinder into a zone, then nothing else; no Python written.
    task = {
        "name": "kit_cylinder",
        "episode_steps": 160,
        "instructions": ["put the green cylinder on the yellow pad"],
        "objects": [
            {
                "name": "part",
                "shape": "cylinder",
                "size_m": [0.02, 0.05],
                "color": "green",
                "pose": {"x_m": [0.4, 0.55], "y_m": [-0.2, -0.05]},
            }
        ],
        "fixtures": [
            {
                "name": "pad",
                "kind": "zone",
                "size_m": [0.08, 0.08],
                "color": "yellow",
                "pose": {"x_m": [0.4, 0.6], "y_m": [0.1, 0.2]},
            }
        ],
        "success": [{"kind": "in_zone", "object": "part", "target": "pad"}],
    }
    path = tmp_path / "kit_cylinder.yaml"
    path.write_text(yaml.safe_dump(task))
    env = KizunaEnv(path, cameras=())
    assert all(_solve(env, seed)[0] for seed in range(3))
    env.close()


@pytest.mark.parametrize("distance_m", [0.0005, 0.03, 0.25])
def test_segments_arrive_with_bounded_speed_and_acceleration(distance_m: float) -> None:
    env = KizunaEnv("reach", cameras=())
    env.reset(seed=0)
    expert = ScriptedExpert(np.random.default_rng(0))
    expert.reset(env)
    start = expert._tcp.copy()
    goal = start + np.array([distance_m, 0.0, 0.0])
    positions = [start]
    for _ in expert._move(Waypoint(goal, 0.0, OPEN, speed_m_s=0.25)):
        positions.append(expert._tcp.copy())
    env.close()
    np.testing.assert_allclose(positions[-1], goal, atol=1e-9)  # it arrives, exactly
    speeds = np.linalg.norm(np.diff(positions, axis=0), axis=1) / env.control_dt_s
    assert speeds.max() <= 0.25 + 1e-9
    # Bounded acceleration (a held part stays in the fingers): ACCEL_M_S2, up to twice that
    # on the last step in, where the profile is sampled once per control period.
    assert np.abs(np.diff(speeds)).max() <= 2 * ACCEL_M_S2 * env.control_dt_s + 1e-9
    assert speeds[0] < 0.1


def test_the_speed_depends_on_where_the_tcp_is_not_on_when_it_started() -> None:
    # Moving A->C, or A->B then B->C along the same line, gives the same step lengths over the
    # far part of the path: a policy that only sees positions can tell the expert's speed.
    env = KizunaEnv("reach", cameras=())
    env.reset(seed=0)

    def path(stops: list[float]) -> np.ndarray:
        expert = ScriptedExpert(np.random.default_rng(0))
        expert.reset(env)
        origin, points = expert._tcp.copy(), []
        for x in stops:
            for _ in expert._move(Waypoint(origin + [x, 0, 0], 0.0, OPEN, speed_m_s=0.25)):
                points.append(expert._tcp[0] - origin[0])
        return np.array(points)

    direct = path([0.3])
    env.close()
    steps = np.diff(direct)
    speed_at = np.interp(0.2, direct[1:], steps)  # mid-segment: cruising
    assert speed_at == pytest.approx(0.25 * env.control_dt_s, rel=1e-6)


@pytest.mark.parametrize("backend", ["mujoco", "pybullet"])
def test_the_reach_target_stands_on_a_visible_post(backend: str) -> None:
    if backend == "pybullet":
        pytest.importorskip("pybullet")
    # The post shows the camera where the target meets the table: marker-coloured pixels
    # reach further down the front image than the ball alone would.
    env = KizunaEnv("reach", backend=backend, cameras=("front",), image_size=96)
    obs, _ = env.reset(seed=3)
    env.close()
    image = obs["images"]["front"].astype(int)
    green = (image[..., 1] > image[..., 0] + 40) & (image[..., 1] > image[..., 2] + 40)
    rows = np.flatnonzero(green.any(axis=1))
    assert len(rows) and rows.max() - rows.min() >= 6, rows
