"""One policy episode in an env: chunked execution, replanning, temporal ensembling, safety.

``run_episode`` is the single place where a ``Policy`` meets a simulated cell, for evaluation,
RL reports and tests. It never crashes on what a policy returns at run time: non-finite rows
become "hold where you are", rows outside the action space are clipped, and both are counted as
safety events next to arm contacts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from policies.base import Policy

# Tolerance for "outside the action space": the bounds are float32, a row exactly on a limit is
# legal and float round-off must not count as an event.
LIMIT_TOLERANCE = 1e-6


@dataclass
class EpisodeResult:
    """What happened in one episode (times in control steps and seconds)."""

    seed: int
    instruction: str = ""
    success: bool = False
    steps: int = 0
    steps_to_success: int | None = None
    time_to_success_s: float | None = None
    episode_return: float = 0.0
    policy_calls: int = 0
    arm_contact_steps: int = 0
    limit_clamps: int = 0
    nonfinite_actions: int = 0
    frames: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def safety_events(self) -> int:
        return self.arm_contact_steps + self.limit_clamps + self.nonfinite_actions

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record (no frames)."""
        return {
            "seed": self.seed,
            "success": self.success,
            "steps": self.steps,
            "steps_to_success": self.steps_to_success,
            "time_to_success_s": self.time_to_success_s,
            "return": round(self.episode_return, 4),
            "policy_calls": self.policy_calls,
            "safety": {
                "arm_contact_steps": self.arm_contact_steps,
                "limit_clamps": self.limit_clamps,
                "nonfinite_actions": self.nonfinite_actions,
            },
        }


class ChunkExecutor:
    """Turns policy chunks into one action per control step.

    Without ensembling the newest chunk is played row by row. With ``ensemble`` (ACT's temporal
    ensembling) every live chunk that covers the current step votes with weight
    ``exp(-ensemble_k * i)``, ``i = 0`` for the oldest prediction, so older (already committed)
    plans dominate and the motion stays smooth.
    """

    def __init__(self, ensemble: bool, ensemble_k: float) -> None:
        self.ensemble = ensemble
        self.ensemble_k = ensemble_k
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (step it was queried at, rows)

    def add(self, step: int, chunk: np.ndarray) -> None:
        if not self.ensemble:
            self._chunks.clear()
        self._chunks.append((step, chunk))

    def exhausted(self, step: int) -> bool:
        """No chunk has a row for ``step`` (time to query regardless of the cadence)."""
        return not any(step - start < len(rows) for start, rows in self._chunks)

    def candidates(self, step: int) -> list[np.ndarray]:
        """Rows proposed for ``step``, oldest chunk first; drops chunks that have run out."""
        while self._chunks and step - self._chunks[0][0] >= len(self._chunks[0][1]):
            self._chunks.popleft()
        return [rows[step - start] for start, rows in self._chunks if step - start < len(rows)]

    def action(self, step: int) -> tuple[np.ndarray | None, bool]:
        """The action for ``step`` (``None``: nothing finite to play) and whether any proposed
        row was non-finite."""
        rows = self.candidates(step)
        finite = [r for r in rows if np.all(np.isfinite(r))]
        nonfinite = len(finite) < len(rows)
        if not finite:
            return None, nonfinite
        if not self.ensemble or len(finite) == 1:
            return finite[-1], nonfinite
        weights = np.exp(-self.ensemble_k * np.arange(len(finite)))
        return np.average(np.stack(finite), axis=0, weights=weights), nonfinite


def hold_action(env: gym.Env, observation: dict[str, Any]) -> np.ndarray:
    """The action that keeps the arm where it is now (never zeros, never "home")."""
    state = np.asarray(observation["state"], dtype=np.float32)
    if getattr(env.unwrapped, "action_mode", "joint") == "ee_delta":
        # No TCP motion; the gripper command maps [-1, 1] onto opening 0..1.
        return np.array([0.0, 0.0, 0.0, 2.0 * state[-1] - 1.0], dtype=np.float32)
    return state.copy()  # the measured joints + gripper: commanding them holds still


