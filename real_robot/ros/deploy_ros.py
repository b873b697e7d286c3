"""``kizuna deploy --backend ros``: the policy node drives the simulated robot node over DDS.

Starts both nodes as processes (``ros2 launch kizuna demo.launch.py`` where ROS 2's launch is
installed, else ``python -m real_robot.ros.<node> --ros-args --params-file ... -p ...``),
configures the policy node through its lifecycle services, then for each episode: reset the
simulation (``/kizuna/sim/reset``, except before the first), activate, wait for
``/kizuna/sim/done``, read ``/kizuna/sim/success``, deactivate. With ``--record DIR`` a
recorder_node runs too, told each episode's start and end (with its success) on
``/kizuna/episode``. Ctrl-C deactivates the policy node and stops the processes (SIGINT, then
SIGTERM, then SIGKILL).

DDS stays on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) unless the variable is
already set.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import rclpy
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from kizuna.task import load_task
from real_robot.bag import is_complete
from real_robot.ros.processes import (
    DeployError,
    node_commands,
    node_parameters,
    recorder_parameters,
)
from real_robot.ros.spin import LATCHED

# The state each transition this driver asks for ends in.
GOAL_STATE = {
    Transition.TRANSITION_CONFIGURE: State.PRIMARY_STATE_INACTIVE,
    Transition.TRANSITION_ACTIVATE: State.PRIMARY_STATE_ACTIVE,
    Transition.TRANSITION_DEACTIVATE: State.PRIMARY_STATE_INACTIVE,
    Transition.TRANSITION_CLEANUP: State.PRIMARY_STATE_UNCONFIGURED,
}
STARTUP_TIMEOUT_S = 120.0  # both processes import torch / MuJoCo before their services appear


class DeployDriver(Node):
    """Lifecycle transitions, episode resets and the success/done topics, from the outside."""

    def __init__(self) -> None:
        super().__init__("kizuna_deploy")
        self.change_state = self.create_client(ChangeState, "/policy_node/change_state")
        self.get_state = self.create_client(GetState, "/policy_node/get_state")
        self.reset = self.create_client(Trigger, "/kizuna/sim/reset")
        self.success: bool | None = None
        self.done: bool | None = None
        self.create_subscription(Bool, "/kizuna/sim/success", self._on_success, LATCHED)
        self.create_subscription(Bool, "/kizuna/sim/done", self._on_done, LATCHED)
        # Episode boundaries and labels for recorder_node (`--record DIR`).
        self.episode_pub = self.create_publisher(String, "/kizuna/episode", 10)
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
        """Ask policy_node for a lifecycle transition; up to three tries of ``timeout_s / 3``.

        A service response can be lost while DDS is still matching the client's reader to the
        server's writer (the request got through: the transition may have happened). After a
        silent try the node's state decides: already there, done; else the request is re-sent.
        """
        request = ChangeState.Request()
        request.transition.id = transition_id
        for _ in range(3):
            try:
                response = self.call(self.change_state, request, timeout_s / 3)
            except DeployError:
                if self.state(timeout_s / 3) == GOAL_STATE[transition_id]:
                    return
                continue
            if not response.success:
                raise DeployError(f"policy_node refused to {label} (its log above says why)")
            return
        raise DeployError(
            f"no answer from {self.change_state.srv_name} to {label} in 3 tries of "
            f"{timeout_s / 3:.0f} s"
        )

    def state(self, timeout_s: float) -> int | None:
        """policy_node's lifecycle state id, or None when it does not answer."""
        try:
            return int(self.call(self.get_state, GetState.Request(), timeout_s).current_state.id)
        except DeployError:
            return None

    def wait_until(self, condition: Any, timeout_s: float, alive: Any, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            alive()
            if time.monotonic() > deadline:
                raise DeployError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.executor_.spin_once(timeout_sec=0.05)

    def publish_event(self, event: dict[str, Any]) -> None:
        self.episode_pub.publish(String(data=json.dumps(event)))

    def run_episode(
        self, timeout_s: float, alive: Any, start: dict[str, Any] | None = None
    ) -> bool:
        """Activate, wait for the episode to end, deactivate; returns its success.

        ``start``: the recorder's start event (instruction, task, ...); the end event carries
        the success label.
        """
        self.done = None  # the done topic is ordered: the new episode's False comes first
        self.wait_until(lambda: self.done is False, 30.0, alive, "the episode to start")
        if start is not None:
            self.publish_event({"event": "start", **start})
        self.transition(Transition.TRANSITION_ACTIVATE, "activate")
        ended = False
        try:
            self.wait_until(lambda: self.done is True, timeout_s, alive, "the episode to end")
            # success and done are separate topics: let the last success value arrive
            end = time.monotonic() + 0.3
            self.wait_until(lambda: time.monotonic() > end, 1.0, alive, "success")
            ended = True
        finally:
            self.transition(Transition.TRANSITION_DEACTIVATE, "deactivate")
            if start is not None:
                outcome = {"success": bool(self.success)} if ended else {"reason": "interrupted"}
                self.publish_event({"event": "end", **outcome})
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


def closed_bags(recorder: dict[str, Any]) -> int:
    """Episode bags recorder_node has closed in its output folder."""
    return sum(1 for p in Path(recorder["output_dir"]).glob("episode_*") if is_complete(p))


def run_nodes(args: argparse.Namespace) -> dict[str, Any]:
    policy, sim = node_parameters(args)
    recorder = recorder_parameters(args, policy)
    closed_before = closed_bags(recorder) if recorder else 0
    processes = _start(node_commands(policy, sim, args.rt_priority, recorder=recorder))

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
        if recorder:
            driver.wait_until(
                lambda: driver.episode_pub.get_subscription_count() > 0,
                STARTUP_TIMEOUT_S,
                alive,
                "recorder_node",
            )
        driver.transition(Transition.TRANSITION_CONFIGURE, "configure")
        for k in range(args.episodes):
            if k > 0:
                driver.call(driver.reset, Trigger.Request())
            start = time.monotonic()
            event = {
                "instruction": policy["instruction"],
                "task": args.task,
                "seed": args.seed + k,
            }
            success = driver.run_episode(timeout_s, alive, event if recorder else None)
            seconds = time.monotonic() - start
            episodes.append({"seed": args.seed + k, "success": success, "seconds": seconds})
            print(f"  episode {k}: {'success' if success else 'failure'} ({seconds:.1f} s)")
        if recorder:  # the processes stop next: let the recorder close the last bag first
            total = closed_before + len(episodes)
            driver.wait_until(
                lambda: closed_bags(recorder) >= total, 10.0, alive, "recorder_node's last bag"
            )
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
        "recordings": recorder["output_dir"] if recorder else None,
    }
