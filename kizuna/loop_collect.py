"""Episodes on the stand-in "real" cell, with an operator who takes over (HG-DAgger style).

The "real" robot is the simulator under a reality profile the policy never trained on. The
policy drives; a watching operator takes over when it stalls or runs late, and finishes the
task with the scripted expert (the stand-in for a person with a teleop device, who sees the
real scene). Every frame records what the robot saw, what it executed and whether the
operator was in control (``intervention``); the episode's label is the task's success. The
episodes are written with provenance ``real``, as ``kizuna ingest`` writes a real robot's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kizuna.dataset import DatasetWriter, Provenance
from kizuna.dataset.format import default_action_names, default_state_names
from kizuna.robot import PANDA


@dataclass(frozen=True)
class OperatorConfig:
    """When the stand-in operator takes over (``kind: none`` never does)."""

    kind: str = "expert"  # expert | none
    stall_steps: int = 20  # the TCP moved less than stall_m over this many steps: take over
    stall_m: float = 0.01
    # ... or no success by this fraction of the episode. At 0.45 the operator took over 20 of
    # 20 `medium` episodes while the policy alone succeeded in 64 %: it finishes pick_place
    # at 100-130 of 160 steps, so the data held none of its own successes.
    takeover_fraction: float = 0.85
    extra_steps: int = 160  # steps the operator may add to finish the task


@dataclass
class CollectedEpisode:
    states: np.ndarray
    actions: np.ndarray
    interventions: np.ndarray
    images: dict[str, np.ndarray]
    instruction: str
    success: bool
    seed: int
    took_over_at: int | None


class Operator:
    """Decides when to take over; then acts with the scripted expert."""

    def __init__(self, cfg: OperatorConfig, episode_steps: int, seed: int) -> None:
        self.cfg = cfg
        self.deadline = int(cfg.takeover_fraction * episode_steps)
        self.rng = np.random.default_rng(seed)
        self.tcp: deque[np.ndarray] = deque(maxlen=cfg.stall_steps + 1)
        self.expert: Any = None

    @property
    def in_control(self) -> bool:
        return self.expert is not None

    def watch(self, env: Any, step: int) -> None:
        """Look at the scene; take over when the policy stalls or runs out of time."""
        if self.cfg.kind == "none" or self.in_control:
            return
        self.tcp.append(env.scene_state().tcp_pos_m.copy())
        stalled = (
            len(self.tcp) == self.tcp.maxlen
            and np.linalg.norm(self.tcp[-1] - self.tcp[0]) < self.cfg.stall_m
        )
        if stalled or step >= self.deadline:
            from sim.expert import ScriptedExpert

            self.expert = ScriptedExpert(self.rng)
            self.expert.reset(env)  # plans from the scene as it is now

    def act(self) -> np.ndarray:
        return self.expert.act()


def collect_episode(
    env: Any, policy: Any, seed: int, operator_cfg: OperatorConfig, base_steps: int
) -> CollectedEpisode:
    """One episode: the policy acts chunk by chunk until the operator (maybe) takes over."""
    from policies.rollout import ChunkExecutor, hold_action

    obs, _ = env.reset(seed=seed)
    policy.reset()
    operator = Operator(operator_cfg, base_steps, seed)
    executor = ChunkExecutor(ensemble=False, ensemble_k=0.0)
    cameras = sorted(obs.get("images", {}))
    states, actions, flags = [], [], []
    images: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    took_over_at, success, last_query = None, False, -(10**9)
    for step in range(env.unwrapped.spec_task.episode_steps):  # the task's, + operator's
        operator.watch(env.unwrapped, step)
        if operator.in_control:
            took_over_at = step if took_over_at is None else took_over_at
            action = operator.act()
        else:
            if step - last_query >= policy.chunk_size or executor.exhausted(step):
                executor.add(step, np.asarray(policy.act(obs), np.float32))
                last_query = step
            action, _ = executor.action(step)
            action = hold_action(env, obs) if action is None else action
        states.append(np.asarray(obs["state"], np.float32))
        actions.append(np.asarray(action, np.float32))
        flags.append(operator.in_control)
        for camera in cameras:
            images[camera].append(obs["images"][camera])
        obs, _, terminated, truncated, info = env.step(action)
        success = bool(info["success"])
        if terminated or truncated:
            break
    return CollectedEpisode(
        states=np.stack(states),
        actions=np.stack(actions),
        interventions=np.array(flags, np.uint8),
        images={c: np.stack(v) for c, v in images.items()},
        instruction=str(obs["instruction"]),
        success=success,
        seed=seed,
        took_over_at=took_over_at,
    )


def collect(
    policy: Any,
    task: str,
    reality: str | None,
    episodes: int,
    out: Path,
    operator_cfg: OperatorConfig,
    first_seed: int,
    policy_version: str,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """``episodes`` operator-watched episodes on the "real" cell into a new dataset ``out``."""
    from tqdm import tqdm

    from kizuna.task import load_task
    from sim.env import KizunaEnv

    spec = load_task(task)
    # Room for the operator to finish: the env's time limit covers the steps it may add.
    extra = operator_cfg.extra_steps if operator_cfg.kind != "none" else 0
    long_spec = spec.model_copy(update={"episode_steps": spec.episode_steps + extra})
    cameras = tuple(getattr(policy, "cameras", ("front", "wrist")))
    size = int(getattr(policy, "image_size", 96))
    env = KizunaEnv(long_spec, cameras=cameras, image_size=size, reality=reality)
    writer = DatasetWriter(
        out,
        fps=int(spec.control_hz),
        robot_id=PANDA.robot_id,
        cameras={c: (size, size) for c in cameras},
        state_names=default_state_names(),
        action_names=default_action_names(),
    )
    rows = []
    bar = tqdm(
        range(episodes), desc=f"real episodes on {reality}", unit="ep", disable=not progress
    )
    try:
        for k in bar:
            seed = first_seed + k
            episode = collect_episode(env, policy, seed, operator_cfg, spec.episode_steps)
            provenance = Provenance(
                source="real",
                backend=f"stand-in:{env.backend_name}",
                task_name=spec.name,
                task_spec_hash=spec.spec_hash(),
                robot_id=PANDA.robot_id,
                reality_profile=reality,
                policy_version=policy_version,
                seed=seed,
            )
            writer.add_episode(
                episode.states,
                episode.actions,
                episode.images,
                episode.instruction,
                provenance,
                episode.success,
                interventions=episode.interventions,
            )
            rows.append(
                {
                    "seed": seed,
                    "success": episode.success,
                    "frames": len(episode.states),
                    "took_over_at": episode.took_over_at,
                }
            )
            taken = sum(r["took_over_at"] is not None for r in rows)
            bar.set_postfix(success=sum(r["success"] for r in rows), takeovers=taken)
    finally:
        writer.close()
        env.close()
    return rows
