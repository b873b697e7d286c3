"""``kizuna loop``: deploy -> record on the "real" cell -> ingest -> fine-tune -> redeploy.

```sh
kizuna loop task=pick_place reality=hard real_episodes=20 iterations=1 out=runs/loop
```

Each iteration, top to bottom:

1. evaluate the current checkpoint on the "real" cell (the simulator under ``reality``, a
   profile the policy never trained on): success with a 95 % CI (iteration 0: zero-shot);
2. record ``real_episodes`` there with a watching operator who takes over when the policy
   stalls (``kizuna.loop_collect``), into ``<out>/iter_<i>/real`` (provenance ``real``);
3. fine-tune from the current checkpoint on the sim data plus every real dataset so far
   (``real_weight`` sets their share, ``cotrain.intervention_weight`` up-weights takeovers,
   a failed episode's own actions are not imitated) for ``train_minutes``;
4. evaluate the new checkpoint on the same seeds.

Everything is kept and named: ``<out>/iter_<i>/{real,checkpoint,eval_before,eval_after}``,
``<out>/loop_report.json`` and ``loop_report.png``. Settings: config/hydra/loop.yaml.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kizuna.hydra_config import add_overrides_argument
from kizuna.loop_collect import OperatorConfig, collect


@dataclass(frozen=True)
class LoopConfig:
    """Settings of ``config/hydra/loop.yaml`` (see there for each key)."""

    task: str = "pick_place"
    reality: str = "hard"
    checkpoint: str | None = None
    sim_dataset: str | None = None
    sim_episodes: int = 100
    real_episodes: int = 20
    eval_episodes: int = 50
    iterations: int = 1
    train_minutes: float = 10.0
    lr: float = 1e-4
    batch_size: int = 32
    real_weight: float = 1.0
    intervention_weight: float = 3.0
    failed_episodes: str = "interventions"  # of failed real episodes train: all|interventions|none
    nominal_eval: bool = True
    eval_seed: int = 1000
    real_seed: int = 50000
    out: str = "runs/loop"
    # How the "real" episodes are recorded: "sim" (in-process, with the stand-in operator) or
    # "ros" (kizuna deploy --backend ros --record over DDS, then kizuna ingest; no operator).
    via: str = "sim"
    operator: OperatorConfig = field(default_factory=OperatorConfig)

    def __post_init__(self) -> None:
        if self.via not in ("sim", "ros"):
            raise ValueError(f"loop.via: {self.via!r} is not 'sim' or 'ros'")


def _rate(report: Any) -> dict[str, Any]:
    low, high = report.ci95
    return {
        "success_rate": report.success_rate,
        "successes": report.successes,
        "episodes": len(report.episodes),
        "ci95": [low, high],
    }


def evaluate_on(checkpoint: Path, cfg: LoopConfig, reality: str | None, out: Path) -> dict:
    """Success of ``checkpoint`` on the task (``reality=None``: the nominal simulator)."""
    import torch

    from policies.base import load_policy
    from policies.evaluate import EvalConfig, evaluate

    torch.set_num_threads(1)
    eval_cfg = EvalConfig(
        checkpoint=str(checkpoint),
        task=cfg.task,
        episodes=cfg.eval_episodes,
        reality=reality,
        seed=cfg.eval_seed,
        videos=2,
        out=str(out),
    )
    return _rate(evaluate(load_policy(checkpoint), eval_cfg, progress=True))


def sim_dataset(cfg: LoopConfig, out: Path) -> Path:
    """The sim data to co-train with: ``sim_dataset``, or ``sim_episodes`` generated now."""
    if cfg.sim_dataset:
        return Path(cfg.sim_dataset)
    root = out / "sim"
    if not (root / "meta" / "info.json").is_file():
        from sim.datagen import GenerateConfig, generate

        print(f"generating {cfg.sim_episodes} {cfg.task} expert episodes into {root}")
        generate(
            GenerateConfig(task=cfg.task, episodes=cfg.sim_episodes, out=str(root), language="all")
        )
    return root


def fine_tune(
    checkpoint: Path,
    datasets: list[Path],
    out: Path,
    minutes: float,
    *,
    weights: list[float] | None = None,
    lr: float = 1e-4,
    batch_size: int = 32,
    warmup_steps: int = 100,
    overrides: tuple[str, ...] = (),
) -> Path:
    """Fine-tune ``checkpoint`` on ``datasets`` for ``minutes`` of wall clock, one thread
    (``kizuna train init_from=...``); returns the new checkpoint. The loop and the demo."""
    from kizuna.hydra_config import compose
    from policies.vla.config import TrainConfig
    from policies.vla.train import listify_overrides, train

    settings = [
        f"dataset=[{','.join(map(str, datasets))}]",
        f"init_from={checkpoint}",
        f"out={out}",
        f"max_minutes={minutes}",
        "steps=1000000",  # the time budget ends the run, and its schedule follows the clock
        f"warmup_steps={warmup_steps}",
        f"lr={lr}",
        f"batch_size={batch_size}",
        "threads=1",
        "checkpoint_every=1000000",  # one checkpoint, when the budget is spent
        *overrides,
    ]
    if weights is not None:
        settings.append(f"dataset_weights=[{','.join(map(str, weights))}]")
    result = train(compose("train", listify_overrides(settings), TrainConfig))
    print(f"  fine-tuned {result.step} steps in {result.wall_s:.0f} s -> {result.last_checkpoint}")
    return (out / "last").resolve()


def record_via_ros(checkpoint: Path, cfg: LoopConfig, seed: int, where: Path) -> list[dict]:
    """The real-robot path: the policy and sim-robot nodes over DDS, recorded to rosbag2
    bags, then ``kizuna ingest``. Returns one row per episode (no operator on this path)."""
    bags, report = where / "bags", where / "deploy_report.json"
    deploy = [sys.executable, "-m", "kizuna.cli", "deploy", "--backend", "ros"]
    deploy += ["--checkpoint", str(checkpoint), "--task", cfg.task, "--reality", cfg.reality]
    deploy += ["--episodes", str(cfg.real_episodes), "--seed", str(seed)]
    deploy += ["--record", str(bags), "--report", str(report)]
    ingest = [sys.executable, "-m", "kizuna.cli", "ingest", str(bags), "--into"]
    for argv in (deploy, [*ingest, str(where / "real")]):
        done = subprocess.run(argv, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(argv[2:5])} ...` failed (exit {done.returncode})")
    episodes = json.loads(report.read_text())["episodes"]
    return [
        {"seed": e["seed"], "success": bool(e["success"]), "took_over_at": None} for e in episodes
    ]


def run_loop(cfg: LoopConfig) -> dict[str, Any]:
    from kizuna.paths import shipped_checkpoint
    from policies.base import load_policy

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(cfg.checkpoint) if cfg.checkpoint else shipped_checkpoint()
    report: dict[str, Any] = {"config": asdict(cfg), "start_checkpoint": str(checkpoint)}
    if cfg.nominal_eval:
        print(f"[nominal] {checkpoint} in the nominal simulator")
        report["nominal"] = evaluate_on(checkpoint, cfg, None, out / "eval_nominal")
    sim_data, real_data = sim_dataset(cfg, out), []
    report["sim_dataset"] = str(sim_data)
    iterations = []
    for i in range(1, cfg.iterations + 1):
        where = out / f"iter_{i}"
        started = time.perf_counter()
        print(f"[iteration {i}/{cfg.iterations}: evaluate] {checkpoint} on {cfg.reality}")
        before = evaluate_on(checkpoint, cfg, cfg.reality, where / "eval_before")
        print(f"[iteration {i}: record] {cfg.real_episodes} episodes on {cfg.reality}")
        import torch

        torch.set_num_threads(1)
        seed = cfg.real_seed + 1000 * i
        if cfg.via == "ros":
            rows = record_via_ros(checkpoint, cfg, seed, where)
        else:
            rows = collect(
                load_policy(checkpoint),
                cfg.task,
                cfg.reality,
                cfg.real_episodes,
                where / "real",
                cfg.operator,
                seed,
                policy_version=str(checkpoint),
            )
        real_data.append(where / "real")
        print(f"[iteration {i}: fine-tune] {cfg.train_minutes} min on sim + {len(real_data)} real")
        weights = [1.0] + [cfg.real_weight / len(real_data)] * len(real_data)
        checkpoint = fine_tune(
            checkpoint,
            [sim_data, *real_data],
            where / "checkpoint",
            cfg.train_minutes,
            weights=weights,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            overrides=(
                f"cotrain.intervention_weight={cfg.intervention_weight}",
                f"cotrain.failed_episodes={cfg.failed_episodes}",
            ),
        )
        print(f"[iteration {i}: evaluate] {checkpoint} on {cfg.reality}")
        after = evaluate_on(checkpoint, cfg, cfg.reality, where / "eval_after")
        iterations.append(
            {
                "iteration": i,
                "before": before,
                "after": after,
                "real_dataset": str(where / "real"),
                "real_episodes": rows,
                "operator_takeovers": sum(r["took_over_at"] is not None for r in rows),
                "checkpoint": str(checkpoint),
                "wall_s": round(time.perf_counter() - started, 1),
            }
        )
        report["iterations"] = iterations
        (out / "loop_report.json").write_text(json.dumps(report, indent=2))
    plot_loop(report, out / "loop_report.png")
    return report


def plot_loop(report: dict[str, Any], path: Path) -> None:
    """Success on the "real" cell per iteration (95 % CI bars), and nominal for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = report.get("iterations", [])
    points = [("zero-shot", its[0]["before"])] if its else []
    points += [(f"after {it['iteration']}", it["after"]) for it in its]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for x, (_, r) in enumerate(points):
        low, high = r["ci95"]
        rate = r["success_rate"]
        ax.errorbar(x, rate, yerr=[[rate - low], [high - rate]], fmt="o", capsize=4)
    ax.set_xticks(range(len(points)), [p[0] for p in points])
    if "nominal" in report:
        ax.axhline(report["nominal"]["success_rate"], ls="--", c="grey", label="nominal sim")
        ax.legend(loc="lower right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success on the 'real' cell")
    ax.set_title(f"{report['config']['task']} on {report['config']['reality']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_overrides_argument(
        parser, "loop", "task=pick_place reality=hard real_episodes=20 iterations=1 out=runs/loop"
    )


def main(args: argparse.Namespace) -> int:
    from kizuna.hydra_config import compose

    try:
        cfg = compose("loop", list(args.overrides), LoopConfig)
        report = run_loop(cfg)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for it in report.get("iterations", []):
        b, a = it["before"], it["after"]
        print(
            f"iteration {it['iteration']}: {b['success_rate']:.0%} -> {a['success_rate']:.0%} "
            f"on {cfg.reality} (95% CI [{a['ci95'][0]:.2f}, {a['ci95'][1]:.2f}]), "
            f"{it['operator_takeovers']}/{len(it['real_episodes'])} takeovers"
        )
    print(f"report {Path(cfg.out) / 'loop_report.json'}")
    return 0
