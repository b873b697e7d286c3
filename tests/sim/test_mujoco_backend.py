"""The MuJoCo backend: kinematics agree with kizuna.kinematics, the servos reach IK targets, the
gripper lifts a cube, fixtures hold things, parameters apply and revert, rendering works."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from kizuna.kinematics import forward_kinematics, rotation_error, solve_ik, tcp_down_pose
from kizuna.robot import PANDA
from kizuna.task import TaskSpec, load_task, parse_task, shipped_tasks
from sim.backends.mujoco_backend import PARAM_FIELDS, MujocoBackend
from sim.scene import Layout, PhysicsParams, Pose2D, sample_layout

HOME_Q_RAD = np.array(PANDA.home_q_rad)
NOMINAL = PhysicsParams()


def backend_at(
    task: str, objects: dict[str, Pose2D], fixtures: dict[str, Pose2D]
) -> MujocoBackend:
    """A shipped task's backend, reset with nominal physics to the given layout."""
    backend = MujocoBackend(load_task(task))
    backend.reset(Layout(objects, fixtures), HOME_Q_RAD, 1.0, NOMINAL)
    return backend


def settle(backend: MujocoBackend, seconds: float, gripper_cmd: float = 1.0) -> None:
    """Hold the current joint targets for a while."""
    q_hold_rad = backend.data.ctrl[: PANDA.dof].copy()
    for _ in range(round(seconds * backend.spec.control_hz)):
        backend.step(q_hold_rad, gripper_cmd)


def move_tcp(
    backend: MujocoBackend, pos_m: list[float], yaw_rad: float, gripper_cmd: float, steps: int = 20
) -> None:
    """Ramp the joint targets to an IK solution for a downward TCP pose, then hold."""
    q_start_rad = backend.joint_positions()
    q_goal_rad, error_m = solve_ik(tcp_down_pose(np.array(pos_m), yaw_rad), q_start_rad)
    assert error_m < 1e-3, f"IK failed for {pos_m}"
    for k in range(steps):
        blend = min(1.0, (k + 1) / (0.6 * steps))
        backend.step(q_start_rad + blend * (q_goal_rad - q_start_rad), gripper_cmd)


@pytest.fixture
def pick_place() -> Iterator[MujocoBackend]:
    backend = backend_at(
        "pick_place",
        {"cube": Pose2D((0.5, -0.1, 0.0), 0.4)},
        {"bin": Pose2D((0.5, 0.2, 0.0), 0.0)},
    )
    yield backend
    backend.close()


def test_tcp_pose_matches_numpy_forward_kinematics(pick_place: MujocoBackend) -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        q_rad = rng.uniform(PANDA.lower_rad, PANDA.upper_rad)
        pick_place.set_joint_positions(q_rad)
        T_expected = forward_kinematics(q_rad)
        T_engine = pick_place.tcp_pose()
        np.testing.assert_allclose(pick_place.joint_positions(), q_rad)
        assert np.linalg.norm(T_engine[:3, 3] - T_expected[:3, 3]) < 1e-3
        assert np.linalg.norm(rotation_error(T_engine[:3, :3], T_expected[:3, :3])) < 0.01


@pytest.mark.parametrize("target_m", [[0.5, 0.0, 0.2], [0.4, 0.25, 0.08], [0.6, -0.2, 0.35]])
def test_arm_reaches_ik_target(target_m: list[float]) -> None:
    backend = backend_at("reach", {}, {"marker": Pose2D((0.5, 0.0, 0.2), 0.0)})
    q_goal_rad, _ = solve_ik(tcp_down_pose(np.array(target_m)), HOME_Q_RAD)
    for _ in range(40):  # 2 s at 20 Hz
        backend.step(q_goal_rad, 1.0)
    assert np.linalg.norm(backend.tcp_pose()[:3, 3] - target_m) < 5e-3
    assert np.abs(backend.joint_velocities()).max() < 1e-2


def test_servo_settles_within_two_control_periods() -> None:
    backend = backend_at("reach", {}, {"marker": Pose2D((0.5, 0.0, 0.2), 0.0)})
    q_goal_rad = HOME_Q_RAD + 0.1  # about the largest step a rate-limited policy makes
    tcp_goal_m = forward_kinematics(q_goal_rad)[:3, 3]
    errors_m = []
    for _ in range(4):
        backend.step(q_goal_rad, 1.0)
        errors_m.append(np.linalg.norm(backend.tcp_pose()[:3, 3] - tcp_goal_m))
    assert errors_m[1] < 2e-3  # after two control periods
    assert errors_m[3] < 2e-4  # after four: settled, no ringing


