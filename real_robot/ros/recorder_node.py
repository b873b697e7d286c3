"""``recorder_node``: what the policy saw and did, one rosbag2 (MCAP) bag per episode.

    ros2 run kizuna recorder_node --ros-args -p output_dir:=/data/bags -p robot_id:=panda-3

Records ``/joint_states``, ``/camera/<name>/image_raw`` (sensor-data QoS), the controller
command topic, ``/kizuna/executed_action``, ``/kizuna/command_stamp``, the operator's
``/kizuna/teleop/joint_command`` / ``/kizuna/teleop/active`` (interventions) and
``/kizuna/estop``, between the start and end events of ``/kizuna/episode``; labels come from
``/kizuna/episode_label`` (std_msgs/Bool) or the ``/kizuna/recorder/label`` service
(std_srvs/SetBool). ``real_robot.recording`` does the work; this node only subscribes (raw CDR
bytes: nothing is deserialized on the way to disk) and stamps messages with its clock.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool

from real_robot.bag import EPISODE_TOPIC, IMAGE_TYPE, LABEL_TOPIC
from real_robot.recording import EpisodeRecorder, RecorderParams
from real_robot.ros import spin
from real_robot.ros.params import defaults, from_values

NODE_NAME = "recorder_node"


def message_class(msgtype: str) -> Any:
    """``std_msgs/msg/Bool`` -> the rclpy class ``std_msgs.msg.Bool``."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class RecorderNode(Node):
    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        params = from_values(RecorderParams, spin.declare(self, defaults(RecorderParams)))
        self.recorder = EpisodeRecorder(params, log=self.get_logger().info)
        for topic, msgtype in self.recorder.topics.items():
            qos = qos_profile_sensor_data if msgtype == IMAGE_TYPE else 10
            callback = lambda raw, t=topic: self._on_raw(t, raw)  # noqa: E731
            self.create_subscription(message_class(msgtype), topic, callback, qos, raw=True)
        self.create_service(SetBool, "/kizuna/recorder/label", self._on_label_service)
        self.create_timer(1.0, self._on_timer)
        self.get_logger().info(f"recorder ready: episodes go to {params.output_dir}")

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_raw(self, topic: str, raw: bytes) -> None:
        now_ns = self._now_ns()
        if topic == EPISODE_TOPIC:
            self.recorder.on_event(deserialize_message(raw, String).data, raw, now_ns)
        elif topic == LABEL_TOPIC:
            success = bool(deserialize_message(raw, Bool).data)
            self.get_logger().info(self.recorder.label(success, raw, now_ns))
        else:
            self.recorder.on_message(topic, raw, now_ns)

    def _on_label_service(self, request: SetBool.Request, response: SetBool.Response) -> Any:
        response.message = self.recorder.label(bool(request.data), None, self._now_ns())
        response.success = not response.message.startswith("no episode")
        return response

    def _on_timer(self) -> None:
        self.recorder.check_timeout(self._now_ns())

    def destroy_node(self) -> None:
        # Ctrl-C / SIGTERM: the open episode is kept. rosout is gone by now: log to stderr.
        self.recorder.log = lambda text: print(f"[recorder_node] {text}", file=sys.stderr)
        self.recorder.close(self._now_ns())
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    spin.run(RecorderNode, args)


if __name__ == "__main__":
    main()
