"""Physics backends behind one contract (``sim.backends.base.Backend``).

The registry is a literal: name -> (module, class). Engines import lazily so that the core runs
without PyBullet (no wheels for Python >= 3.12).
"""

from __future__ import annotations

import importlib

from kizuna.robot import PANDA, RobotDescription
from kizuna.task import TaskSpec
from sim.backends.base import Backend
from sim.scene import CAMERAS, CameraSpec

BACKENDS: dict[str, tuple[str, str]] = {
    "mujoco": ("sim.backends.mujoco_backend", "MujocoBackend"),
    "pybullet": ("sim.backends.pybullet_backend", "PybulletBackend"),
}


def make_backend(
    name: str,
    spec: TaskSpec,
    robot: RobotDescription = PANDA,
    cameras: dict[str, CameraSpec] = CAMERAS,
) -> Backend:
    """Build a backend by name; a missing engine is reported with what to install."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    module_name, class_name = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"backend {name!r} needs {exc.name!r}: pip install 'kizuna[{name}]' "
            f"(PyBullet has no wheels for Python >= 3.12; use backend='mujoco' there)"
        ) from exc
    return getattr(module, class_name)(spec, robot=robot, cameras=cameras)
