"""The policy node (a lifecycle node) in front of a ros2_control controller.

    ros2 launch kizuna deploy.launch.py checkpoint_dir:=/path/to/checkpoint \
        instruction:="put the red cube in the bin" command_interface:=joint_trajectory_controller

With ``autostart:=true`` (the default) the node is configured, then activated once
configured; with ``autostart:=false`` it waits for
``ros2 lifecycle set /policy_node configure`` / ``activate`` (what ``kizuna deploy`` does).
Parameters come from ``params_file`` (config/ros/policy_node.yaml); the launch arguments
below override it. ``record:=true`` also starts recorder_node (config/ros/recorder_node.yaml),
one rosbag2 bag per episode in ``record_dir``, for ``kizuna ingest``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

ARGUMENTS = {
    # name: (default, description)
    "checkpoint_dir": ("", "checkpoint directory (required)"),
    "instruction": ("", "the language instruction (required)"),
    "device": ("cpu", "torch device for inference"),
    "control_hz": ("20.0", "control rate (Hz)"),
    "replan_every": ("5", "control ticks between inference requests"),
    "command_interface": (
        "forward_position_controller",
        "forward_position_controller or joint_trajectory_controller",
    ),
    "gripper_command": ("last_element", "last_element or separate"),
    "gripper_topic": ("/gripper_controller/commands", "gripper topic when separate"),
    "joint_state_max_age_s": ("0.2", "watchdog threshold for /joint_states (s)"),
    "image_max_age_s": ("0.3", "watchdog threshold for the cameras (s)"),
    "safety_margin_rad": ("0.05", "joint limit margin (rad)"),
    "max_velocity_fraction": ("0.5", "fraction of the rated joint velocity"),
    "dry_run": ("false", "compute and publish executed actions, never command"),
}
STRINGS = (
    "checkpoint_dir",
    "instruction",
    "device",
    "command_interface",
    "gripper_command",
    "gripper_topic",
)  # never YAML-typed: '' and numbers-as-text stay strings


def generate_launch_description() -> LaunchDescription:
    params_file = DeclareLaunchArgument(
        "params_file",
        default_value=PathJoinSubstitution(
            [FindPackageShare("kizuna"), "config", "ros", "policy_node.yaml"]
        ),
        description="policy_node parameter file",
    )
    autostart = DeclareLaunchArgument(
        "autostart", default_value="true", description="configure and activate at start"
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
    node = LifecycleNode(
        package="kizuna",
        executable="policy_node",
        name="policy_node",
        namespace="",
        output="screen",
        parameters=[LaunchConfiguration("params_file"), overrides],
    )
    when_autostart = IfCondition(LaunchConfiguration("autostart"))
    configure = EmitEvent(
        event=ChangeState(
            lifecycle_node_matcher=matches_action(node),
            transition_id=Transition.TRANSITION_CONFIGURE,
        ),
        condition=when_autostart,
    )
    activate_when_configured = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            start_state="configuring",
            goal_state="inactive",
            entities=[
                LogInfo(msg="policy_node configured; activating"),
                EmitEvent(
                    event=ChangeState(
                        lifecycle_node_matcher=matches_action(node),
                        transition_id=Transition.TRANSITION_ACTIVATE,
                    )
                ),
            ],
        ),
        condition=when_autostart,
    )
    record = [
        DeclareLaunchArgument("record", default_value="false", description="run recorder_node"),
        DeclareLaunchArgument(
            "record_dir", default_value="recordings", description="where recorder_node writes"
        ),
    ]
    recorder = Node(
        package="kizuna",
        executable="recorder_node",
        name="recorder_node",
        output="screen",
        parameters=[
            PathJoinSubstitution(
                [FindPackageShare("kizuna"), "config", "ros", "recorder_node.yaml"]
            ),
            {
                "output_dir": ParameterValue(LaunchConfiguration("record_dir"), value_type=str),
                "command_interface": ParameterValue(
                    LaunchConfiguration("command_interface"), value_type=str
                ),
            },
        ],
        condition=IfCondition(LaunchConfiguration("record")),
    )
    return LaunchDescription(
        [params_file, autostart, *arguments, *record, activate_when_configured, node, configure]
        + [recorder]
    )
