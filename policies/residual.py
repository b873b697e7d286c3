"""Residual RL: a small, bounded correction learned on top of a frozen base policy (the VLA).

Each control step the frozen base proposes ``a_base`` (absolute joint targets + gripper, from its
chunks, re-queried every ``replan_every`` steps). The RL agent outputs ``r`` in ``[-1, 1]^8`` and
the arm executes ``clip(a_base + scale * r)``: whatever the agent does, it moves the command by at
most ``scale`` (0.05 rad per joint, 0.2 of the gripper by default) away from the base's.

The agent sees only what a real robot has: the measured joint state, the base action, the base's
next row and how far into its chunk the base is (``OBSERVATION_LAYOUT``), never sim ground truth.

Deployment: ``ResidualPolicy`` (base + actor) behind the ``Policy`` interface, chunks of one row.
Checkpoint (``"type": "kizuna_residual"``): ``config.json`` (base checkpoint path, scale, algo,
actor shape) + ``model.safetensors`` (the actor MLP only, plain torch; no SB3 needed to run it).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from kizuna import __version__
from kizuna.robot import PANDA
from policies.base import Observation, Policy, load_policy
from policies.rl_policy import _check_tensors

CHECKPOINT_TYPE = "kizuna_residual"
FORMAT_VERSION = 1
ACTION_DIM = 8  # 7 joint targets + gripper
OBS_BOUND = 10.0  # radians and 0..1 values lie well inside; finite for SB3 and the env checker
OBSERVATION_LAYOUT: list[tuple[str, int]] = [
    ("joint_state", ACTION_DIM),
    ("base_action", ACTION_DIM),
    ("base_next_action", ACTION_DIM),
    ("chunk_progress", 1),
]
OBS_DIM = sum(size for _, size in OBSERVATION_LAYOUT)
# The robot's command bounds (the joint-mode action space of sim.env.KizunaEnv).
ACTION_LOW = np.array([*PANDA.lower_rad, 0.0], np.float32)
ACTION_HIGH = np.array([*PANDA.upper_rad, 1.0], np.float32)


@dataclass(frozen=True)
class ResidualScale:
    """Largest change the residual may make to the base command, per step."""

    joints_rad: float = 0.05
    gripper: float = 0.2

    def vector(self) -> np.ndarray:
        if self.joints_rad < 0 or self.gripper < 0:
            raise ValueError(f"residual scale must be >= 0, got {self}")
        return np.array([self.joints_rad] * (ACTION_DIM - 1) + [self.gripper], np.float64)


# ---- the bounded action (pure functions) -----------------------------------------------------


def sanitize_residual(r: np.ndarray) -> np.ndarray:
    """The agent's output as a finite vector in [-1, 1]: NaN -> 0, +-inf and beyond -> +-1."""
    r = np.nan_to_num(np.asarray(r, np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(r, -1.0, 1.0)


def residual_command(a_base: np.ndarray, r: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``a_base + scale * r`` before any clipping; ``|result - a_base| <= scale`` always."""
    return np.asarray(a_base, np.float64) + scale * sanitize_residual(r)


def executed_action(
    a_base: np.ndarray,
    r: np.ndarray,
    scale: np.ndarray,
    low: np.ndarray = ACTION_LOW,
    high: np.ndarray = ACTION_HIGH,
) -> np.ndarray:
    """The command sent to the arm: the residual command clipped to the action space."""
    return np.clip(residual_command(a_base, r, scale), low, high).astype(np.float32)


def residual_observation(
    state: np.ndarray, a_base: np.ndarray, a_next: np.ndarray, progress: float
) -> np.ndarray:
    """The agent's flat observation, laid out as ``OBSERVATION_LAYOUT``."""
    parts = [np.asarray(state, np.float32), a_base, a_next, [progress]]
    vector = np.concatenate([np.asarray(p, np.float32).ravel() for p in parts])
    return np.clip(vector, -OBS_BOUND, OBS_BOUND).astype(np.float32)


def observation_space() -> spaces.Box:
    return spaces.Box(-OBS_BOUND, OBS_BOUND, (OBS_DIM,), dtype=np.float32)


# ---- the frozen base, step by step -----------------------------------------------------------


class BasePlanner:
    """The base policy's action for each control step: plays its chunks, re-queries it every
    ``replan_every`` steps (default: its chunk size) and holds the measured joints where it
    returns a non-finite row (as ``policies.rollout`` does)."""

    def __init__(self, base: Policy, replan_every: int | None = None) -> None:
        if int(base.action_dim) != ACTION_DIM:
            raise ValueError(
                f"the base policy acts in {base.action_dim}-D; residual RL needs a joint-space "
                f"policy with {ACTION_DIM}-D actions (a kizuna_vla checkpoint)"
            )
        cadence = replan_every or int(base.chunk_size)
        if not 1 <= cadence <= int(base.chunk_size):
            raise ValueError(
                f"replan_every={replan_every}: must be 1..{base.chunk_size}, the base's chunk size"
            )
        self.base = base
        self.cadence = cadence
        self.calls = 0
        self._chunk: np.ndarray | None = None
        self._index = 0

    def reset(self) -> None:
        self.base.reset()
        self._chunk = None
        self._index = 0

    def propose(self, observation: Observation) -> tuple[np.ndarray, np.ndarray, float]:
        """(base action for this step, the base's row for the next step, chunk progress 0..1)."""
        if self._chunk is None or self._index >= min(self.cadence, len(self._chunk)):
            self._chunk = self._query(observation)
            self._index = 0
        hold = np.asarray(observation["state"], np.float32)
        row = _finite_or(self._chunk[self._index], hold)
        following = _finite_or(self._chunk[min(self._index + 1, len(self._chunk) - 1)], row)
        progress = self._index / self.cadence
        self._index += 1
        return row, following, progress

    def _query(self, observation: Observation) -> np.ndarray:
        chunk = np.asarray(self.base.act(observation), np.float32)
        self.calls += 1
        if chunk.ndim != 2 or chunk.shape[0] < 1 or chunk.shape[1] != ACTION_DIM:
            raise ValueError(
                f"{type(self.base).__name__}.act returned shape {chunk.shape}; expected "
                f"[T >= 1, {ACTION_DIM}]"
            )
        return chunk


def _finite_or(row: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return row if np.all(np.isfinite(row)) else fallback


# ---- the training env --------------------------------------------------------------------------


class ResidualEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A joint-mode ``KizunaEnv`` (with the base's cameras) as the residual agent sees it.

    Action: ``r`` in ``[-1, 1]^8``. Observation: ``residual_observation`` (a flat Box).
    Reward: the env's reward (its named terms times ``sim.success.REWARD_SCALES``) minus
    ``residual_penalty * |r|^2``, so the residual stays near 0 where the base is right;
    ``info["reward_terms"]["residual"]`` holds ``-|r|^2``, ``info["base_action"]`` and
    ``info["executed_action"]`` what was proposed and done.
    """

    def __init__(
        self,
        env: gym.Env,
        base: Policy,
        scale: ResidualScale = ResidualScale(),
        replan_every: int | None = None,
        residual_penalty: float = 0.01,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            base=base,
            scale=scale,
            replan_every=replan_every,
            residual_penalty=residual_penalty,
        )
        gym.Wrapper.__init__(self, env)
        mode = getattr(env.unwrapped, "action_mode", "joint")
        if mode != "joint":
            raise ValueError(f"residual RL needs an env with action_mode='joint', got {mode!r}")
        self.planner = BasePlanner(base, replan_every)
        self.scale = scale.vector()
        self.residual_penalty = float(residual_penalty)
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
        self.observation_space = observation_space()
        self._state = np.zeros(ACTION_DIM, np.float32)
        self._proposal: tuple[np.ndarray, np.ndarray, float] | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.planner.reset()
        return self._observe(obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        assert self._proposal is not None, "call reset() first"
        a_base = self._proposal[0]
        r = sanitize_residual(action)
        low, high = self.env.action_space.low, self.env.action_space.high
        command = executed_action(a_base, r, self.scale, low, high)
        obs, reward, terminated, truncated, info = self.env.step(command)
        r_squared = float(np.sum(r**2))
        terms = {**info.get("reward_terms", {}), "residual": -r_squared}
        info = {**info, "reward_terms": terms, "base_action": a_base, "executed_action": command}
        reward = float(reward) - self.residual_penalty * r_squared
        # After the episode ends the base is not asked again (a query costs a forward pass).
        vector = self._vector() if terminated or truncated else self._observe(obs)
        return vector, reward, terminated, truncated, info

    def _observe(self, obs: Observation) -> np.ndarray:
        self._state = np.asarray(obs["state"], np.float32)
        self._proposal = self.planner.propose(obs)
        return self._vector()

    def _vector(self) -> np.ndarray:
        assert self._proposal is not None
        return residual_observation(self._state, *self._proposal)


# ---- the actor: exported from SB3, rebuilt in plain torch ------------------------------------


class ResidualActor(nn.Module):
    """The deterministic actor of an SB3 MlpPolicy: ``body`` (Linear + activation per hidden
    layer), ``mean`` (Linear), then tanh (SAC's squashed Gaussian) or a clip to [-1, 1] (PPO)."""

    def __init__(
        self, obs_dim: int, hidden: tuple[int, ...], activation: str, squash: bool
    ) -> None:
        super().__init__()
        if not hasattr(nn, activation):
            raise ValueError(f"activation {activation!r} is not a torch.nn class")
        layers: list[nn.Module] = []
        width = obs_dim
        for size in hidden:
            layers += [nn.Linear(width, size), getattr(nn, activation)()]
            width = size
        self.body = nn.Sequential(*layers)
        self.mean = nn.Linear(width, ACTION_DIM)
        self.squash = squash
        self.spec = {
            "obs_dim": obs_dim,
            "hidden": list(hidden),
            "activation": activation,
            "squash": squash,
        }

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self.mean(self.body(obs))
        return torch.tanh(mean) if self.squash else mean.clamp(-1.0, 1.0)

    def act(self, vector: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self(torch.from_numpy(np.asarray(vector, np.float32))[None])
        return out[0].numpy()


def export_actor(model: Any) -> ResidualActor:
    """Copy a trained SB3 SAC or PPO model's deterministic actor into a ``ResidualActor``."""
    algo = type(model).__name__.lower()
    policy = model.policy
    if algo == "sac":
        if policy.actor.use_sde:
            raise ValueError("cannot export a SAC actor trained with use_sde=True")
        body, mean, squash = policy.actor.latent_pi, policy.actor.mu, True
    elif algo == "ppo":
        body, mean, squash = policy.mlp_extractor.policy_net, policy.action_net, False
    else:
        raise ValueError(f"cannot export a {type(model).__name__} actor; supported: SAC, PPO")
    if not isinstance(mean, nn.Linear):
        raise ValueError(f"{algo} actor head is {type(mean).__name__}, expected nn.Linear")
    hidden = tuple(m.out_features for m in body if isinstance(m, nn.Linear))
    activations = {type(m).__name__ for m in body if not isinstance(m, nn.Linear)}
    activation = activations.pop() if len(activations) == 1 else "ReLU"
    obs_dim = int(model.observation_space.shape[0])
    actor = ResidualActor(obs_dim, hidden, activation, squash)
    actor.body.load_state_dict(body.state_dict(), strict=True)
    actor.mean.load_state_dict(mean.state_dict(), strict=True)
    return actor.eval()


def load_actor(spec: dict[str, Any], weights: Path) -> ResidualActor:
    """Rebuild the actor from ``config.json``'s ``actor`` and load its safetensors strictly."""
    from safetensors.torch import load_file

    if not weights.is_file():
        raise FileNotFoundError(f"{weights.parent}: no {weights.name} next to config.json")
    try:
        actor = ResidualActor(
            int(spec["obs_dim"]),
            tuple(int(h) for h in spec["hidden"]),
            str(spec["activation"]),
            bool(spec["squash"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{weights.parent / 'config.json'}: field 'actor': {exc!r}") from None
    tensors = load_file(str(weights))
    _check_tensors(actor, tensors, weights)
    actor.load_state_dict(tensors, strict=True)
    return actor.eval()


# ---- deployment: base + residual behind the Policy interface ---------------------------------


def policy_cameras(policy: Policy) -> tuple[str, ...]:
    """The cameras a policy reads (a VLA checkpoint says in its model config)."""
    cameras = getattr(policy, "cameras", None)
    if cameras is None:
        config = getattr(getattr(policy, "checkpoint", None), "config", None)
        cameras = getattr(config, "cameras", ("front", "wrist"))
    return tuple(cameras)


class ResidualPolicy:
    """The frozen base plus the residual actor, as one ``Policy``.

    The residual is per step, so ``act`` returns a chunk of one row (``chunk_size = 1``) and is
    called every control period; the base's chunks are queued inside (``BasePlanner``), so the
    base model still runs only every ``replan_every`` steps: those calls take its inference time.
    """

    chunk_size = 1
    action_dim = ACTION_DIM
    action_mode = "joint"

    def __init__(
        self,
        base: Policy,
        actor: ResidualActor,
        scale: ResidualScale,
        replan_every: int | None = None,
        image_size: int | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.base = base
        self.actor = actor
        self.scale = scale.vector()
        self.planner = BasePlanner(base, replan_every)
        self.cameras = policy_cameras(base)
        if image_size is not None:
            self.image_size = int(image_size)  # what training rendered; the base resizes anyway
        self.config = config or {}

    def reset(self) -> None:
        self.planner.reset()

    def act(self, observation: Observation) -> np.ndarray:
        a_base, a_next, progress = self.planner.propose(observation)
        vector = residual_observation(observation["state"], a_base, a_next, progress)
        return executed_action(a_base, self.actor.act(vector), self.scale)[None]


# ---- checkpoints -----------------------------------------------------------------------------


def config_hash(checkpoint: str | Path) -> str | None:
    """Content hash of a checkpoint's config.json: which base the residual was trained on."""
    config = Path(checkpoint) / "config.json"
    return hashlib.sha256(config.read_bytes()).hexdigest()[:16] if config.is_file() else None


def save_residual_checkpoint(
    path: str | Path,
    actor: ResidualActor,
    base_checkpoint: str | Path,
    scale: ResidualScale,
    algo: str,
    replan_every: int | None = None,
    image_size: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (the actor). The base path is stored
    relative to ``path`` so the two directories can move together."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    base = Path(base_checkpoint)
    config = {
        "type": CHECKPOINT_TYPE,
        "format_version": FORMAT_VERSION,
        "kizuna_version": __version__,
        "algo": algo,
        "base_checkpoint": os.path.relpath(base.resolve(), path.resolve()),
        "base_config_hash": config_hash(base),
        "residual_scale": asdict(scale),
        "replan_every": replan_every,
        "image_size": image_size,
        "action_dim": ACTION_DIM,
        "observation": {"dim": OBS_DIM, "layout": OBSERVATION_LAYOUT},
        "actor": actor.spec,
        "normalization": None,  # the actor reads raw radians and 0..1 values
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in actor.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path


def _base_path(path: Path, config: dict[str, Any]) -> Path:
    if "base_checkpoint" not in config:
        raise ValueError(f"{path / 'config.json'}: field 'base_checkpoint' is missing")
    base = Path(config["base_checkpoint"])
    base = base if base.is_absolute() else path / base
    if not (base / "config.json").is_file():
        raise FileNotFoundError(
            f"{path / 'config.json'}: field 'base_checkpoint' points to {base}, which holds no "
            "checkpoint; put the base next to where it was at training time or edit the field"
        )
    expected = config.get("base_config_hash")
    if expected and config_hash(base) != expected:
        raise ValueError(
            f"{path / 'config.json'}: the base checkpoint at {base} is not the one this residual "
            "was trained on (its config.json hash differs); retrain the residual on it"
        )
    return base


def load_residual_policy(path: str | Path, **options: Any) -> ResidualPolicy:
    """``load_policy`` entry for ``"type": "kizuna_residual"``; ``options`` go to the base."""
    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    base = load_policy(_base_path(path, config), **options)
    actor = load_actor(config.get("actor", {}), path / "model.safetensors")
    scale = ResidualScale(**config.get("residual_scale", {}))
    return ResidualPolicy(
        base, actor, scale, config.get("replan_every"), config.get("image_size"), config
    )
