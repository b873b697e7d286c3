"""Run a command inside a private network namespace: the only way kizuna's tests touch DDS.

``unshare -n`` (``-rn`` when not root) gives the command its own network stack with nothing
but ``lo``, brought up here; ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a random
``ROS_DOMAIN_ID`` (1..100) keep discovery on that loopback. No packet leaves the namespace.

    python tests/ros/netns.py python -m pytest tests/ros/dds_scenarios.py
    python tests/ros/netns.py python bench/ros_loop.py

Inside, ``KIZUNA_NETNS=1`` is set; DDS test modules refuse to run without it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence

MARKER = "KIZUNA_NETNS"


class NetnsUnavailableError(RuntimeError):
    """``unshare`` is missing or not permitted: DDS tests cannot run (they never skip)."""


def _prefix() -> list[str]:
    unshare = shutil.which("unshare")
    ip = shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip") if os.path.exists(p)), None
    )
    if unshare is None or ip is None:
        raise NetnsUnavailableError(
            "DDS tests run inside a private network namespace and need `unshare` (util-linux) "
            "and `ip` (iproute2): apt-get install util-linux iproute2"
        )
    user = [] if os.geteuid() == 0 else ["-r"]  # root: a plain net namespace suffices
    return [unshare, *user, "-n", "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh"]


def check() -> None:
    """Raise ``NetnsUnavailableError`` with the reason when a namespace cannot be made here."""
    result = subprocess.run(
        [*_prefix(), "true"], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise NetnsUnavailableError(
            "cannot create a private network namespace (`unshare -n` / `unshare -rn`): "
            f"{result.stderr.strip() or result.returncode}. DDS tests need it: run as root, or "
            "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
        )


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated in Jazzy; the range below replaces it
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(random.randint(1, 100))
    env[MARKER] = "1"
    # rcl's log files go to a scratch folder, not ~/.ros/log.
    env.setdefault("ROS_LOG_DIR", os.path.join(tempfile.gettempdir(), "kizuna-ros-log"))
    return env


def command(argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped to run inside a fresh network namespace."""
    return [*_prefix(), *argv]


def run(argv: Sequence[str], timeout_s: float, **kwargs: object) -> subprocess.CompletedProcess:
    """Run ``argv`` in a fresh namespace with the ROS environment above."""
    return subprocess.run(
        command(argv), env=environment(), timeout=timeout_s, check=False, **kwargs
    )


def inside() -> bool:
    return os.environ.get(MARKER) == "1"


def require_inside() -> None:
    """For DDS test modules and benchmarks: refuse to talk DDS on the host network."""
    if not inside():
        raise RuntimeError(
            "this talks DDS and must run inside a private network namespace: "
            "python tests/ros/netns.py <command>"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    check()
    os.execvpe(command(sys.argv[1:])[0], command(sys.argv[1:]), environment())
