"""Scene registration: align the simulated cell (table, fixtures) to a depth point cloud.

Open3D: FPFH features + RANSAC (global), then point-to-plane ICP, gated on fitness (the share
of cloud points that land on the twin) and inlier RMSE. The result ``T_base_cloud`` maps the
cloud's frame (a depth camera's optical frame) into the robot base frame of the digital twin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Headless rendering (as in ``sim``): MUJOCO_GL must be set before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import open3d as o3d  # noqa: E402

from calibration.intrinsics import CalibrationError  # noqa: E402
from kizuna.task import load_task  # noqa: E402
from sim.backends.mujoco_backend import MujocoBackend  # noqa: E402
from sim.scene import Layout  # noqa: E402

MIN_FITNESS, MAX_RMSE_M = 0.8, 0.01
reg = o3d.pipelines.registration


@dataclass
class RegistrationResult:
    T_base_cloud: np.ndarray
    fitness: float  # share of cloud points within the ICP distance of the scene
    inlier_rmse_m: float
    accepted: bool
    reason: str


def scene_points(task: str = "pick_place", n_points: int = 20000, seed: int = 0) -> np.ndarray:
    """Points on the static cell's surfaces (table, fixtures at their nominal pose), base frame."""
    sim = MujocoBackend(load_task(task))
    sim.reset(Layout({}, {}), np.array(sim.robot.home_q_rad), 1.0, _nominal())
    m, d = sim.model, sim.data
    rng = np.random.default_rng(seed)
    geoms = [
        g
        for g in np.flatnonzero(sim._is_env_geom)  # noqa: SLF001 - the backend's own classing
        if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX
    ]
    areas = []
    for g in geoms:
        a, b, c = m.geom_size[g]
        areas.append(8 * (a * b + b * c + a * c))
    counts = rng.multinomial(n_points, np.array(areas) / np.sum(areas))
    points = [_box_surface(m.geom_size[g], rng, n) for g, n in zip(geoms, counts, strict=True)]
    return np.concatenate(
        [
            p @ d.geom_xmat[g].reshape(3, 3).T + d.geom_xpos[g]
            for g, p in zip(geoms, points, strict=True)
        ]
    )


def _nominal():  # noqa: ANN202 - PhysicsParams, imported lazily with the backend
    from sim.scene import PhysicsParams

    return PhysicsParams()


def _box_surface(half: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` points uniformly on the surface of a box of half extents ``half`` (local frame)."""
    areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]]).repeat(2)
    face = rng.choice(6, size=n, p=areas / areas.sum())
    p = rng.uniform(-1.0, 1.0, (n, 3)) * half
    axis = face // 2
    p[np.arange(n), axis] = np.where(face % 2 == 0, 1.0, -1.0) * half[axis]
    return p


def _cloud(points: np.ndarray, voxel_m: float) -> tuple[o3d.geometry.PointCloud, object]:
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)).voxel_down_sample(voxel_m)
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=3 * voxel_m, max_nn=30))
    fpfh = reg.compute_fpfh_feature(pcd, o3d.geometry.KDTreeSearchParamHybrid(5 * voxel_m, 100))
    return pcd, fpfh


def register(
    cloud_points: np.ndarray,
    scene: np.ndarray,
    voxel_m: float = 0.01,
    T_init: np.ndarray | None = None,
    min_fitness: float = MIN_FITNESS,
    max_rmse_m: float = MAX_RMSE_M,
    seed: int = 0,
) -> RegistrationResult:
    """Global registration (and ``T_init`` when given), refined by ICP; the best one wins."""
    if len(cloud_points) < 100:
        raise CalibrationError(
            f"the point cloud has {len(cloud_points)} points: capture a depth image that sees "
            "the table and at least one fixture"
        )
    o3d.utility.random.seed(seed)
    src, src_f = _cloud(cloud_points, voxel_m)
    dst, dst_f = _cloud(scene, voxel_m)
    ransac = reg.registration_ransac_based_on_feature_matching(
        src, dst, src_f, dst_f, True, 3 * voxel_m,
        reg.TransformationEstimationPointToPoint(False), 3,
        [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9),
         reg.CorrespondenceCheckerBasedOnDistance(3 * voxel_m)],
        reg.RANSACConvergenceCriteria(100000, 0.999),
    )  # fmt: skip
    starts = [ransac.transformation] + ([T_init] if T_init is not None else [])
    best = None
    for start in starts:
        for radius in (4 * voxel_m, 1.5 * voxel_m, 0.5 * voxel_m):
            start = reg.registration_icp(
                src, dst, radius, start, reg.TransformationEstimationPointToPlane()
            ).transformation
        final = reg.evaluate_registration(src, dst, 1.5 * voxel_m, start)
        if best is None or (final.fitness, -final.inlier_rmse) > (best[1], -best[2]):
            best = (np.asarray(start).copy(), final.fitness, final.inlier_rmse)
    T, fitness, rmse = best
    ok = fitness >= min_fitness and rmse <= max_rmse_m
    reason = (
        "accepted"
        if ok
        else f"rejected: fitness {fitness:.2f} (need >= {min_fitness}) and inlier RMSE "
        f"{rmse * 1000:.1f} mm (need <= {max_rmse_m * 1000:.0f} mm); capture a view that shows "
        "the table edge and the fixtures, or pass an initial guess (hand-eye T_base_cam)"
    )
    return RegistrationResult(T, float(fitness), float(rmse), ok, reason)


def load_cloud(path: str | Path) -> np.ndarray:
    """(N, 3) points of a .ply/.pcd/.xyz file (Open3D) or a .npy array."""
    path = Path(path)
    if path.suffix == ".npy":
        points = np.load(path)
    else:
        points = np.asarray(o3d.io.read_point_cloud(str(path)).points)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise CalibrationError(f"{path}: expected an (N, 3) point cloud, got {points.shape}")
    return points
