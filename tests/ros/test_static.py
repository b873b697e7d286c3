"""Launch files, console scripts and parameter files, checked without ROS.

``launch`` and ``launch_ros`` are not on PyPI, so the launch files are (1) parsed with ``ast``
and (2) executed against stand-ins of the two packages that accept only names the real Jazzy
API has and record every call. The recorded tree is then checked: executables exist in
setup.py's console scripts, every launch argument has a default and every
``LaunchConfiguration`` names a declared one, parameter overrides and YAML keys are parameters
the nodes declare, included files and parameter files exist.
"""

from __future__ import annotations

import ast
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from real_robot.recording import RecorderParams
from real_robot.ros.params import PolicyNodeParams, SimRobotParams, defaults, from_values

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
NODE_PARAMS = {
    "policy_node": PolicyNodeParams,
    "sim_robot_node": SimRobotParams,
    "recorder_node": RecorderParams,
}
BUILTIN_PARAMETERS = {"use_sim_time"}  # every rclpy node declares it

# The names each module of ROS 2 Jazzy's launch / launch_ros offers (those kizuna may use).
API = {
    "launch": {"LaunchDescription", "LaunchContext"},
    "launch.actions": {
        "DeclareLaunchArgument", "EmitEvent", "ExecuteProcess", "GroupAction",
        "IncludeLaunchDescription", "LogInfo", "OpaqueFunction", "RegisterEventHandler",
        "SetEnvironmentVariable", "SetLaunchConfiguration", "Shutdown", "TimerAction",
    },
    "launch.conditions": {"IfCondition", "UnlessCondition", "LaunchConfigurationEquals"},
    "launch.events": {"matches_action", "Shutdown"},
    "launch.launch_description_sources": {
        "PythonLaunchDescriptionSource", "AnyLaunchDescriptionSource",
    },
    "launch.substitutions": {
        "LaunchConfiguration", "PathJoinSubstitution", "PythonExpression", "TextSubstitution",
        "EnvironmentVariable", "FindExecutable", "Command",
    },
    "launch_ros": set(),
    "launch_ros.actions": {"Node", "LifecycleNode", "PushRosNamespace", "SetParameter"},
    "launch_ros.event_handlers": {"OnStateTransition"},
    "launch_ros.events": set(),
    "launch_ros.events.lifecycle": {"ChangeState", "StateTransition"},
    "launch_ros.parameter_descriptions": {"ParameterValue", "ParameterFile"},
    "launch_ros.substitutions": {"FindPackageShare", "FindPackagePrefix"},
}  # fmt: skip


class Call:
    """A recorded constructor call of a launch API name."""

    def __init__(self, api_name: str, args: tuple, kwargs: dict[str, Any]) -> None:
        self.name, self.args, self.kwargs = api_name, args, kwargs

    def __repr__(self) -> str:
        return f"{self.name}({self.args}, {self.kwargs})"


def _stub_module(module: str) -> types.ModuleType:
    mod = types.ModuleType(module)
    names = API[module]

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"{module} has no {name!r} in ROS 2 Jazzy (stand-in API)")
        return lambda *a, **k: Call(name, a, k)

    mod.__getattr__ = getattr_  # type: ignore[method-assign]
    mod.__path__ = []  # a package, so submodules import
    return mod


