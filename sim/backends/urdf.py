"""The bodies of the PyBullet cell, all primitives: a URDF of a ``RobotDescription``, the table,
the task's objects and fixtures.

The joint origins are copied verbatim from the description, so the URDF's kinematics are those
of ``kizuna.kinematics.forward_kinematics``. Capsules and boxes instead of meshes: they load in
milliseconds and render several times faster. Sizes follow ``sim.backends.mjcf`` so both
engines show (and collide with) the same arm.

Links: ``base`` (fixed to the world), one link per arm joint (``<joint name>_link``), ``hand``
(flange + hand yaw), ``tcp`` (no geometry) and the two fingers.
"""

from __future__ import annotations

import numpy as np
import pybullet as p
from pybullet_utils.bullet_client import BulletClient

from kizuna.robot import RobotDescription
from kizuna.task import FixtureSpec, ObjectSpec
from sim.scene import (
    TABLE_CENTER_X_M,
    TABLE_HALF_EXTENTS_M,
    TABLE_RGBA,
    TARGET_POST_M,
    TARGET_POST_RADIUS_M,
)

HAND_LINK = "hand"
TCP_LINK = "tcp"
FINGER_LINKS = ("left_finger", "right_finger")
HAND_SIZE_M = (0.06, 0.2, 0.05)  # x, y (across the finger travel), z
HAND_GAP_M = 0.004  # between the hand box and the finger roots
HAND_MASS_KG = 0.73
FINGER_SIZE_M = (0.024, 0.016, 0.054)  # x, y (thickness along the slide), z (length)
FINGER_MASS_KG = 0.05
FINGER_SPEED_M_S = 0.2
ARM_RGBA = (0.93, 0.93, 0.93, 1.0)
JOINT_RGBA = (0.25, 0.25, 0.27, 1.0)
FINGER_RGBA = (0.15, 0.15, 0.15, 1.0)
MIN_SEGMENT_M = 0.01  # shorter offsets between joints are hidden inside the joint housing
ZONE_THICKNESS_M = 0.001
# Everything an object touches has friction 1 and Bullet multiplies the two coefficients, so
# an object's own ``friction`` is the effective coefficient against the table and the fingers.
SURFACE_FRICTION = 1.0
SPINNING_FRICTION = 0.002  # m; keeps a held object from twisting about the finger normal
# A floor under the table (as in MuJoCo) catches dropped objects and fills the background.
FLOOR_TOP_Z_M = -0.75
FLOOR_HALF_EXTENTS_M = (3.0, 3.0, 0.05)
FLOOR_RGBA = (0.35, 0.36, 0.38, 1.0)

Vec3 = tuple[float, float, float]
Rgba = tuple[float, float, float, float]
Box = tuple[Vec3, Vec3]  # (full size, centre), metres


def _fmt(values: tuple[float, ...] | np.ndarray) -> str:
    # repr precision: the compiled chain must match the numpy FK to the last digit.
    return " ".join(repr(float(v)) for v in values)


def _inertial(mass_kg: float, size_m: float) -> str:
    # Isotropic inertia about the link origin: no principal frame needed, well conditioned.
    inertia = 0.4 * mass_kg * size_m**2
    i = repr(inertia)
    return (
        f'<inertial><origin xyz="0 0 0"/><mass value="{mass_kg!r}"/>'
        f'<inertia ixx="{i}" ixy="0" ixz="0" iyy="{i}" iyz="0" izz="{i}"/></inertial>'
    )


def _shape(geometry: str, xyz: np.ndarray, rpy: np.ndarray, rgba: tuple[float, ...]) -> str:
    origin = f'<origin xyz="{_fmt(xyz)}" rpy="{_fmt(rpy)}"/>'
    material = f'<material name="{_fmt(rgba)}"><color rgba="{_fmt(rgba)}"/></material>'
    return (
        f"<visual>{origin}<geometry>{geometry}</geometry>{material}</visual>"
        f"<collision>{origin}<geometry>{geometry}</geometry></collision>"
    )


def _capsule(start: np.ndarray, end: np.ndarray, radius_m: float, rgba: tuple[float, ...]) -> str:
    """A capsule whose axis runs from ``start`` to ``end`` (link frame)."""
    axis = end - start
    length = float(np.linalg.norm(axis))
    d = axis / length
    # rpy turning the capsule's z axis onto d: pitch about y, then yaw about z.
    rpy = np.array([0.0, np.arccos(np.clip(d[2], -1.0, 1.0)), np.arctan2(d[1], d[0])])
    geometry = f'<capsule radius="{radius_m!r}" length="{length!r}"/>'
    return _shape(geometry, (start + end) / 2.0, rpy, rgba)


def _link_shapes(next_xyz_m: np.ndarray, radius_m: float) -> str:
    """Joint housing along z, then capsules along x, y, z to the next joint (the Panda's offset
    elbow drawn as an L, not a diagonal)."""
    shapes = _capsule(
        np.array([0, 0, -radius_m]), np.array([0, 0, radius_m]), radius_m, JOINT_RGBA
    )
    corner = np.zeros(3)
    for axis in range(3):
        nxt = corner.copy()
        nxt[axis] = next_xyz_m[axis]
        if abs(next_xyz_m[axis]) > MIN_SEGMENT_M:
            shapes += _capsule(corner, nxt, radius_m, ARM_RGBA)
        corner = nxt
    return shapes


