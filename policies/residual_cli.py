"""``kizuna residual``: train a bounded residual on top of a frozen base policy, then compare.

    kizuna residual base=runs/vla task=pick_place algo=sac steps=20000 \
        randomization=runs/sysid/reality.yaml out=runs/residual

``randomization`` is ``none``, ``default``, a randomization YAML, or a reality profile (e.g. the
``reality.yaml`` that ``kizuna calibrate dynamics`` writes, or its folder): then the physics
ranges are re-centred on the profile's fitted values (``recentred_randomization``) and written to
``<out>/randomization.yaml``. The run saves a ``kizuna_residual`` checkpoint in ``out`` and
evaluates the base and base + residual on the same seeds (``<out>/eval/comparison.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kizuna.hydra_config import add_overrides_argument
from kizuna.task import load_task
from policies.residual import ResidualScale
from policies.rl import PPOSettings, SACSettings, progress_callback

# Keys only a reality profile has: how a profile YAML is told apart from a randomization YAML.
REALITY_ONLY_KEYS = frozenset({"name", "control_latency_steps", "joint_offset_rad", "backend"})


@dataclass(frozen=True)
class ResidualConfig:
    """Settings of ``config/hydra/residual.yaml`` (see there for each key)."""

    base: str | None = None
    task: str = "pick_place"
    algo: str = "sac"
    steps: int = 20_000
    out: str | None = None
    overwrite: bool = False
    seed: int = 0
    backend: str = "mujoco"
    randomization: str = "default"
    spread: float = 0.1
    latency_spread_steps: int = 1
    residual_joints_rad: float = 0.05
    residual_gripper: float = 0.2
    residual_penalty: float = 0.01
    replan_every: int | None = None
    image_size: int = 96
    net_arch: tuple[int, ...] = (64, 64)
    learning_rate: float = 3e-4
    gamma: float = 0.99
    threads: int = 1
    sac: SACSettings = field(default_factory=SACSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    eval_episodes: int = 20
    eval_seed: int = 1000
    eval_videos: int = 0
    eval_reality: str | None = None

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/residual_{load_task(self.task).name}")

    @property
    def scale(self) -> ResidualScale:
        return ResidualScale(self.residual_joints_rad, self.residual_gripper)


# ---- re-centred randomization ----------------------------------------------------------------


def _profile_file(path: Path) -> Path:
    return path / "reality.yaml" if path.is_dir() else path


def is_reality_profile(path: str | Path) -> bool:
    """A reality profile (or a sysid output folder), as opposed to a randomization YAML."""
    path = _profile_file(Path(path))
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return False
    data = yaml.safe_load(path.read_text()) or {}
    return isinstance(data, dict) and bool(REALITY_ONLY_KEYS & set(data))


def recentred_randomization(
    profile: str | Path,
    out: str | Path,
    spread: float = 0.1,
    latency_spread_steps: int = 1,
    base: str = "default",
) -> Path:
    """Write a randomization YAML centred on a reality profile's values; returns its path.

    A scale counts as fitted when the profile states it and, where ``kizuna calibrate
    dynamics`` left a ``sysid.json`` beside it, that report calls it identified; its spread is
    then ``max(spread, 2 standard errors)``. Scales not fitted (mass and friction after sysid)
    keep wide ranges; sensor and visual ranges come from ``base``.
    """
    from sim.randomization import RECENTRED_SCALES, load_randomization, recentre
    from sim.reality import load_reality

    if not 0.0 <= spread < 1.0:
        raise ValueError(f"spread={spread}: a relative half-width, must be in [0, 1)")
    path = _profile_file(Path(profile))
    load_reality(path)  # refuses a bad profile, naming the file and field
    stated = yaml.safe_load(path.read_text()) or {}
    report = _sysid_report(path.parent / "sysid.json")
    identified = report.get("identified", {})
    fitted = {
        k: float(stated[k]) for k in RECENTRED_SCALES if k in stated and identified.get(k, True)
    }
    errors = report.get("std_error", {})
    spreads = {k: min(max(spread, 2.0 * float(errors.get(k, 0.0))), 0.9) for k in fitted}
    latency = stated.get("control_latency_steps")
    cfg = recentre(
        load_randomization(base),
        fitted,
        spreads,
        None if latency is None else int(latency),
        latency_spread_steps,
    )
    wide = sorted(set(RECENTRED_SCALES) - set(fitted)) + (["latency"] if latency is None else [])
    header = (
        f"# Re-centred on {path} by `kizuna residual` (policies.residual_cli): fitted "
        f"{ {k: round(v, 4) for k, v in fitted.items()} }, latency {latency}; "
        f"wide (not identified): {', '.join(wide) or 'none'}.\n"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    values = {k: list(v) for k, v in cfg.model_dump().items()}
    out.write_text(header + yaml.safe_dump(values, sort_keys=False))
    return out


def _sysid_report(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it or rerun sysid") from None


def resolve_randomization(cfg: ResidualConfig) -> str:
    """What the env gets: ``none``, ``default``, or a randomization YAML path (re-centred into
    ``<out>/randomization.yaml`` when ``cfg.randomization`` is a reality profile)."""
    if cfg.randomization in ("none", "default"):
        return cfg.randomization
    if is_reality_profile(cfg.randomization):
        out = cfg.out_dir / "randomization.yaml"
        spread, latency = cfg.spread, cfg.latency_spread_steps
        return str(recentred_randomization(cfg.randomization, out, spread, latency))
    return cfg.randomization


def _env_randomization(value: str) -> bool | str:
    return {"none": False, "default": True}.get(value, value)


# ---- training ----------------------------------------------------------------------------------


def make_residual_env(cfg: ResidualConfig, base: Any, randomization: str) -> Any:
    """A joint-mode env with the base's cameras, wrapped as ``ResidualEnv``."""
    import gymnasium as gym

    import sim  # noqa: F401  (registers kizuna/Task-v0)
    from policies.residual import ResidualEnv, policy_cameras

    env = gym.make(
        "kizuna/Task-v0",
        task=cfg.task,
        backend=cfg.backend,
        cameras=policy_cameras(base),
        image_size=cfg.image_size,
        randomization=_env_randomization(randomization),
    )
    return ResidualEnv(env, base, cfg.scale, cfg.replan_every, cfg.residual_penalty)


