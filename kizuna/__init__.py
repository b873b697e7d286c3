"""kizuna: a sim-to-real robot learning stack on ROS 2 — the core every station shares."""

__version__ = "0.1.0"
