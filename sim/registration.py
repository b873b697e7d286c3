"""Gymnasium ids for the shipped tasks: one explicit line each.

``import sim`` registers them; then ``gymnasium.make("kizuna/PickPlace-v0", backend=...)``.
Any task YAML works through ``gymnasium.make("kizuna/Task-v0", task="path/to/task.yaml")``.
"""

from __future__ import annotations

import gymnasium

ENTRY_POINT = "sim.env:KizunaEnv"

# id -> shipped task name (config/tasks/<name>.yaml)
TASK_IDS: dict[str, str] = {
    "kizuna/Reach-v0": "reach",
    "kizuna/Push-v0": "push",
    "kizuna/PickPlace-v0": "pick_place",
    "kizuna/Stack-v0": "stack",
    "kizuna/Insert-v0": "insert",
}


def register_envs() -> None:
    """Register every id once (safe to call again)."""
    if "kizuna/Task-v0" in gymnasium.registry:
        return
    for env_id, task in TASK_IDS.items():
        gymnasium.register(env_id, ENTRY_POINT, kwargs={"task": task})
    gymnasium.register("kizuna/Task-v0", ENTRY_POINT)
