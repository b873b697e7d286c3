"""The PyBullet backend: kinematics equal kizuna.kinematics, control, grasping, parameters,
rendering, fixtures and determinism."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

pytest.importorskip("pybullet")  # an optional extra: no wheels for Python >= 3.12

from kizuna.kinematics import forward_kinematics, rotation_error, solve_ik, tcp_down_pose  # noqa: E402
from kizuna.robot import PANDA  # noqa: E402
from kizuna.task import load_task, parse_task, shipped_tasks  # noqa: E402
from sim.backends.pybullet_backend import PybulletBackend  # noqa: E402
from sim.scene import Layout, PhysicsParams, Pose2D, sample_layout  # noqa: E402

HOME_Q = np.array(PANDA.home_q_rad)
MakeBackend = Callable[[str], PybulletBackend]


@pytest.fixture
def make_backend() -> Iterator[MakeBackend]:
    """Build backends by task name; every one is closed after the test."""
    built: list[PybulletBackend] = []

    def make(task: str) -> PybulletBackend:
        built.append(PybulletBackend(load_task(task)))
        return built[-1]

    yield make
    for backend in built:
        backend.close()


def _reset(backend: PybulletBackend, seed: int = 0, params: PhysicsParams | None = None) -> Layout:
    layout = sample_layout(backend.spec, np.random.default_rng(seed))
    backend.reset(layout, HOME_Q, 1.0, params or PhysicsParams())
    return layout


def _move_to(
    backend: PybulletBackend, pos_m: np.ndarray, yaw_rad: float, gripper: float, steps: int
) -> None:
    q, _ = solve_ik(tcp_down_pose(pos_m, yaw_rad), backend.joint_positions())
    for _ in range(steps):
        backend.step(q, gripper)


def test_tcp_pose_matches_numpy_forward_kinematics(make_backend: MakeBackend) -> None:
    backend = make_backend("reach")
    rng = np.random.default_rng(0)
    for _ in range(25):
        q = rng.uniform(PANDA.lower_rad, PANDA.upper_rad)
        backend.set_joint_positions(q)
        T_engine, T_numpy = backend.tcp_pose(), forward_kinematics(q)
        assert np.linalg.norm(T_engine[:3, 3] - T_numpy[:3, 3]) < 1e-3
        assert np.linalg.norm(rotation_error(T_engine[:3, :3], T_numpy[:3, :3])) < 0.01
        np.testing.assert_allclose(backend.joint_positions(), q, atol=1e-9)


def test_position_control_reaches_an_ik_target(make_backend: MakeBackend) -> None:
    backend = make_backend("reach")
    _reset(backend)
    target = tcp_down_pose(np.array([0.5, 0.15, 0.12]), yaw_rad=0.4)
    q, ik_err_m = solve_ik(target, HOME_Q)
    assert ik_err_m < 1e-3
    for _ in range(40):  # 2 s at 20 Hz
        backend.step(q, 1.0)
    assert np.linalg.norm(backend.tcp_pose()[:3, 3] - target[:3, 3]) < 0.005
    assert np.abs(backend.joint_velocities()).max() < 0.05
    assert backend.gripper_opening() == pytest.approx(1.0, abs=0.01)


def test_grasps_and_lifts_the_pick_place_cube(make_backend: MakeBackend) -> None:
    backend = make_backend("pick_place")
    layout = _reset(backend, seed=3)
    cube = layout.objects["cube"]
    grasp = np.array(cube.xyz_m) + [0.0, 0.0, 0.02]  # the cube's centre
    _move_to(backend, grasp + [0.0, 0.0, 0.1], cube.yaw_rad, 1.0, 30)
    _move_to(backend, grasp, cube.yaw_rad, 1.0, 20)
    _move_to(backend, grasp, cube.yaw_rad, 0.0, 15)
    # A 4 cm cube between the fingers: half of the 8 cm opening.
    assert backend.gripper_opening() == pytest.approx(0.5, abs=0.03)
    _move_to(backend, grasp + [0.0, 0.0, 0.15], cube.yaw_rad, 0.0, 30)
    cube_pos, _ = backend.object_pose("cube")
    assert cube_pos[2] - 0.02 > 0.05
    assert np.linalg.norm(cube_pos - backend.tcp_pose()[:3, 3]) < 0.02


def _rollout(backend: PybulletBackend, seed: int, params: PhysicsParams) -> np.ndarray:
    """Reach down to the red cube, close, lift, with noise on the joint targets."""
    layout = _reset(backend, seed, params)
    cube = layout.objects["red_cube"]
    above, at = (
        solve_ik(tcp_down_pose(np.array(cube.xyz_m) + [0, 0, dz], cube.yaw_rad), HOME_Q)[0]
        for dz in (0.12, 0.02)
    )
    noise = np.random.default_rng(seed).normal(0.0, 0.01, (25, 7))
    states = []
    for t in range(25):
        backend.step((above if t < 8 or t > 18 else at) + noise[t], float(t < 14))
        poses = [np.concatenate(backend.object_pose(n)) for n in ("red_cube", "blue_cube")]
        states.append(np.concatenate([backend.joint_positions(), *poses]))
    return np.array(states)


def test_same_inputs_give_identical_rollouts(make_backend: MakeBackend) -> None:
    params = PhysicsParams(
        mass_scale={"red_cube": 1.3},
        friction_scale={"blue_cube": 0.8},
        size_scale={"red_cube": 0.9},
    )
    first = _rollout(make_backend("stack"), 1, params)
    backend = make_backend("stack")
    np.testing.assert_array_equal(first, _rollout(backend, 1, params))
    # Again in the same backend: nothing cached from the last episode may leak into this one.
    np.testing.assert_array_equal(first, _rollout(backend, 1, params))
    # After a resized body and a full rebuild of the world.
    backend.max_replaced_bodies = 0
    _rollout(backend, 7, PhysicsParams(size_scale={"red_cube": 1.2}))
    np.testing.assert_array_equal(first, _rollout(backend, 1, params))


def test_reset_forgets_the_last_episode(make_backend: MakeBackend) -> None:
    """Gymnasium's env checker: reset(seed) and one step, twice, must give the same result."""
    backend = make_backend("insert")
    first_step = []
    for _ in range(3):
        _reset(backend, seed=4)
        backend.step(HOME_Q + 0.05, 0.5)
        first_step.append(np.concatenate([*backend.object_pose("peg"), backend.joint_positions()]))
    np.testing.assert_array_equal(first_step[0], first_step[1])
    np.testing.assert_array_equal(first_step[0], first_step[2])


