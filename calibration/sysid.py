"""System identification (real -> sim): replay recorded commands, fit the simulator to them.

Fitted: ``actuator_gain_scale`` and ``joint_damping_scale`` (continuous, CMA-ES on log scales)
and ``control_latency_steps`` (integer, scanned). The identifiability of each parameter is
measured, not assumed: the Gauss-Newton standard error from the trajectory's sensitivity to the
parameter and the residual noise. ``mass_scale`` and ``friction_scale`` act on task objects only;
joint trajectories of a gravity-compensated, stiff position-servoed arm that touches nothing
carry no information about them, so they are reported as not identifiable (never faked).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import cma
import numpy as np

from calibration.bagio import Recording
from calibration.intrinsics import CalibrationError
from kizuna.robot import PANDA
from kizuna.task import load_task
from sim.backends import make_backend
from sim.scene import Layout, PhysicsParams

CONTINUOUS = ("actuator_gain_scale", "joint_damping_scale")
NOT_IDENTIFIABLE = {
    "mass_scale": "acts on task objects only; an arm that touches nothing carries no trace of it",
    "friction_scale": "acts on task objects only; an arm that touches nothing carries no trace",
}
LOG_BOUNDS = (np.log(0.25), np.log(4.0))
MIN_STEPS = 20
IDENTIFIED_REL_SE = 0.05  # 2 standard errors within 10 %: called identified


@dataclass(frozen=True)
class Trajectory:
    """Commands (rows of joint targets + gripper) and the joint positions measured one control
    period after each, plus the start state."""

    q0_rad: np.ndarray
    gripper0: float
    commands: np.ndarray  # (T, dof + 1)
    q_rad: np.ndarray  # (T, dof)


def trajectory_from_recording(rec: Recording, where: str = "bag") -> tuple[Trajectory, float]:
    """(trajectory, control_dt_s): joint states interpolated at the command times + one period."""
    if len(rec.command_t_s) < MIN_STEPS or len(rec.state_t_s) < 2:
        raise CalibrationError(
            f"{where}: {len(rec.command_t_s)} commands and {len(rec.state_t_s)} joint states; "
            f"record at least {MIN_STEPS} control periods of commanded motion with /joint_states"
        )
    dt_s = float(np.median(np.diff(rec.command_t_s)))
    t = rec.command_t_s
    inside = t + dt_s <= rec.state_t_s[-1] + 1e-6
    t, commands = t[inside], rec.commands[inside]

    def at(times: np.ndarray) -> np.ndarray:
        return np.column_stack([np.interp(times, rec.state_t_s, q) for q in rec.q_rad.T])

    q0 = at(t[:1])[0]
    gripper0 = float(np.interp(t[0], rec.state_t_s, rec.gripper))
    return Trajectory(q0, gripper0, commands, at(t + dt_s)), dt_s


class Replayer:
    """The simulator, state only, replaying commands under candidate parameters."""

    def __init__(self, task: str = "reach") -> None:
        self.spec = load_task(task)
        self.sim = make_backend("mujoco", self.spec)
        self.control_dt_s = 1.0 / self.spec.control_hz

    def rollout(
        self, traj: Trajectory, params: dict[str, float], latency_steps: int
    ) -> np.ndarray:
        physics = PhysicsParams(
            joint_damping_scale=params["joint_damping_scale"],
            actuator_gain_scale=params["actuator_gain_scale"],
        )
        self.sim.reset(Layout({}, {}), traj.q0_rad, traj.gripper0, physics)
        pending = deque([(traj.q0_rad, traj.gripper0)] * latency_steps)
        out = np.empty_like(traj.q_rad)
        for k, command in enumerate(traj.commands):
            pending.append((command[: PANDA.dof], float(command[PANDA.dof])))
            q_target, gripper = pending.popleft()
            self.sim.step(np.clip(q_target, PANDA.lower_rad, PANDA.upper_rad), gripper)
            out[k] = self.sim.joint_positions()
        return out

    def residuals(
        self, trajs: Sequence[Trajectory], params: dict[str, float], latency_steps: int
    ) -> np.ndarray:
        return np.concatenate(
            [(self.rollout(t, params, latency_steps) - t.q_rad).ravel() for t in trajs]
        )


def _rms(r: np.ndarray) -> float:
    return float(np.sqrt(np.mean(r**2)))


@dataclass
class SysIdResult:
    params: dict[str, float]
    latency_steps: int
    std_error: dict[str, float]  # relative (0.05 = 5 %), from the local sensitivity
    identified: dict[str, bool]
    train_rms_rad: float
    holdout_rms_rad: float | None
    nominal_holdout_rms_rad: float | None  # the uncalibrated simulator on the same data
    latency_costs: dict[int, float]
    not_identifiable: dict[str, str] = field(default_factory=lambda: dict(NOT_IDENTIFIABLE))
    warnings: list[str] = field(default_factory=list)


def fit_dynamics(
    train: Sequence[Trajectory],
    holdout: Sequence[Trajectory] = (),
    task: str = "reach",
    max_latency_steps: int = 4,
    generations: int = 30,
    seed: int = 0,
) -> SysIdResult:
    """Latency by scan, then gain and damping by CMA-ES; errors in rad of joint position."""
    replayer = Replayer(task)
    nominal = dict.fromkeys(CONTINUOUS, 1.0)
    latency_costs = {
        lat: _rms(replayer.residuals(train, nominal, lat)) for lat in range(max_latency_steps + 1)
    }
    latency = min(latency_costs, key=latency_costs.__getitem__)

    def params_of(x: np.ndarray) -> dict[str, float]:
        return dict(zip(CONTINUOUS, np.exp(x).tolist(), strict=True))

    def cost(x: np.ndarray) -> float:
        return _rms(replayer.residuals(train, params_of(np.asarray(x)), latency))

    options = {
        "popsize": 6,
        "tolfun": 1e-9,
        "maxiter": generations,
        "bounds": [LOG_BOUNDS[0], LOG_BOUNDS[1]],
        "seed": seed + 1,
        "verbose": -9,
    }
    es = cma.CMAEvolutionStrategy(np.zeros(len(CONTINUOUS)), 0.3, options)
    es.optimize(cost)
    x_best = np.asarray(es.result.xbest)
    params = params_of(x_best)
    # The integer latency was chosen at nominal dynamics: confirm it at the fitted ones.
    for lat in (latency - 1, latency + 1):
        if 0 <= lat <= max_latency_steps:
            latency_costs[lat] = _rms(replayer.residuals(train, params, lat))
    latency_costs[latency] = cost(x_best)
    if min(latency_costs, key=latency_costs.__getitem__) != latency:
        latency = min(latency_costs, key=latency_costs.__getitem__)
    std_error = _std_errors(replayer, train, x_best, latency)
    result = SysIdResult(
        params=params,
        latency_steps=latency,
        std_error=std_error,
        identified={k: se <= IDENTIFIED_REL_SE for k, se in std_error.items()},
        train_rms_rad=_rms(replayer.residuals(train, params, latency)),
        holdout_rms_rad=_rms(replayer.residuals(holdout, params, latency)) if holdout else None,
        nominal_holdout_rms_rad=_rms(replayer.residuals(holdout, nominal, 0)) if holdout else None,
        latency_costs=dict(sorted(latency_costs.items())),
    )
    if not holdout:
        result.warnings.append("no held-out trajectories: give more than one bag to validate")
    return result


def _std_errors(
    replayer: Replayer, trajs: Sequence[Trajectory], x: np.ndarray, latency: int, h: float = 0.02
) -> dict[str, float]:
    """Relative standard error of each scale: sigma_residual / |d residual / d log(scale)|.

    Each parameter's sensitivity is taken on its own, so correlated parameters look better
    determined than they are; the joint covariance (J^T J)^-1 is used for that reason.
    """
    base = replayer.residuals(trajs, dict(zip(CONTINUOUS, np.exp(x), strict=True)), latency)
    columns = []
    for i in range(len(CONTINUOUS)):
        step = np.zeros_like(x)
        step[i] = h
        plus = replayer.residuals(
            trajs, dict(zip(CONTINUOUS, np.exp(x + step), strict=True)), latency
        )
        minus = replayer.residuals(
            trajs, dict(zip(CONTINUOUS, np.exp(x - step), strict=True)), latency
        )
        columns.append((plus - minus) / (2.0 * h))
    J = np.column_stack(columns)
    dof = max(len(base) - len(CONTINUOUS), 1)
    sigma2 = float(base @ base) / dof
    cov = sigma2 * np.linalg.pinv(J.T @ J)
    return {name: float(np.sqrt(max(cov[i, i], 0.0))) for i, name in enumerate(CONTINUOUS)}


def write_profile(result: SysIdResult, out_dir: str, name: str = "calibrated") -> dict[str, str]:
    """``<out_dir>/reality.yaml`` (a ``sim.reality`` profile: ``reality=<path>``),
    ``randomization.yaml`` (ranges of +-2 standard errors around the fit, wide where not
    identified) and ``sysid.json`` (the full report). Returns the paths written."""
    import json
    from pathlib import Path

    import yaml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    identified = {k: v for k, v in result.params.items() if result.identified[k]}
    profile = {
        "name": name,
        "description": "fitted by `kizuna calibrate dynamics`; unidentified scales left at 1",
        **{k: round(v, 4) for k, v in identified.items()},
        "control_latency_steps": result.latency_steps,
    }
    ranges = {}
    for key in CONTINUOUS:
        if result.identified[key]:
            spread = max(2.0 * result.std_error[key], 0.02)
            ranges[key] = [round(result.params[key] * (1 - spread), 4),
                           round(result.params[key] * (1 + spread), 4)]  # fmt: skip
        else:
            ranges[key] = [0.5, 2.0]
    for key in NOT_IDENTIFIABLE:
        ranges[key] = [0.5, 2.0]  # unknown: randomize widely
    ranges["action_latency_steps"] = [result.latency_steps, result.latency_steps]
    header = "# Written by `kizuna calibrate dynamics`. Not identified (kept at 1): "
    header += ", ".join(sorted({*NOT_IDENTIFIABLE, *(set(CONTINUOUS) - set(identified))}))
    paths = {"reality": out / "reality.yaml", "randomization": out / "randomization.yaml"}
    paths["reality"].write_text(header + "\n" + yaml.safe_dump(profile, sort_keys=False))
    paths["randomization"].write_text(
        "# Ranges around the fitted values, for training that must cover the real cell.\n"
        + yaml.safe_dump(ranges, sort_keys=False)
    )
    report = {k: v for k, v in vars(result).items()}
    report["latency_costs"] = {str(k): v for k, v in result.latency_costs.items()}
    paths["report"] = out / "sysid.json"
    paths["report"].write_text(json.dumps(report, indent=2))
    return {k: str(v) for k, v in paths.items()}
