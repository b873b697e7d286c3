"""State-based RL policies: the privileged observation, and SB3 checkpoints without pickle.

RL baselines learn from the simulator's ground truth (``KizunaEnv.scene_state()``), not from
cameras: they are a reference for what a task's reward can teach, and a sim-only policy. They
act in ``action_mode="ee_delta"`` (``[dx, dy, dz, gripper]`` in [-1, 1], 4-D): the returned
``Policy`` says so in ``action_mode`` and ``policies.evaluate`` builds its env accordingly. Such
a policy cannot drive the real arm (it needs privileged state), so it never converts to joints.

Checkpoint (Contract 5, no pickle): ``config.json`` (``"type": "sb3_state"``, the algorithm,
the task, the observation layout, the network's constructor arguments, the SB3 hyperparameters)
and ``model.safetensors`` (the SB3 policy network's ``state_dict()``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from kizuna import __version__
from kizuna.task import TaskSpec

CHECKPOINT_TYPE = "sb3_state"
FORMAT_VERSION = 1
PRIVILEGED_KEY = "privileged_state"
# Bounds of the state vector's Box: radians, metres and unit quaternions all lie well inside;
# finite so Gymnasium's checker and SB3 see a proper box.
STATE_BOUND = 10.0

# ---- the privileged observation ------------------------------------------------------------


def observation_layout(spec: TaskSpec) -> list[tuple[str, int]]:
    """Named slices of the flat state vector, in order (saved in the checkpoint)."""
    layout = [("joint_state", 8), ("tcp_pos_m", 3)]
    for obj in spec.objects:
        layout += [(f"{obj.name}.pos_m", 3), (f"{obj.name}.quat_wxyz", 4)]
        layout += [(f"{obj.name}.from_tcp_m", 3)]
    for name in spec.fixture_names:
        layout += [(f"{name}.pos_m", 3), (f"{name}.from_tcp_m", 3)]
    return layout


def state_vector(env: gym.Env, joint_state: np.ndarray) -> np.ndarray:
    """The flat float32 observation of ``observation_layout``: measured joints + ground truth.

    Offsets from the TCP are redundant with the positions but spare a small MLP from learning a
    subtraction; a reach policy then only has to follow one vector.
    """
    unwrapped = env.unwrapped
    scene = unwrapped.scene_state()
    tcp = np.asarray(scene.tcp_pos_m, dtype=np.float64)
    parts = [np.asarray(joint_state, dtype=np.float64), tcp]
    for obj in unwrapped.spec_task.objects:
        pos = np.asarray(scene.object_pos_m[obj.name], dtype=np.float64)
        quat = np.asarray(scene.object_quat_wxyz[obj.name], dtype=np.float64)
        parts += [pos, quat if quat[0] >= 0 else -quat, pos - tcp]  # q and -q: same rotation
    for name in unwrapped.spec_task.fixture_names:
        pos = np.asarray(scene.fixture_pos_m[name], dtype=np.float64)
        parts += [pos, pos - tcp]
    return np.concatenate(parts).astype(np.float32)


def _layout_dim(layout: list[tuple[str, int]]) -> int:
    return sum(size for _, size in layout)


def state_space(dim: int) -> spaces.Box:
    return spaces.Box(-STATE_BOUND, STATE_BOUND, (dim,), dtype=np.float32)


class StateObservationWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """The env as SB3 wants it: a flat ``Box`` observation (``state_vector``)."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        self.layout = observation_layout(env.unwrapped.spec_task)
        self.observation_space = state_space(_layout_dim(self.layout))

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        return state_vector(self.env, observation["state"])


class PrivilegedStateWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Keeps the contract observation and adds ``"privileged_state"`` (``state_vector``), so a
    state-based policy runs through the same rollout and evaluation as any other.

    ``expected_layout`` (a policy's) is checked against this task's: a policy trained on one
    task's objects cannot read another's state vector.
    """

    def __init__(self, env: gym.Env, expected_layout: list[tuple[str, int]] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, expected_layout=expected_layout)
        gym.ObservationWrapper.__init__(self, env)
        spec = env.unwrapped.spec_task
        layout = observation_layout(spec)
        if expected_layout is not None and list(expected_layout) != layout:
            raise ValueError(
                f"the policy reads a state vector laid out as {list(expected_layout)}, but task "
                f"{spec.name!r} gives {layout}; evaluate it on the task it was trained on"
            )
        box = state_space(_layout_dim(layout))
        self.observation_space = spaces.Dict({**env.observation_space.spaces, PRIVILEGED_KEY: box})

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        return {**observation, PRIVILEGED_KEY: state_vector(self.env, observation["state"])}


# ---- checkpoints ---------------------------------------------------------------------------


def _policy_classes() -> dict[str, type]:
    """algo -> SB3 policy network class; a literal, so a checkpoint never names code to import."""
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.sac.policies import SACPolicy

    return {"sac": SACPolicy, "ppo": ActorCriticPolicy}


def _kwargs_to_json(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in policy_kwargs.items():
        if isinstance(value, type):  # activation_fn: saved by name, looked up in torch.nn
            value = value.__name__
        try:
            json.dumps(value)
        except TypeError:
            raise ValueError(
                f"policy_kwargs[{key!r}] = {value!r} cannot be saved without pickle; "
                "use JSON values (net_arch, activation_fn as a torch.nn class, numbers)"
            ) from None
        out[key] = value
    return out


def _kwargs_from_json(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    import torch.nn

    kwargs = dict(policy_kwargs)
    if "activation_fn" in kwargs:
        kwargs["activation_fn"] = getattr(torch.nn, kwargs["activation_fn"])
    return kwargs


def save_checkpoint(
    model: Any, path: str | Path, spec: TaskSpec, task: str, extra: dict[str, Any]
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` for a trained SB3 ``model`` (SAC or PPO)."""
    from safetensors.torch import save_file

    algo = type(model).__name__.lower()
    if algo not in _policy_classes():
        raise ValueError(f"cannot save a {type(model).__name__}; supported: sac, ppo")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    layout = observation_layout(spec)
    config = {
        "type": CHECKPOINT_TYPE,
        "format_version": FORMAT_VERSION,
        "kizuna_version": __version__,
        "algo": algo,
        "task": task,
        "task_spec_hash": spec.spec_hash(),
        "action_mode": "ee_delta",
        "action_dim": int(model.action_space.shape[0]),
        "observation": {"key": PRIVILEGED_KEY, "dim": _layout_dim(layout), "layout": layout},
        "policy_kwargs": _kwargs_to_json(model.policy_kwargs),
        "normalization": None,  # observations are raw metres/radians; nothing to undo
        **extra,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.policy.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path


def build_network(config: dict[str, Any]) -> Any:
    """The SB3 policy network described by a checkpoint's config, with fresh weights."""
    classes = _policy_classes()
    if config.get("algo") not in classes:
        raise ValueError(f"config.json: algo {config.get('algo')!r} is not one of {list(classes)}")
    obs_space = state_space(int(config["observation"]["dim"]))
    act_space = spaces.Box(-1.0, 1.0, (int(config["action_dim"]),), dtype=np.float32)
    kwargs = _kwargs_from_json(config["policy_kwargs"])
    return classes[config["algo"]](obs_space, act_space, lambda _: 0.0, **kwargs)


def _check_tensors(network: Any, tensors: dict[str, Any], where: Path) -> None:
    """Refuse weights that do not fit the network, naming every key that is off."""
    expected = network.state_dict()
    problems = [f"missing tensor '{k}'" for k in expected if k not in tensors]
    problems += [f"unexpected tensor '{k}'" for k in tensors if k not in expected]
    problems += [
        f"tensor '{k}' has shape {tuple(tensors[k].shape)}, the network expects {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)
    ]
    if problems:
        raise ValueError(
            f"{where}: does not fit the network described by config.json ("
            + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            + "); the weights and config.json come from different runs"
        )


class SB3StatePolicy:
    """A trained SB3 network as a ``Policy``: chunks of one ee_delta action.

    Needs ``observation["privileged_state"]`` (wrap the env in ``PrivilegedStateWrapper``;
    ``policies.evaluate`` does) and an env built with ``action_mode="ee_delta"``, no cameras.
    """

    chunk_size = 1
    action_mode = "ee_delta"
    cameras: tuple[str, ...] = ()
    observation = PRIVILEGED_KEY

    def __init__(self, network: Any, config: dict[str, Any], path: Path | None = None) -> None:
        self.network = network
        self.config = config
        self.path = path
        self.action_dim = int(config["action_dim"])
        self.task = str(config["task"])
        self.layout = [(str(name), int(size)) for name, size in config["observation"]["layout"]]
        self._dim = int(config["observation"]["dim"])

    def reset(self) -> None:
        """Stateless: nothing to forget."""

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        if PRIVILEGED_KEY not in observation:
            raise KeyError(
                f"an sb3_state policy needs observation[{PRIVILEGED_KEY!r}]: wrap the env in "
                "policies.rl_policy.PrivilegedStateWrapper (policies.evaluate does)"
            )
        vector = np.asarray(observation[PRIVILEGED_KEY], dtype=np.float32)
        if vector.shape != (self._dim,):
            raise ValueError(
                f"state vector of shape {vector.shape}; this policy was trained on task "
                f"{self.task!r} with {self._dim} values ({self.config['observation']['layout']})"
            )
        action, _ = self.network.predict(vector, deterministic=True)
        return np.asarray(action, dtype=np.float32).reshape(1, self.action_dim)


def load_sb3_policy(path: str | Path, **_: Any) -> SB3StatePolicy:
    """``load_policy`` entry for ``"type": "sb3_state"``: rebuild the network, load strictly."""
    from safetensors.torch import load_file

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: no model.safetensors next to config.json")
    network = build_network(config)
    tensors = load_file(str(weights))
    _check_tensors(network, tensors, weights)
    network.load_state_dict(tensors, strict=True)
    network.set_training_mode(False)
    return SB3StatePolicy(network, config, path)
