"""Robot runtime (chunk executor, safety filter, watchdog), rclpy nodes, bag ingestion."""
