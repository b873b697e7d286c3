"""``kizuna calibrate``: intrinsics, hand-eye, dynamics (sysid) and scene registration."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml


def _board_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", choices=("charuco", "checkerboard"), default="charuco")
    p.add_argument("--squares-x", type=int, default=8, help="squares across (not corners)")
    p.add_argument("--squares-y", type=int, default=6)
    p.add_argument("--square-m", type=float, default=0.03, help="square side in metres")
    p.add_argument("--marker-m", type=float, default=0.022, help="ChArUco marker side (m)")
    p.add_argument("--dictionary", default="DICT_5X5_100", help="ArUco dictionary (ChArUco)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="calibrate", metavar="STEP", required=True)
    p = sub.add_parser("intrinsics", help="camera matrix + distortion -> camera_info YAML")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--camera-name", default="camera")
    p.add_argument("--out", default="camera_info.yaml")
    _board_args(p)
    p = sub.add_parser("handeye", help="T_gripper_cam / T_base_cam from a bag or folder")
    p.add_argument("input", help="rosbag2 directory, or a folder of images + poses.json/csv")
    p.add_argument("--mode", choices=("eye_in_hand", "eye_to_hand"), default="eye_in_hand")
    p.add_argument("--camera-info", required=True, help="camera_info YAML (intrinsics)")
    p.add_argument("--camera", default="wrist", help="camera name in the bag's topics")
    p.add_argument("--out", default="handeye.yaml")
    _board_args(p)
    p = sub.add_parser("dynamics", help="fit sim parameters to recorded joint trajectories")
    p.add_argument("bags", nargs="+", help="rosbag2 directories; the last --holdout validate")
    p.add_argument("--holdout", type=int, default=None, help="bags held out (default 1 if >1)")
    p.add_argument("--task", default="reach", help="task whose cell was recorded")
    p.add_argument("--generations", type=int, default=30, help="CMA-ES generations")
    p.add_argument("--out-dir", default="calibration_out")
    p = sub.add_parser("register", help="align the sim cell to a depth point cloud (Open3D)")
    p.add_argument("cloud", help=".ply/.pcd/.xyz/.npy point cloud (depth camera frame)")
    p.add_argument("--task", default="pick_place")
    p.add_argument("--init", help="handeye YAML whose T_base_cam seeds the alignment")
    p.add_argument("--voxel-m", type=float, default=0.01)
    p.add_argument("--out", default="registration.yaml")


def _board(args: argparse.Namespace):  # noqa: ANN202 - BoardSpec, imported lazily
    from calibration.board import BoardSpec

    return BoardSpec(
        args.board, args.squares_x, args.squares_y, args.square_m, args.marker_m, args.dictionary
    )


def _intrinsics(args: argparse.Namespace) -> int:
    from calibration.intrinsics import calibrate_intrinsics, load_images, write_camera_info

    result = calibrate_intrinsics(load_images(args.images), _board(args), args.camera_name)
    write_camera_info(result, args.out)
    for name, reason in result.rejected.items():
        print(f"rejected {name}: {reason}")
    for w in result.warnings:
        print(f"warning: {w}")
    print(f"mean reprojection error {result.mean_error_px:.3f} px -> {args.out}")
    return 0


def _handeye(args: argparse.Namespace) -> int:
    from calibration.folder import load_bag_samples, load_folder
    from calibration.handeye import calibrate_handeye
    from calibration.intrinsics import load_camera_info

    info = load_camera_info(args.camera_info)
    source = Path(args.input)
    if (source / "metadata.yaml").is_file():
        samples, skipped = load_bag_samples(source, args.camera)
    else:
        samples, skipped = load_folder(source), {}
    result = calibrate_handeye(
        samples, _board(args), info.camera_matrix, info.distortion, args.mode
    )
    result.rejected.update(skipped)
    Path(args.out).write_text(yaml.safe_dump(result.to_dict(), sort_keys=False))
    for name, m in result.methods.items():
        print(f"{name:>10}: held-out {m.holdout_mm:.2f} mm {m.holdout_deg:.3f} deg "
              f"{m.holdout_px:.2f} px")  # fmt: skip
    print(f"methods disagree by up to {result.disagreement_mm:.2f} mm, "
          f"{result.disagreement_deg:.3f} deg; best: {result.best}")  # fmt: skip
    for w in result.warnings:
        print(f"warning: {w}")
    print(f"{result.transform_name} -> {args.out}")
    return 0


def _dynamics(args: argparse.Namespace) -> int:
    from calibration.bagio import read_bag
    from calibration.sysid import fit_dynamics, trajectory_from_recording, write_profile

    trajs = [trajectory_from_recording(read_bag(b), b)[0] for b in args.bags]
    n_hold = args.holdout if args.holdout is not None else (1 if len(trajs) > 1 else 0)
    train, hold = trajs[: len(trajs) - n_hold], trajs[len(trajs) - n_hold :]
    result = fit_dynamics(train, hold, task=args.task, generations=args.generations)
    paths = write_profile(result, args.out_dir)
    for key, value in result.params.items():
        status = "identified" if result.identified[key] else "NOT identified"
        print(f"{key}: {value:.3f} +- {result.std_error[key]:.1%} ({status})")
    print(f"control_latency_steps: {result.latency_steps}")
    for key, why in result.not_identifiable.items():
        print(f"{key}: not identifiable here ({why})")
    if result.holdout_rms_rad is not None:
        print(f"held-out RMS {result.holdout_rms_rad * 1000:.2f} mrad "
              f"(uncalibrated sim {result.nominal_holdout_rms_rad * 1000:.2f} mrad)")  # fmt: skip
    print(json.dumps(paths))
    return 0


def _register(args: argparse.Namespace) -> int:
    from calibration.frames import CONVENTIONS
    from calibration.register import load_cloud, register, scene_points

    T_init = None
    if args.init:
        T_init = np.array(yaml.safe_load(Path(args.init).read_text())["T_base_cam"])
    result = register(load_cloud(args.cloud), scene_points(args.task), args.voxel_m, T_init)
    doc = {
        "conventions": CONVENTIONS,
        "T_base_cloud": result.T_base_cloud.round(6).tolist(),
        "fitness": result.fitness,
        "inlier_rmse_m": result.inlier_rmse_m,
        "accepted": result.accepted,
    }
    Path(args.out).write_text(yaml.safe_dump(doc, sort_keys=False))
    print(f"{result.reason} (fitness {result.fitness:.3f}, RMSE "
          f"{result.inlier_rmse_m * 1000:.1f} mm) -> {args.out}")  # fmt: skip
    return 0 if result.accepted else 1


def main(args: argparse.Namespace) -> int:
    from calibration.intrinsics import CalibrationError

    step = {"intrinsics": _intrinsics, "handeye": _handeye, "dynamics": _dynamics}
    step["register"] = _register
    try:
        return step[args.calibrate](args)
    except CalibrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_args(argv: list[str]) -> argparse.Namespace:
    """Parse ``kizuna calibrate`` arguments (tests and scripts)."""
    parser = argparse.ArgumentParser(prog="kizuna calibrate")
    add_arguments(parser)
    return parser.parse_args(argv)
