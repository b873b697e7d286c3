"""The worked examples (config/examples) and the adapt benchmark's new tasks (bench/tasks):
valid specs built from the shipped object types and predicates, solvable by the scripted
expert (so ``kizuna adapt`` can generate data for them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kizuna.task import load_task, shipped_tasks

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
BENCH_TASKS = sorted((ROOT / "bench" / "tasks").glob("*.yaml"))


def test_the_worked_examples_exist() -> None:
    assert {p.stem for p in EXAMPLES} >= {"kitting", "peg_insertion"}
    assert len(BENCH_TASKS) >= 2


@pytest.mark.parametrize("path", EXAMPLES + BENCH_TASKS, ids=lambda p: p.stem)
def test_example_is_new_and_valid(path: Path) -> None:
    spec = load_task(path)
    assert spec.name not in shipped_tasks(), "a new task, one the project does not ship"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_steps_become_the_success_checks(path: Path) -> None:
    spec = load_task(path)
    ordered = sorted(spec.steps, key=lambda s: s.order)
    assert len(ordered) >= 2 and not spec.success
    assert spec.predicates == [s.predicate for s in ordered]
    # The instruction names the steps in their order.
    instruction = spec.instructions["en"][0]
    positions = [instruction.find((s.predicate.object or "").replace("_", " ")) for s in ordered]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)


@pytest.mark.parametrize("path", EXAMPLES + BENCH_TASKS, ids=lambda p: p.stem)
def test_scripted_expert_succeeds(path: Path) -> None:
    from sim.demo import run_episode
    from sim.env import KizunaEnv

    env = KizunaEnv(path, cameras=())
    try:
        results = [run_episode(env, seed, record=False) for seed in (0, 1)]
    finally:
        env.close()
    assert all(r["success"] for r in results), [(r["success"], r["steps"]) for r in results]
