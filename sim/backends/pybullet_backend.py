"""PyBullet implementation of ``sim.backends.base.Backend``.

Each backend owns a private ``DIRECT`` physics server, so several live in one process. The arm
is a URDF generated from ``kizuna.robot`` (``sim.backends.urdf``), so its kinematics are those of
``kizuna.kinematics``. Images come from PyBullet's CPU TinyRenderer with shadows off.

Timestep: 1/240 s, Bullet's default and the rate its contact and solver parameters are tuned
for. It holds a 0.1 kg cube in the fingers, drops a 30 mm peg into a 32 mm hole, tracks targets
to < 0.1 mm, and costs half of 1/500 s. The control period is cut into equal substeps of at
most that (12 at 20 Hz).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping

import numpy as np
import pybullet as p
from pybullet_utils.bullet_client import BulletClient

from kizuna.robot import PANDA, RobotDescription
from kizuna.task import PoseRange, TaskSpec
from sim.backends.urdf import (
    FINGER_LINKS,
    FINGER_SPEED_M_S,
    HAND_LINK,
    SPINNING_FRICTION,
    SURFACE_FRICTION,
    TCP_LINK,
    create_fixture,
    create_floor_and_table,
    create_object,
    robot_urdf,
)
from sim.scene import (
    CAMERAS,
    CameraSpec,
    Layout,
    PhysicsParams,
    Pose2D,
    look_at_matrix,
)

MAX_TIMESTEP_S = 1.0 / 240.0
GRAVITY_M_S2 = 9.81
# Bullet's position motor is a velocity constraint: each substep it asks for
# velocity = gain * error / dt (capped by the joint's velocity limit and effort), so gain 0.25
# removes 97% of a step change within one 20 Hz control period and holds against gravity.
POSITION_GAIN = 0.25
VELOCITY_GAIN = 1.0
JOINT_DAMPING_NMS = 0.5  # viscous damping of each arm joint, times joint_damping_scale
# The key light where sim.backends.mjcf puts it; PhysicsParams.light_offset_m moves it.
NOMINAL_LIGHT_POS_M = (0.6, 0.2, 1.6)
CAMERA_NEAR_M, CAMERA_FAR_M = 0.01, 5.0
_ZERO3 = (0.0, 0.0, 0.0)


def _yaw_quat_xyzw(yaw_rad: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw_rad / 2.0), math.cos(yaw_rad / 2.0))


def _axis_angle_matrix(rotvec_rad: np.ndarray) -> np.ndarray:
    """Rodrigues' formula."""
    angle = float(np.linalg.norm(rotvec_rad))
    if angle < 1e-12:
        return np.eye(3)
    k = rotvec_rad / angle
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * K + (1.0 - math.cos(angle)) * K @ K


def _nominal_pose(pose: PoseRange) -> Pose2D:
    """The middle of a spec's pose ranges: where things stand before the first reset."""
    x, y, z = (float(np.mean(r)) for r in (pose.x_m, pose.y_m, pose.z_m))
    return Pose2D((x, y, z), float(np.mean(pose.yaw_rad)))


