"""Reality profiles: YAML files that turn the simulator into a stand-in for a real robot.

A profile holds hidden shifts the policy never trained on (engine choice, parameter scales,
calibration errors, latency, noise). ``apply_reality`` layers it on top of whatever domain
randomization drew, so "sim randomized around nominal" and "the real cell" stay distinct.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kizuna.paths import config_dir
from kizuna.robot import PANDA
from kizuna.task import TaskSpec
from sim.randomization import EpisodeParams

Vec3 = tuple[float, float, float]


class RealityProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    backend: Literal["mujoco", "pybullet"] | None = None
    mass_scale: float = Field(1.0, gt=0.0)
    friction_scale: float = Field(1.0, gt=0.0)
    joint_damping_scale: float = Field(1.0, gt=0.0)
    actuator_gain_scale: float = Field(1.0, gt=0.0)
    control_latency_steps: int = Field(0, ge=0, le=20)
    joint_offset_rad: tuple[float, ...] = ()
    camera_pos_error_m: dict[str, Vec3] = {}
    camera_rot_error_rad: dict[str, Vec3] = {}
    obs_noise_rad: float = Field(0.0, ge=0.0)
    action_noise_rad: float = Field(0.0, ge=0.0)
    image_noise_std: float = Field(0.0, ge=0.0)
    light_intensity: float = Field(1.0, gt=0.0)


def load_reality(name_or_path: str | Path) -> RealityProfile:
    """A shipped profile by name (``easy``, ``medium``, ``hard``) or any YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = config_dir() / "reality" / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in (config_dir() / "reality").glob("*.yaml"))
        raise FileNotFoundError(
            f"reality profile {str(name_or_path)!r} not found ({path}); shipped: {shipped}"
        )
    try:
        profile = RealityProfile.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        fields = "; ".join(
            f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{path}: {fields}") from None
    if profile.joint_offset_rad and len(profile.joint_offset_rad) != PANDA.dof:
        raise ValueError(f"{path}: field 'joint_offset_rad': expected {PANDA.dof} numbers")
    return profile


def _add(a: dict[str, Vec3], b: dict[str, Vec3]) -> dict[str, Vec3]:
    keys = set(a) | set(b)
    zero = (0.0, 0.0, 0.0)
    return {
        k: tuple(x + y for x, y in zip(a.get(k, zero), b.get(k, zero), strict=True)) for k in keys
    }  # type: ignore[misc]


def apply_reality(params: EpisodeParams, profile: RealityProfile, spec: TaskSpec) -> EpisodeParams:
    """Shift an episode's parameters by a profile: scales multiply, offsets add."""
    p = params.physics
    objects = [o.name for o in spec.objects]
    physics = replace(
        p,
        mass_scale={n: p.get(p.mass_scale, n) * profile.mass_scale for n in objects},
        friction_scale={n: p.get(p.friction_scale, n) * profile.friction_scale for n in objects},
        joint_damping_scale=p.joint_damping_scale * profile.joint_damping_scale,
        actuator_gain_scale=p.actuator_gain_scale * profile.actuator_gain_scale,
        light_intensity=p.light_intensity * profile.light_intensity,
        camera_pos_offset_m=_add(p.camera_pos_offset_m, profile.camera_pos_error_m),
        camera_rot_offset_rad=_add(p.camera_rot_offset_rad, profile.camera_rot_error_rad),
    )
    s = params.sensors
    sensors = replace(
        s,
        obs_noise_rad=(s.obs_noise_rad**2 + profile.obs_noise_rad**2) ** 0.5,
        action_noise_rad=(s.action_noise_rad**2 + profile.action_noise_rad**2) ** 0.5,
        action_latency_steps=s.action_latency_steps + profile.control_latency_steps,
        joint_offset_rad=profile.joint_offset_rad or s.joint_offset_rad,
        image_noise_std=max(s.image_noise_std, profile.image_noise_std),
    )
    return EpisodeParams(physics=physics, sensors=sensors)