def make_model(cfg: ResidualConfig, env: Any) -> Any:
    """SB3 SAC or PPO on the residual env: ``kizuna rl``'s constructor, which reads only the
    settings both configs share (algo, net_arch, learning_rate, gamma, seed, sac, ppo, out)."""
    from policies import rl

    return rl.make_model(cfg, env)  # type: ignore[arg-type]


@dataclass
class ResidualResult:
    checkpoint: Path
    train_wall_s: float
    steps_per_s: float
    comparison: dict[str, Any] | None


def train(cfg: ResidualConfig, progress: bool = False) -> ResidualResult:
    """Train the residual, save the checkpoint, evaluate base vs base + residual."""
    import torch

    from policies.base import load_policy
    from policies.residual import export_actor, save_residual_checkpoint

    torch.set_num_threads(cfg.threads)  # small networks: one thread is fastest (DEPENDENCIES.md)
    if not cfg.base:
        raise ValueError("base=PATH is required (the frozen base checkpoint, e.g. a kizuna_vla)")
    if cfg.algo not in ("sac", "ppo"):
        raise ValueError(f"algo={cfg.algo!r}: choose one of ['ppo', 'sac']")
    out = cfg.out_dir
    if (out / "config.json").exists() and not cfg.overwrite:
        raise FileExistsError(f"{out} already holds a checkpoint; pass overwrite=true or out=...")
    randomization = resolve_randomization(cfg)
    base = load_policy(cfg.base)
    env = make_residual_env(cfg, base, randomization)
    model = make_model(cfg, env)
    start = time.perf_counter()
    model.learn(cfg.steps, callback=progress_callback(cfg.steps) if progress else None)
    wall_s = time.perf_counter() - start
    env.close()
    extra = {
        "task": cfg.task,
        "randomization": randomization,
        "residual_penalty": cfg.residual_penalty,
        "hyperparameters": {"net_arch": list(cfg.net_arch), "learning_rate": cfg.learning_rate}
        | {"gamma": cfg.gamma, "seed": cfg.seed}
        | dataclasses.asdict(cfg.sac if cfg.algo == "sac" else cfg.ppo),
        "train": {"steps": cfg.steps, "wall_s": round(wall_s, 1), "backend": cfg.backend},
    }
    actor = export_actor(model)
    save_residual_checkpoint(
        out, actor, cfg.base, cfg.scale, cfg.algo, cfg.replan_every, cfg.image_size, extra
    )
    comparison = compare(cfg, randomization, progress) if cfg.eval_episodes > 0 else None
    return ResidualResult(out, wall_s, cfg.steps / wall_s, comparison)


