"""The ROS 2 (Jazzy) layer: thin rclpy nodes over the pure runtime in ``real_robot.runtime``.

``convert``, ``params`` and ``adapter`` are plain Python (no rclpy at import): message
conversion, parameters and the ``Robot`` adapter, unit-tested without DDS. ``policy_node``,
``sim_robot_node`` and ``deploy_ros`` are the only modules that use rclpy.
"""
