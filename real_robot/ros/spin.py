"""The standard ``main()`` of a kizuna node: one node, a single-threaded executor, clean exit.

DEPENDENCIES.md: a ``MultiThreadedExecutor`` held a 50 Hz timer at ~26 Hz here, the
single-threaded one held 50 Hz; inference runs in the control loop's worker thread instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile

# Parameters accept a YAML ``30`` for a float and the like; params.from_values coerces and
# checks each value, naming the parameter when it refuses one.
DYNAMIC = ParameterDescriptor(dynamic_typing=True)
# The latest value for late joiners (a deploy driver), as a latched ROS 1 topic would.
LATCHED = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


def declare(node: Node, defaults: dict[str, object]) -> dict[str, object]:
    """Declare every parameter (dynamically typed) and return the current values."""
    for name, value in defaults.items():
        if not node.has_parameter(name):
            node.declare_parameter(name, value, DYNAMIC)
    return read(node, defaults)


def read(node: Node, defaults: dict[str, object]) -> dict[str, object]:
    return {name: node.get_parameter(name).value for name in defaults}


def run(make_node: Callable[[], Node], args: Sequence[str] | None = None) -> None:
    """Init rclpy, spin the node until Ctrl-C / SIGTERM / shutdown, then tear down cleanly."""
    rclpy.init(args=args)
    try:
        node = make_node()
    except ValueError as exc:  # a refused parameter or task file: say what, no traceback
        print(f"error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        raise SystemExit(2) from None
    executor = SingleThreadedExecutor()
    try:
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # SIGINT/SIGTERM shut the context down under a running callback (a publish then
        # fails): that is a normal exit. Anything else is a real error.
        if rclpy.ok():
            raise
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
