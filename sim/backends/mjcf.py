"""MJCF (MuJoCo XML) for one kizuna cell: the arm from a ``RobotDescription``, table, task objects,
fixtures and cameras, all from primitives (meshes render ~6x slower).

Collision classes (MuJoCo collides two geoms when ``contype`` of one meets ``conaffinity`` of the
other): the environment (table, floor, fixture walls) only receives contacts, objects collide
with everything, arm links and fingers collide with the environment and objects but never with
each other, so the arm needs no self-collision exclusions.

Names the backend looks up: arm joints/actuators by ``Joint.name``, ``gripper`` (actuator),
``hand`` (body), ``tcp`` (site), ``object/<name>`` and ``fixture/<name>`` (bodies), ``table``
(geom), ``key`` (light), cameras by ``CameraSpec.name``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

import numpy as np

from kizuna.kinematics import rpy_to_matrix
from kizuna.robot import RobotDescription
from kizuna.task import FixtureSpec, ObjectSpec, TaskSpec
from sim.scene import (
    TABLE_CENTER_X_M,
    TABLE_HALF_EXTENTS_M,
    TABLE_RGBA,
    TARGET_POST_M,
    TARGET_POST_RADIUS_M,
    CameraSpec,
    look_at_matrix,
)

TIMESTEP_S = 0.002
OBJECT_PREFIX = "object/"
FIXTURE_PREFIX = "fixture/"
# Collision classes as (contype, conaffinity); see the module docstring.
ENV_CLASS = (1, 0)
OBJECT_CLASS = (2, 3)
ROBOT_CLASS = (4, 3)
BASE_CLASS = (0, 2)  # the robot's pedestal only stops objects
VISUAL_CLASS = (0, 0)
FLOOR_Z_M = -0.75
ARM_RGBA = (0.93, 0.93, 0.93, 1.0)
JOINT_RGBA = (0.25, 0.25, 0.27, 1.0)
FINGER_RGBA = (0.15, 0.15, 0.15, 1.0)
# Position servo per joint: kp = I w^2 and kv = 2 I w (critically damped at bandwidth w) for a
# typical reflected inertia I of each joint (armature included), so a target step settles to ~1%
# in about 0.1 s (two control periods at 20 Hz); implicitfast integrates kv stably.
ARM_BANDWIDTH_RAD_S = 70.0
ARM_INERTIA_KG_M2 = (1.5, 1.8, 1.0, 0.9, 0.13, 0.14, 0.105)
ARM_KP = tuple(i * ARM_BANDWIDTH_RAD_S**2 for i in ARM_INERTIA_KG_M2)
ARM_KV = tuple(2.0 * i * ARM_BANDWIDTH_RAD_S for i in ARM_INERTIA_KG_M2)
ARM_DAMPING = (1.0, 1.0, 1.0, 1.0, 0.3, 0.3, 0.3)
ARM_ARMATURE_KG_M2 = 0.1
HAND_MASS_KG = 0.73
FINGER_MASS_KG = 0.05
# Gripper servo on the finger gap; its force (each finger's squeeze) is capped at finger_force_n.
GRIPPER_KP_N_M = 4000.0
# The fingers are slowed by joint damping, not by the actuator's kv: MuJoCo integrates joint
# damping implicitly always, but a force-clamped actuator's kv explicitly, which made the light
# fingers chatter at the force limit. At full force a finger moves ~0.2 m/s (the Panda's speed).
FINGER_DAMPING_N_S_M = 350.0
# Finger box: half extents (x, y = thickness along the slide, z = length) in metres.
FINGER_HALF_M = (0.012, 0.008, 0.027)
HAND_HALF_M = (0.03, 0.1, 0.025)
HEADLIGHT_AMBIENT, HEADLIGHT_DIFFUSE, KEY_LIGHT_DIFFUSE = (0.3,) * 3, (0.25,) * 3, (0.6,) * 3


def fmt(values: Iterable[float] | float) -> str:
    """Full-precision numbers for XML (so the compiled chain matches the numpy FK exactly)."""
    if isinstance(values, int | float | np.floating):
        return repr(float(values))
    return " ".join(repr(float(v)) for v in values)


def matrix_to_quat(rotation: np.ndarray) -> np.ndarray:
    """wxyz quaternion of a rotation matrix (Shepperd's method, w >= 0)."""
    R = np.asarray(rotation, dtype=float)
    trace = np.trace(R)
    if trace > 0.0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (R[k, j] - R[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + k] = (R[k, i] + R[i, k]) / s
    quat = np.array(q)
    return quat if quat[0] >= 0.0 else -quat


def yaw_quat(yaw_rad: float) -> np.ndarray:
    return np.array([np.cos(yaw_rad / 2.0), 0.0, 0.0, np.sin(yaw_rad / 2.0)])


def _xml_value(value: object) -> str:
    if isinstance(value, str | int):
        return str(value)
    return fmt(value)  # type: ignore[arg-type]


def _sub(parent: ET.Element, tag: str, **attrs: object) -> ET.Element:
    """A child element; numbers and sequences are written at full precision."""
    return ET.SubElement(parent, tag, {k: _xml_value(v) for k, v in attrs.items()})


def _geom(
    parent: ET.Element, cls: tuple[int, int], kind: str, size: object, **attrs: object
) -> None:
    _sub(parent, "geom", type=kind, size=size, contype=cls[0], conaffinity=cls[1], **attrs)


def _header(root: ET.Element) -> None:
    _sub(root, "compiler", angle="radian", autolimits="true")
    # Elliptic cones with a high impratio keep grasped objects from creeping out of the fingers.
    _sub(
        root,
        "option",
        timestep=TIMESTEP_S,
        integrator="implicitfast",
        cone="elliptic",
        impratio=10,
    )
    visual = _sub(root, "visual")
    # Shadows and multisampling off: together ~40x faster offscreen rendering on the CPU.
    _sub(visual, "quality", offsamples=0, shadowsize=0)
    _sub(
        visual,
        "headlight",
        ambient=HEADLIGHT_AMBIENT,
        diffuse=HEADLIGHT_DIFFUSE,
        specular=(0,) * 3,
    )
    _sub(visual, "global", offwidth=640, offheight=480)
    _sub(visual, "map", znear=0.01)
    _sub(root, "statistic", center=(0.4, 0, 0.2), extent=1.5)


def _link_geoms(body: ET.Element, next_xyz_m: np.ndarray, radius_m: float) -> None:
    """A joint housing along the local z axis, then capsules along the (x, then y, then z) path
    to the next joint's origin, which traces the Panda's offset elbow as an L, not a diagonal."""
    housing = (0, 0, -radius_m, 0, 0, radius_m)
    _geom(body, ROBOT_CLASS, "capsule", radius_m, fromto=housing, rgba=JOINT_RGBA)
    corner = np.zeros(3)
    for axis in range(3):
        nxt = corner.copy()
        nxt[axis] = next_xyz_m[axis]
        if abs(next_xyz_m[axis]) > 0.01:
            fromto = np.concatenate([corner, nxt])
            _geom(body, ROBOT_CLASS, "capsule", radius_m, fromto=fromto, rgba=ARM_RGBA)
        corner = nxt


def _link(parent: ET.Element, robot: RobotDescription, i: int) -> ET.Element:
    """Body, joint, inertia and shape of the link that joint ``i`` moves."""
    joint = robot.joints[i]
    quat = matrix_to_quat(rpy_to_matrix(joint.rpy_rad))
    body = _sub(parent, "body", name=f"link{i + 1}", pos=joint.xyz_m, quat=quat, gravcomp=1)
    last = i + 1 == robot.dof
    next_xyz_m = np.array(robot.flange_xyz_m if last else robot.joints[i + 1].xyz_m, float)
    # Isotropic inertia of a rod of the link's length: rotation-free, so no principal frame.
    r_m, mass_kg = joint.link_radius_m, robot.link_mass_kg
    inertia = mass_kg * (float(next_xyz_m @ next_xyz_m) + 3.0 * r_m**2) / 12.0
    _sub(body, "inertial", pos=next_xyz_m / 2.0, mass=mass_kg, diaginertia=(inertia,) * 3)
    limits = (joint.lower_rad, joint.upper_rad)
    _sub(
        body,
        "joint",
        name=joint.name,
        axis=(0, 0, 1),
        armature=ARM_ARMATURE_KG_M2,
        damping=ARM_DAMPING[i],
        range=limits,
    )
    _link_geoms(body, next_xyz_m, r_m)
    return body


def _arm(world: ET.Element, robot: RobotDescription) -> ET.Element:
    """Pedestal, joint chain and hand; returns the hand body."""
    base_r_m = robot.joints[0].link_radius_m
    pedestal = (0, 0, base_r_m, 0, 0, robot.joints[0].xyz_m[2] - base_r_m)
    _geom(world, BASE_CLASS, "capsule", base_r_m, name="pedestal", fromto=pedestal, rgba=ARM_RGBA)
    parent = world
    for i in range(robot.dof):
        parent = _link(parent, robot, i)
    hand_quat = yaw_quat(robot.hand_yaw_rad)
    hand = _sub(parent, "body", name="hand", pos=robot.flange_xyz_m, quat=hand_quat, gravcomp=1)
    _sub(
        hand,
        "inertial",
        pos=(0, 0, HAND_HALF_M[2]),
        mass=HAND_MASS_KG,
        diaginertia=(0.002, 0.0005, 0.002),
    )
    palm_z_m = robot.finger_origin_m - HAND_HALF_M[2] - 0.004
    _geom(hand, ROBOT_CLASS, "box", HAND_HALF_M, pos=(0, 0, palm_z_m), rgba=ARM_RGBA)
    _sub(hand, "site", name="tcp", pos=(0, 0, robot.tcp_offset_m), size=0.005, group=5)
    for sign, joint_name in zip((1, -1), robot.gripper_names, strict=True):
        _finger(hand, robot, joint_name, sign)
    return hand


def _finger(hand: ET.Element, robot: RobotDescription, joint_name: str, sign: int) -> None:
    """A prismatic finger sliding along +-hand y; its inner face sits at the joint position, so
    the gap between the fingers is the sum of both joint positions."""
    name = joint_name.replace("joint", "link")
    body = _sub(hand, "body", name=name, pos=(0, 0, robot.finger_origin_m), gravcomp=1)
    _sub(
        body,
        "joint",
        name=joint_name,
        type="slide",
        axis=(0, sign, 0),
        armature=0.05,
        damping=FINGER_DAMPING_N_S_M,
        range=(0.0, robot.finger_travel_m),
    )
    # High friction, torsional friction (condim 4), stiff contacts, and priority so the pad's
    # friction governs the contact: a grasped object must not spin about the normal or slip out.
    pad_pos_m = (0, sign * FINGER_HALF_M[1], FINGER_HALF_M[2])
    _geom(
        body,
        ROBOT_CLASS,
        "box",
        FINGER_HALF_M,
        pos=pad_pos_m,
        mass=FINGER_MASS_KG,
        rgba=FINGER_RGBA,
        friction=(1.5, 0.02, 0.0001),
        condim=4,
        priority=2,
        solref=(0.005, 1),
        solimp=(0.95, 0.99, 0.001),
    )


def _table(world: ET.Element) -> None:
    half_m = TABLE_HALF_EXTENTS_M
    _geom(
        world,
        ENV_CLASS,
        "box",
        half_m,
        name="table",
        pos=(TABLE_CENTER_X_M, 0, -half_m[2]),
        rgba=TABLE_RGBA,
        friction=(0.8, 0.005, 0.0001),
    )
    # A floor catches whatever falls off the table, so the cell stays bounded.
    _geom(
        world,
        ENV_CLASS,
        "plane",
        (8, 8, 0.1),
        name="floor",
        pos=(0, 0, FLOOR_Z_M),
        rgba=(0.35, 0.36, 0.38, 1),
    )


def object_half_size_m(obj: ObjectSpec) -> tuple[float, ...]:
    """MuJoCo ``size`` of an object geom (half extents; cylinder: radius, half height)."""
    if obj.shape == "box":
        return tuple(s / 2.0 for s in obj.size_m)
    if obj.shape == "cylinder":
        return (obj.size_m[0], obj.size_m[1] / 2.0)
    return (obj.size_m[0],)


def _object(world: ET.Element, obj: ObjectSpec) -> None:
    centre_m = (np.mean(obj.pose.x_m), np.mean(obj.pose.y_m), obj.height_m / 2.0)
    body = _sub(world, "body", name=OBJECT_PREFIX + obj.name, pos=centre_m)
    _sub(body, "freejoint", name=OBJECT_PREFIX + obj.name)
    # priority 1: the object's own (randomized) friction governs its contact with the table,
    # instead of the larger of the two.
    _geom(
        body,
        OBJECT_CLASS,
        obj.shape,
        object_half_size_m(obj),
        name=OBJECT_PREFIX + obj.name,
        mass=obj.mass_kg,
        rgba=obj.rgba,
        friction=(obj.friction, 0.005, 0.0001),
        priority=1,
    )


def _walls(body: ET.Element, fx: FixtureSpec) -> None:
    """Four walls of thickness wall_m and height depth around an inner [x, y] opening."""
    x, y, depth = fx.size_m
    w = fx.wall_m
    for sign in (1, -1):
        along_y = ((w / 2, y / 2 + w, depth / 2), (sign * (x + w) / 2, 0, depth / 2))
        along_x = ((x / 2, w / 2, depth / 2), (0, sign * (y + w) / 2, depth / 2))
        for half_m, pos_m in (along_y, along_x):
            _geom(body, ENV_CLASS, "box", half_m, pos=pos_m, rgba=fx.rgba)


def _fixture(world: ET.Element, fx: FixtureSpec) -> None:
    """A mocap body, so the fixture moves per episode without recompiling."""
    z_m = np.mean(fx.pose.z_m) if fx.kind == "target" else 0.0
    pos_m = (np.mean(fx.pose.x_m), np.mean(fx.pose.y_m), z_m)
    body = _sub(world, "body", name=FIXTURE_PREFIX + fx.name, pos=pos_m, mocap="true")
    if fx.kind == "zone":
        # A painted patch: visual only, lifted 1 mm so it does not z-fight the table top.
        half_m = (fx.size_m[0] / 2, fx.size_m[1] / 2, 5e-4)
        _geom(body, VISUAL_CLASS, "box", half_m, pos=(0, 0, 0.001), rgba=fx.rgba)
    elif fx.kind == "target":
        _geom(body, VISUAL_CLASS, "sphere", fx.size_m[0], rgba=fx.rgba)
        # The post it stands on: where it meets the table tells a camera the target's ground
        # position, and so its height (a floating ball alone is ambiguous in depth).
        half_m = TARGET_POST_M / 2
        post = (TARGET_POST_RADIUS_M, half_m)
        _geom(body, VISUAL_CLASS, "cylinder", post, pos=(0, 0, -half_m), rgba=fx.rgba)
    else:
        _walls(body, fx)
    if fx.kind == "bin":
        x, y, _ = fx.size_m
        floor_half_m = (x / 2, y / 2, fx.wall_m / 2)
        _geom(body, ENV_CLASS, "box", floor_half_m, pos=(0, 0, fx.wall_m / 2), rgba=fx.rgba)


def _camera(parents: dict[str, ET.Element], cam: CameraSpec) -> None:
    if cam.parent not in parents:
        raise ValueError(f"camera {cam.name!r}: parent must be one of {sorted(parents)}")
    pos, target, up = (np.array(v, float) for v in (cam.pos_m, cam.target_m, cam.up))
    quat = matrix_to_quat(look_at_matrix(pos, target, up))
    _sub(parents[cam.parent], "camera", name=cam.name, pos=pos, quat=quat, fovy=cam.fovy_deg)


def _gripper_drive(root: ET.Element, robot: RobotDescription) -> None:
    """One actuator drives the finger gap (a tendon summing both finger joints), so its force is
    each finger's squeeze force; an equality couples the fingers like the Panda's mechanism."""
    f1, f2 = robot.gripper_names
    tendon = _sub(_sub(root, "tendon"), "fixed", name="finger_gap")
    _sub(tendon, "joint", joint=f1, coef=1)
    _sub(tendon, "joint", joint=f2, coef=1)
    equality = _sub(root, "equality")
    _sub(equality, "joint", joint1=f1, joint2=f2, polycoef=(0, 1, 0, 0, 0), solref=(0.005, 1))


def _actuators(root: ET.Element, robot: RobotDescription) -> None:
    act = _sub(root, "actuator")
    for i, joint in enumerate(robot.joints):
        _sub(
            act,
            "position",
            name=joint.name,
            joint=joint.name,
            kp=ARM_KP[i],
            kv=ARM_KV[i],
            ctrlrange=(joint.lower_rad, joint.upper_rad),
            forcerange=(-joint.effort_nm, joint.effort_nm),
        )
    _sub(
        act,
        "position",
        name="gripper",
        tendon="finger_gap",
        kp=GRIPPER_KP_N_M,
        ctrlrange=(0.0, 2.0 * robot.finger_travel_m),
        forcerange=(-robot.finger_force_n, robot.finger_force_n),
    )


def _key_light(world: ET.Element) -> None:
    """A wide spotlight above the table (the classic renderer ignores point lights), so the
    light offset and intensity of ``PhysicsParams`` change the image."""
    pos_m, target_m = np.array((0.3, 0.3, 1.5)), np.array((0.45, 0.0, 0.0))
    look = {"pos": pos_m, "dir": target_m - pos_m, "cutoff": 70, "exponent": 1}
    colour = {"diffuse": KEY_LIGHT_DIFFUSE, "specular": (0.1,) * 3, "castshadow": "false"}
    _sub(world, "light", name="key", type="spot", **look, **colour)


def build_mjcf(spec: TaskSpec, robot: RobotDescription, cameras: dict[str, CameraSpec]) -> str:
    """The complete MJCF document for a task's cell."""
    root = ET.Element("mujoco", model=f"kizuna_{spec.name}")
    _header(root)
    world = _sub(root, "worldbody")
    _key_light(world)
    _table(world)
    hand = _arm(world, robot)
    for obj in spec.objects:
        _object(world, obj)
    for fx in spec.fixtures:
        _fixture(world, fx)
    for cam in cameras.values():
        _camera({"world": world, "hand": hand}, cam)
    _gripper_drive(root, robot)
    _actuators(root, robot)
    return ET.tostring(root, encoding="unicode")