def test_gripper_grasps_and_lifts_cube(pick_place: MujocoBackend) -> None:
    start_m = pick_place.object_pose("cube")[0]
    move_tcp(pick_place, [*start_m[:2], start_m[2] + 0.12], 0.4, 1.0)
    move_tcp(pick_place, list(start_m), 0.4, 1.0)
    assert pick_place.arm_contacts() == 0
    settle(pick_place, 0.5, gripper_cmd=0.0)
    # The fingers stop on the 4 cm cube: a gap of 4 of the 8 cm full opening.
    assert pick_place.gripper_opening() == pytest.approx(0.5, abs=0.02)
    move_tcp(pick_place, [*start_m[:2], start_m[2] + 0.15], 0.4, 0.0, steps=30)
    settle(pick_place, 1.0, gripper_cmd=0.0)
    assert pick_place.object_pose("cube")[0][2] - start_m[2] > 0.05


def test_gripper_opening_follows_command(pick_place: MujocoBackend) -> None:
    pick_place.reset(
        Layout({"cube": Pose2D((0.4, -0.2, 0.0), 0.0)}, {"bin": Pose2D((0.5, 0.2, 0.0), 0.0)}),
        HOME_Q_RAD,
        0.5,
        NOMINAL,
    )
    assert pick_place.gripper_opening() == pytest.approx(0.5)
    for command, expected in [(0.0, 0.0), (1.0, 1.0), (0.25, 0.25)]:
        settle(pick_place, 0.5, gripper_cmd=command)
        assert pick_place.gripper_opening() == pytest.approx(expected, abs=0.01)


def _rollout(backend: MujocoBackend, layout: Layout, params: PhysicsParams) -> np.ndarray:
    backend.reset(layout, HOME_Q_RAD, 1.0, params)
    trace = []
    for k in range(30):
        gripper_cmd = 1.0 if k < 15 else 0.0
        backend.step(HOME_Q_RAD + 0.3 * np.sin(0.2 * k + np.arange(PANDA.dof)), gripper_cmd)
        trace.append(np.concatenate([backend.joint_positions(), backend.object_pose("cube")[0]]))
    return np.array(trace)


def test_nominal_params_reproduce_a_fresh_backend() -> None:
    spec = load_task("pick_place")
    layout = sample_layout(spec, np.random.default_rng(3))
    fresh = MujocoBackend(spec)
    expected = _rollout(fresh, layout, NOMINAL)
    backend = MujocoBackend(spec)
    shifted = PhysicsParams(
        mass_scale={"cube": 1.7},
        friction_scale={"cube": 0.5},
        size_scale={"cube": 1.2},
        rgba={"bin": (1.0, 0.0, 0.0, 1.0)},
        joint_damping_scale=2.0,
        actuator_gain_scale=0.7,
        light_offset_m=(0.1, 0.0, -0.2),
        light_intensity=0.5,
        camera_pos_offset_m={"front": (0.01, 0.02, 0.0)},
        camera_rot_offset_rad={"wrist": (0.0, 0.05, 0.0)},
    )
    changed = _rollout(backend, layout, shifted)
    assert not np.array_equal(changed, expected)
    np.testing.assert_array_equal(_rollout(backend, layout, NOMINAL), expected)
    for field in (*PARAM_FIELDS, "body_subtreemass", "body_invweight0", "dof_invweight0"):
        np.testing.assert_array_equal(getattr(backend.model, field), getattr(fresh.model, field))


def test_mass_scale_is_applied_and_reverted(pick_place: MujocoBackend) -> None:
    cube = pick_place.model.body("object/cube").id
    nominal_kg = pick_place.model.body_mass[cube]
    assert nominal_kg == pytest.approx(0.1)
    layout = Layout({"cube": Pose2D((0.5, -0.1, 0.0), 0.0)}, {"bin": Pose2D((0.5, 0.2, 0.0), 0.0)})
    pick_place.reset(layout, HOME_Q_RAD, 1.0, PhysicsParams(mass_scale={"cube": 1.5}))
    assert pick_place.model.body_mass[cube] == pytest.approx(1.5 * nominal_kg)
    pick_place.reset(layout, HOME_Q_RAD, 1.0, NOMINAL)
    assert pick_place.model.body_mass[cube] == nominal_kg


