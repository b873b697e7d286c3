"""The simulated robot: a kizuna task in MuJoCo/PyBullet, as a ROS 2 arm under ros2_control.

    ros2 launch kizuna sim_robot.launch.py task:=stack reality:=medium

Parameters come from ``params_file`` (config/ros/sim_robot_node.yaml); the launch arguments
below override it.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    # name: (default, description)
    "task": ("pick_place", "task name (config/tasks) or a task YAML path"),
    "reality": ("", "reality profile: '' (none), easy, medium, hard or a YAML path"),
    "backend": ("", "physics engine: '' (profile default, else mujoco), mujoco, pybullet"),
    "randomization": ("false", "domain randomization on every episode"),
    "language": ("en", "instruction language (en, ja)"),
    "control_hz": ("0.0", "simulation step rate; 0 means the task's control rate"),
    "episode_steps": ("0", "episode length in control steps; 0 means the task's"),
    "seed": ("0", "episode k is seeded seed + k"),
}
STRINGS = ("task", "reality", "backend", "language")  # never YAML-typed: '' stays a string


def generate_launch_description() -> LaunchDescription:
    params_file = DeclareLaunchArgument(
        "params_file",
        default_value=PathJoinSubstitution(
            [FindPackageShare("kizuna"), "config", "ros", "sim_robot_node.yaml"]
        ),
        description="sim_robot_node parameter file",
    )
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in ARGUMENTS.items()
    ]
    overrides = {
        name: ParameterValue(LaunchConfiguration(name), value_type=str)
        if name in STRINGS
        else LaunchConfiguration(name)
        for name in ARGUMENTS
    }
    node = Node(
        package="kizuna",
        executable="sim_robot_node",
        name="sim_robot_node",
        output="screen",
        parameters=[LaunchConfiguration("params_file"), overrides],
    )
    return LaunchDescription([params_file, *arguments, node])
