"""Calibration data rendered by the simulator, where the truth is known (tests and benchmarks).

Nothing here is needed to calibrate a real cell; it makes the ground-truth checks reproducible:
``handeye_samples`` renders board images from robot poses solved by IK, around a known
``T_gripper_cam`` (eye-in-hand) or ``T_base_cam`` (eye-to-hand).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.bagio import Recording
from calibration.board import BoardSpec
from calibration.frames import invert, look_at_cv, make_transform
from calibration.handeye import Mode, Sample
from calibration.render import BoardRenderer
from kizuna.kinematics import forward_kinematics, solve_ik
from kizuna.robot import PANDA

# The true wrist camera: a little behind and beside the TCP, looking along the gripper.
T_GRIPPER_CAM_TRUE = make_transform(np.array([0.05, -0.08, 0.6]), [0.045, -0.02, -0.06])
# The true fixed camera: across the table, looking back at the robot.
T_BASE_CAM_TRUE = look_at_cv(np.array([0.95, 0.12, 0.5]), np.array([0.5, 0.0, 0.3]), [0, 0, 1])
# Eye-to-hand: the gripper (pointing down, as at home) holds the board by its top edge, printed
# side toward the camera in front of the robot: board x, y, z = -gripper y, gripper z, -gripper x.
_R_GRIPPER_BOARD = np.stack([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]], axis=1)
_GRIPPER_TO_BOARD_CENTRE_M = 0.12
# How an integrator is told to capture eye-to-hand poses: the board 0.30-0.40 m from the camera
# (its corners then span ~40-50 % of a 55 deg image), tilted +-30 deg about both its axes.
_EYE_TO_HAND_DISTANCE_M = (0.30, 0.40)
_TILT_DEG, _ROLL_DEG = 30.0, 15.0
MAX_ATTEMPTS_PER_POSE = 20


@dataclass
class HandEyeData:
    samples: list[Sample]
    T_true: np.ndarray  # T_gripper_cam or T_base_cam
    K: np.ndarray
    board: BoardSpec


def _eye_to_hand_board(rng: np.random.Generator, T_base_cam: np.ndarray) -> np.ndarray:
    """``T_base_board`` (at the board's centre) for one capture: in front of the camera, a
    little off its axis, facing it, then tilted about the board's x and y and rolled."""
    offset = np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.06, 0.06), 1.0])
    ray = T_base_cam[:3, :3] @ (offset / np.linalg.norm(offset))
    centre = T_base_cam[:3, 3] + rng.uniform(*_EYE_TO_HAND_DISTANCE_M) * ray
    facing = look_at_cv(T_base_cam[:3, 3], centre, np.array([0.0, 0.0, 1.0]))
    tilt_x, tilt_y = np.radians(rng.uniform(-_TILT_DEG, _TILT_DEG, 2))
    roll = np.radians(rng.uniform(-_ROLL_DEG, _ROLL_DEG))
    tilted = (
        make_transform(np.array([tilt_x, 0.0, 0.0]), np.zeros(3))
        @ make_transform(np.array([0.0, tilt_y, 0.0]), np.zeros(3))
        @ make_transform(np.array([0.0, 0.0, roll]), np.zeros(3))
    )
    T = facing @ tilted
    T[:3, 3] = centre
    return T


def handeye_samples(
    mode: Mode = "eye_in_hand",
    n_poses: int = 15,
    image_noise_std: float = 0.0,
    joint_noise_rad: float = 0.0,
    seed: int = 0,
    board: BoardSpec | None = None,
) -> HandEyeData:
    """Rendered board images with the joint positions that produced them (plus noise)."""
    board = board or BoardSpec()
    rng = np.random.default_rng(seed)
    renderer = BoardRenderer(board, 640, 480, fovy_deg=55.0)
    w_m, h_m = board.size_m
    centre_board = make_transform(np.zeros(3), [-w_m / 2, -h_m / 2, 0.0])  # from centre to origin
    if mode == "eye_in_hand":
        # Board flat on the table, printed side up (its z points down into the table).
        T_base_board = make_transform(np.diag([1.0, -1.0, -1.0]), [0.45, 0.1, 0.0]) @ centre_board
        T_true = T_GRIPPER_CAM_TRUE
    else:
        to_centre = [0.0, 0.0, _GRIPPER_TO_BOARD_CENTRE_M]
        T_gripper_board = make_transform(_R_GRIPPER_BOARD, to_centre) @ centre_board
        T_true = T_BASE_CAM_TRUE
    samples, q_seed, attempts = [], np.array(PANDA.home_q_rad), 0
    while len(samples) < n_poses:
        attempts += 1
        if attempts > MAX_ATTEMPTS_PER_POSE * n_poses:
            raise RuntimeError(f"IK reached only {len(samples)} of {n_poses} {mode} poses")
        if mode == "eye_in_hand":
            centre = (T_base_board @ np.array([w_m / 2, h_m / 2, 0.0, 1.0]))[:3]
            tilt = np.radians(rng.uniform(0.0, 35.0))
            azimuth = rng.uniform(-np.pi, np.pi)
            eye = centre + rng.uniform(0.3, 0.42) * np.array(
                [np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth), np.cos(tilt)]
            )
            up = np.array([1.0, 0.0, 0.0]) + rng.normal(0.0, 0.4, 3)
            T_base_cam = look_at_cv(eye, centre + rng.normal(0.0, 0.02, 3), up)
            target = T_base_cam @ invert(T_true)
        else:
            target = _eye_to_hand_board(rng, T_true) @ centre_board @ invert(T_gripper_board)
        q, err_m = solve_ik(target, q_seed, iterations=200)
        if err_m > 0.01:
            continue
        T_base_gripper = forward_kinematics(q)
        if mode == "eye_in_hand":
            image = renderer.render(T_base_gripper @ T_true, T_base_board, image_noise_std, rng)
        else:
            image = renderer.render(T_true, T_base_gripper @ T_gripper_board, image_noise_std, rng)
        q_measured = q + rng.normal(0.0, joint_noise_rad, q.shape) if joint_noise_rad else q
        samples.append(Sample(f"pose_{len(samples):03d}.png", q_measured, image))
    K = renderer.intrinsics()
    renderer.close()
    return HandEyeData(samples, T_true, K, board)