def _box(size_m: tuple[float, ...], xyz_m: tuple[float, ...], rgba: tuple[float, ...]) -> str:
    return _shape(f'<box size="{_fmt(size_m)}"/>', np.array(xyz_m), np.zeros(3), rgba)


def _link(name: str, mass_kg: float, size_m: float, shapes: str = "") -> str:
    return f'<link name="{name}">{_inertial(mass_kg, size_m)}{shapes}</link>'


def _joint(kind: str, name: str, parent: str, child: str, xyz: Vec3, rpy: Vec3) -> str:
    """A joint element left open for <axis> and <limit>; close it with ``</joint>``."""
    return (
        f'<joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/>'
        f'<origin xyz="{_fmt(xyz)}" rpy="{_fmt(rpy)}"/>'
    )


def _arm(robot: RobotDescription) -> list[str]:
    """The pedestal (base link) and the revolute chain."""
    r0, z1 = robot.joints[0].link_radius_m, robot.joints[0].xyz_m[2]
    pedestal = _capsule(np.array([0, 0, r0]), np.array([0, 0, z1 - r0]), r0, ARM_RGBA)
    parts = [_link("base", robot.link_mass_kg, r0, pedestal)]
    parent = "base"
    next_origins = [j.xyz_m for j in robot.joints[1:]] + [robot.flange_xyz_m]
    for joint, next_xyz in zip(robot.joints, next_origins, strict=True):
        child = f"{joint.name}_link"
        shapes = _link_shapes(np.array(next_xyz, dtype=float), joint.link_radius_m)
        parts.append(_link(child, robot.link_mass_kg, joint.link_radius_m, shapes))
        parts.append(
            _joint("revolute", joint.name, parent, child, joint.xyz_m, joint.rpy_rad)
            + '<axis xyz="0 0 1"/>'
            + f'<limit lower="{joint.lower_rad!r}" upper="{joint.upper_rad!r}" '
            f'effort="{float(joint.effort_nm)!r}" velocity="{joint.velocity_rad_s!r}"/></joint>'
        )
        parent = child
    return parts


def _gripper(robot: RobotDescription, arm_tip: str) -> list[str]:
    """Hand (fixed to the flange), TCP marker and the two prismatic fingers."""
    hand_z = robot.finger_origin_m - HAND_GAP_M - HAND_SIZE_M[2] / 2.0
    hand_yaw = (0.0, 0.0, robot.hand_yaw_rad)
    parts = [
        _link(HAND_LINK, HAND_MASS_KG, 0.05, _box(HAND_SIZE_M, (0, 0, hand_z), ARM_RGBA)),
        _joint("fixed", "hand_joint", arm_tip, HAND_LINK, robot.flange_xyz_m, hand_yaw)
        + "</joint>",
        _link(TCP_LINK, 0.001, 0.01),
        _joint("fixed", "tcp_joint", HAND_LINK, TCP_LINK, (0, 0, robot.tcp_offset_m), (0, 0, 0))
        + "</joint>",
    ]
    _, fy, fz = FINGER_SIZE_M
    finger_origin = (0.0, 0.0, robot.finger_origin_m)
    # Each finger's inner face sits at y = 0 when closed and slides outward along +-y, so the
    # gap between the fingers is the sum of the two joint positions.
    for link, joint_name, sign in zip(FINGER_LINKS, robot.gripper_names, (1, -1), strict=True):
        pad = _box(FINGER_SIZE_M, (0.0, sign * fy / 2.0, fz / 2.0), FINGER_RGBA)
        parts.append(_link(link, FINGER_MASS_KG, fz / 2.0, pad))
        parts.append(
            _joint("prismatic", joint_name, HAND_LINK, link, finger_origin, (0, 0, 0))
            + f'<axis xyz="0 {sign} 0"/>'
            + f'<limit lower="0" upper="{robot.finger_travel_m!r}" '
            f'effort="{robot.finger_force_n!r}" velocity="{FINGER_SPEED_M_S!r}"/></joint>'
        )
    return parts


def robot_urdf(robot: RobotDescription) -> str:
    """URDF text of ``robot`` built from capsules and boxes."""
    tip = f"{robot.joints[-1].name}_link"
    body = "\n".join(_arm(robot) + _gripper(robot, tip))
    return f'<?xml version="1.0"?>\n<robot name="{robot.robot_id}">\n{body}\n</robot>\n'


