"""Which part of a reality profile costs a policy its success: one factor at a time.

    .venv/bin/python bench/reality_gap.py --checkpoint config/checkpoints/multitask \\
        --task pick_place --reality hard --episodes 20

A reality profile (config/reality/*.yaml) bundles several shifts: another physics engine,
dynamics (masses, friction, joint damping, actuator gains), control latency, joint encoder
offsets, camera extrinsic errors, sensor/actuator noise and lighting. This evaluates the policy
in the nominal simulator, under the whole profile, and under each group of its factors alone
(the rest nominal), on the same seeds, and prints success with 95 % Wilson intervals. The
groups that alone take most of the success away are the ones a feedback loop (or calibration)
has to close. Writes ``bench/results/reality_gap_<profile>.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
for _var in ("OMP_NUM_THREADS", "LP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Groups of RealityProfile fields that are shifted together (one physical cause each).
GROUPS: dict[str, tuple[str, ...]] = {
    "backend": ("backend",),
    "dynamics": ("mass_scale", "friction_scale", "joint_damping_scale", "actuator_gain_scale"),
    "latency": ("control_latency_steps",),
    "joint_offsets": ("joint_offset_rad",),
    "camera_extrinsics": ("camera_pos_error_m", "camera_rot_error_rad"),
    "noise": ("obs_noise_rad", "action_noise_rad", "image_noise_std"),
    "light": ("light_intensity",),
}


def single_factor_profiles(profile: dict, name: str) -> dict[str, dict]:
    """One profile per group the profile actually shifts, holding only that group's fields."""
    profiles = {}
    for group, fields in GROUPS.items():
        shifted = {f: profile[f] for f in fields if f in profile}
        if shifted:
            profiles[group] = {"name": f"{name}_{group}", **shifted}
    return profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--reality", default="hard", help="a profile name or YAML file")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from policies.base import load_policy
    from policies.evaluate import EvalConfig, evaluate
    from sim.reality import load_reality

    torch.set_num_threads(1)
    profile = load_reality(args.reality)
    raw = profile.model_dump(exclude_defaults=True)
    raw.pop("description", None)
    policy = load_policy(args.checkpoint)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        variants: dict[str, tuple[str | None, dict | None]] = {
            "nominal": (None, None),
            f"{profile.name} (all)": (str(args.reality), raw),
        }
        for group, fields in single_factor_profiles(raw, profile.name).items():
            path = Path(scratch) / f"{group}.yaml"
            path.write_text(yaml.safe_dump(fields))
            variants[group] = (str(path), fields)
        for label, (reality, fields) in variants.items():
            cfg = EvalConfig(
                checkpoint=str(args.checkpoint),
                task=args.task,
                episodes=args.episodes,
                reality=reality,
                seed=args.seed,
                videos=0,
                out=str(Path(scratch) / "eval"),  # not beside the checkpoint
            )
            start = time.perf_counter()
            report = evaluate(policy, cfg, progress=True)
            successes, rate = report.successes, report.success_rate
            low, high = report.ci95
            rows.append(
                {
                    "variant": label,
                    "fields": fields,
                    "successes": successes,
                    "episodes": args.episodes,
                    "success_rate": rate,
                    "ci95": [low, high],
                    "wall_s": round(time.perf_counter() - start, 1),
                }
            )
            print(
                f"{label:>22}: {successes:2d}/{args.episodes} "
                f"({rate:4.0%}, 95% CI [{low:.2f}, {high:.2f}])",
                flush=True,
            )
    out = args.out or ROOT / "bench" / "results" / f"reality_gap_{profile.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "checkpoint": str(args.checkpoint),
        "task": args.task,
        "profile": profile.name,
        "seeds": [args.seed, args.seed + args.episodes - 1],
        "rows": rows,
        "date": time.strftime("%Y-%m-%d"),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
