"""Domain randomization as a pure function: ``randomize(spec, rng, cfg) -> EpisodeParams``.

Every term is one line with its distribution; ranges come from YAML
(``config/randomization/*.yaml``). The backend applies the physical part, the env the sensor part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from kizuna.paths import config_dir
from kizuna.task import TaskSpec
from sim.scene import CAMERAS, PhysicsParams


class RandomizationConfig(BaseModel):
    """Uniform [low, high] ranges of each randomized term (see config/randomization)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mass_scale: tuple[float, float] = (1.0, 1.0)
    friction_scale: tuple[float, float] = (1.0, 1.0)
    size_scale: tuple[float, float] = (1.0, 1.0)
    joint_damping_scale: tuple[float, float] = (1.0, 1.0)
    actuator_gain_scale: tuple[float, float] = (1.0, 1.0)
    color_jitter: tuple[float, float] = (0.0, 0.0)
    light_offset_m: tuple[float, float] = (0.0, 0.0)
    light_intensity: tuple[float, float] = (1.0, 1.0)
    camera_pos_jitter_m: tuple[float, float] = (0.0, 0.0)
    camera_rot_jitter_rad: tuple[float, float] = (0.0, 0.0)
    obs_noise_rad: tuple[float, float] = (0.0, 0.0)
    action_latency_steps: tuple[int, int] = (0, 0)

    @field_validator("*")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"[{value[0]}, {value[1]}] has low > high")
        return value


@dataclass(frozen=True)
class SensorParams:
    """What the env (not the engine) changes: noise on what is observed, delay on what is done."""

    obs_noise_rad: float = 0.0
    action_noise_rad: float = 0.0
    action_latency_steps: int = 0
    joint_offset_rad: tuple[float, ...] = ()
    image_noise_std: float = 0.0


@dataclass(frozen=True)
class EpisodeParams:
    physics: PhysicsParams = field(default_factory=PhysicsParams)
    sensors: SensorParams = field(default_factory=SensorParams)

    def as_dict(self) -> dict:
        """Plain JSON-able record (for dataset provenance)."""
        from dataclasses import asdict

        return asdict(self)


def load_randomization(name_or_path: str | Path) -> RandomizationConfig:
    """A shipped config by name (``default``) or any YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = config_dir() / "randomization" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"randomization config {str(name_or_path)!r} not found at {path}")
    try:
        return RandomizationConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        fields = "; ".join(f"field '{e['loc'][0]}': {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {fields}") from None


def _jitter(rng: np.random.Generator, bound: tuple[float, float], size: int = 3) -> tuple:
    magnitude = rng.uniform(*bound)
    return tuple(float(v) for v in rng.uniform(-magnitude, magnitude, size))


def randomize(spec: TaskSpec, rng: np.random.Generator, cfg: RandomizationConfig) -> EpisodeParams:
    """Draw one episode's parameters; the same rng state gives the same draw."""
    objects = [o.name for o in spec.objects]
    things = [(o.name, o.rgba) for o in spec.objects] + [(f.name, f.rgba) for f in spec.fixtures]
    physics = PhysicsParams(
        # Per object, uniform scale of the nominal mass, friction and size.
        mass_scale={n: float(rng.uniform(*cfg.mass_scale)) for n in objects},
        friction_scale={n: float(rng.uniform(*cfg.friction_scale)) for n in objects},
        size_scale={n: float(rng.uniform(*cfg.size_scale)) for n in objects},
        # Per object and fixture, each RGB channel shifted uniformly by up to color_jitter.
        rgba={
            n: (*np.clip(np.array(c[:3]) + _jitter(rng, cfg.color_jitter), 0, 1).tolist(), c[3])
            for n, c in things
        },
        # Whole arm: one uniform scale for damping, one for controller stiffness.
        joint_damping_scale=float(rng.uniform(*cfg.joint_damping_scale)),
        actuator_gain_scale=float(rng.uniform(*cfg.actuator_gain_scale)),
        # Light: position offset uniform in a cube; intensity uniform scale.
        light_offset_m=_jitter(rng, cfg.light_offset_m),
        light_intensity=float(rng.uniform(*cfg.light_intensity)),
        # Cameras: position and small rotation offsets, uniform per axis.
        camera_pos_offset_m={c: _jitter(rng, cfg.camera_pos_jitter_m) for c in CAMERAS},
        camera_rot_offset_rad={c: _jitter(rng, cfg.camera_rot_jitter_rad) for c in CAMERAS},
    )
    sensors = SensorParams(
        # Gaussian joint-position noise whose std is itself drawn uniformly.
        obs_noise_rad=float(rng.uniform(*cfg.obs_noise_rad)),
        # Whole control periods of delay between command and execution.
        action_latency_steps=int(
            rng.integers(cfg.action_latency_steps[0], cfg.action_latency_steps[1] + 1)
        ),
    )
    return EpisodeParams(physics=physics, sensors=sensors)


# Ranges kept for what system identification could not pin down: the unknown is randomized
# widely rather than guessed (the same ranges `kizuna calibrate dynamics` writes).
WIDE_SCALE = (0.5, 2.0)
WIDE_LATENCY_STEPS = (0, 2)
RECENTRED_SCALES = ("joint_damping_scale", "actuator_gain_scale", "mass_scale", "friction_scale")


def recentre(
    base: RandomizationConfig,
    fitted: dict[str, float],
    spread: dict[str, float],
    latency_steps: int | None,
    latency_spread_steps: int = 1,
) -> RandomizationConfig:
    """``base`` with the physics ranges centred on measured values (a fitted reality profile).

    ``fitted``: scale -> value for the scales that were identified; each becomes
    ``[v (1 - s), v (1 + s)]`` with ``s = spread[name]`` (midpoint exactly ``v``). Scales in
    ``RECENTRED_SCALES`` not in ``fitted`` get ``WIDE_SCALE``. ``latency_steps`` (``None``: not
    identified -> ``WIDE_LATENCY_STEPS``) becomes ``[L - k, L + k]`` floored at 0.
    """
    ranges: dict[str, tuple[float, float]] = {}
    for name in RECENTRED_SCALES:
        if name in fitted:
            value, s = float(fitted[name]), float(spread[name])
            ranges[name] = (value * (1.0 - s), value * (1.0 + s))
        else:
            ranges[name] = WIDE_SCALE
    latency = (
        WIDE_LATENCY_STEPS
        if latency_steps is None
        else (max(0, latency_steps - latency_spread_steps), latency_steps + latency_spread_steps)
    )
    return base.model_copy(update={**ranges, "action_latency_steps": latency})