def test_size_scale_grows_the_collision_shape(pick_place: MujocoBackend) -> None:
    layout = Layout({"cube": Pose2D((0.5, -0.1, 0.0), 0.0)}, {"bin": Pose2D((0.5, 0.2, 0.0), 0.0)})
    pick_place.reset(layout, HOME_Q_RAD, 1.0, PhysicsParams(size_scale={"cube": 1.5}))
    settle(pick_place, 0.5)
    # A 6 cm cube rests with its centre 3 cm above the table (within contact softness).
    assert pick_place.object_pose("cube")[0][2] == pytest.approx(0.03, abs=1e-3)


def test_unknown_names_in_params_are_refused(pick_place: MujocoBackend) -> None:
    layout = Layout({}, {})
    with pytest.raises(KeyError, match="cube"):
        pick_place.reset(layout, HOME_Q_RAD, 1.0, PhysicsParams(mass_scale={"cuube": 2.0}))
    with pytest.raises(KeyError, match="front"):
        pick_place.reset(
            layout, HOME_Q_RAD, 1.0, PhysicsParams(camera_pos_offset_m={"top": (0, 0, 0)})
        )


def test_render_shape_dtype_and_content(pick_place: MujocoBackend) -> None:
    front = pick_place.render("front", 96, 64)
    wrist = pick_place.render("wrist", 96, 64)
    for image in (front, wrist):
        assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert front.std() > 10.0
    # The red cube shows up as strongly red pixels in the front view.
    rgb = front.astype(int)
    red = rgb[..., 0] - np.maximum(rgb[..., 1], rgb[..., 2]) > 60
    assert red.sum() >= 4


def test_light_and_camera_params_change_the_image_and_revert(pick_place: MujocoBackend) -> None:
    layout = Layout({"cube": Pose2D((0.5, -0.1, 0.0), 0.4)}, {"bin": Pose2D((0.5, 0.2, 0.0), 0.0)})
    nominal = pick_place.render("front", 64, 64)
    pick_place.reset(layout, HOME_Q_RAD, 1.0, PhysicsParams(light_intensity=0.3))
    assert pick_place.render("front", 64, 64).mean() < nominal.mean() - 5.0
    moved = PhysicsParams(camera_pos_offset_m={"front": (0.0, 0.05, 0.0)})
    pick_place.reset(layout, HOME_Q_RAD, 1.0, moved)
    assert not np.array_equal(pick_place.render("front", 64, 64), nominal)
    pick_place.reset(layout, HOME_Q_RAD, 1.0, NOMINAL)
    np.testing.assert_array_equal(pick_place.render("front", 64, 64), nominal)


PEG_HALF_HEIGHT_M = load_task("insert").object("peg").height_m / 2


def test_peg_dropped_above_hole_falls_in() -> None:
    rim_m = load_task("insert").fixture("hole").size_m[2]
    backend = backend_at(
        "insert",
        {"peg": Pose2D((0.5, 0.15, rim_m + 0.02), 0.0)},
        {"hole": Pose2D((0.5, 0.15, 0.0), 0.0)},
    )
    settle(backend, 1.0)
    peg_bottom_m = backend.object_pose("peg")[0][2] - PEG_HALF_HEIGHT_M
    assert peg_bottom_m < rim_m - 0.02
    assert np.linalg.norm(backend.object_pose("peg")[0][:2] - [0.5, 0.15]) < 3e-3


def test_peg_beside_hole_rests_on_the_block() -> None:
    backend = backend_at(
        "insert",
        {"peg": Pose2D((0.5, 0.15 + 0.032, 0.05), 0.0)},
        {"hole": Pose2D((0.5, 0.15, 0.0), 0.0)},
    )
    settle(backend, 1.0)
    peg_bottom_m = backend.object_pose("peg")[0][2] - PEG_HALF_HEIGHT_M
    assert peg_bottom_m == pytest.approx(0.04, abs=2e-3)  # on the block's top


