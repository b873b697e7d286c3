"""The whole loop on one machine: the simulated robot and the policy node driving it.

    ros2 launch kizuna demo.launch.py checkpoint_dir:=/path/to/checkpoint task:=pick_place \
        instruction:="put the red cube in the bin"

Includes sim_robot.launch.py and deploy.launch.py, forwarding the arguments both share
(``control_hz`` must agree between robot and policy).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

SIM_ARGUMENTS = {
    "task": ("pick_place", "task name (config/tasks) or a task YAML path"),
    "reality": ("", "reality profile: '' (none), easy, medium, hard or a YAML path"),
    "backend": ("", "physics engine: '' (profile default, else mujoco), mujoco, pybullet"),
    "randomization": ("false", "domain randomization on every episode"),
    "episode_steps": ("0", "episode length in control steps; 0 means the task's"),
    "seed": ("0", "episode k is seeded seed + k"),
}
POLICY_ARGUMENTS = {
    "checkpoint_dir": ("", "checkpoint directory (required)"),
    "instruction": ("", "the language instruction (required)"),
    "replan_every": ("5", "control ticks between inference requests"),
    "command_interface": (
        "forward_position_controller",
        "forward_position_controller or joint_trajectory_controller",
    ),
    "dry_run": ("false", "compute and publish executed actions, never command"),
    "autostart": ("true", "configure and activate the policy node at start"),
    "record": ("false", "also run recorder_node: one rosbag2 bag per episode"),
    "record_dir": ("recordings", "where recorder_node writes its bags"),
}
SHARED_ARGUMENTS = {"control_hz": ("20.0", "control rate of robot and policy (Hz)")}


def _include(file: str, names: list[str]) -> IncludeLaunchDescription:
    return IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("kizuna"), "launch", file])
        ),
        launch_arguments={name: LaunchConfiguration(name) for name in names}.items(),
    )


def generate_launch_description() -> LaunchDescription:
    declared = {**SIM_ARGUMENTS, **POLICY_ARGUMENTS, **SHARED_ARGUMENTS}
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in declared.items()
    ]
    shared = list(SHARED_ARGUMENTS)
    sim = _include("sim_robot.launch.py", [*SIM_ARGUMENTS, *shared])
    policy = _include("deploy.launch.py", [*POLICY_ARGUMENTS, *shared])
    return LaunchDescription([*arguments, sim, policy])