def _check_chunk(chunk: np.ndarray, policy: Policy, action_dim: int) -> np.ndarray:
    chunk = np.asarray(chunk, dtype=np.float32)
    if chunk.ndim != 2 or chunk.shape[0] < 1 or chunk.shape[1] != action_dim:
        raise ValueError(
            f"{type(policy).__name__}.act returned shape {chunk.shape}; expected "
            f"[T >= 1, {action_dim}] (the env's action space)"
        )
    return chunk


def _check_cadence(policy: Policy, replan_every: int | None, ensemble: bool) -> int:
    if replan_every is None:
        # ACT queries every step when ensembling; otherwise play whole chunks.
        return 1 if ensemble else int(policy.chunk_size)
    if not 1 <= replan_every <= policy.chunk_size:
        raise ValueError(
            f"replan_every={replan_every}: must be 1..chunk_size ({policy.chunk_size}); "
            "a policy cannot be played past the end of its chunk"
        )
    return replan_every


def _check_action_dim(env: gym.Env, policy: Policy) -> int:
    action_dim = int(env.action_space.shape[0])
    if int(policy.action_dim) != action_dim:
        mode = getattr(policy, "action_mode", "joint")
        raise ValueError(
            f"{type(policy).__name__} acts in {policy.action_dim}-D (action_mode {mode!r}) but "
            f"the env takes {action_dim}-D actions; build the env with action_mode={mode!r}"
        )
    return action_dim


def run_episode(
    env: gym.Env,
    policy: Policy,
    seed: int,
    replan_every: int | None = None,
    record_video: bool = False,
    max_steps: int | None = None,
    ensemble: bool = False,
    ensemble_k: float = 0.01,
) -> EpisodeResult:
    """Reset ``env`` (with ``seed``) and ``policy``, then run until success, timeout or
    ``max_steps``.

    The policy is queried every ``replan_every`` control steps (default: its chunk size; 1 with
    ``ensemble``) and whenever its chunk has run out. ``record_video`` grabs ``env.render()``
    (the env needs ``render_mode="rgb_array"``) after reset and after every step.
    """
    action_dim = _check_action_dim(env, policy)
    cadence = _check_cadence(policy, replan_every, ensemble)
    unwrapped = env.unwrapped
    dt_s = float(getattr(unwrapped, "control_dt_s", 1.0))
    limit = max_steps or unwrapped.spec_task.episode_steps
    if record_video and getattr(env, "render_mode", None) != "rgb_array":
        raise ValueError("record_video needs an env built with render_mode='rgb_array'")

    obs, _ = env.reset(seed=seed)
    policy.reset()
    executor = ChunkExecutor(ensemble, ensemble_k)
    result = EpisodeResult(seed=seed, instruction=str(obs["instruction"]))
    if record_video:
        result.frames.append(env.render())
    last_query = -cadence
    for step in range(limit):
        if step - last_query >= cadence or executor.exhausted(step):
            executor.add(step, _check_chunk(policy.act(obs), policy, action_dim))
            result.policy_calls += 1
            last_query = step
        action = _safe_action(executor, step, env, obs, result)
        obs, reward, terminated, truncated, info = env.step(action)
        _note_step(result, step, float(reward), info, dt_s)
        if record_video:
            result.frames.append(env.render())
        if terminated or truncated:
            break
    return result


def _safe_action(
    executor: ChunkExecutor, step: int, env: gym.Env, obs: dict[str, Any], result: EpisodeResult
) -> np.ndarray:
    """The step's action, finite and inside the action space; counts what had to be fixed."""
    action, nonfinite = executor.action(step)
    result.nonfinite_actions += nonfinite
    if action is None:
        action = hold_action(env, obs)
    low, high = env.action_space.low, env.action_space.high
    if np.any(action < low - LIMIT_TOLERANCE) or np.any(action > high + LIMIT_TOLERANCE):
        result.limit_clamps += 1
    # Clip here as well as in the env: the limits hold whatever env this runs in.
    return np.clip(action, low, high).astype(np.float32)


def _note_step(
    result: EpisodeResult, step: int, reward: float, info: dict[str, Any], dt_s: float
) -> None:
    result.steps = step + 1
    result.episode_return += reward
    result.arm_contact_steps += int(info.get("arm_contacts", 0) > 0)
    if info.get("success") and not result.success:
        result.success = True
        result.steps_to_success = step + 1
        result.time_to_success_s = round((step + 1) * dt_s, 4)
