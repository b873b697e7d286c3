"""``KizunaEnv``: one Gymnasium environment for every task spec and both physics backends.

Observation (the contract shared with the robot): ``state`` (joint positions in rad, then the
gripper opening 0..1), ``images`` ({camera: HxWx3 uint8}) and ``instruction`` (str).
Action: absolute joint-position targets (rad) plus a gripper command 0..1, at ``control_hz``;
or, with ``action_mode="ee_delta"``, a bounded TCP displacement plus gripper, solved by IK.
"""

from __future__ import annotations

import string
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from kizuna.kinematics import forward_kinematics, solve_ik, tcp_down_pose
from kizuna.robot import PANDA, RobotDescription
from kizuna.task import TaskSpec, load_task
from sim.backends import make_backend
from sim.randomization import (
    EpisodeParams,
    RandomizationConfig,
    load_randomization,
    randomize,
)
from sim.reality import RealityProfile, apply_reality, load_reality
from sim.scene import CAMERAS, Layout, sample_layout
from sim.success import SceneState, is_success, reward_terms, steps_done, total_reward

EE_STEP_M = 0.03  # largest TCP move per control period in ee_delta mode
INSTRUCTION_MAX_CHARS = 256
# Instructions may be English or Japanese; the Text space must admit every character used.
_KANA = "".join(chr(c) for c in range(0x3040, 0x3100))
_BASE_CHARSET = string.printable + _KANA + "、。「」・ー！？"


def _as_spec(task: str | Path | TaskSpec) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else load_task(task)


def _as_randomization(
    value: bool | str | Path | RandomizationConfig,
) -> RandomizationConfig | None:
    if value is False or value is None:
        return None
    if value is True:
        return load_randomization("default")
    return value if isinstance(value, RandomizationConfig) else load_randomization(value)


def _as_reality(value: str | Path | RealityProfile | None) -> RealityProfile | None:
    if value is None or isinstance(value, RealityProfile):
        return value
    return load_reality(value)


