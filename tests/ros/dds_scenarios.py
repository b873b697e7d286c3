"""DDS scenarios: the real nodes over real DDS, run only inside a private network namespace.

Not collected directly (the file name does not start with ``test_``): ``test_dds.py`` runs this
module with pytest through ``netns.py`` and reports each scenario as its own test. Nodes run
in this process, each on its own single-threaded executor in its own thread (created there:
MuJoCo's EGL context belongs to the thread that made it), talking through Fast DDS on ``lo``.
``kizuna deploy --backend ros`` runs as separate processes.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import netns
import numpy as np
import pytest

netns.require_inside()

import rclpy  # noqa: E402 - only once we know we are inside the namespace
import yaml  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from real_robot.ros.convert import JointLayout, array_to_image, state_to_joint_state  # noqa: E402
from real_robot.ros.policy_node import PolicyNode  # noqa: E402
from real_robot.ros.sim_robot_node import SimRobotNode  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = JointLayout.for_robot()
HZ = 20.0
PERIOD_S = 1.0 / HZ
IMAGE_MAX_AGE_S = 0.25
SIZE = 32  # the fake arm's images; the tiny VLA resizes them
# Distinct values per joint, so a mix-up of names shows (all inside the joint limits).
STATE = np.array([0.1, -0.3, 0.2, -2.2, 0.3, 1.9, 0.7, 0.5])


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


class World:
    """One rclpy context; every node spun by its own executor thread, and destroyed there
    at the end (a node left alive keeps its services visible to later tests' processes)."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(args=[], context=self.context)
        self.threads: list[threading.Thread] = []
        self.running = True

    def spin(self, make_node: Callable[[Context], Node]) -> Any:
        made: queue.Queue = queue.Queue()

        def run() -> None:
            try:
                node = make_node(self.context)
            except BaseException as exc:  # noqa: BLE001 - hand it to the test thread
                made.put(exc)
                return
            executor = SingleThreadedExecutor(context=self.context)
            executor.add_node(node)
            made.put(node)
            try:
                while self.running:
                    executor.spin_once(timeout_sec=0.02)
            finally:
                executor.shutdown()
                node.destroy_node()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        node = made.get(timeout=60)
        if isinstance(node, BaseException):
            raise node
        return node

    def close(self) -> None:
        self.running = False
        for thread in self.threads:
            thread.join(timeout=10)
        rclpy.shutdown(context=self.context)


class FakeArm(Node):
    """A position-controlled arm: publishes joint states and camera images at ``HZ``, follows
    forward_position_controller commands. Knobs: shuffled/extra joint names, stalled cameras,
    unknown names, wrong encodings or sizes."""

    def __init__(self, context: Context, follow: bool = True) -> None:
        super().__init__("fake_arm", context=context)
        self.state = STATE.copy()
        self.follow, self.shuffle, self.extra = follow, False, False
        self.stalled: set[str] = set()
        self.rename: dict[str, str] = {}
        self.encoding, self.size = "rgb8", SIZE
        self.rng = np.random.default_rng(0)
        self._joints = self.create_publisher(JointState, "/joint_states", 10)
        self._images = {
            c: self.create_publisher(Image, f"/camera/{c}/image_raw", qos_profile_sensor_data)
            for c in ("front", "wrist")
        }
        self.create_subscription(
            Float64MultiArray, "/forward_position_controller/commands", self._on_command, 10
        )
        self.create_timer(PERIOD_S, self._publish)

    def _on_command(self, msg: Float64MultiArray) -> None:
        if self.follow:
            data = np.array(msg.data)
            self.state = np.append(data[:7], data[7] / LAYOUT.gripper_max_m)

    def _publish(self) -> None:
        stamp = self.get_clock().now().to_msg()
        extra = {"panda_finger_joint2": 0.02, "conveyor": 3.0} if self.extra else {}
        msg = state_to_joint_state(self.state, LAYOUT, stamp, extra)
        msg.name = [self.rename.get(n, n) for n in msg.name]
        if self.shuffle:
            order = self.rng.permutation(len(msg.name))
            msg.name = [msg.name[i] for i in order]
            msg.position = [msg.position[i] for i in order]
        self._joints.publish(msg)
        for camera, pub in self._images.items():
            if camera not in self.stalled:
                rgb = np.full((self.size, self.size, 3), 100, np.uint8)
                image = array_to_image(rgb, stamp, camera)
                image.encoding = self.encoding
                pub.publish(image)


class Probe(Node):
    """The outside world: records commands and diagnostics, sends e-stops, calls services."""

    def __init__(self, context: Context) -> None:
        super().__init__("probe", context=context)
        self.commands: list[tuple[float, np.ndarray]] = []
        self.diagnostics: list[tuple[float, dict[str, str], int, str]] = []
        self.estop = self.create_publisher(Bool, "/kizuna/estop", 10)
        self.reset_estop = self.create_client(Trigger, "/kizuna/reset_estop")
        self.create_subscription(
            Float64MultiArray, "/forward_position_controller/commands", self._on_command, 10
        )
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_command(self, msg: Float64MultiArray) -> None:
        self.commands.append((time.monotonic(), np.array(msg.data)))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.diagnostics.append((time.monotonic(), values, status.level[0], status.message))

    def call(self, client: Any, request: Any) -> Any:
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(request)
        wait_for(future.done, 10, client.srv_name)
        return future.result()

    def diagnostic_since(self, t: float, predicate: Callable[[dict, int, str], bool]) -> bool:
        return any(t0 >= t and predicate(v, lv, m) for t0, v, lv, m in list(self.diagnostics))


class SentLog:
    """Wraps the policy node's command sender: what it sent, when, in which tick."""

    def __init__(self, node: PolicyNode) -> None:
        assert node.robot is not None
        self.node, self.entries = node, []
        send = node.robot._send

        def logged(action: np.ndarray) -> None:
            assert node.loop is not None
            self.entries.append((time.monotonic(), node.loop.tick_count, np.array(action)))
            send(action)

        node.robot._send = logged

    def since(self, t: float) -> list[tuple[float, int, np.ndarray]]:
        return [e for e in list(self.entries) if e[0] >= t]


def policy_params(checkpoint: Path, **changes: Any) -> list[Parameter]:
    values = {
        "checkpoint_dir": str(checkpoint),
        "instruction": "put the red cube in the bin",
        "image_size": [SIZE, SIZE],
        "control_hz": HZ,
        "image_max_age_s": IMAGE_MAX_AGE_S,
        "diagnostics_hz": 10.0,
    } | changes
    return [Parameter(k, value=v) for k, v in values.items()]


def start_policy(world: World, checkpoint: Path, activate: bool = True, **changes: Any) -> Any:
    overrides = policy_params(checkpoint, **changes)
    node = world.spin(lambda ctx: PolicyNode(context=ctx, parameter_overrides=overrides))
    # Transitions run in the node's executor thread, as a lifecycle service call would.
    assert node.trigger_configure().name == "SUCCESS"
    if activate:
        assert node.trigger_activate().name == "SUCCESS"
    return node


def unheld_since(node: PolicyNode, t: float) -> int:
    return sum(1 for t0, held, _ in list(node.status.history) if t0 >= t and not held)


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.close()


@pytest.fixture
def arm_world(world: World, tiny_checkpoint: Path) -> tuple[World, FakeArm, Probe, PolicyNode]:
    arm = world.spin(lambda ctx: FakeArm(ctx))
    probe = world.spin(lambda ctx: Probe(ctx))
    node = start_policy(world, tiny_checkpoint)
    wait_for(lambda: unheld_since(node, 0) >= 5, 15, "the policy node to run")
    return world, arm, probe, node


# ---- (a) e-stop ------------------------------------------------------------------------------


def test_estop_stops_motion_within_one_control_period_and_latches_until_reset(
    arm_world: tuple,
) -> None:
    _, arm, probe, node = arm_world
    sent = SentLog(node)
    wait_for(lambda: len(sent.entries) >= 5, 5, "commands")
    moving = [e[2] for e in sent.entries[-5:]]
    assert any(not np.array_equal(moving[0], m) for m in moving[1:]), "the arm should move"

    probe.estop.publish(Bool(data=True))
    wait_for(lambda: node.estop.active, 2, "the e-stop to arrive")
    received_s = node.estop_received_s
    time.sleep(0.5)
    before = [e for e in sent.entries if e[0] < received_s]
    after = sent.since(received_s)
    assert before and len(after) >= 5
    # Every command from the first tick after the e-stop arrived is the last one sent before:
    # the arm's target stops where it was (holding, never zeros, never "home").
    for _, _, command in after:
        np.testing.assert_array_equal(command, before[-1][2])
    delay_s = after[0][0] - received_s
    print(f"e-stop -> first held command: {1e3 * delay_s:.1f} ms (period {1e3 * PERIOD_S} ms)")
    assert delay_s <= PERIOD_S + 0.05  # the next tick (slack for a loaded 2-core machine)
    # On the wire (forward_position_controller): the same target, gripper in metres.
    hold = before[-1][2] * np.append(np.ones(7), LAYOUT.gripper_max_m)
    wire = [c for t, c in probe.commands if t > received_s + 0.1]
    assert wire and all(np.allclose(c, hold, rtol=0, atol=1e-12) for c in wire)

    for _ in range(3):  # False does not clear a latched e-stop
        probe.estop.publish(Bool(data=False))
    time.sleep(0.3)
    assert node.estop.active
    assert all(np.array_equal(e[2], before[-1][2]) for e in sent.entries[len(before) :])
    assert probe.diagnostic_since(received_s, lambda v, level, m: v["estop_active"] == "True")

    response = probe.call(probe.reset_estop, Trigger.Request())
    assert response.success and not node.estop.active
    cleared_s = time.monotonic()
    wait_for(
        lambda: any(not np.array_equal(e[2], before[-1][2]) for e in sent.since(cleared_s)),
        3,
        "motion to resume after the reset service",
    )


# ---- (b) stalled camera: watchdog hold, then recovery --------------------------------------


def test_a_stalled_camera_holds_within_the_watchdog_threshold_then_recovers(
    arm_world: tuple,
) -> None:
    _, arm, probe, node = arm_world
    sent = SentLog(node)
    arm.stalled = {"wrist"}
    stalled_s = time.monotonic()
    wait_for(lambda: any("stale: camera/wrist" in r for r in node.status.reasons), 3, "the hold")
    last_frame_s = node.robot._arrival_s["camera/wrist"]
    first_hold_s = next(t for t, held, reasons in node.status.history if held and t >= stalled_s)
    age_s = first_hold_s - last_frame_s
    print(f"last wrist frame -> hold: {1e3 * age_s:.0f} ms (threshold {IMAGE_MAX_AGE_S} s)")
    assert IMAGE_MAX_AGE_S < age_s <= IMAGE_MAX_AGE_S + PERIOD_S + 0.05
    time.sleep(0.3)
    held = [e[2] for e in sent.since(first_hold_s + 0.001)]
    assert len(held) >= 3 and all(np.array_equal(h, held[0]) for h in held)
    assert probe.diagnostic_since(
        stalled_s, lambda v, level, m: "stale: camera/wrist" in v["hold_reasons"] and level == 1
    )

    arm.stalled = set()
    resumed_s = time.monotonic()
    wait_for(lambda: unheld_since(node, resumed_s) >= 5, 3, "recovery")
    moving = [e[2] for e in sent.since(resumed_s)]
    assert any(not np.array_equal(moving[0], m) for m in moving[1:])


# ---- (c) joint names: shuffled and extra are fine; unknown / bad input holds ----------------


def test_shuffled_and_extra_joints_are_matched_by_name(
    world: World, tiny_checkpoint: Path
) -> None:
    arm = world.spin(lambda ctx: FakeArm(ctx, follow=False))
    arm.shuffle, arm.extra = True, True
    node = start_policy(world, tiny_checkpoint)
    wait_for(lambda: unheld_since(node, 0) >= 10, 15, "ticks on shuffled joint states")
    timed = node.robot.observe()
    assert timed is not None and node.robot.problem == ""
    np.testing.assert_allclose(timed.observation["state"], STATE, atol=1e-6)
    assert not node.robot.rejected


def test_bad_input_gives_a_diagnostic_and_a_hold_never_a_crash_or_a_motion(
    arm_world: tuple,
) -> None:
    _, arm, probe, node = arm_world
    sent = SentLog(node)
    faults: list[tuple[str, Callable[[], None], str]] = [
        ("unknown joint", lambda: arm.rename.update(panda_joint4="elbow"), "missing joint"),
        ("wrong encoding", lambda: setattr(arm, "encoding", "mono8"), "encoding 'mono8'"),
        ("wrong size", lambda: setattr(arm, "size", SIZE + 8), f"expected {SIZE}x{SIZE}"),
    ]
    for what, inject, text in faults:
        arm.rename, arm.encoding, arm.size = {}, "rgb8", SIZE
        time.sleep(0.2)
        inject()
        start = time.monotonic()
        wait_for(lambda t=text: t in node.robot.problem, 3, what)
        since = time.monotonic()
        time.sleep(0.3)
        assert sent.since(since) == [], f"{what}: commanded while the input was bad"
        assert probe.diagnostic_since(
            start, lambda v, level, m, t=text: t in v["bad_input"] and level == 2
        ), f"{what}: no diagnostic"
    arm.rename, arm.encoding, arm.size = {}, "rgb8", SIZE
    recovered_s = time.monotonic()
    wait_for(lambda: unheld_since(node, recovered_s) >= 5, 3, "recovery from bad input")
    assert node.loop.inference_errors == 0


# ---- (d) the observation is a member of the env's observation space ------------------------


def test_the_observation_built_from_sim_messages_is_in_the_observation_space(
    world: World, tiny_checkpoint: Path
) -> None:
    sim_params = [Parameter("task", value="stack"), Parameter("reality", value="easy")]
    sim = world.spin(lambda ctx: SimRobotNode(context=ctx, parameter_overrides=sim_params))
    node = start_policy(
        world,
        tiny_checkpoint,
        image_size=[96, 96],
        command_interface="joint_trajectory_controller",
        instruction=sim.env.instruction,
    )
    wait_for(lambda: unheld_since(node, 0) >= 10, 15, "the policy node on the sim robot")
    timed = node.robot.observe()
    assert timed is not None
    space = sim.env.observation_space
    assert space.contains(timed.observation), (timed.observation["state"], space["state"])
    # ... and the joint_trajectory_controller commands drove the simulated arm.
    wait_for(lambda: sim.steps >= 5, 5, "the simulation to step on trajectory commands")
    assert sim.target is not None


# ---- parameters files load through rcl's own parser ----------------------------------------


@pytest.mark.parametrize("name", ["policy_node", "sim_robot_node"])
def test_params_files_load_and_every_key_is_declared(name: str) -> None:
    path = ROOT / "config" / "ros" / f"{name}.yaml"
    expected = yaml.safe_load(path.read_text())[name]["ros__parameters"]
    context = Context()
    rclpy.init(args=["--ros-args", "--params-file", str(path)], context=context)
    try:
        node_class = PolicyNode if name == "policy_node" else SimRobotNode
        node = node_class(context=context)
        for key, value in expected.items():
            assert node.has_parameter(key), f"{path.name}: {key} is not declared by {name}"
            assert node.get_parameter(key).value == value
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


# ---- kizuna deploy --backend ros: processes, lifecycle services, resets, shutdown ----------


def _deploy(checkpoint: Path, task: str, episodes: int, steps: int | None, out: Path) -> dict:
    report = out / "report.json"
    argv = [sys.executable, "-m", "kizuna.cli", "deploy", "--backend", "ros"]
    argv += ["--checkpoint", str(checkpoint), "--task", task, "--episodes", str(episodes)]
    argv += ["--report", str(report)]
    if steps:
        argv += ["--episode-steps", str(steps)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return json.loads(report.read_text())


def test_kizuna_deploy_ros_runs_episodes_and_shuts_down(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    report = _deploy(tiny_checkpoint, "reach", 2, 10, tmp_path)
    assert report["backend"] == "ros" and [e["seed"] for e in report["episodes"]] == [1000, 1001]


# ---- (e) task success over DDS ---------------------------------------------------------------


def test_the_policy_node_drives_the_sim_robot_to_task_success(
    trained_checkpoint: Path, tmp_path: Path
) -> None:
    # Three reach episodes over DDS in real time; the shipped checkpoint reaches in ~1-2 s.
    report = _deploy(trained_checkpoint, "reach", 3, None, tmp_path)
    assert report["success_rate"] >= 2 / 3, report


# ---- (f) kizuna loop through ROS 2: deploy over DDS, record bags, ingest, fine-tune ----------


def test_kizuna_loop_via_ros_records_ingests_and_fine_tunes(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from kizuna.dataset import DatasetReader
    from kizuna.loop import LoopConfig, run_loop

    cfg = LoopConfig(
        task="reach",
        reality="easy",
        checkpoint=str(tiny_checkpoint),
        sim_episodes=2,
        real_episodes=1,
        eval_episodes=1,
        train_minutes=0.02,
        batch_size=4,
        nominal_eval=False,
        via="ros",
        failed_episodes="all",  # the untrained policy fails; its frames train anyway here
        out=str(tmp_path / "loop"),
    )
    (iteration,) = run_loop(cfg)["iterations"]
    real = DatasetReader(iteration["real_dataset"])
    assert real.num_episodes == 1
    assert real.provenance(0).source == "real"
    assert Path(iteration["checkpoint"], "model.safetensors").is_file()
