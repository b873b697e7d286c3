"""``kizuna deploy --backend ros``: the policy node drives the simulated robot node over DDS.

Starts both nodes as processes (``ros2 launch kizuna demo.launch.py`` where ROS 2's launch is
installed, else ``python -m real_robot.ros.<node> --ros-args --params-file ... -p ...``),
configures the policy node through its lifecycle services, then for each episode: reset the
simulation (``/kizuna/sim/reset``, except before the first), activate, wait for
``/kizuna/sim/done``, read ``/kizuna/sim/success``, deactivate. Ctrl-C deactivates the policy
node and stops both processes (SIGINT, then SIGTERM, then SIGKILL).

DDS stays on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) unless the variable is
already set.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from kizuna.task import load_task
from real_robot.ros.processes import DeployError, node_commands, node_parameters
from real_robot.ros.spin import LATCHED

STARTUP_TIMEOUT_S = 120.0  # both processes import torch / MuJoCo before their services appear


class DeployDriver(Node):
    """Lifecycle transitions, episode resets and the success/done topics, from the outside."""

    def __init__(self) -> None:
        super().__init__("kizuna_deploy")
        self.change_state = self.create_client(ChangeState, "/policy_node/change_state")
        self.reset = self.create_client(Trigger, "/kizuna/sim/reset")
        self.success: bool | None = None
        self.done: bool | None = None
        self.create_subscription(Bool, "/kizuna/sim/success", self._on_success, LATCHED)
        self.create_subscription(Bool, "/kizuna/sim/done", self._on_done, LATCHED)
        self.executor_ = SingleThreadedExecutor()
        self.executor_.add_node(self)

    def _on_success(self, msg: Bool) -> None:
        self.success = bool(msg.data)

    def _on_done(self, msg: Bool) -> None:
        self.done = bool(msg.data)

    def call(self, client: Any, request: Any, timeout_s: float = 30.0) -> Any:
        future = client.call_async(request)
        self.executor_.spin_until_future_complete(future, timeout_sec=timeout_s)
        if not future.done():
            raise DeployError(f"no answer from {client.srv_name} within {timeout_s:.0f} s")
        return future.result()

    def transition(self, transition_id: int, label: str, timeout_s: float = 60.0) -> None:
        request = ChangeState.Request()
        request.transition.id = transition_id
        if not self.call(self.change_state, request, timeout_s).success:
            raise DeployError(f"policy_node refused to {label} (its log above says why)")

    def wait_until(self, condition: Any, timeout_s: float, alive: Any, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            alive()
            if time.monotonic() > deadline:
                raise DeployError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.executor_.spin_once(timeout_sec=0.05)

    def run_episode(self, timeout_s: float, alive: Any) -> bool:
        """Activate, wait for the episode to end, deactivate; returns its success."""
        self.done = None  # the done topic is ordered: the new episode's False comes first
        self.wait_until(lambda: self.done is False, 30.0, alive, "the episode to start")
        self.transition(Transition.TRANSITION_ACTIVATE, "activate")
        try:
            self.wait_until(lambda: self.done is True, timeout_s, alive, "the episode to end")
            # success and done are separate topics: let the last success value arrive
            end = time.monotonic() + 0.3
            self.wait_until(lambda: time.monotonic() > end, 1.0, alive, "success")
        finally:
            self.transition(Transition.TRANSITION_DEACTIVATE, "deactivate")
        return bool(self.success)


def _start(commands: list[list[str]]) -> list[subprocess.Popen]:
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.update(env)  # this process's rclpy too
    # Own sessions: a terminal Ctrl-C reaches only kizuna, which then stops them in order.
    return [subprocess.Popen(c, env=env, start_new_session=True) for c in commands]


def _stop(processes: list[subprocess.Popen]) -> None:
    for sig, wait_s in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        running = [p for p in processes if p.poll() is None]
        for p in running:
            p.send_signal(sig)
        for p in running:
            try:
                p.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                pass


def run_nodes(args: argparse.Namespace) -> dict[str, Any]:
    policy, sim = node_parameters(args)
    processes = _start(node_commands(policy, sim, args.rt_priority))

    def alive() -> None:
        for p in processes:
            if p.poll() is not None:
                raise DeployError(f"{' '.join(p.args[:4])} exited with code {p.returncode}")

    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    driver = DeployDriver()
    episodes: list[dict[str, Any]] = []
    steps = args.episode_steps or load_task(args.task).episode_steps
    timeout_s = 3.0 * steps / float(sim["control_hz"]) + 30.0
    try:
        for client in (driver.change_state, driver.reset):
            driver.wait_until(
                lambda c=client: c.service_is_ready(), STARTUP_TIMEOUT_S, alive, client.srv_name
            )
        driver.transition(Transition.TRANSITION_CONFIGURE, "configure")
        for k in range(args.episodes):
            if k > 0:
                driver.call(driver.reset, Trigger.Request())
            start = time.monotonic()
            success = driver.run_episode(timeout_s, alive)
            seconds = time.monotonic() - start
            episodes.append({"seed": args.seed + k, "success": success, "seconds": seconds})
            print(f"  episode {k}: {'success' if success else 'failure'} ({seconds:.1f} s)")
        driver.transition(Transition.TRANSITION_CLEANUP, "clean up")
    except KeyboardInterrupt:
        print("interrupted: stopping the policy node and the simulated robot", file=sys.stderr)
        try:  # best effort: no more commands from here on, then the processes stop
            driver.transition(Transition.TRANSITION_DEACTIVATE, "deactivate", timeout_s=2.0)
        except Exception:  # noqa: BLE001 - stopping the processes below is what matters
            pass
        raise
    finally:
        driver.destroy_node()
        rclpy.try_shutdown()
        _stop(processes)
    successes = [e["success"] for e in episodes]
    return {
        "checkpoint": str(args.checkpoint),
        "task": args.task,
        "reality": args.reality,
        "backend": "ros",
        "success_rate": sum(successes) / len(successes) if successes else 0.0,
        "episodes": episodes,
    }
