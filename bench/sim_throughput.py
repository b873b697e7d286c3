"""Control steps per second of the kizuna env per backend, with and without cameras, and of
panda-gym's PandaPickAndPlace-v3 measured in the same run for comparison.

    .venv/bin/python bench/sim_throughput.py [--repeats 3] [--out FILE.json]

One process, one core (thread pools pinned to 1). Each figure is the median of ``--repeats``
timed runs; the machine is shared and noisy, so compare ratios within one run.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "LP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from kizuna.robot import PANDA  # noqa: E402

TARGETS = {"mujoco_state_per_core": 1000.0, "mujoco_2x96_per_core": 150.0}
CONFIGS = [  # (label, cameras, image size)
    ("state", (), 96),
    ("1x96", ("front",), 96),
    ("2x96", ("front", "wrist"), 96),
    ("1x128", ("front",), 128),
    ("2x128", ("front", "wrist"), 128),
]


def _median_rate(run: Callable[[], int], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        steps = run()
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def kizuna_rate(
    backend: str, cameras: tuple[str, ...], size: int, steps: int, repeats: int
) -> float:
    from sim.env import KizunaEnv

    env = KizunaEnv("pick_place", backend=backend, cameras=cameras, image_size=size)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    home = np.array(PANDA.home_q_rad)

    def run() -> int:
        # A gentle wander around home: a realistic load for the controllers and contacts.
        for i in range(steps):
            q = home + 0.2 * np.sin(0.05 * i + np.arange(PANDA.dof)) + rng.normal(0, 0.01, 7)
            env.step(np.concatenate([np.clip(q, PANDA.lower_rad, PANDA.upper_rad), [i % 40 < 20]]))
        return steps

    rate = _median_rate(run, repeats)
    env.close()
    return rate


def panda_gym_rate(camera_px: int | None, steps: int, repeats: int) -> float | None:
    try:
        import gymnasium as gym
        import panda_gym  # noqa: F401
    except ImportError:
        return None
    kwargs = {"render_mode": "rgb_array", "render_width": camera_px, "render_height": camera_px}
    env = gym.make("PandaPickAndPlace-v3", **(kwargs if camera_px else {}))
    env.reset(seed=0)
    env.action_space.seed(0)

    def run() -> int:
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if camera_px:
                env.render()
            if term or trunc:
                env.reset()
        return steps

    rate = _median_rate(run, repeats)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300, help="steps per timed run (state-only)")
    parser.add_argument("--out", default="bench/results/sim_throughput.json")
    parser.add_argument("--backends", nargs="*", default=["mujoco", "pybullet"])
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    for backend in args.backends:
        results[backend] = {}
        for label, cameras, size in CONFIGS:
            steps = (
                args.steps
                if not cameras
                else max(30, args.steps // (4 if backend == "mujoco" else 15))
            )
            rate = kizuna_rate(backend, cameras, size, steps, args.repeats)
            results[backend][label] = round(rate, 1)
            print(f"kizuna {backend:9s} {label:6s} {rate:9.1f} control steps/s")
    pg_state = panda_gym_rate(None, args.steps, args.repeats)
    pg_cam = panda_gym_rate(128, max(30, args.steps // 15), args.repeats)
    results["panda_gym_PickAndPlace-v3"] = {
        "state": round(pg_state, 1) if pg_state else None,
        "1x128": round(pg_cam, 1) if pg_cam else None,
    }
    print(f"panda-gym PickAndPlace-v3 state {pg_state} /s, 128 px camera {pg_cam} /s")

    checks = {}
    if "mujoco" in results:
        checks["mujoco_state_per_core >= 1000"] = results["mujoco"]["state"] >= 1000
        checks["mujoco_2x96_per_core >= 150"] = results["mujoco"]["2x96"] >= 150
    if "pybullet" in results and pg_state:
        checks["pybullet_state >= panda_gym_state"] = results["pybullet"]["state"] >= pg_state
        checks["pybullet_1x128 >= panda_gym_1x128"] = results["pybullet"]["1x128"] >= (pg_cam or 0)
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'MISS'}  {name}")
    report = {
        "bench": "sim_throughput",
        "unit": "control steps per second, one process on one core (20 Hz control)",
        "repeats": args.repeats,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
        "results": results,
        "targets": checks,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