def fixture_boxes(fixture: FixtureSpec) -> list[Box]:
    """The boxes of a zone, bin or hole in the fixture's frame (origin at its centre, z = 0 on
    the table); a reach target has none (it is a sphere)."""
    if fixture.kind == "zone":
        x, y = fixture.size_m
        # Paint on the table: 1 mm thick, its centre 1 mm up so it does not z-fight the top.
        return [((x, y, ZONE_THICKNESS_M), (0.0, 0.0, ZONE_THICKNESS_M))]
    if fixture.kind == "target":
        return []
    x, y, depth = fixture.size_m
    w = fixture.wall_m
    # Four walls around the x-by-y opening: two spanning the full outer y, two between them.
    boxes: list[Box] = [
        ((w, y + 2 * w, depth), (sign * (x + w) / 2.0, 0.0, depth / 2.0)) for sign in (1, -1)
    ] + [((x, w, depth), (0.0, sign * (y + w) / 2.0, depth / 2.0)) for sign in (1, -1)]
    if fixture.kind == "bin":
        boxes.append(((x, y, w), (0.0, 0.0, w / 2.0)))
    return boxes


def _static_box(c: BulletClient, half_m: Vec3, top_z_m: float, x_m: float, rgba: Rgba) -> int:
    col = c.createCollisionShape(p.GEOM_BOX, halfExtents=list(half_m))
    vis = c.createVisualShape(p.GEOM_BOX, halfExtents=list(half_m), rgbaColor=rgba)
    body = c.createMultiBody(0.0, col, vis, basePosition=[x_m, 0.0, top_z_m - half_m[2]])
    c.changeDynamics(body, -1, lateralFriction=SURFACE_FRICTION)
    return body


def create_floor_and_table(c: BulletClient) -> dict[str, int]:
    """Static floor and table (top at z = 0); body ids by name."""
    return {
        "floor": _static_box(c, FLOOR_HALF_EXTENTS_M, FLOOR_TOP_Z_M, 0.0, FLOOR_RGBA),
        "table": _static_box(c, TABLE_HALF_EXTENTS_M, 0.0, TABLE_CENTER_X_M, TABLE_RGBA),
    }


def _object_shapes(c: BulletClient, obj: ObjectSpec, size_scale: float) -> tuple[int, int]:
    """(collision, visual) shape ids; ``size_m`` as in ``ObjectSpec``."""
    size = [s * size_scale for s in obj.size_m]
    if obj.shape == "box":
        half = [s / 2.0 for s in size]
        return (
            c.createCollisionShape(p.GEOM_BOX, halfExtents=half),
            c.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=obj.rgba),
        )
    if obj.shape == "cylinder":  # the two calls name the height differently
        return (
            c.createCollisionShape(p.GEOM_CYLINDER, radius=size[0], height=size[1]),
            c.createVisualShape(
                p.GEOM_CYLINDER, radius=size[0], length=size[1], rgbaColor=obj.rgba
            ),
        )
    return (
        c.createCollisionShape(p.GEOM_SPHERE, radius=size[0]),
        c.createVisualShape(p.GEOM_SPHERE, radius=size[0], rgbaColor=obj.rgba),
    )


def create_object(c: BulletClient, obj: ObjectSpec, size_scale: float) -> int:
    """A free rigid body with the spec's shape (sizes times ``size_scale``), mass and friction."""
    col, vis = _object_shapes(c, obj, size_scale)
    body = c.createMultiBody(obj.mass_kg, col, vis)
    # The anchor stops a held object from creeping along the finger pads. No sleeping: a body
    # asleep at the end of one episode would start the next one differently.
    c.changeDynamics(
        body,
        -1,
        lateralFriction=obj.friction,
        spinningFriction=SPINNING_FRICTION,
        frictionAnchor=True,
        activationState=p.ACTIVATION_STATE_DISABLE_SLEEPING,
    )
    return body


def create_fixture(c: BulletClient, fixture: FixtureSpec) -> int:
    """A static body: visual only for zones and targets, colliding boxes for bins and holes."""
    if fixture.kind == "target":  # a ball on a post, as in sim/backends/mjcf.py
        vis = c.createVisualShapeArray(
            [p.GEOM_SPHERE, p.GEOM_CYLINDER],
            radii=[fixture.size_m[0], TARGET_POST_RADIUS_M],
            lengths=[0.0, TARGET_POST_M],
            visualFramePositions=[[0, 0, 0], [0, 0, -TARGET_POST_M / 2]],
            rgbaColors=[fixture.rgba] * 2,
        )
        return c.createMultiBody(0.0, -1, vis)
    boxes = fixture_boxes(fixture)
    half = [[s / 2.0 for s in size] for size, _ in boxes]
    centres = [list(centre) for _, centre in boxes]
    kinds = [p.GEOM_BOX] * len(boxes)
    vis = c.createVisualShapeArray(
        kinds,
        halfExtents=half,
        visualFramePositions=centres,
        rgbaColors=[fixture.rgba] * len(boxes),
    )
    col = -1
    if fixture.kind != "zone":  # a zone is paint on the table: seen, never touched
        col = c.createCollisionShapeArray(kinds, halfExtents=half, collisionFramePositions=centres)
    body = c.createMultiBody(0.0, col, vis)
    c.changeDynamics(body, -1, lateralFriction=SURFACE_FRICTION)
    return body