def test_physics_params_apply_and_revert_to_nominal(make_backend: MakeBackend) -> None:
    backend = make_backend("pick_place")
    client = backend.client

    def cube_mass_friction_height() -> tuple[float, float, float]:
        body = backend.body_id("cube")
        info = client.getDynamicsInfo(body, -1)
        low, high = client.getAABB(body)
        return info[0], info[1], high[2] - low[2]

    def bin_rgba() -> tuple[float, ...]:
        return tuple(client.getVisualShapeData(backend.body_id("bin"))[0][7])

    nominal_rgba = bin_rgba()
    _reset(backend)
    mass, friction, height = cube_mass_friction_height()
    assert (mass, friction) == pytest.approx((0.1, 1.0))
    scaled = PhysicsParams(
        mass_scale={"cube": 2.0},
        friction_scale={"cube": 0.5},
        size_scale={"cube": 1.5},
        rgba={"bin": (1.0, 1.0, 0.0, 1.0)},
    )
    _reset(backend, params=scaled)
    assert cube_mass_friction_height() == pytest.approx((0.2, 0.5, 1.5 * height), rel=0.02)
    assert bin_rgba() == pytest.approx((1.0, 1.0, 0.0, 1.0))
    _reset(backend)
    assert cube_mass_friction_height() == pytest.approx((mass, friction, height))
    assert bin_rgba() == pytest.approx(nominal_rgba)


def test_unknown_names_are_refused(make_backend: MakeBackend) -> None:
    backend = make_backend("pick_place")
    with pytest.raises(KeyError, match="unknown object 'cub'"):
        _reset(backend, params=PhysicsParams(mass_scale={"cub": 2.0}))
    with pytest.raises(KeyError, match="unknown camera"):
        _reset(backend, params=PhysicsParams(camera_pos_offset_m={"top": (0.0, 0.0, 0.1)}))
    with pytest.raises(KeyError, match="unknown object"):
        backend.reset(Layout({"ball": Pose2D((0.5, 0, 0), 0)}, {}), HOME_Q, 1.0, PhysicsParams())


def test_actuator_gain_scale_slows_the_response(make_backend: MakeBackend) -> None:
    backend = make_backend("reach")
    errors = []
    for scale in (1.0, 0.3):
        _reset(backend, params=PhysicsParams(actuator_gain_scale=scale))
        target = HOME_Q + 0.01
        backend.step(target, 1.0)
        errors.append(np.abs(backend.joint_positions() - target).max())
    assert errors[0] < 0.002 < errors[1]


