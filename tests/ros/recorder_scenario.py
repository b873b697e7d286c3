"""The recorder over real DDS: run by test_recorder.py inside a private network namespace.

    python tests/ros/netns.py python tests/ros/recorder_scenario.py OUT_DIR

Starts ``recorder_node`` as its own process, publishes what a robot cell would (joint states
at 50 Hz, a camera at 20 Hz, executed actions at 20 Hz, operator commands for a moment) and
drives three episodes: the first labelled on the topic while it runs, the second labelled
through the service after it has ended, the third cut short by SIGKILL of the recorder.
Prints one JSON line with what it did.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import netns

netns.require_inside()

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Float64MultiArray, String  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from real_robot.ros.convert import JointLayout, array_to_image, state_to_joint_state  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = JointLayout.for_robot()
STATE = np.array([0.1, -0.3, 0.2, -2.2, 0.3, 1.9, 0.7, 0.5])


class Cell(Node):
    """Joint states, one camera and executed actions on timers; operator commands on demand."""

    def __init__(self) -> None:
        super().__init__("fake_cell")
        self.teleop = False
        self.ticks = 0
        self.joints = self.create_publisher(JointState, "/joint_states", 10)
        self.image = self.create_publisher(
            Image, "/camera/front/image_raw", qos_profile_sensor_data
        )
        self.action = self.create_publisher(Float64MultiArray, "/kizuna/executed_action", 10)
        self.command = self.create_publisher(Float64MultiArray, "/kizuna/teleop/joint_command", 10)
        self.episode = self.create_publisher(String, "/kizuna/episode", 10)
        self.label = self.create_publisher(Bool, "/kizuna/episode_label", 10)
        self.label_service = self.create_client(SetBool, "/kizuna/recorder/label")
        self.create_timer(0.02, self._joints)
        self.create_timer(0.05, self._tick)

    def _joints(self) -> None:
        stamp = self.get_clock().now().to_msg()
        self.joints.publish(state_to_joint_state(STATE, LAYOUT, stamp, {"panda_finger_joint2": 0}))

    def _tick(self) -> None:
        stamp = self.get_clock().now().to_msg()
        rgb = np.full((16, 16, 3), self.ticks % 250, np.uint8)
        self.image.publish(array_to_image(rgb, stamp, "front"))
        if self.teleop:
            self.command.publish(Float64MultiArray(data=[0.5] * 8))
        self.action.publish(Float64MultiArray(data=[float(v) for v in STATE]))
        self.ticks += 1

    def event(self, **event: object) -> None:
        self.episode.publish(String(data=json.dumps(event)))


def wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


def main(out_dir: str) -> None:
    recorder = subprocess.Popen(
        [sys.executable, "-m", "real_robot.ros.recorder_node", "--ros-args"]
        + ["-p", f"output_dir:={out_dir}", "-p", "camera_names:=[front]"]
        + ["-p", "robot_id:=test-cell"],
        cwd=ROOT,
    )
    rclpy.init()
    cell = Cell()
    executor = SingleThreadedExecutor()
    executor.add_node(cell)
    running = threading.Event()
    running.set()

    def spin() -> None:
        while running.is_set():
            executor.spin_once(timeout_sec=0.02)

    spinning = threading.Thread(target=spin, daemon=True)
    spinning.start()
    try:
        publishers = (cell.episode, cell.label, cell.joints, cell.image, cell.action, cell.command)
        wait_for(
            lambda: all(p.get_subscription_count() > 0 for p in publishers), 60, "the recorder"
        )
        wait_for(cell.label_service.service_is_ready, 30, "/kizuna/recorder/label")
        cell.event(event="start", instruction="put the red cube in the bin", task="pick_place")
        time.sleep(1.0)
        cell.label.publish(Bool(data=True))  # while the episode runs
        time.sleep(0.2)
        cell.event(event="end")
        time.sleep(0.3)
        cell.event(event="start", instruction="stack the blocks", policy_version="vla-7")
        time.sleep(0.4)
        cell.teleop = True  # an operator takes over for half a second
        time.sleep(0.5)
        cell.teleop = False
        time.sleep(0.4)
        cell.event(event="end")
        time.sleep(0.3)
        future = cell.label_service.call_async(SetBool.Request(data=False))  # after the end
        wait_for(future.done, 10, "the label service")
        cell.event(event="start", instruction="this one is cut short")
        time.sleep(0.8)
        recorder.kill()  # SIGKILL mid-episode
        recorder.wait(timeout=10)
        print(json.dumps({"label_reply": future.result().message, "ticks": cell.ticks}))
    finally:
        if recorder.poll() is None:
            recorder.kill()
        running.clear()
        spinning.join(timeout=10)
        executor.shutdown()
        cell.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
