"""Ground-truth errors of every calibration step on simulator-rendered data; prints + JSON.

.venv/bin/python bench/calibration_truth.py [--out bench_calibration.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np

from calibration.bagio import read_bag, write_bag
from calibration.frames import look_at_cv, make_transform, pose_error
from calibration.handeye import calibrate_handeye
from calibration.register import register, scene_points
from calibration.synthetic import depth_cloud, excitation, handeye_samples, record_in_sim
from calibration.sysid import fit_dynamics, trajectory_from_recording
from sim.reality import load_reality

HANDEYE_SEEDS = (0, 1, 2, 3)
HANDEYE_POSES = 20
NOISE = {"noise_free": (0.0, 0.0), "noisy": (3.0, 5e-4)}  # image noise std (levels), joints (rad)


def handeye_errors() -> dict:
    """Per mode, noise level and seed: the refined result's error against the truth, the
    closed-form (OpenCV) answer's error, and what the calibration itself reports."""
    out: dict = {}
    for mode in ("eye_in_hand", "eye_to_hand"):
        for label, noise in NOISE.items():
            runs = {}
            for seed in HANDEYE_SEEDS:
                d = handeye_samples(mode, HANDEYE_POSES, *noise, seed=seed)
                r = calibrate_handeye(d.samples, d.board, d.K, np.zeros(5), mode)
                best = r.methods[r.best]
                mm, deg = pose_error(r.transform, d.T_true)
                cf_mm, cf_deg = pose_error(best.T_closed_form, d.T_true)
                runs[f"seed{seed}"] = {
                    "best": r.best, "mm": mm, "deg": deg,
                    "closed_form_mm": cf_mm, "closed_form_deg": cf_deg,
                    "std_mm": best.std_mm, "std_deg": best.std_deg,
                    "holdout_px": best.holdout_px, "disagreement_mm": r.disagreement_mm,
                    "warnings": r.warnings,
                }  # fmt: skip
                print(f"hand-eye {mode:<11} {label:<10} seed {seed}: {mm:6.3f} mm {deg:6.3f} deg "
                      f"(closed form {cf_mm:6.3f} mm {cf_deg:6.3f} deg; reported 1 sigma "
                      f"{best.std_mm:.3f} mm {best.std_deg:.3f} deg)")  # fmt: skip
            out[f"{mode}/{label}"] = {
                "seeds": runs,
                "max_mm": max(v["mm"] for v in runs.values()),
                "max_deg": max(v["deg"] for v in runs.values()),
            }
    return out


def sysid_errors() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trajs = []
        for i in range(4):
            rec = record_in_sim(excitation(40, seed=i), "medium", seed=i)
            trajs.append(trajectory_from_recording(read_bag(write_bag(f"{tmp}/b{i}", rec)))[0])
    r = fit_dynamics(trajs[:3], trajs[3:])
    truth = load_reality("medium")
    errors = {k: 100 * abs(v / getattr(truth, k) - 1) for k, v in r.params.items()}
    errors["control_latency_steps"] = 100 * abs(r.latency_steps - 1)
    return {
        "percent_error": errors,
        "identified": r.identified,
        "holdout_rms_rad": r.holdout_rms_rad,
    }


def registration_error() -> dict:
    T_true = look_at_cv(np.array([0.9, 0.4, 0.6]), np.array([0.5, 0.0, 0.0]), [0, 0, 1])
    T_init = make_transform(np.array([0.03, -0.02, 0.04]), [0.03, -0.02, 0.02]) @ T_true
    r = register(depth_cloud(T_true, noise_std_m=0.001), scene_points(), T_init=T_init)
    mm, deg = pose_error(r.T_base_cloud, T_true)
    return {"mm": mm, "deg": deg, "fitness": r.fitness, "accepted": r.accepted}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench_calibration.json")
    args = parser.parse_args()
    results = {
        "handeye": handeye_errors(),
        "sysid": sysid_errors(),
        "registration": registration_error(),
    }
    print(json.dumps(results, indent=2))
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