class KizunaEnv(gym.Env):
    """A table-top manipulation cell defined by a task spec (see ``kizuna.task``)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str | Path | TaskSpec = "pick_place",
        backend: str | None = None,
        cameras: tuple[str, ...] | list[str] = ("front", "wrist"),
        image_size: int | tuple[int, int] = 96,
        randomization: bool | str | Path | RandomizationConfig = False,
        reality: str | Path | RealityProfile | None = None,
        action_mode: str = "joint",
        language: str = "en",
        render_mode: str | None = None,
        render_size: tuple[int, int] = (240, 320),
        terminate_on_success: bool = True,
        robot: RobotDescription = PANDA,
    ) -> None:
        self.spec_task = _as_spec(task)
        self.robot = robot
        self.randomization = _as_randomization(randomization)
        self.reality = _as_reality(reality)
        self.backend_name = backend or (self.reality.backend if self.reality else None) or "mujoco"
        unknown = [c for c in cameras if c not in CAMERAS]
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown}; available: {sorted(CAMERAS)}")
        if action_mode not in ("joint", "ee_delta"):
            raise ValueError(f"action_mode must be 'joint' or 'ee_delta', got {action_mode!r}")
        if language not in self.spec_task.instructions:
            raise ValueError(
                f"task {self.spec_task.name!r} has no {language!r} instructions; "
                f"it has {sorted(self.spec_task.instructions)}"
            )
        self.cameras = tuple(cameras)
        self.image_hw = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.action_mode = action_mode
        self.language = language
        self.render_mode = render_mode
        self.render_size = render_size
        self.terminate_on_success = terminate_on_success
        self.control_dt_s = 1.0 / self.spec_task.control_hz
        self.sim = make_backend(self.backend_name, self.spec_task, robot=robot)
        self.observation_space = self._make_observation_space()
        self.action_space = self._make_action_space()
        self.metadata = {**self.metadata, "render_fps": int(self.spec_task.control_hz)}
        self._steps = 0
        self._params = EpisodeParams()
        self._layout: Layout | None = None
        self._instruction = self.spec_task.instructions[language][0]
        self._pending: deque[tuple[np.ndarray, float]] = deque()
        self._q_target = np.array(robot.home_q_rad)
        self._ee_target = forward_kinematics(self._q_target, robot)

    # -- spaces ---------------------------------------------------------------------------
    def _make_observation_space(self) -> spaces.Dict:
        low = np.concatenate([self.robot.lower_rad, [0.0]]).astype(np.float32)
        high = np.concatenate([self.robot.upper_rad, [1.0]]).astype(np.float32)
        h, w = self.image_hw
        images = {c: spaces.Box(0, 255, (h, w, 3), np.uint8) for c in self.cameras}
        used = "".join(s for phr in self.spec_task.instructions.values() for s in phr)
        charset = "".join(sorted(set(_BASE_CHARSET + used)))
        obs = {
            "state": spaces.Box(low, high, dtype=np.float32),
            "images": spaces.Dict(images),
            "instruction": spaces.Text(INSTRUCTION_MAX_CHARS, min_length=1, charset=charset),
        }
        if not images:  # state-only (RL, speed): Gymnasium refuses an empty Dict space
            del obs["images"]
        return spaces.Dict(obs)

    def _make_action_space(self) -> spaces.Box:
        if self.action_mode == "ee_delta":
            return spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
        low = np.concatenate([self.robot.lower_rad, [0.0]]).astype(np.float32)
        high = np.concatenate([self.robot.upper_rad, [1.0]]).astype(np.float32)
        return spaces.Box(low, high, dtype=np.float32)

    # -- reset / step ---------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        rng = self.np_random
        self._layout = options.get("layout") or sample_layout(self.spec_task, rng)
        params = (
            randomize(self.spec_task, rng, self.randomization)
            if self.randomization
            else EpisodeParams()
        )
        if self.reality is not None:
            params = apply_reality(params, self.reality, self.spec_task)
        self._params = params
        phrasings = self.spec_task.instructions[self.language]
        self._instruction = (
            options.get("instruction") or phrasings[int(rng.integers(len(phrasings)))]
        )
        q_home = np.array(self.robot.home_q_rad)
        self.sim.reset(self._layout, q_home, 1.0, params.physics)
        self._q_target = q_home.copy()
        self._ee_target = forward_kinematics(q_home, self.robot)
        hold = (q_home.copy(), 1.0)
        self._pending = deque([hold] * params.sensors.action_latency_steps)
        self._steps = 0
        self._steps_done = steps_done(self.spec_task, self.scene_state())
        info = {"success": self._success(), "episode_params": params.as_dict()}
        return self._observation(), info

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        q_target, gripper = self._decode_action(np.asarray(action, dtype=np.float64))
        self._pending.append((q_target, gripper))
        q_exec, grip_exec = self._pending.popleft()
        sensors = self._params.sensors
        if sensors.action_noise_rad > 0:
            q_exec = q_exec + self.np_random.normal(0.0, sensors.action_noise_rad, q_exec.shape)
        if sensors.joint_offset_rad:
            # Miscalibrated encoders: the arm's true angle is the commanded one minus the offset.
            q_exec = q_exec - np.array(sensors.joint_offset_rad)
        self.sim.step(np.clip(q_exec, self.robot.lower_rad, self.robot.upper_rad), grip_exec)
        self._steps += 1
        state = self.scene_state()
        self._steps_done = steps_done(self.spec_task, state, self._steps_done)
        terms = reward_terms(self.spec_task, state, self._steps_done)
        success = terms["success"] > 0
        terminated = bool(success and self.terminate_on_success)
        truncated = self._steps >= self.spec_task.episode_steps
        info = {
            "success": success,
            "is_success": success,
            "reward_terms": terms,
            "arm_contacts": state.arm_contacts,
            "tcp_pos_m": state.tcp_pos_m,
            "steps_done": self._steps_done,  # ordered steps of the task completed so far
        }
        return self._observation(), total_reward(terms), terminated, truncated, info

    def _decode_action(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        if action.shape != self.action_space.shape:
            raise ValueError(f"action shape {action.shape}, expected {self.action_space.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action has NaN/inf: {action}")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        if self.action_mode == "joint":
            self._q_target = action[:-1].copy()
            return self._q_target, float(action[-1])
        self._ee_target[:3, 3] += action[:3] * EE_STEP_M
        self._ee_target[:3, 3] = np.clip(self._ee_target[:3, 3], [0.2, -0.5, 0.0], [0.8, 0.5, 0.6])
        yaw = float(np.arctan2(self._ee_target[1, 0], self._ee_target[0, 0]))
        target = tcp_down_pose(self._ee_target[:3, 3], yaw)
        self._q_target, _ = solve_ik(target, self._q_target, self.robot, iterations=15)
        return self._q_target, float((action[3] + 1.0) / 2.0)

    # -- observation ----------------------------------------------------------------------
    def _observation(self) -> dict[str, Any]:
        sensors = self._params.sensors
        q = self.sim.joint_positions().copy()
        if sensors.joint_offset_rad:
            q += np.array(sensors.joint_offset_rad)
        if sensors.obs_noise_rad > 0:
            q += self.np_random.normal(0.0, sensors.obs_noise_rad, q.shape)
        state = np.concatenate([q, [self.sim.gripper_opening()]]).astype(np.float32)
        space = self.observation_space["state"]
        images = {}
        for cam in self.cameras:
            img = self.sim.render(cam, self.image_hw[1], self.image_hw[0])
            if sensors.image_noise_std > 0:
                noise = self.np_random.normal(0.0, sensors.image_noise_std, img.shape)
                img = np.clip(img + noise, 0, 255).astype(np.uint8)
            images[cam] = img
        obs = {"state": np.clip(state, space.low, space.high), "instruction": self._instruction}
        if self.cameras:
            obs["images"] = images
        return obs

    def scene_state(self) -> SceneState:
        """Privileged ground truth (for experts, rewards and tests; never for the policy)."""
        assert self._layout is not None, "call reset() first"
        objects = {o.name: self.sim.object_pose(o.name) for o in self.spec_task.objects}
        return SceneState(
            tcp_pos_m=self.sim.tcp_pose()[:3, 3].copy(),
            gripper_opening=self.sim.gripper_opening(),
            object_pos_m={n: pose[0] for n, pose in objects.items()},
            object_quat_wxyz={n: pose[1] for n, pose in objects.items()},
            fixture_pos_m={f: self.sim.fixture_position(f) for f in self.spec_task.fixture_names},
            fixture_yaw_rad={n: p.yaw_rad for n, p in self._layout.fixtures.items()},
            arm_contacts=self.sim.arm_contacts(),
        )

    def _success(self) -> bool:
        return is_success(self.spec_task, self.scene_state(), self._steps_done)

    @property
    def instruction(self) -> str:
        return self._instruction

    @property
    def episode_params(self) -> EpisodeParams:
        return self._params

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        h, w = self.render_size
        return self.sim.render("front", w, h)

    def close(self) -> None:
        self.sim.close()
