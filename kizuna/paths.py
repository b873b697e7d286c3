"""Where the shipped configuration lives, in a source checkout and in an installed package."""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path


@cache
def config_dir() -> Path:
    """The ``config/`` directory: $KIZUNA_CONFIG_DIR, the source tree, or ``share/kizuna``."""
    candidates = []
    if env := os.environ.get("KIZUNA_CONFIG_DIR"):
        candidates.append(Path(env))
    candidates.append(Path(__file__).resolve().parent.parent / "config")
    candidates.append(Path(sys.prefix) / "share" / "kizuna" / "config")
    try:  # a colcon/ament install: ask the ament index
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("kizuna")) / "config")
    except Exception:  # noqa: BLE001 - ament is optional; any failure means "not installed that way"
        pass
    for path in candidates:
        if (path / "tasks").is_dir():
            return path
    raise FileNotFoundError(
        "cannot find kizuna's config/ directory (looked in "
        + ", ".join(str(p) for p in candidates)
        + "); set KIZUNA_CONFIG_DIR to it"
    )


# The multi-task VLA that ships with kizuna (reach, push, pick_place; see the README).
SHIPPED_CHECKPOINT = "multitask"


def shipped_checkpoint(name: str = SHIPPED_CHECKPOINT) -> Path:
    """A checkpoint that ships in ``config/checkpoints/<name>`` (safetensors, no pickle)."""
    path = config_dir() / "checkpoints" / name
    if not (path / "config.json").is_file():
        found = sorted(p.name for p in (config_dir() / "checkpoints").glob("*/"))
        raise FileNotFoundError(f"no shipped checkpoint {name!r} at {path}; shipped: {found}")
    return path
