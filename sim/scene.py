"""What a backend builds: cameras, per-episode layouts and physical parameters (plain data).

Both physics backends build the same scene from a ``TaskSpec`` plus the objects here, so a
policy sees the same cell whichever engine runs underneath.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kizuna.task import TaskSpec

TABLE_HALF_EXTENTS_M = (0.45, 0.6, 0.02)  # table top is z = 0; its centre at x = 0.45
TABLE_CENTER_X_M = 0.45
TABLE_RGBA = (0.62, 0.55, 0.45, 1.0)
# A reach target's post: from the ball down through the table top (its lower end is hidden).
TARGET_POST_M = 0.4
TARGET_POST_RADIUS_M = 0.004


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera. ``parent`` is ``world`` or ``hand`` (moves with the gripper).

    ``pos_m`` and ``target_m`` are in the parent frame; ``up`` is the image's up direction.
    """

    name: str
    parent: str
    pos_m: tuple[float, float, float]
    target_m: tuple[float, float, float]
    up: tuple[float, float, float]
    fovy_deg: float


CAMERAS: dict[str, CameraSpec] = {
    # Across the table, facing the robot, high enough to see into bins.
    "front": CameraSpec("front", "world", (1.15, 0.0, 0.55), (0.45, 0.0, 0.05), (0, 0, 1), 50.0),
    # On the hand, behind the fingers, looking along the gripper (hand z axis).
    "wrist": CameraSpec("wrist", "hand", (0.06, 0.0, 0.0), (0.0, 0.0, 0.20), (1, 0, 0), 75.0),
}


def look_at_matrix(pos: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Rotation whose columns are the camera's x (right), y (up) and z (backward) axes.

    This is the OpenGL/MuJoCo camera convention: the camera looks along its -z axis.
    """
    back = pos - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    right = right / np.linalg.norm(right)
    cam_up = np.cross(back, right)
    return np.stack([right, cam_up, back], axis=1)


@dataclass(frozen=True)
class Pose2D:
    """Pose of a thing standing on the table: position (z of its bottom = table) and yaw."""

    xyz_m: tuple[float, float, float]
    yaw_rad: float


@dataclass(frozen=True)
class Layout:
    """Where everything starts this episode."""

    objects: dict[str, Pose2D]
    fixtures: dict[str, Pose2D]


@dataclass(frozen=True)
class PhysicsParams:
    """Engine parameters of one episode; the neutral value of every scale is 1.

    Produced by ``sim.randomization.randomize`` and shifted by a reality profile.
    """

    mass_scale: dict[str, float] = field(default_factory=dict)  # per object
    friction_scale: dict[str, float] = field(default_factory=dict)  # per object
    size_scale: dict[str, float] = field(default_factory=dict)  # per object
    rgba: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)  # overrides
    joint_damping_scale: float = 1.0
    actuator_gain_scale: float = 1.0
    light_offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    light_intensity: float = 1.0
    # Per camera: position offset (m, parent frame) and a small rotation (rad, axis-angle).
    camera_pos_offset_m: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    camera_rot_offset_rad: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def get(self, table: dict[str, float], name: str) -> float:
        return table.get(name, 1.0)


def _separation_m(spec: TaskSpec, a: str, b: str) -> float:
    def radius(name: str) -> float:
        if name in spec.fixture_names:
            f = spec.fixture(name)
            if f.kind == "target":
                return 0.0
            return 0.5 * float(np.hypot(f.size_m[0], f.size_m[1])) + f.wall_m
        return 0.5 * spec.object(name).footprint_m * np.sqrt(2.0)

    return radius(a) + radius(b) + 0.02


def sample_layout(spec: TaskSpec, rng: np.random.Generator, max_tries: int = 200) -> Layout:
    """Draw start poses from the spec's ranges, keeping things from overlapping.

    Fixtures first (they are larger), then objects, each by rejection sampling.
    """
    placed: dict[str, np.ndarray] = {}
    objects: dict[str, Pose2D] = {}
    fixtures: dict[str, Pose2D] = {}
    items = [(f.name, f.pose, True) for f in spec.fixtures] + [
        (o.name, o.pose, False) for o in spec.objects
    ]
    for name, pose, is_fixture in items:
        for _ in range(max_tries):
            xy = np.array([rng.uniform(*pose.x_m), rng.uniform(*pose.y_m)])
            is_target = is_fixture and spec.fixture(name).kind == "target"
            if is_target or all(
                np.linalg.norm(xy - other) >= _separation_m(spec, name, other_name)
                for other_name, other in placed.items()
                if not (
                    other_name in spec.fixture_names and spec.fixture(other_name).kind == "target"
                )
            ):
                break
        else:
            raise ValueError(
                f"task {spec.name!r}: cannot place {name!r} apart from {sorted(placed)} in "
                f"{max_tries} tries; widen its pose ranges or move the others"
            )
        placed[name] = xy
        z = rng.uniform(*pose.z_m)
        yaw = rng.uniform(*pose.yaw_rad)
        target = fixtures if is_fixture else objects
        target[name] = Pose2D((float(xy[0]), float(xy[1]), float(z)), float(yaw))
    return Layout(objects=objects, fixtures=fixtures)
