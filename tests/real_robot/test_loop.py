"""The control loop drives the simulator through safety, executor, watchdog and e-stop."""

from __future__ import annotations

import numpy as np

from kizuna.robot import PANDA
from real_robot.runtime.loop import ControlLoop, LoopConfig, TimedObservation
from real_robot.runtime.sim_robot import SimRobot
from sim.env import KizunaEnv
from sim.expert import ScriptedExpert


class ExpertChunks:
    """Test-only Policy: the privileged scripted expert's next T actions as a chunk."""

    chunk_size, action_dim = 5, 8

    def __init__(self, env: KizunaEnv, seed: int) -> None:
        self.env, self.seed = env, seed

    def reset(self) -> None:
        self.expert = ScriptedExpert(np.random.default_rng(self.seed))
        self.expert.reset(self.env)

    def act(self, observation: dict) -> np.ndarray:
        return np.stack([self.expert.act() for _ in range(self.chunk_size)])


def _run(task: str, seed: int = 0) -> tuple[SimRobot, ControlLoop, list]:
    env = KizunaEnv(task, cameras=())
    robot = SimRobot(env)
    robot.reset(seed)
    loop = ControlLoop(
        robot, ExpertChunks(env, seed), (), LoopConfig(replan_every=5), threaded=False
    )
    reports = []
    while not robot.done:
        reports.append(loop.tick(robot.time_s))
    return robot, loop, reports


def test_the_runtime_drives_the_simulator_to_success() -> None:
    for task in ("reach", "pick_place"):
        robot, loop, reports = _run(task)
        assert robot.info["success"], task
        assert loop.inference_errors == 0
        assert not any(r.held for r in reports)


class FakeRobot:
    """A robot whose sensors can go silent."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.camera_stamp_s = 0.0
        self.commands: list[np.ndarray] = []
        self.state = np.concatenate([PANDA.home_q_rad, [1.0]]).astype(np.float32)

    def observe(self) -> TimedObservation:
        obs = {"state": self.state, "images": {}, "instruction": "x"}
        return TimedObservation(
            obs, {"joint_states": self.now_s, "camera/front": self.camera_stamp_s}
        )

    def command(self, action: np.ndarray) -> None:
        self.commands.append(np.array(action))


class Wave:
    """Test-only Policy: always asks to move joint 1 by +0.02 rad per step."""

    chunk_size, action_dim = 5, 8

    def __init__(self, robot: FakeRobot) -> None:
        self.robot = robot

    def reset(self) -> None:
        pass

    def act(self, observation: dict) -> np.ndarray:
        base = np.array(observation["state"], dtype=float)
        return np.stack([base + np.r_[0.02 * (i + 1), np.zeros(7)] for i in range(5)])


def _fake_loop() -> tuple[FakeRobot, ControlLoop]:
    robot = FakeRobot()
    loop = ControlLoop(
        robot, Wave(robot), ("front",), LoopConfig(image_max_age_s=0.3), threaded=False
    )
    return robot, loop


def test_estop_holds_within_one_period_and_stays_latched() -> None:
    robot, loop = _fake_loop()
    for _ in range(3):
        robot.now_s += 0.05
        robot.camera_stamp_s = robot.now_s
        loop.tick(robot.now_s)
    loop.estop.trigger("operator pressed the button")
    held = robot.commands[-1]
    for _ in range(10):
        robot.now_s += 0.05
        robot.camera_stamp_s = robot.now_s
        report = loop.tick(robot.now_s)
        assert report.held and report.reasons[0].startswith("estop")
        np.testing.assert_array_equal(robot.commands[-1], held)  # the very next command holds
    loop.estop.reset()
    robot.now_s += 0.05
    robot.camera_stamp_s = robot.now_s
    assert not loop.tick(robot.now_s).held


def test_a_stalled_camera_holds_then_recovers() -> None:
    robot, loop = _fake_loop()
    for _ in range(3):
        robot.now_s += 0.05
        robot.camera_stamp_s = robot.now_s
        loop.tick(robot.now_s)
    moving = robot.commands[-1].copy()
    held_reports = []
    for _ in range(10):  # the camera stops; joint states keep coming
        robot.now_s += 0.05
        held_reports.append(loop.tick(robot.now_s))
    assert any(r.held for r in held_reports)
    first_hold = next(i for i, r in enumerate(held_reports) if r.held)
    assert first_hold * 0.05 <= 0.3 + 0.05, "held within the watchdog threshold"
    assert "stale: camera/front" in held_reports[-1].reasons
    hold_cmd = robot.commands[-1]
    assert np.all(np.isfinite(hold_cmd)) and hold_cmd[0] >= moving[0]  # never zeros, never home
    robot.now_s += 0.05
    robot.camera_stamp_s = robot.now_s
    assert not loop.tick(robot.now_s).held


def test_a_crashing_policy_never_stops_the_loop() -> None:
    robot, loop = _fake_loop()

    def boom(observation: dict) -> np.ndarray:
        raise RuntimeError("model exploded")

    loop.policy.act = boom  # type: ignore[method-assign]
    for _ in range(5):
        robot.now_s += 0.05
        robot.camera_stamp_s = robot.now_s
        loop.tick(robot.now_s)
    assert loop.inference_errors >= 1
    assert len(robot.commands) == 5
    np.testing.assert_allclose(robot.commands[-1], robot.commands[0])  # holding still
