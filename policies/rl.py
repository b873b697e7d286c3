"""``kizuna rl``: Stable-Baselines3 baselines (SAC, PPO) on the state-based tasks.

    kizuna rl task=reach algo=sac steps=40000 out=runs/rl_reach

The agent sees the privileged scene state (``policies.rl_policy.StateObservationWrapper``), acts
in ``ee_delta`` mode and is rewarded by the env's named reward terms. The run ends by saving a
pickle-free checkpoint (``config.json`` + ``model.safetensors``), loading it back through
``load_policy`` and evaluating it like any other policy (``<out>/eval/<task>/report.json``).
TensorBoard logs go to ``<out>/tb``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from kizuna.hydra_config import add_overrides_argument
from kizuna.task import load_task
from policies.evaluate import EvalConfig, EvalReport, evaluate
from policies.rl_policy import StateObservationWrapper, save_checkpoint


@dataclass(frozen=True)
class SACSettings:
    batch_size: int = 256
    buffer_size: int = 300_000
    learning_starts: int = 1000
    train_freq: int = 1
    gradient_steps: int = 1


@dataclass(frozen=True)
class PPOSettings:
    n_steps: int = 1024
    batch_size: int = 64
    n_epochs: int = 10


@dataclass(frozen=True)
class RLConfig:
    """Settings of ``config/hydra/rl.yaml`` (see there for each key)."""

    task: str = "reach"
    algo: str = "sac"
    steps: int = 40_000
    out: str | None = None
    overwrite: bool = False
    seed: int = 0
    backend: str = "mujoco"
    randomization: str = "none"
    net_arch: tuple[int, ...] = (64, 64)
    learning_rate: float = 3e-4
    gamma: float = 0.99
    threads: int = 1
    sac: SACSettings = field(default_factory=SACSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    eval_episodes: int = 20
    eval_seed: int = 1000
    eval_videos: int = 2

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/rl_{load_task(self.task).name}")

    def hyperparameters(self) -> dict[str, Any]:
        """What shaped the network, as saved in config.json."""
        common = {"learning_rate": self.learning_rate, "gamma": self.gamma, "seed": self.seed}
        return common | dataclasses.asdict(self.sac if self.algo == "sac" else self.ppo)


def make_train_env(cfg: RLConfig) -> gym.Env:
    """State-only, ee_delta env with a flat Box observation (what SB3's MlpPolicy takes)."""
    import sim  # noqa: F401  (registers kizuna/Task-v0)

    env = gym.make(
        "kizuna/Task-v0",
        task=cfg.task,
        backend=cfg.backend,
        cameras=(),
        randomization={"none": False, "default": True}.get(cfg.randomization, cfg.randomization),
        action_mode="ee_delta",
    )
    return StateObservationWrapper(env)


def make_model(cfg: RLConfig, env: gym.Env) -> Any:
    from stable_baselines3 import PPO, SAC

    algos = {"sac": (SAC, cfg.sac), "ppo": (PPO, cfg.ppo)}
    if cfg.algo not in algos:
        raise ValueError(f"algo={cfg.algo!r}: choose one of {sorted(algos)}")
    cls, settings = algos[cfg.algo]
    return cls(
        "MlpPolicy",
        env,
        learning_rate=cfg.learning_rate,
        gamma=cfg.gamma,
        seed=cfg.seed,
        policy_kwargs={"net_arch": list(cfg.net_arch)},
        tensorboard_log=str(cfg.out_dir / "tb"),
        device="cpu",
        verbose=0,
        **dataclasses.asdict(settings),
    )


def progress_callback(total_steps: int) -> Any:
    """A tqdm bar over environment steps (SB3's own bar needs ``rich``, not a dependency)."""
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class TqdmCallback(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(total=total_steps, desc="rl", unit="step", dynamic_ncols=True)

        def _on_step(self) -> bool:
            self.bar.update(self.training_env.num_envs)
            successes = self.model.ep_success_buffer
            if self.n_calls % 200 == 0 and successes:
                rate = sum(successes) / len(successes)
                self.bar.set_postfix(success_last_eps=f"{rate:.0%}", refresh=False)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return TqdmCallback()


@dataclass
class RLResult:
    checkpoint: Path
    steps_per_s: float
    train_wall_s: float
    report: EvalReport | None


def train(cfg: RLConfig, progress: bool = False) -> RLResult:
    """Train, save the checkpoint, load it back and evaluate it (``eval_episodes`` > 0)."""
    import torch

    # One thread: SAC's small networks are latency-bound, and more threads halved steps/s here.
    torch.set_num_threads(cfg.threads)
    out = cfg.out_dir
    if (out / "config.json").exists() and not cfg.overwrite:
        raise FileExistsError(f"{out} already holds a checkpoint; pass overwrite=true or out=...")
    spec = load_task(cfg.task)
    env = make_train_env(cfg)
    model = make_model(cfg, env)
    start = time.perf_counter()
    callback = progress_callback(cfg.steps) if progress else None
    model.learn(cfg.steps, callback=callback, tb_log_name=cfg.algo)
    wall_s = time.perf_counter() - start
    env.close()
    extra = {
        "hyperparameters": cfg.hyperparameters(),
        "train": {"steps": cfg.steps, "wall_s": round(wall_s, 1), "backend": cfg.backend},
    }
    save_checkpoint(model, out, spec, cfg.task, extra)
    report = _evaluate_saved(cfg, out, progress) if cfg.eval_episodes > 0 else None
    return RLResult(out, cfg.steps / wall_s, wall_s, report)


def _evaluate_saved(cfg: RLConfig, out: Path, progress: bool) -> EvalReport:
    """Evaluate what was written, through ``load_policy``, as any checkpoint would be."""
    from policies.base import load_policy

    eval_cfg = EvalConfig(
        checkpoint=str(out),
        task=cfg.task,
        episodes=cfg.eval_episodes,
        seed=cfg.eval_seed,
        videos=cfg.eval_videos,
        backend=cfg.backend,
        randomization=cfg.randomization,
    )
    return evaluate(load_policy(out), eval_cfg, progress=progress)


# ---- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_overrides_argument(
        parser,
        "rl",
        "task=reach algo=sac steps=40000 out=runs/rl_reach sac.learning_starts=500",
    )


def main(args: argparse.Namespace) -> int:
    from kizuna.hydra_config import compose
    from kizuna.task import TaskSpecError

    try:
        cfg = compose("rl", args.overrides, RLConfig)
        print(f"training {cfg.algo.upper()} on {cfg.task} for {cfg.steps} steps -> {cfg.out_dir}")
        result = train(cfg, progress=True)
    except (ValueError, FileExistsError, TaskSpecError) as exc:
        print(f"error: {exc}")
        return 2
    print(
        f"trained {cfg.steps} steps in {result.train_wall_s:.0f} s "
        f"({result.steps_per_s:.0f} steps/s); checkpoint {result.checkpoint}; "
        f"TensorBoard: tensorboard --logdir {result.checkpoint / 'tb'}"
    )
    if result.report is not None:
        low, high = result.report.ci95
        print(
            f"eval: success {result.report.success_rate:.0%} over {cfg.eval_episodes} episodes "
            f"(95 % CI [{low:.2f}, {high:.2f}]); "
            f"report {result.checkpoint / 'eval' / result.report.task / 'report.json'}"
        )
    return 0