def excitation(n_steps: int = 40, seed: int = 0, amplitude_rad: float = 0.3) -> np.ndarray:
    """Commands that excite the joint servos: a new random target every 5 periods around home
    (steps show the gain and the latency), gripper open. Rows: 7 joint targets + gripper."""
    rng = np.random.default_rng(seed)
    home = np.array(PANDA.home_q_rad)
    rows = []
    for k in range(n_steps):
        if k % 5 == 0:
            target = home + rng.uniform(-amplitude_rad, amplitude_rad, PANDA.dof)
            target = np.clip(target, PANDA.lower_rad + 0.05, PANDA.upper_rad - 0.05)
        rows.append(np.append(target, 1.0))
    return np.array(rows)


def record_in_sim(
    commands: np.ndarray, reality: str | None = "medium", task: str = "reach", seed: int = 0
) -> Recording:
    """What a robot bag would hold: the env (under a reality profile) driven by ``commands``.

    The joint state after reset is stamped 0, command k at k * dt (sent on receipt of
    the state), the state it produced at (k + 1) * dt.
    """
    from sim.env import KizunaEnv

    env = KizunaEnv(task, cameras=(), reality=reality)
    obs, _ = env.reset(seed=seed)
    dt_s = env.control_dt_s
    states = [obs["state"]]
    for command in commands:
        obs, *_ = env.step(command.astype(np.float32))
        states.append(obs["state"])
    env.close()
    s = np.array(states, dtype=float)
    n = len(commands)
    return Recording(
        state_t_s=np.arange(n + 1) * dt_s,
        q_rad=s[:, : PANDA.dof],
        gripper=s[:, PANDA.dof],
        command_t_s=np.arange(n) * dt_s,
        commands=np.asarray(commands, float),
    )


def depth_cloud(
    T_base_cam: np.ndarray,
    task: str = "pick_place",
    size: tuple[int, int] = (200, 150),
    fovy_deg: float = 60.0,
    noise_std_m: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """What a depth camera at ``T_base_cam`` sees of the cell's table and fixtures, as (N, 3)
    points in its optical frame (the arm and the floor are masked out)."""
    import mujoco

    from kizuna.task import load_task
    from sim.backends.mujoco_backend import MujocoBackend
    from sim.scene import Layout, PhysicsParams

    sim = MujocoBackend(load_task(task))
    sim.reset(Layout({}, {}), np.array(PANDA.home_q_rad), 1.0, PhysicsParams())
    m, cam = sim.model, sim._cameras["front"]  # noqa: SLF001 - repurpose the front camera
    m.cam_pos[cam] = T_base_cam[:3, 3]
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (T_base_cam[:3, :3] @ np.diag([1.0, -1.0, -1.0])).reshape(9))
    m.cam_quat[cam], m.cam_fovy[cam] = quat, fovy_deg
    mujoco.mj_forward(m, sim.data)
    w, h = size
    renderer = mujoco.Renderer(m, height=h, width=w)
    renderer.update_scene(sim.data, camera=cam)
    renderer.enable_depth_rendering()
    depth = renderer.render().copy()
    renderer.disable_depth_rendering()
    renderer.enable_segmentation_rendering()
    renderer.update_scene(sim.data, camera=cam)
    seg = renderer.render()
    renderer.close()
    keep = (seg[:, :, 1] == mujoco.mjtObj.mjOBJ_GEOM) & sim._is_env_geom[seg[:, :, 0]]  # noqa: SLF001
    keep &= m.geom_type[seg[:, :, 0]] == mujoco.mjtGeom.mjGEOM_BOX  # not the floor plane
    f_px = (h / 2.0) / np.tan(np.radians(fovy_deg) / 2.0)
    v, u = np.nonzero(keep)
    z = depth[v, u]
    points = np.column_stack([(u - (w - 1) / 2) * z / f_px, (v - (h - 1) / 2) * z / f_px, z])
    if noise_std_m:
        points += np.random.default_rng(seed).normal(0.0, noise_std_m, points.shape)
    return points