def compare(cfg: ResidualConfig, randomization: str, progress: bool = False) -> dict[str, Any]:
    """Base and base + residual (loaded from disk) on the same seeds; writes comparison.json."""
    from policies.base import load_policy
    from policies.evaluate import EvalConfig, evaluate
    from policies.residual import policy_cameras

    out = cfg.out_dir
    rows = {}
    for name, checkpoint in (("base", cfg.base), ("residual", str(out))):
        policy = load_policy(checkpoint)
        eval_cfg = EvalConfig(
            checkpoint=checkpoint,
            task=cfg.task,
            episodes=cfg.eval_episodes,
            seed=cfg.eval_seed,
            videos=cfg.eval_videos,
            backend=cfg.backend,
            randomization=randomization,
            reality=cfg.eval_reality,
            cameras=policy_cameras(policy),
            image_size=cfg.image_size,
            replan_every=cfg.replan_every if name == "base" else None,
        )
        report = evaluate(policy, eval_cfg, out_dir=out / "eval" / name, progress=progress)
        rows[name] = {
            "success_rate": report.success_rate,
            "successes": report.successes,
            "episodes": len(report.episodes),
            "ci95": [round(x, 4) for x in report.ci95],
            "report": str(Path("eval") / name / "report.json"),
        }
    comparison = {
        "task": cfg.task,
        "seeds": [cfg.eval_seed, cfg.eval_seed + cfg.eval_episodes - 1],
        "randomization": randomization,
        "reality": cfg.eval_reality,
        **rows,
    }
    (out / "eval" / "comparison.json").write_text(json.dumps(comparison, indent=2))
    return comparison


# ---- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_overrides_argument(
        parser,
        "residual",
        "base=runs/vla task=pick_place algo=sac steps=20000 randomization=runs/sysid out=runs/res",
    )


def main(args: argparse.Namespace) -> int:
    from kizuna.hydra_config import compose
    from kizuna.task import TaskSpecError

    try:
        cfg = compose("residual", args.overrides, ResidualConfig)
        print(f"training a {cfg.algo.upper()} residual on {cfg.base} ({cfg.task}) -> {cfg.out}")
        result = train(cfg, progress=True)
    except (ValueError, FileExistsError, FileNotFoundError, TaskSpecError) as exc:
        print(f"error: {exc}")
        return 2
    print(
        f"trained {cfg.steps} steps in {result.train_wall_s:.0f} s "
        f"({result.steps_per_s:.1f} steps/s); checkpoint {result.checkpoint}"
    )
    if result.comparison is not None:
        for name in ("base", "residual"):
            row = result.comparison[name]
            low, high = row["ci95"]
            print(
                f"{name:>8}: success {row['success_rate']:.0%} ({row['successes']}/"
                f"{row['episodes']}, 95 % CI [{low:.2f}, {high:.2f}])"
            )
        print(f"same seeds; {result.checkpoint / 'eval' / 'comparison.json'}")
    return 0
