"""``sim_robot_node``: a ``KizunaEnv`` (any task, any reality profile) as a ROS 2 robot.

It stands in for an arm under ros2_control, so the policy node cannot tell the difference:

- publishes ``/joint_states`` (the 7 arm joints + both finger joints, metres; reliable),
  ``/camera/<name>/image_raw`` (rgb8, sensor-data QoS), ``/clock`` (simulated time),
  ``/kizuna/sim/success`` and ``/kizuna/sim/done`` (std_msgs/Bool: the episode has
  succeeded / has ended by success or time-out);
- accepts both command interfaces: ``/forward_position_controller/commands`` and
  ``/joint_trajectory_controller/joint_trajectory`` (see ``convert`` for the layout);
- steps the simulation one control period per timer tick at ``control_hz``, holding the last
  command when none arrives. An episode starts with the first command after a reset (until
  then the arm rests and observations keep flowing) and stops stepping when it ends;
- ``/kizuna/sim/reset`` (std_srvs/Trigger) starts the next episode, seeded ``seed + k``.

This is the one ROS module that imports ``sim``: it *is* the simulated robot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from kizuna.robot import PANDA
from kizuna.task import load_task
from real_robot.ros import spin
from real_robot.ros.convert import (
    COMMAND_TOPICS,
    ConvertError,
    array_to_image,
    camera_topic,
    command_to_action,
    state_to_joint_state,
)
from real_robot.ros.params import SimRobotParams, defaults, from_values
from sim.env import KizunaEnv

NODE_NAME = "sim_robot_node"


def make_env(params: SimRobotParams) -> KizunaEnv:
    """The simulated cell; ``control_hz`` / ``episode_steps`` override the task's when > 0."""
    spec = load_task(params.task)
    update: dict[str, Any] = {}
    if params.control_hz > 0:
        update["control_hz"] = params.control_hz
    if params.episode_steps > 0:
        update["episode_steps"] = params.episode_steps
    return KizunaEnv(
        spec.model_copy(update=update),
        backend=params.backend or None,
        cameras=params.cameras,
        image_size=(params.image_size[0], params.image_size[1]),
        randomization=params.randomization,
        reality=params.reality or None,
        language=params.language,
    )


class SimRobotNode(Node):
    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = from_values(SimRobotParams, spin.declare(self, defaults(SimRobotParams)))
        self.env = make_env(self.params)
        self.layout = self.params.layout
        self.episode, self.total_steps = -1, 0
        self._joint_pub = self.create_publisher(JointState, "/joint_states", 10)
        self._image_pubs = {
            c: self.create_publisher(Image, camera_topic(c), qos_profile_sensor_data)
            for c in self.params.cameras
        }
        self._clock_pub = self.create_publisher(Clock, "/clock", 10)
        self._success_pub = self.create_publisher(Bool, "/kizuna/sim/success", spin.LATCHED)
        self._done_pub = self.create_publisher(Bool, "/kizuna/sim/done", spin.LATCHED)
        fpc, jtc = COMMAND_TOPICS.values()
        self.create_subscription(Float64MultiArray, fpc, self._on_command, 10)
        self.create_subscription(JointTrajectory, jtc, self._on_command, 10)
        self.create_service(Trigger, "/kizuna/sim/reset", self._on_reset)
        self.reset_episode()
        self.create_timer(self.env.control_dt_s, self._on_tick)

    def reset_episode(self) -> str:
        self.episode += 1
        seed = self.params.seed + self.episode
        self.obs, info = self.env.reset(seed=seed)
        self.target: np.ndarray | None = None  # None: no command yet, the episode waits
        self.steps, self.success, self.done = 0, bool(info["success"]), False
        return f"episode {self.episode} (seed {seed}) of {self.env.spec_task.name}"

    def _on_command(self, msg: Float64MultiArray | JointTrajectory) -> None:
        previous = self.target if self.target is not None else self.obs["state"]
        try:
            self.target = command_to_action(msg, self.layout, previous)
        except ConvertError as exc:
            self.get_logger().warning(f"command ignored: {exc}", throttle_duration_sec=1.0)

    def _on_tick(self) -> None:
        if self.target is not None and not self.done:
            self.obs, _, terminated, truncated, info = self.env.step(
                self.target.astype(np.float32)
            )
            self.steps += 1
            self.total_steps += 1
            self.success = self.success or bool(info["success"])
            self.done = bool(terminated or truncated)
        self.publish()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        response.message, response.success = self.reset_episode(), True
        self.get_logger().info(response.message)
        return response

    def destroy_node(self) -> None:
        self.env.close()  # in the thread that spun the node: the renderer's GL context is there
        super().destroy_node()

    def publish(self) -> None:
        stamp = self.get_clock().now().to_msg()
        state = self.obs["state"]
        second_finger = {PANDA.gripper_names[1]: float(state[-1]) * self.layout.gripper_max_m}
        if PANDA.gripper_names[1] in self.layout.command_names:
            second_finger = {}
        self._joint_pub.publish(state_to_joint_state(state, self.layout, stamp, second_finger))
        for camera, pub in self._image_pubs.items():
            pub.publish(array_to_image(self.obs["images"][camera], stamp, f"{camera}_camera"))
        sim_ns = round(self.total_steps * self.env.control_dt_s * 1e9)
        self._clock_pub.publish(Clock(clock=Time(sec=sim_ns // 10**9, nanosec=sim_ns % 10**9)))
        self._success_pub.publish(Bool(data=self.success))
        self._done_pub.publish(Bool(data=self.done))


def main(args: list[str] | None = None) -> None:
    spin.run(SimRobotNode, args)


if __name__ == "__main__":
    main()