class PybulletBackend:
    """A task cell in PyBullet: the arm, the table, the spec's objects, fixtures and cameras."""

    name = "pybullet"
    # Size randomization replaces bodies; after this many the world is rebuilt (see
    # _apply_sizes) so memory stays bounded over long data-generation runs.
    max_replaced_bodies = 1000

    def __init__(
        self,
        spec: TaskSpec,
        robot: RobotDescription = PANDA,
        cameras: dict[str, CameraSpec] = CAMERAS,
    ) -> None:
        self.spec, self.robot, self.cameras = spec, robot, dict(cameras)
        for cam in cameras.values():
            if cam.parent not in ("world", "hand"):
                raise ValueError(f"camera {cam.name!r}: parent must be 'world' or 'hand'")
        control_dt_s = 1.0 / spec.control_hz
        self.substeps = max(1, math.ceil(control_dt_s / MAX_TIMESTEP_S - 1e-9))
        self.timestep_s = control_dt_s / self.substeps
        self._c = BulletClient(connection_mode=p.DIRECT)
        self._params = PhysicsParams()
        self._objects = {o.name: o for o in spec.objects}
        self._fixtures = {f.name: f for f in spec.fixtures}
        self._size_scale = {o.name: 1.0 for o in spec.objects}
        self._fixture_pos: dict[str, np.ndarray] = {}
        self._build_world()
        self.reset(Layout({}, {}), np.array(robot.home_q_rad), 1.0, self._params)

    @property
    def client(self) -> BulletClient:
        """The private PyBullet client (for debugging and tests)."""
        return self._c

    def body_id(self, name: str) -> int:
        """PyBullet body id of an object, a fixture, ``table``, ``floor`` or ``robot``."""
        bodies = {**self._static, "robot": self._arm, **self._fixture_ids, **self._object_ids}
        return bodies[name]

    # ---- building ----------------------------------------------------------------------

    def _build_world(self) -> None:
        """(Re)create every body, objects at their current size scales."""
        c = self._c
        c.resetSimulation()
        # Sorted overlapping pairs: the same inputs give the same contacts and the same rollout.
        c.setPhysicsEngineParameter(fixedTimeStep=self.timestep_s, deterministicOverlappingPairs=1)
        c.setGravity(0.0, 0.0, -GRAVITY_M_S2)
        self._static = create_floor_and_table(c)
        self._load_robot()
        self._rgba: dict[str, tuple[float, ...]] = {}  # colour last set per name
        self._damping_scale = math.nan  # damping last set
        self._object_ids = {
            name: create_object(c, obj, self._size_scale[name])
            for name, obj in self._objects.items()
        }
        self._fixture_ids = {name: create_fixture(c, fx) for name, fx in self._fixtures.items()}
        self._replaced_bodies = 0

    def _load_robot(self) -> None:
        fd, path = tempfile.mkstemp(suffix=".urdf", prefix="kizuna_")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(robot_urdf(self.robot))
            # Inertia from the file: PyBullet would otherwise recompute it from the shapes' AABB.
            self._arm = self._c.loadURDF(
                path, useFixedBase=True, flags=p.URDF_USE_INERTIA_FROM_FILE
            )
        finally:
            os.unlink(path)
        infos = [
            self._c.getJointInfo(self._arm, j) for j in range(self._c.getNumJoints(self._arm))
        ]
        joints = {info[1].decode(): info[0] for info in infos}
        links = {info[12].decode(): info[0] for info in infos}  # a link's index is its joint's
        self._arm_joints = [joints[n] for n in self.robot.joint_names]
        self._finger_joints = [joints[n] for n in self.robot.gripper_names]
        self._hand, self._tcp = links[HAND_LINK], links[TCP_LINK]
        self._arm_links = {-1, *self._arm_joints, self._hand}  # what arm_contacts counts
        # (joint index, force limit, speed limit) of every motor: arm joints, then fingers.
        self._motors = [
            (j, joint.effort_nm, joint.velocity_rad_s)
            for j, joint in zip(self._arm_joints, self.robot.joints, strict=True)
        ] + [(j, self.robot.finger_force_n, FINGER_SPEED_M_S) for j in self._finger_joints]
        for name in FINGER_LINKS:
            # The anchor stops a held object from creeping along the pads.
            self._c.changeDynamics(
                self._arm,
                links[name],
                lateralFriction=SURFACE_FRICTION,
                spinningFriction=SPINNING_FRICTION,
                frictionAnchor=True,
            )
        # Couple the fingers like the Panda's mechanism (MuJoCo uses an equality): two
        # independent motors both at their force limit let a held part slide along the
        # closing axis, carrying both fingers with it.
        gear = self._c.createConstraint(
            self._arm,
            self._finger_joints[0],
            self._arm,
            self._finger_joints[1],
            p.JOINT_GEAR,
            [0, 1, 0],
            [0, 0, 0],
            [0, 0, 0],
        )
        self._c.changeConstraint(gear, gearRatio=-1, erp=0.2, maxForce=self.robot.finger_force_n)

    # ---- episode -----------------------------------------------------------------------

    def reset(
        self, layout: Layout, q_rad: np.ndarray, gripper_opening: float, params: PhysicsParams
    ) -> None:
        """Apply ``params``; place objects and fixtures at ``layout`` and the arm at rest.
        Objects and fixtures the layout leaves out stand at the centre of their pose ranges."""
        _check_names(layout.objects, self._objects, "object (in the layout)")
        _check_names(layout.fixtures, self._fixtures, "fixture (in the layout)")
        self._apply_params(params)
        self._forget_contacts()
        self.set_joint_positions(q_rad)
        finger_m = float(np.clip(gripper_opening, 0.0, 1.0)) * self.robot.finger_travel_m
        for j in self._finger_joints:
            self._c.resetJointState(self._arm, j, finger_m, 0.0)
        for name, obj in self._objects.items():
            self._place_object(name, layout.objects.get(name) or _nominal_pose(obj.pose))
        for name, fixture in self._fixtures.items():
            self._place_fixture(name, layout.fixtures.get(name) or _nominal_pose(fixture.pose))
        # Hold the start pose until the first step() brings targets.
        self._command(np.asarray(q_rad, dtype=float), gripper_opening)

    def _forget_contacts(self) -> None:
        """Drop the contacts cached from the last episode (their warm-start impulses and friction
        anchors would make a reset episode differ from the same episode in a fresh backend)."""
        bodies = [self._arm, *self._object_ids.values()]
        for i, body in enumerate(bodies):
            # Parked below the floor, a metre apart: the broadphase then drops all their pairs.
            self._c.resetBasePositionAndOrientation(body, [0.0, 0.0, -10.0 - i], [0, 0, 0, 1])
        self._c.performCollisionDetection()
        self._c.resetBasePositionAndOrientation(self._arm, [0.0, 0.0, 0.0], [0, 0, 0, 1])

    def _place_object(self, name: str, pose: Pose2D) -> None:
        x, y, z = pose.xyz_m
        # Layout z is the object's bottom; a body is placed by its centre.
        centre_z = z + self._objects[name].height_m * self._size_scale[name] / 2.0
        body = self._object_ids[name]
        self._c.resetBasePositionAndOrientation(
            body, [x, y, centre_z], _yaw_quat_xyzw(pose.yaw_rad)
        )
        self._c.resetBaseVelocity(body, _ZERO3, _ZERO3)

    def _place_fixture(self, name: str, pose: Pose2D) -> None:
        x, y, z = pose.xyz_m
        # A reach target floats at its centre; zones, bins and holes stand on the table.
        pos = np.array([x, y, z if self._fixtures[name].kind == "target" else 0.0])
        self._fixture_pos[name] = pos
        self._c.resetBasePositionAndOrientation(
            self._fixture_ids[name], pos.tolist(), _yaw_quat_xyzw(pose.yaw_rad)
        )

    def _apply_params(self, params: PhysicsParams) -> None:
        """Set every randomized quantity from ``params`` (nominal where a name is absent)."""
        for table in (params.mass_scale, params.friction_scale, params.size_scale):
            _check_names(table, self._objects, "object")
        _check_names(params.rgba, {**self._objects, **self._fixtures}, "object or fixture")
        for table in (params.camera_pos_offset_m, params.camera_rot_offset_rad):
            _check_names(table, self.cameras, "camera")
        self._apply_sizes({n: params.get(params.size_scale, n) for n in self._objects})
        for name, obj in self._objects.items():
            self._c.changeDynamics(
                self._object_ids[name],
                -1,
                mass=obj.mass_kg * params.get(params.mass_scale, name),
                lateralFriction=obj.friction * params.get(params.friction_scale, name),
            )
        self._apply_colors(params.rgba)
        self._set_joint_damping(params.joint_damping_scale)
        self._params = params

    def _apply_sizes(self, size_scale: dict[str, float]) -> None:
        changed = [name for name, scale in size_scale.items() if scale != self._size_scale[name]]
        self._size_scale = size_scale
        if self._replaced_bodies + len(changed) > self.max_replaced_bodies:
            # Bullet never frees a removed body's shapes (~7 kB each); a rebuild releases them.
            self._build_world()
            return
        for name in changed:
            # Bullet cannot resize a shape in place; a new body replaces the old one.
            self._c.removeBody(self._object_ids[name])
            self._object_ids[name] = create_object(self._c, self._objects[name], size_scale[name])
            self._rgba.pop(name, None)  # the new body has its nominal colour
        self._replaced_bodies += len(changed)

    def _apply_colors(self, overrides: dict[str, tuple[float, float, float, float]]) -> None:
        things = [*self._objects.values(), *self._fixtures.values()]
        for thing in things:
            wanted = tuple(overrides.get(thing.name, thing.rgba))
            if self._rgba.get(thing.name) != wanted:
                self._c.changeVisualShape(self.body_id(thing.name), -1, rgbaColor=list(wanted))
                self._rgba[thing.name] = wanted

    def _set_joint_damping(self, scale: float) -> None:
        if scale == self._damping_scale:
            return
        for j in self._arm_joints:
            self._c.changeDynamics(self._arm, j, jointDamping=JOINT_DAMPING_NMS * scale)
        self._damping_scale = scale

    # ---- control -----------------------------------------------------------------------

    def step(self, q_target_rad: np.ndarray, gripper_cmd: float) -> None:
        """Track the targets with the joint position motors for one control period."""
        self._command(np.asarray(q_target_rad, dtype=float), gripper_cmd)
        for _ in range(self.substeps):
            self._c.stepSimulation()
        self._contacts_stale = False

    def _command(self, q_target_rad: np.ndarray, gripper_cmd: float) -> None:
        if q_target_rad.shape != (self.robot.dof,):
            raise ValueError(f"expected {self.robot.dof} joint targets, got {q_target_rad.shape}")
        # Targets past a limit would only fight Bullet's joint-limit constraint.
        q = np.clip(q_target_rad, self.robot.lower_rad, self.robot.upper_rad)
        finger_m = float(np.clip(gripper_cmd, 0.0, 1.0)) * self.robot.finger_travel_m
        gain = min(1.0, POSITION_GAIN * self._params.actuator_gain_scale)
        for (j, force, max_speed), target in zip(
            self._motors, [*q, finger_m, finger_m], strict=True
        ):
            self._c.setJointMotorControl2(
                self._arm,
                j,
                p.POSITION_CONTROL,
                targetPosition=float(target),
                force=force,
                positionGain=gain,
                velocityGain=VELOCITY_GAIN,
                maxVelocity=max_speed,
            )

    def set_joint_positions(self, q_rad: np.ndarray) -> None:
        """Teleport the arm joints (zero velocity); no physics step."""
        q = np.asarray(q_rad, dtype=float)
        if q.shape != (self.robot.dof,):
            raise ValueError(f"expected {self.robot.dof} joint positions, got shape {q.shape}")
        for j, angle in zip(self._arm_joints, q, strict=True):
            self._c.resetJointState(self._arm, j, float(angle), 0.0)
        self._contacts_stale = True

    # ---- state -------------------------------------------------------------------------

    def joint_positions(self) -> np.ndarray:
        return np.array([s[0] for s in self._c.getJointStates(self._arm, self._arm_joints)])

    def joint_velocities(self) -> np.ndarray:
        return np.array([s[1] for s in self._c.getJointStates(self._arm, self._arm_joints)])

    def gripper_opening(self) -> float:
        gap_m = sum(s[0] for s in self._c.getJointStates(self._arm, self._finger_joints))
        return float(np.clip(gap_m / (2.0 * self.robot.finger_travel_m), 0.0, 1.0))

    def _link_pose(self, link: int) -> np.ndarray:
        state = self._c.getLinkState(self._arm, link, computeForwardKinematics=True)
        T = np.eye(4)  # entries 4 and 5: the URDF link frame, not the inertial frame
        T[:3, :3] = np.array(self._c.getMatrixFromQuaternion(state[5])).reshape(3, 3)
        T[:3, 3] = state[4]
        return T

    def tcp_pose(self) -> np.ndarray:
        return self._link_pose(self._tcp)

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        pos, (x, y, z, w) = self._c.getBasePositionAndOrientation(self._object_ids[name])
        return np.array(pos), np.array([w, x, y, z])

    def fixture_position(self, name: str) -> np.ndarray:
        return self._fixture_pos[name].copy()

    def arm_contacts(self) -> int:
        """Contact points between arm links (pedestal..hand, not fingers) and the table, floor
        or fixtures (objects are not counted)."""
        if self._contacts_stale:  # teleported since the last step: refresh the contacts
            self._c.performCollisionDetection()
            self._contacts_stale = False
        count = 0
        for body in (*self._static.values(), *self._fixture_ids.values()):
            points = self._c.getContactPoints(bodyA=self._arm, bodyB=body)
            count += sum(1 for pt in points if pt[3] in self._arm_links)
        return count

    # ---- rendering ---------------------------------------------------------------------

    def render(self, camera: str, width: int, height: int) -> np.ndarray:
        """RGB image (height, width, 3) uint8 from the TinyRenderer, shadows off."""
        if camera not in self.cameras:
            raise KeyError(f"unknown camera {camera!r}; this backend has {sorted(self.cameras)}")
        eye, target, up = self._camera_world(self.cameras[camera])
        view = self._c.computeViewMatrix(eye.tolist(), target.tolist(), up.tolist())
        proj = self._c.computeProjectionMatrixFOV(
            self.cameras[camera].fovy_deg, width / height, CAMERA_NEAR_M, CAMERA_FAR_M
        )
        light = np.add(NOMINAL_LIGHT_POS_M, self._params.light_offset_m)
        image = self._c.getCameraImage(
            width,
            height,
            view,
            proj,
            lightDirection=light.tolist(),
            lightColor=[self._params.light_intensity] * 3,
            shadow=0,
            renderer=p.ER_TINY_RENDERER,
            flags=p.ER_NO_SEGMENTATION_MASK,
        )
        rgba = np.asarray(image[2], dtype=np.uint8).reshape(height, width, 4)
        return np.ascontiguousarray(rgba[:, :, :3])

    def _camera_world(self, cam: CameraSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Eye, look-at point and up vector in the world. ``PhysicsParams`` offsets act in the
        parent frame: the position offset shifts the camera, the rotation turns it about its
        eye (as the MuJoCo backend does with cam_pos and cam_quat)."""
        pos = np.asarray(cam.pos_m, dtype=float)
        R_parent_cam = look_at_matrix(pos, np.asarray(cam.target_m, float), np.asarray(cam.up))
        rot = np.asarray(self._params.camera_rot_offset_rad.get(cam.name, _ZERO3), float)
        R_parent_cam = _axis_angle_matrix(rot) @ R_parent_cam
        pos = pos + self._params.camera_pos_offset_m.get(cam.name, _ZERO3)
        T_world_parent = self._link_pose(self._hand) if cam.parent == "hand" else np.eye(4)
        R_world_cam = T_world_parent[:3, :3] @ R_parent_cam
        eye = T_world_parent[:3, :3] @ pos + T_world_parent[:3, 3]
        # Columns of the camera rotation: right, up, back; the camera looks along -back.
        return eye, eye - R_world_cam[:, 2], R_world_cam[:, 1]

    def close(self) -> None:
        """Disconnect the physics server (idempotent)."""
        if self._c.isConnected():
            self._c.disconnect()


def _check_names(given: Mapping[str, object], known: Mapping[str, object], what: str) -> None:
    """Refuse a name the scene does not have (a typo would otherwise be silently ignored)."""
    for name in given:
        if name not in known:
            raise KeyError(f"unknown {what} {name!r}; this task has {sorted(known)}")
