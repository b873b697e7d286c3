"""``policy_node``: a checkpoint behind a ros2_control controller, as a lifecycle node.

- **configure**: read the parameters once (``PolicyNodeParams``), load the checkpoint
  (``load_policy``), subscribe ``/joint_states`` and ``/camera/<name>/image_raw`` (sensor-data
  QoS), create the command publisher for ``command_interface``.
- **activate**: forget old messages, start a fresh ``ControlLoop`` (safety filter, chunk
  executor, watchdog; inference in its worker thread) and the control timer. The first command
  is "stay where you are", from the first observation received after activation.
- **deactivate**: stop the timer (the controller keeps the last command); **cleanup**: drop
  the policy, the subscriptions and publishers.

Always, in every state: the latching e-stop (``/kizuna/estop``, std_msgs/Bool; True latches,
False does nothing; ``/kizuna/reset_estop``, std_srvs/Trigger, clears it) and
``/diagnostics``. Every tick publishes what it commanded on ``/kizuna/executed_action``
(std_msgs/Float64MultiArray, joints rad + gripper 0..1) and ``/kizuna/command_stamp``
(std_msgs/Header: the header stamp of the joint states that tick observed, frame_id the tick),
for monitoring and latency measurement. ``dry_run`` publishes those but never commands.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, Header
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from policies.base import Policy, load_policy
from real_robot.ros import spin
from real_robot.ros.adapter import (
    NodeStatus,
    RosRobot,
    TimedPolicy,
    diagnostic_values,
    warmup_observation,
)
from real_robot.ros.convert import COMMAND_TOPICS, action_to_msg, camera_topic, diagnostic_array
from real_robot.ros.params import PolicyNodeParams, defaults, from_values
from real_robot.runtime.loop import ControlLoop, LoopConfig
from real_robot.runtime.safety import SafetyLimits
from real_robot.runtime.watchdog import EStop

NODE_NAME = "policy_node"
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def policy_cameras(policy: Policy) -> tuple[str, ...] | None:
    """The cameras a policy needs, where it says (a VLA checkpoint does)."""
    cameras = getattr(policy, "cameras", None)
    if cameras is None:
        config = getattr(getattr(policy, "checkpoint", None), "config", None)
        cameras = getattr(config, "cameras", None)
    return None if cameras is None else tuple(cameras)


def safety_limits(params: PolicyNodeParams) -> SafetyLimits:
    return SafetyLimits.for_robot(
        control_hz=params.control_hz,
        margin_rad=params.safety_margin_rad,
        velocity_fraction=params.max_velocity_fraction,
        workspace_min_m=tuple(params.workspace_min_m),
        workspace_max_m=tuple(params.workspace_max_m),
    )


class PolicyNode(LifecycleNode):
    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        spin.declare(self, defaults(PolicyNodeParams))
        self.estop = EStop()  # outlives activations: a latched e-stop stays latched
        self.estop_received_s: float | None = None
        self.status = NodeStatus()
        self.state_label = "unconfigured"
        self.params: PolicyNodeParams | None = None
        self.policy: TimedPolicy | None = None
        self.robot: RosRobot | None = None
        self.loop: ControlLoop | None = None
        self._timer: Any = None
        self._subs: list[Any] = []  # made at configure, with the publishers below
        self.create_subscription(Bool, "/kizuna/estop", self._on_estop, 10)
        self.create_service(Trigger, "/kizuna/reset_estop", self._on_reset_estop)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        hz = float(self.get_parameter("diagnostics_hz").value or 2.0)
        self.create_timer(1.0 / hz, self.publish_diagnostics)

    # ---- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            params = from_values(PolicyNodeParams, spin.read(self, defaults(PolicyNodeParams)))
            params.check_ready()
            options = {} if params.device == "cpu" else {"device": params.device}
            policy = load_policy(params.checkpoint_dir, **options)
            needed = policy_cameras(policy) or ()
            absent = [c for c in needed if c not in params.camera_names]
            if absent:
                raise ValueError(
                    f"the checkpoint needs camera(s) {absent}; parameter 'camera_names' is "
                    f"{list(params.camera_names)}"
                )
            policy.act(warmup_observation(params))
            policy.reset()
        except Exception as exc:  # noqa: BLE001 - any failure means: stay unconfigured, say why
            self.get_logger().error(f"configure failed: {exc}")
            return FAILURE
        self.params, self.policy = params, TimedPolicy(policy)
        self.robot = RosRobot(params, self._send)
        self._make_io(params)
        self.state_label = "inactive"
        self.get_logger().info(f"configured {params.checkpoint_dir} ({params.command_interface})")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.params is not None and self.robot is not None and self.policy is not None
        p = self.params
        self.robot.clear()
        config = LoopConfig(
            p.control_hz, p.replan_every, p.joint_state_max_age_s, p.image_max_age_s
        )
        self.loop = ControlLoop(
            self.robot, self.policy, p.camera_names, config, safety_limits(p), threaded=True
        )
        self.loop.estop = self.estop
        self._timer = self.create_timer(1.0 / p.control_hz, self._on_tick)
        self.state_label = "active"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_timer()
        self.state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.state_label = "unconfigured"
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.state_label = "finalized"
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.state_label = "unconfigured"
        return SUCCESS

    # ---- callbacks: a few lines each over the pure pieces ------------------------------------
    def _on_tick(self) -> None:
        assert self.loop is not None and self.robot is not None
        now_s = time.monotonic()
        report = self.loop.tick(now_s)
        self.status.record(now_s, report, self.robot)

    def _send(self, action: np.ndarray) -> None:
        """``Robot.command``: the safe action to the controller (unless dry run), and logs."""
        assert self.params is not None and self.robot is not None and self.loop is not None
        p = self.params
        if not p.dry_run:
            arm, gripper = action_to_msg(
                action, p.layout, p.command_interface, 1.0 / p.control_hz, p.gripper_command
            )
            self._command_pub.publish(arm)
            if gripper is not None and self._gripper_pub is not None:
                self._gripper_pub.publish(gripper)
        self._executed_pub.publish(Float64MultiArray(data=[float(v) for v in action]))
        stamp = self.robot.observed_stamp
        self._stamp_pub.publish(Header(stamp=stamp, frame_id=str(self.loop.tick_count)))

    def _on_estop(self, msg: Bool) -> None:
        if msg.data:  # False never clears a latched e-stop: only /kizuna/reset_estop does
            if not self.estop.active:
                self.get_logger().error("e-stop: /kizuna/estop = true; holding position")
            self.estop.trigger("/kizuna/estop")
            self.estop_received_s = time.monotonic()

    def _on_reset_estop(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        was_active = self.estop.active
        self.estop.reset()
        response.success = True
        response.message = "e-stop cleared" if was_active else "e-stop was not active"
        self.get_logger().warning(response.message)
        return response

    def publish_diagnostics(self) -> None:
        level, message, values = diagnostic_values(
            self.state_label, self.status, self.estop, self.loop, self.robot
        )
        stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(
            diagnostic_array(stamp, f"kizuna/{self.get_name()}", level, message, values)
        )

    # ---- plumbing -----------------------------------------------------------------------------
    def _make_io(self, p: PolicyNodeParams) -> None:
        assert self.robot is not None
        robot, qos = self.robot, qos_profile_sensor_data
        on_joints = lambda m: robot.on_joint_state(m, time.monotonic())  # noqa: E731
        self._subs = [self.create_subscription(JointState, "/joint_states", on_joints, qos)]
        for camera in p.camera_names:
            on_image = lambda m, c=camera: robot.on_image(c, m, time.monotonic())  # noqa: E731
            self._subs.append(self.create_subscription(Image, camera_topic(camera), on_image, qos))
        msg_type = JointTrajectory if "trajectory" in p.command_interface else Float64MultiArray
        topic = COMMAND_TOPICS[p.command_interface]
        # Lifecycle publishers: nothing reaches a controller unless the node is active.
        self._command_pub = self.create_lifecycle_publisher(msg_type, topic, 10)
        self._gripper_pub = (
            self.create_lifecycle_publisher(Float64MultiArray, p.gripper_topic, 10)
            if p.gripper_command == "separate"
            else None
        )
        self._executed_pub = self.create_publisher(
            Float64MultiArray, "/kizuna/executed_action", 10
        )
        self._stamp_pub = self.create_publisher(Header, "/kizuna/command_stamp", 10)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def _release(self) -> None:
        self._stop_timer()
        if self.params is not None:
            for sub in self._subs:
                self.destroy_subscription(sub)
            self.destroy_lifecycle_publisher(self._command_pub)
            if self._gripper_pub is not None:
                self.destroy_lifecycle_publisher(self._gripper_pub)
            self.destroy_publisher(self._executed_pub)
            self.destroy_publisher(self._stamp_pub)
        self._subs = []
        self.params = self.policy = self.robot = self.loop = None


def main(args: list[str] | None = None) -> None:
    spin.run(PolicyNode, args)


if __name__ == "__main__":
    main()