def test_render_returns_rgb_uint8_images(make_backend: MakeBackend) -> None:
    backend = make_backend("pick_place")
    _reset(backend)
    front = backend.render("front", 80, 64)
    wrist = backend.render("wrist", 80, 64)
    for image in (front, wrist):
        assert image.shape == (64, 80, 3)
        assert image.dtype == np.uint8
    assert front.std() > 10.0  # table, arm, cube and bin, not one flat colour
    shifted = PhysicsParams(camera_pos_offset_m={"front": (0.0, 0.1, 0.0)})
    _reset(backend, params=shifted)
    assert not np.array_equal(front, backend.render("front", 80, 64))
    with pytest.raises(KeyError, match="unknown camera"):
        backend.render("ceiling", 8, 8)


def test_peg_dropped_over_the_hole_falls_in(make_backend: MakeBackend) -> None:
    backend = make_backend("insert")
    hole = sample_layout(backend.spec, np.random.default_rng(2)).fixtures["hole"]
    above = Pose2D((hole.xyz_m[0], hole.xyz_m[1], 0.06), hole.yaw_rad)  # bottom above the rim
    backend.reset(Layout({"peg": above}, {"hole": hole}), HOME_Q, 1.0, PhysicsParams())
    for _ in range(20):
        backend.step(HOME_Q, 1.0)
    peg_pos, _ = backend.object_pose("peg")
    peg_bottom_z = peg_pos[2] - 0.035
    assert peg_bottom_z < 0.005  # on the table inside the 4 cm block
    assert np.linalg.norm(peg_pos[:2] - backend.fixture_position("hole")[:2]) < 0.002


def test_arm_contacts_count_the_hand_in_the_table(make_backend: MakeBackend) -> None:
    backend = make_backend("pick_place")
    _reset(backend)
    assert backend.arm_contacts() == 0
    # TCP 7 cm below the table top puts the hand body into it.
    q, _ = solve_ik(tcp_down_pose(np.array([0.5, 0.0, -0.07])), HOME_Q)
    backend.set_joint_positions(q)
    assert backend.arm_contacts() > 0


@pytest.mark.parametrize("task", shipped_tasks())
def test_every_shipped_task_builds_and_resets(make_backend: MakeBackend, task: str) -> None:
    backend = make_backend(task)
    layout = _reset(backend, seed=5)
    backend.step(HOME_Q, 1.0)
    for obj in backend.spec.objects:
        pos, quat = backend.object_pose(obj.name)
        np.testing.assert_allclose(pos[:2], layout.objects[obj.name].xyz_m[:2], atol=2e-3)
        assert pos[2] == pytest.approx(obj.height_m / 2.0, abs=2e-3)  # resting on the table
        assert np.linalg.norm(quat) == pytest.approx(1.0)
    for fixture in backend.spec.fixtures:
        expected = np.array(layout.fixtures[fixture.name].xyz_m)
        if fixture.kind != "target":
            expected[2] = 0.0
        np.testing.assert_allclose(backend.fixture_position(fixture.name), expected)
    assert backend.arm_contacts() == 0
    np.testing.assert_allclose(backend.joint_positions(), HOME_Q, atol=1e-3)


def test_cylinders_and_spheres_rest_on_the_table_at_their_size() -> None:
    pose = {"x_m": [0.45, 0.45], "y_m": [-0.1, 0.1]}
    spec = parse_task(
        {
            "name": "shapes",
            "episode_steps": 10,
            "instructions": ["touch the can"],
            "objects": [
                {"name": "can", "shape": "cylinder", "size_m": [0.03, 0.1], "pose": pose},
                {"name": "ball", "shape": "sphere", "size_m": [0.025], "pose": pose},
            ],
            "fixtures": [{"name": "zone", "kind": "zone", "size_m": [0.1, 0.1], "pose": pose}],
            "success": [{"kind": "in_zone", "object": "can", "target": "zone"}],
        }
    )
    backend = PybulletBackend(spec)
    layout = Layout(
        {"can": Pose2D((0.45, -0.1, 0.0), 0.3), "ball": Pose2D((0.45, 0.1, 0.0), 0.0)},
        {"zone": Pose2D((0.45, 0.0, 0.0), 0.0)},
    )
    backend.reset(layout, HOME_Q, 1.0, PhysicsParams(size_scale={"can": 1.2}))
    for _ in range(5):
        backend.step(HOME_Q, 1.0)
    assert backend.object_pose("can")[0][2] == pytest.approx(0.06, abs=1e-3)  # 1.2 x 10 cm / 2
    assert backend.object_pose("ball")[0] == pytest.approx((0.45, 0.1, 0.025), abs=1e-3)
    backend.close()
