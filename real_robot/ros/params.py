"""Node parameters: frozen dataclasses, read once (STYLE rule 12). No rclpy here.

Every field is one ROS parameter of the same name; the dataclass default is the parameter's
default, and ``config/ros/<node>.yaml`` lists them all. Values are coerced by the field's type
(a YAML ``30`` for a float parameter is fine) and checked, and a bad value is refused naming
the parameter.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from kizuna.robot import PANDA
from real_robot.ros.convert import COMMAND_INTERFACES, GRIPPER_COMMANDS, JointLayout

P = TypeVar("P")


class ParamError(ValueError):
    """A parameter value the node refuses; the message names the parameter."""


@dataclass(frozen=True)
class PolicyNodeParams:
    """``policy_node``: what to run, on which joints and cameras, at what rate, how safely."""

    checkpoint_dir: str = ""  # required: a checkpoint directory (Contract 5)
    instruction: str = ""  # required: the language instruction given to the policy
    device: str = "cpu"  # torch device for inference
    joint_names: tuple[str, ...] = PANDA.joint_names  # arm joints, in the policy's order
    gripper_joint: str = PANDA.gripper_names[0]  # JointState name of the gripper joint
    gripper_max_m: float = PANDA.finger_travel_m  # its position when fully open (metres)
    camera_names: tuple[str, ...] = ("front", "wrist")  # /camera/<name>/image_raw
    image_size: tuple[int, ...] = (96, 96)  # expected (height, width) of every camera
    control_hz: float = 20.0
    replan_every: int = 5  # control ticks between inference requests
    command_interface: str = "forward_position_controller"  # or joint_trajectory_controller
    gripper_command: str = "last_element"  # or "separate" (its own controller)
    gripper_topic: str = "/gripper_controller/commands"  # used when gripper_command=separate
    joint_state_max_age_s: float = 0.2  # watchdog: hold when /joint_states is older
    image_max_age_s: float = 0.3  # watchdog: hold when any camera is older
    safety_margin_rad: float = 0.05  # joint limits shrunk by this much
    max_velocity_fraction: float = 0.5  # of the rated joint speed
    workspace_min_m: tuple[float, ...] = (0.15, -0.6, 0.005)  # TCP box, robot base frame
    workspace_max_m: tuple[float, ...] = (0.85, 0.6, 0.7)
    dry_run: bool = False  # compute and publish executed actions, never command
    diagnostics_hz: float = 2.0

    def __post_init__(self) -> None:
        _check_common(self.joint_names, self.gripper_max_m, self.control_hz, self.image_size)
        _one_of("command_interface", self.command_interface, COMMAND_INTERFACES)
        _one_of("gripper_command", self.gripper_command, GRIPPER_COMMANDS)
        for name in ("replan_every", "joint_state_max_age_s", "image_max_age_s", "diagnostics_hz"):
            if getattr(self, name) <= 0:
                raise ParamError(f"parameter {name!r} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.max_velocity_fraction <= 1.0:
            raise ParamError("parameter 'max_velocity_fraction' must be in (0, 1]")
        if self.safety_margin_rad < 0:
            raise ParamError("parameter 'safety_margin_rad' must be >= 0")
        low, high = self.workspace_min_m, self.workspace_max_m
        if len(low) != 3 or len(high) != 3 or any(a >= b for a, b in zip(low, high, strict=True)):
            raise ParamError(
                f"parameters 'workspace_min_m' {list(low)} / 'workspace_max_m' {list(high)}: "
                "need [x, y, z] each, min < max"
            )
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ParamError(f"parameter 'camera_names' repeats a name: {self.camera_names}")

    def check_ready(self) -> None:
        """The parameters that have no usable default, checked at configure time."""
        if not self.checkpoint_dir:
            raise ParamError("parameter 'checkpoint_dir' is empty: set it to a checkpoint")
        if not self.instruction.strip():
            raise ParamError("parameter 'instruction' is empty: say what the robot should do")

    @property
    def layout(self) -> JointLayout:
        return JointLayout(self.joint_names, self.gripper_joint, self.gripper_max_m)

    @property
    def image_hw(self) -> tuple[int, int]:
        return (self.image_size[0], self.image_size[1])


@dataclass(frozen=True)
class SimRobotParams:
    """``sim_robot_node``: which simulated cell, how it is observed, and how fast it runs."""

    task: str = "pick_place"  # a shipped task name or a task YAML path
    reality: str = ""  # "" (none) | easy | medium | hard | a profile YAML path
    backend: str = ""  # "" (the reality profile's or mujoco) | mujoco | pybullet
    randomization: bool = False
    language: str = "en"
    cameras: tuple[str, ...] = ("front", "wrist")
    image_size: tuple[int, ...] = (96, 96)  # (height, width)
    control_hz: float = 0.0  # 0: the task's control rate
    episode_steps: int = 0  # 0: the task's episode length
    seed: int = 0  # episode k is reset with seed + k
    joint_names: tuple[str, ...] = PANDA.joint_names
    gripper_joint: str = PANDA.gripper_names[0]
    gripper_max_m: float = PANDA.finger_travel_m

    def __post_init__(self) -> None:
        hz = self.control_hz if self.control_hz > 0 else 1.0  # 0 means "the task's"
        _check_common(self.joint_names, self.gripper_max_m, hz, self.image_size)
        if self.control_hz < 0 or self.episode_steps < 0:
            raise ParamError("parameters 'control_hz' and 'episode_steps' must be >= 0")

    @property
    def layout(self) -> JointLayout:
        return JointLayout(self.joint_names, self.gripper_joint, self.gripper_max_m)


def _check_common(
    joint_names: tuple[str, ...], gripper_max_m: float, control_hz: float, image_size: tuple
) -> None:
    if len(joint_names) != PANDA.dof or len(set(joint_names)) != len(joint_names):
        raise ParamError(
            f"parameter 'joint_names' needs {PANDA.dof} distinct names, got {list(joint_names)}"
        )
    if gripper_max_m <= 0:
        raise ParamError("parameter 'gripper_max_m' must be > 0")
    if control_hz <= 0:
        raise ParamError("parameter 'control_hz' must be > 0")
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ParamError(f"parameter 'image_size' must be [height, width], got {image_size}")


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParamError(f"parameter {name!r} is {value!r}; expected one of {list(allowed)}")


# ---- declaring and reading ------------------------------------------------------------------


def defaults(cls: type) -> dict[str, Any]:
    """Parameter name -> default, as ROS wants it (lists, not tuples)."""
    return {
        f.name: list(f.default) if isinstance(f.default, tuple) else f.default
        for f in dataclasses.fields(cls)
    }


def from_values(cls: type[P], values: Mapping[str, Any]) -> P:
    """Build (and so check) ``cls`` from parameter values, coercing each by its field's type."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
    return cls(**{name: _coerce(name, v, hints[name]) for name, v in values.items()})


def _coerce(name: str, value: Any, hint: Any) -> Any:
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ParamError(f"parameter {name!r} must be a list, got {value!r}")
        return tuple(_coerce(name, v, item) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ParamError(f"parameter {name!r} must be {hint.__name__}, got {value!r}")
