"""MuJoCo implementation of ``sim.backends.base.Backend``.

The model is compiled once per backend (``sim.backends.mjcf``). Each episode's
``PhysicsParams`` are written in place into the compiled model, always starting from a copy of
the nominal values, so ``PhysicsParams()`` restores the nominal model exactly. Fixtures are
mocap bodies, moved per episode through ``data.mocap_pos`` without recompiling.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

os.environ.setdefault("MUJOCO_GL", "egl")  # headless offscreen rendering; set before the import

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from kizuna.robot import PANDA, RobotDescription  # noqa: E402
from kizuna.task import TaskSpec  # noqa: E402
from sim.backends.mjcf import FIXTURE_PREFIX, OBJECT_PREFIX, build_mjcf, yaw_quat  # noqa: E402
from sim.scene import CAMERAS, CameraSpec, Layout, PhysicsParams, Pose2D  # noqa: E402

T = TypeVar("T")
_OBJ = mujoco.mjtObj
# Model fields that per-episode parameters overwrite; their nominal values are kept.
PARAM_FIELDS = (
    "body_mass",
    "body_inertia",
    "geom_size",
    "geom_rbound",
    "geom_aabb",
    "bvh_aabb",
    "geom_friction",
    "geom_rgba",
    "dof_damping",
    "actuator_gainprm",
    "actuator_biasprm",
    "light_pos",
    "light_diffuse",
    "light_specular",
    "cam_pos",
    "cam_quat",
)
# Render flags that cost a lot on a CPU renderer and add nothing a policy needs.
_SLOW_RENDER_FLAGS = (
    "mjRND_SHADOW",
    "mjRND_REFLECTION",
    "mjRND_SKYBOX",
    "mjRND_FOG",
    "mjRND_HAZE",
)


def axis_angle_quat(rotvec_rad: np.ndarray) -> np.ndarray:
    """wxyz quaternion of an axis-angle vector (rad)."""
    rotvec = np.asarray(rotvec_rad, dtype=float)
    angle_rad = float(np.linalg.norm(rotvec))
    if angle_rad < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    axis = rotvec / angle_rad
    return np.concatenate([[np.cos(angle_rad / 2.0)], axis * np.sin(angle_rad / 2.0)])


def _lookup(table: Mapping[str, T], name: str, what: str) -> T:
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; this task has {sorted(table)}") from None


class MujocoBackend:
    """One simulated cell in MuJoCo. ``model`` and ``data`` are public for tests and tools."""

    name: str = "mujoco"

    def __init__(
        self,
        spec: TaskSpec,
        robot: RobotDescription = PANDA,
        cameras: dict[str, CameraSpec] = CAMERAS,
    ) -> None:
        self.spec, self.robot, self.cameras = spec, robot, cameras
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(spec, robot, cameras))
        self.data = mujoco.MjData(self.model)
        control_dt_s = 1.0 / spec.control_hz
        self.n_substeps = max(1, round(control_dt_s / self.model.opt.timestep))
        self._index_robot()
        self._index_scene()
        self._nominal = {f: getattr(self.model, f).copy() for f in PARAM_FIELDS}
        self._size_scale = {name: 1.0 for name in self._objects}
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    # ----------------------------------------------------------------------------- indexing
    def _id(self, kind: mujoco.mjtObj, name: str) -> int:
        return mujoco.mj_name2id(self.model, kind, name)

    def _index_robot(self) -> None:
        m = self.model
        arm_joints = [self._id(_OBJ.mjOBJ_JOINT, n) for n in self.robot.joint_names]
        self._arm_qpos = np.array([m.jnt_qposadr[j] for j in arm_joints])
        self._arm_dof = np.array([m.jnt_dofadr[j] for j in arm_joints])
        fingers = [self._id(_OBJ.mjOBJ_JOINT, n) for n in self.robot.gripper_names]
        self._finger_qpos = np.array([m.jnt_qposadr[j] for j in fingers])
        self._arm_act = np.array(
            [self._id(_OBJ.mjOBJ_ACTUATOR, n) for n in self.robot.joint_names]
        )
        self._gripper_act = self._id(_OBJ.mjOBJ_ACTUATOR, "gripper")
        self._tcp_site = self._id(_OBJ.mjOBJ_SITE, "tcp")
        self._lower_rad, self._upper_rad = self.robot.lower_rad, self.robot.upper_rad
        # Arm links and the hand (not the fingers) for arm_contacts().
        finger_bodies = {m.jnt_bodyid[j] for j in fingers}
        arm_bodies = {m.jnt_bodyid[j] for j in arm_joints} | {self._id(_OBJ.mjOBJ_BODY, "hand")}
        arm_bodies -= finger_bodies
        self._is_arm_geom = np.isin(m.geom_bodyid, sorted(arm_bodies))

    def _index_scene(self) -> None:
        m = self.model
        self._objects: dict[str, int] = {}  # name -> body id
        self._rgba_geoms: dict[str, list[int]] = {"table": [self._id(_OBJ.mjOBJ_GEOM, "table")]}
        for obj in self.spec.objects:
            body = self._id(_OBJ.mjOBJ_BODY, OBJECT_PREFIX + obj.name)
            self._objects[obj.name] = body
            self._rgba_geoms[obj.name] = [int(m.body_geomadr[body])]
        self._object_height_m = {o.name: o.height_m for o in self.spec.objects}
        self._mocap: dict[str, int] = {}
        for fx in self.spec.fixtures:
            body = self._id(_OBJ.mjOBJ_BODY, FIXTURE_PREFIX + fx.name)
            self._mocap[fx.name] = int(m.body_mocapid[body])
            first = int(m.body_geomadr[body])
            self._rgba_geoms[fx.name] = list(range(first, first + int(m.body_geomnum[body])))
        self._is_target = {fx.name: fx.kind == "target" for fx in self.spec.fixtures}
        # The environment: world geoms (table, floor) and fixture geoms that collide.
        static = (m.geom_bodyid == 0) | np.isin(m.geom_bodyid, np.flatnonzero(m.body_mocapid >= 0))
        self._is_env_geom = static & (m.geom_contype > 0) & ~self._is_arm_geom
        self._light = self._id(_OBJ.mjOBJ_LIGHT, "key")
        self._cameras = {name: self._id(_OBJ.mjOBJ_CAMERA, name) for name in self.cameras}

    # ------------------------------------------------------------------------- parameters
    def _apply_params(self, params: PhysicsParams) -> None:
        """Write ``params`` into the model, starting from the nominal values."""
        self._check_names(params)
        for field, nominal in self._nominal.items():
            getattr(self.model, field)[:] = nominal
        self._scale_objects(params)
        for name, rgba in params.rgba.items():
            self.model.geom_rgba[_lookup(self._rgba_geoms, name, "object or fixture")] = rgba
        self.model.dof_damping[self._arm_dof] *= params.joint_damping_scale  # arm joints only
        self._scale_arm_gains(params.actuator_gain_scale)
        self._apply_light_and_cameras(params)
        # Masses and sizes feed derived constants (subtree masses, the solver's inverse weights,
        # mean inertia); recompute them from the nominal qpos0, as the compiler does.
        mujoco.mj_setConst(self.model, self.data)

    def _check_names(self, params: PhysicsParams) -> None:
        """Refuse unknown names before touching the model, so a bad call changes nothing."""
        for table in (params.mass_scale, params.friction_scale, params.size_scale):
            for name in table:
                _lookup(self._objects, name, "object")
        for name in params.rgba:
            _lookup(self._rgba_geoms, name, "object or fixture")
        for name in (*params.camera_pos_offset_m, *params.camera_rot_offset_rad):
            _lookup(self._cameras, name, "camera")

    def _scale_objects(self, params: PhysicsParams) -> None:
        m = self.model
        for name, body in self._objects.items():
            geom = int(m.body_geomadr[body])
            size_scale = params.get(params.size_scale, name)
            mass_scale = params.get(params.mass_scale, name)
            self._size_scale[name] = size_scale
            m.body_mass[body] *= mass_scale
            m.body_inertia[body] *= mass_scale * size_scale**2
            m.geom_friction[geom, 0] *= params.get(params.friction_scale, name)
            # A bigger geom also needs bigger bounding volumes, or the collision broad phase
            # misses contacts.
            m.geom_size[geom] *= size_scale
            m.geom_rbound[geom] *= size_scale
            m.geom_aabb[geom] *= size_scale
            bvh = slice(m.body_bvhadr[body], m.body_bvhadr[body] + m.body_bvhnum[body])
            m.bvh_aabb[bvh] *= size_scale

    def _scale_arm_gains(self, gain_scale: float) -> None:
        m = self.model
        m.actuator_gainprm[self._arm_act, 0] *= gain_scale
        # A position actuator's force is kp * ctrl - kp * q - kv * qdot: keep the bias's kp equal.
        m.actuator_biasprm[self._arm_act, 1] = -m.actuator_gainprm[self._arm_act, 0]

    def _apply_light_and_cameras(self, params: PhysicsParams) -> None:
        m = self.model
        m.light_pos[self._light] += params.light_offset_m
        m.light_diffuse[self._light] *= params.light_intensity
        m.light_specular[self._light] *= params.light_intensity
        for name, offset_m in params.camera_pos_offset_m.items():
            m.cam_pos[_lookup(self._cameras, name, "camera")] += offset_m
        for name, rotvec_rad in params.camera_rot_offset_rad.items():
            cam = _lookup(self._cameras, name, "camera")
            # The offset rotates the camera about axes of its parent frame.
            quat = np.zeros(4)
            mujoco.mju_mulQuat(quat, axis_angle_quat(np.asarray(rotvec_rad)), m.cam_quat[cam])
            m.cam_quat[cam] = quat

    # ------------------------------------------------------------------------------ reset
    def reset(
        self, layout: Layout, q_rad: np.ndarray, gripper_opening: float, params: PhysicsParams
    ) -> None:
        """Apply ``params``, place objects, fixtures and the arm; everything at rest. Objects and
        fixtures the layout leaves out stay at the centre of their spec's pose range."""
        self._apply_params(params)
        mujoco.mj_resetData(self.model, self.data)
        self._place_robot(np.asarray(q_rad, dtype=float), gripper_opening)
        for name, pose in layout.objects.items():
            self._place_object(name, pose)
        for name, pose in layout.fixtures.items():
            self._place_fixture(name, pose)
        mujoco.mj_forward(self.model, self.data)

    def _place_robot(self, q_rad: np.ndarray, gripper_opening: float) -> None:
        if q_rad.shape != (self.robot.dof,):
            raise ValueError(f"expected {self.robot.dof} joint positions, got shape {q_rad.shape}")
        q_rad = np.clip(q_rad, self._lower_rad, self._upper_rad)
        self.data.qpos[self._arm_qpos] = q_rad
        self.data.ctrl[self._arm_act] = q_rad
        finger_m = self.robot.finger_travel_m * float(np.clip(gripper_opening, 0.0, 1.0))
        self.data.qpos[self._finger_qpos] = finger_m
        self.data.ctrl[self._gripper_act] = 2.0 * finger_m

    def _place_object(self, name: str, pose: Pose2D) -> None:
        body = _lookup(self._objects, name, "object")
        adr = self.model.jnt_qposadr[self.model.body_jntadr[body]]
        x_m, y_m, bottom_m = pose.xyz_m
        height_m = self._object_height_m[name] * self._size_scale[name]
        self.data.qpos[adr : adr + 3] = (x_m, y_m, bottom_m + height_m / 2.0)
        self.data.qpos[adr + 3 : adr + 7] = yaw_quat(pose.yaw_rad)

    def _place_fixture(self, name: str, pose: Pose2D) -> None:
        mocap = _lookup(self._mocap, name, "fixture")
        x_m, y_m, z_m = pose.xyz_m
        # Zones, bins and holes stand on the table; only a reach target floats.
        self.data.mocap_pos[mocap] = (x_m, y_m, z_m if self._is_target[name] else 0.0)
        self.data.mocap_quat[mocap] = yaw_quat(pose.yaw_rad)

    # ------------------------------------------------------------------------------- step
    def step(self, q_target_rad: np.ndarray, gripper_cmd: float) -> None:
        """One control period: hold the targets for ``n_substeps`` physics steps."""
        self.data.ctrl[self._arm_act] = np.clip(q_target_rad, self._lower_rad, self._upper_rad)
        gap_m = 2.0 * self.robot.finger_travel_m * min(max(float(gripper_cmd), 0.0), 1.0)
        self.data.ctrl[self._gripper_act] = gap_m
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)

    def set_joint_positions(self, q_rad: np.ndarray) -> None:
        """Teleport the arm (and its position targets) to ``q_rad``; no physics step."""
        q_rad = np.asarray(q_rad, dtype=float)
        self.data.qpos[self._arm_qpos] = q_rad
        self.data.qvel[self._arm_dof] = 0.0
        self.data.ctrl[self._arm_act] = q_rad
        mujoco.mj_forward(self.model, self.data)

    # ----------------------------------------------------------------------- measurements
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._arm_qpos]

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._arm_dof]

    def gripper_opening(self) -> float:
        """Finger gap (sum of both finger joints) over the full gap, clipped to 0..1."""
        gap_m = float(self.data.qpos[self._finger_qpos].sum())
        return min(max(gap_m / (2.0 * self.robot.finger_travel_m), 0.0), 1.0)

    def tcp_pose(self) -> np.ndarray:
        T_base_tcp = np.eye(4)
        T_base_tcp[:3, :3] = self.data.site_xmat[self._tcp_site].reshape(3, 3)
        T_base_tcp[:3, 3] = self.data.site_xpos[self._tcp_site]
        return T_base_tcp

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        body = _lookup(self._objects, name, "object")
        return self.data.xpos[body].copy(), self.data.xquat[body].copy()

    def fixture_position(self, name: str) -> np.ndarray:
        return self.data.mocap_pos[_lookup(self._mocap, name, "fixture")].copy()

    def arm_contacts(self) -> int:
        """Contacts between arm links or the hand (not the fingers) and the table, floor or
        fixture walls, from the last collision pass."""
        geoms = self.data.contact.geom[: self.data.ncon]
        if len(geoms) == 0:
            return 0
        arm, env = self._is_arm_geom[geoms], self._is_env_geom[geoms]
        return int(np.count_nonzero((arm[:, 0] & env[:, 1]) | (arm[:, 1] & env[:, 0])))

    # ---------------------------------------------------------------------------- render
    def render(self, camera: str, width: int, height: int) -> np.ndarray:
        """RGB image (height, width, 3) uint8; one renderer per image size is kept."""
        cam = _lookup(self._cameras, camera, "camera")
        renderer = self._renderers.get((width, height)) or self._new_renderer(width, height)
        renderer.update_scene(self.data, camera=cam)
        return renderer.render()

    def _new_renderer(self, width: int, height: int) -> mujoco.Renderer:
        vis = self.model.vis.global_
        # MuJoCo sizes the offscreen framebuffer from the model when a renderer is made.
        vis.offwidth, vis.offheight = max(vis.offwidth, width), max(vis.offheight, height)
        try:
            renderer = mujoco.Renderer(self.model, height=height, width=width)
        except mujoco.FatalError as exc:
            raise RuntimeError(
                f"MuJoCo cannot render offscreen ({exc}). mujoco picks its OpenGL platform when "
                "first imported: set MUJOCO_GL=egl in the environment, or import "
                "sim.backends.mujoco_backend before anything imports mujoco."
            ) from exc
        for flag in _SLOW_RENDER_FLAGS:
            renderer.scene.flags[getattr(mujoco.mjtRndFlag, flag)] = False
        self._renderers[(width, height)] = renderer
        return renderer

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
