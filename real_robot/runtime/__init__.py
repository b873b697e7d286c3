"""The robot runtime in pure Python (no ROS): safety filter, watchdog, e-stop, chunk executor
and the control loop that drives the simulator directly or a ROS 2 robot through an adapter."""