def test_cube_placed_in_bin_stays_in_it() -> None:
    spec = load_task("pick_place")
    bin_spec = spec.fixture("bin")
    backend = backend_at(
        "pick_place",
        {"cube": Pose2D((0.52, 0.21, bin_spec.wall_m + 0.01), 0.3)},
        {"bin": Pose2D((0.5, 0.2, 0.0), 0.0)},
    )
    settle(backend, 1.0)
    cube_m = backend.object_pose("cube")[0]
    inner_half_m = np.array(bin_spec.size_m[:2]) / 2
    assert np.all(np.abs(cube_m[:2] - backend.fixture_position("bin")[:2]) < inner_half_m)
    assert cube_m[2] == pytest.approx(bin_spec.wall_m + 0.02, abs=2e-3)


def test_arm_contacts_count_the_table_only_when_touched(pick_place: MujocoBackend) -> None:
    pick_place.set_joint_positions(HOME_Q_RAD)
    assert pick_place.arm_contacts() == 0
    # Shoulder pitched forward, elbow straight: the forearm lies in the table.
    pick_place.set_joint_positions(np.array([0.0, 1.7, 0.0, -0.5, 0.0, 1.0, 0.0]))
    assert pick_place.arm_contacts() > 0


def _spec_layout(spec: TaskSpec, seed: int) -> Layout:
    return sample_layout(spec, np.random.default_rng(seed))


@pytest.mark.parametrize("task", shipped_tasks())
def test_every_shipped_task_builds_and_resets(task: str) -> None:
    spec = load_task(task)
    backend = MujocoBackend(spec)
    layout = _spec_layout(spec, 0)
    backend.reset(layout, HOME_Q_RAD, 1.0, NOMINAL)
    for name, pose in layout.objects.items():
        centre_m = backend.object_pose(name)[0]
        np.testing.assert_allclose(centre_m[:2], pose.xyz_m[:2])
        assert centre_m[2] == pytest.approx(spec.object(name).height_m / 2)
    for name, pose in layout.fixtures.items():
        expected_z_m = pose.xyz_m[2] if spec.fixture(name).kind == "target" else 0.0
        np.testing.assert_allclose(backend.fixture_position(name), [*pose.xyz_m[:2], expected_z_m])
    settle(backend, 0.25)
    assert np.isfinite(backend.joint_positions()).all()
    assert backend.arm_contacts() == 0
    backend.close()


def _shapes_spec() -> TaskSpec:
    """Every object shape and fixture kind in one cell (no shipped task has them all)."""
    pose = {"x_m": [0.45, 0.45], "y_m": [0.0, 0.0]}
    return parse_task(
        {
            "name": "shapes",
            "episode_steps": 10,
            "instructions": ["sort the shapes"],
            "objects": [
                {"name": "can", "shape": "cylinder", "size_m": [0.03, 0.08], "pose": pose},
                {"name": "ball", "shape": "sphere", "size_m": [0.025], "pose": pose},
            ],
            "fixtures": [
                {"name": "mat", "kind": "zone", "size_m": [0.1, 0.1], "pose": pose},
                {"name": "dot", "kind": "target", "size_m": [0.02], "pose": pose},
            ],
            "success": [{"kind": "in_zone", "object": "can", "target": "mat"}],
        }
    )


@pytest.mark.parametrize("size_scale", [1.0, 1.5])
def test_cylinders_and_spheres_rest_on_the_table(size_scale: float) -> None:
    spec = _shapes_spec()
    backend = MujocoBackend(spec)
    layout = Layout(
        {"can": Pose2D((0.45, -0.1, 0.0), 0.3), "ball": Pose2D((0.45, 0.1, 0.0), 0.0)},
        {"mat": Pose2D((0.55, 0.0, 0.0), 0.2), "dot": Pose2D((0.4, 0.0, 0.25), 0.0)},
    )
    scales = {"can": size_scale, "ball": size_scale}
    backend.reset(layout, HOME_Q_RAD, 1.0, PhysicsParams(size_scale=scales))
    settle(backend, 0.5)
    for name in ("can", "ball"):
        resting_z_m = size_scale * spec.object(name).height_m / 2
        assert backend.object_pose(name)[0][2] == pytest.approx(resting_z_m, abs=1e-3)
    np.testing.assert_allclose(backend.fixture_position("dot"), [0.4, 0.0, 0.25])