@pytest.fixture
def launch_stubs(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in API:
        monkeypatch.setitem(sys.modules, module, _stub_module(module))
    if "lifecycle_msgs" not in sys.modules:
        try:
            import lifecycle_msgs.msg  # noqa: F401 - real, from the ros extra
        except ImportError:
            transition = types.SimpleNamespace(TRANSITION_CONFIGURE=1, TRANSITION_ACTIVATE=3)
            msg = types.ModuleType("lifecycle_msgs.msg")
            msg.Transition = transition  # type: ignore[attr-defined]
            monkeypatch.setitem(sys.modules, "lifecycle_msgs", types.ModuleType("lifecycle_msgs"))
            monkeypatch.setitem(sys.modules, "lifecycle_msgs.msg", msg)


def describe(path: Path) -> Call:
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": path.stem}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - our own file
    return namespace["generate_launch_description"]()


def walk(value: Any) -> Iterator[Call]:
    if isinstance(value, Call):
        yield value
        for item in (*value.args, *value.kwargs.values()):
            yield from walk(item)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from walk(k)
            yield from walk(v)
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "dict_items":
        for item in value:
            yield from walk(item)


def declared_arguments(tree: Call) -> dict[str, Call]:
    return {c.args[0]: c for c in walk(tree) if c.name == "DeclareLaunchArgument"}


def console_scripts() -> dict[str, str]:
    """name -> module:function, read from setup.py's entry_points without running it."""
    for node in ast.walk(ast.parse((ROOT / "setup.py").read_text())):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [e.value for e in value.elts]  # type: ignore[attr-defined]
                    return dict(tuple(p.strip() for p in e.split("=")) for e in entries)
    raise AssertionError("setup.py has no console_scripts")


# ---- the tests --------------------------------------------------------------------------------


def test_there_are_the_three_launch_files() -> None:
    names = {p.name for p in LAUNCH_FILES}
    assert {"sim_robot.launch.py", "deploy.launch.py", "demo.launch.py"} <= names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_parses_and_defines_generate_launch_description(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        name = getattr(call.func, "id", getattr(call.func, "attr", ""))
        if name == "DeclareLaunchArgument":
            kwargs = {k.arg for k in call.keywords}
            assert "default_value" in kwargs or len(call.args) >= 2, ast.unparse(call)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_builds_a_consistent_description(path: Path, launch_stubs: None) -> None:
    tree = describe(path)
    assert tree.name == "LaunchDescription"
    arguments = declared_arguments(tree)
    for name, call in arguments.items():
        default = call.kwargs.get("default_value", call.args[1] if len(call.args) > 1 else None)
        assert default is not None, f"{path.name}: launch argument {name!r} has no default"
    used = {c.args[0] for c in walk(tree) if c.name == "LaunchConfiguration"}
    assert used <= set(arguments), f"{path.name}: undeclared {sorted(used - set(arguments))}"
    scripts = console_scripts()
    for node in (c for c in walk(tree) if c.name in ("Node", "LifecycleNode")):
        package, executable = node.kwargs["package"], node.kwargs["executable"]
        assert package == "kizuna", f"{path.name}: package {package!r}"
        assert executable in scripts, f"{path.name}: {executable!r} not in console_scripts"
        assert node.kwargs["name"] == executable  # the params YAML is keyed by this name
        if node.name == "LifecycleNode":
            assert "namespace" in node.kwargs  # required by launch_ros before Jazzy
        declared = set(defaults(NODE_PARAMS[executable])) | BUILTIN_PARAMETERS
        for item in node.kwargs["parameters"]:
            if isinstance(item, dict):
                assert set(item) <= declared, f"{path.name}: {sorted(set(item) - declared)}"
    for join in (c for c in walk(tree) if c.name == "PathJoinSubstitution"):
        parts = join.args[0]
        if isinstance(parts[0], Call) and parts[0].name == "FindPackageShare":
            assert parts[0].args == ("kizuna",)
            assert (ROOT.joinpath(*parts[1:])).is_file(), f"{path.name}: {parts[1:]} missing"


def test_included_launch_files_get_only_arguments_they_declare(launch_stubs: None) -> None:
    for path in LAUNCH_FILES:
        for include in (c for c in walk(describe(path)) if c.name == "IncludeLaunchDescription"):
            source = include.args[0]
            target = ROOT / "launch" / source.args[0].args[0][-1]
            assert target.is_file()
            given = {k for k, _ in include.kwargs["launch_arguments"]}
            accepted = set(declared_arguments(describe(target)))
            assert given <= accepted, f"{path.name} -> {target.name}: {given - accepted}"


def test_node_console_scripts_point_at_main_functions() -> None:
    scripts = console_scripts()
    for executable in NODE_PARAMS:
        module, function = scripts[executable].split(":")
        source = ROOT / (module.replace(".", "/") + ".py")
        tree = ast.parse(source.read_text())
        assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("node", sorted(NODE_PARAMS))
def test_params_yaml_keys_are_exactly_the_declared_parameters(node: str) -> None:
    path = ROOT / "config" / "ros" / f"{node}.yaml"
    document = yaml.safe_load(path.read_text())
    assert list(document) == [node] and list(document[node]) == ["ros__parameters"]
    values = document[node]["ros__parameters"]
    declared = set(defaults(NODE_PARAMS[node]))
    assert set(values) <= declared, f"{path.name}: unknown {sorted(set(values) - declared)}"
    assert set(values) == declared, f"{path.name}: undocumented {sorted(declared - set(values))}"
    # The file's values are valid, and (checkpoint and instruction aside) the defaults.
    params = from_values(NODE_PARAMS[node], values)
    assert params == NODE_PARAMS[node]()


def test_kizuna_deploy_passes_only_declared_launch_arguments_and_parameters(
    launch_stubs: None, tmp_path: Path
) -> None:
    from argparse import Namespace

    from policies.vla.testing import make_tiny_checkpoint
    from real_robot.ros.processes import node_commands, node_parameters

    checkpoint = make_tiny_checkpoint(tmp_path / "checkpoint")
    args = Namespace(checkpoint=str(checkpoint), task="stack", instruction=None, reality="medium")
    args.__dict__ |= {"command_interface": "joint_trajectory_controller", "replan_every": 5}
    args.__dict__ |= {"engine": None, "episode_steps": 30, "seed": 7}
    policy, sim = node_parameters(args)
    assert from_values(PolicyNodeParams, policy).camera_names == ("front", "wrist")
    assert from_values(SimRobotParams, sim).reality == "medium"
    (launch,) = node_commands(policy, sim, use_launch=True)
    given = {a.split(":=")[0] for a in launch if ":=" in a}
    assert given <= set(declared_arguments(describe(ROOT / "launch" / "demo.launch.py")))
    sim_cmd, policy_cmd = node_commands(policy, sim, rt_priority=10, use_launch=False)
    for command, node in ((sim_cmd, "sim_robot_node"), (policy_cmd, "policy_node")):
        assert command[:3] == ["chrt", "-f", "10"] and f"real_robot.ros.{node}" in command
        overrides = {command[i + 1].split(":=")[0] for i, a in enumerate(command) if a == "-p"}
        assert overrides <= set(defaults(NODE_PARAMS[node]))
        params_file = Path(command[command.index("--params-file") + 1])
        assert params_file.name == f"{node}.yaml" and params_file.is_file()


def test_kizuna_deploy_record_adds_the_recorder_with_declared_arguments_and_parameters(
    launch_stubs: None, tmp_path: Path
) -> None:
    from argparse import Namespace

    from policies.vla.testing import make_tiny_checkpoint
    from real_robot.ros.processes import node_commands, node_parameters, recorder_parameters

    checkpoint = make_tiny_checkpoint(tmp_path / "checkpoint")
    args = Namespace(checkpoint=str(checkpoint), task="stack", instruction=None, reality=None)
    args.__dict__ |= {"command_interface": "forward_position_controller", "replan_every": 5}
    args.__dict__ |= {"engine": None, "episode_steps": 30, "seed": 7, "record": None}
    policy, sim = node_parameters(args)
    assert recorder_parameters(args, policy) is None
    args.record = str(tmp_path / "bags")
    recorder = recorder_parameters(args, policy)
    assert recorder is not None
    assert from_values(RecorderParams, recorder).output_dir == str(tmp_path / "bags")
    (launch,) = node_commands(policy, sim, use_launch=True, recorder=recorder)
    given = {a.split(":=")[0] for a in launch if ":=" in a}
    assert {"record", "record_dir"} <= given
    assert given <= set(declared_arguments(describe(ROOT / "launch" / "demo.launch.py")))
    *_, command = node_commands(policy, sim, rt_priority=10, use_launch=False, recorder=recorder)
    assert command[0] != "chrt" and "real_robot.ros.recorder_node" in command
    overrides = {command[i + 1].split(":=")[0] for i, a in enumerate(command) if a == "-p"}
    assert overrides <= set(defaults(RecorderParams))
    params_file = Path(command[command.index("--params-file") + 1])
    assert params_file.name == "recorder_node.yaml" and params_file.is_file()


def test_the_recorder_is_in_deploy_launch_behind_the_record_argument(launch_stubs: None) -> None:
    tree = describe(ROOT / "launch" / "deploy.launch.py")
    (recorder,) = [
        c for c in walk(tree) if c.name == "Node" and c.kwargs["name"] == "recorder_node"
    ]
    condition = recorder.kwargs["condition"]
    assert condition.name == "IfCondition" and condition.args[0].args == ("record",)
    assert declared_arguments(tree)["record"].kwargs["default_value"] == "false"
