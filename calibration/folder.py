"""Hand-eye input: a folder of images plus their joint positions, or a bag.

Folder layout: images (PNG/JPEG) and ``poses.json`` or ``poses.csv`` naming each image's joint
positions in rad, matched by joint name:

- ``poses.json``: ``{"joint_names": [...], "samples": [{"image": "0001.png", "q_rad": [...]}]}``
- ``poses.csv``: a header ``image,<joint name>,...`` then one row per image.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from calibration.bagio import read_bag
from calibration.handeye import Sample
from calibration.intrinsics import CalibrationError, load_images
from kizuna.robot import PANDA

STILL_RAD = 2e-3  # joints may move this much within +-STILL_WINDOW_S of an image
STILL_WINDOW_S, MAX_SYNC_S = 0.1, 0.02


def _order(names: list[str], source: str) -> list[int]:
    missing = [n for n in PANDA.joint_names if n not in names]
    if missing:
        raise CalibrationError(f"{source}: joint names lack {missing} (have {names})")
    return [names.index(n) for n in PANDA.joint_names]


def parse_poses_json(text: str, source: str = "poses.json") -> list[tuple[str, np.ndarray]]:
    try:
        doc = json.loads(text)
        names, rows = list(doc["joint_names"]), doc["samples"]
        order = _order(names, source)
        out = []
        for i, row in enumerate(rows):
            q = np.asarray(row["q_rad"], dtype=float)
            if q.shape != (len(names),) or not np.isfinite(q).all():
                raise CalibrationError(f"{source}: samples[{i}].q_rad needs {len(names)} numbers")
            out.append((str(row["image"]), q[order]))
        return out
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CalibrationError):
            raise
        raise CalibrationError(
            f"{source}: expected {{'joint_names': [...], 'samples': [{{'image', 'q_rad'}}]}} "
            f"({type(exc).__name__}: {exc})"
        ) from None


def parse_poses_csv(text: str, source: str = "poses.csv") -> list[tuple[str, np.ndarray]]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not rows[0] or rows[0][0] != "image":
        raise CalibrationError(f"{source}: the header must be 'image,<joint name>,...'")
    order = _order(rows[0][1:], source)
    out = []
    for line, row in enumerate(rows[1:], start=2):
        try:
            q = np.asarray([float(v) for v in row[1:]])
        except ValueError:
            raise CalibrationError(f"{source}: line {line} has a non-number") from None
        if len(q) != len(rows[0]) - 1:
            raise CalibrationError(f"{source}: line {line} has {len(q)} joints, not {len(order)}")
        out.append((row[0], q[order]))
    return out


def poses_csv(poses: list[tuple[str, np.ndarray]]) -> str:
    """The CSV form of ``poses`` (PANDA joint order); ``parse_poses_csv`` reads it back."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", *PANDA.joint_names])
    for name, q in poses:
        writer.writerow([name, *(repr(float(v)) for v in q)])
    return buf.getvalue()


def load_folder(folder: str | Path) -> list[Sample]:
    folder = Path(folder)
    if (folder / "poses.json").is_file():
        poses = parse_poses_json((folder / "poses.json").read_text(), str(folder / "poses.json"))
    elif (folder / "poses.csv").is_file():
        poses = parse_poses_csv((folder / "poses.csv").read_text(), str(folder / "poses.csv"))
    else:
        raise CalibrationError(f"{folder}: no poses.json or poses.csv next to the images")
    images = dict(load_images([folder / name for name, _ in poses]))
    return [Sample(name, q, images[Path(name).name]) for name, q in poses]


def load_bag_samples(bag: str | Path, camera: str) -> tuple[list[Sample], dict[str, str]]:
    """Images of ``camera`` with the joint positions at their time; moving frames skipped."""
    rec = read_bag(bag)
    frames = rec.images.get(camera)
    if not frames:
        raise CalibrationError(
            f"{bag}: no /camera/{camera}/image_raw images (cameras: {sorted(rec.images)})"
        )
    if len(rec.state_t_s) == 0:
        raise CalibrationError(f"{bag}: no /joint_states: record them with the images")
    samples, skipped = [], {}
    for i, (t_s, image) in enumerate(frames):
        name = f"{camera}_{i:04d}@{t_s:.3f}s"
        near = np.abs(rec.state_t_s - t_s) <= STILL_WINDOW_S
        if np.min(np.abs(rec.state_t_s - t_s)) > MAX_SYNC_S:
            skipped[name] = f"no joint state within {MAX_SYNC_S * 1000:.0f} ms"
        elif np.ptp(rec.q_rad[near], axis=0).max() > STILL_RAD:
            skipped[name] = "robot moving while the image was taken (stop before each capture)"
        else:
            q = np.array([np.interp(t_s, rec.state_t_s, c) for c in rec.q_rad.T])
            samples.append(Sample(name, q, image))
    return samples, skipped
