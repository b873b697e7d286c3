"""``kizuna generate``: scripted-expert demonstrations into a LeRobot v3 dataset, in parallel.

Worker processes (or Ray actors, for more machines) each own one env and roll out episodes by
seed; the parent process is the only writer, so every episode lands atomically and a killed run
keeps everything committed before the kill. ``resume=true`` continues after the last seed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kizuna.dataset import DatasetReader, DatasetWriter, Provenance
from kizuna.dataset.format import default_action_names, default_state_names
from kizuna.hydra_config import add_overrides_argument
from kizuna.robot import PANDA
from kizuna.task import TaskSpec, load_task


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None  # "auto", "local" or ray://host:port
    num_workers: int = 2


@dataclass(frozen=True)
class GenerateConfig:
    task: str = "pick_place"
    episodes: int = 100
    workers: int = 2
    out: str | None = None
    resume: bool = False
    backend: str = "mujoco"
    cameras: tuple[str, ...] = ("front", "wrist")
    image_size: int = 96
    randomization: str = "default"
    reality: str | None = None
    language: str = "en"
    seed: int = 0
    keep_failures: bool = False
    max_attempts_factor: float = 3.0
    hold_after_success: int = 0  # keep recording this many steps after success (the expert holds)
    # DART (Laskey et al. 2017): execute the expert's joint targets plus smooth random noise of
    # this std (rad), but record the clean targets. The data then shows how to get back onto
    # the plan from states a learned policy drifts into, not only the perfect path.
    action_noise_rad: float = 0.0
    ray: RayConfig = field(default_factory=RayConfig)

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"data/{load_task(self.task).name}")


@dataclass
class EpisodeRecord:
    """What a worker sends back: one rolled-out episode, ready for ``DatasetWriter``."""

    seed: int
    success: bool
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    images: dict[str, np.ndarray]
    instruction: str
    randomization: dict
    wall_s: float


# ---- the worker side -----------------------------------------------------------------------

_worker: EpisodeWorker | None = None


class EpisodeWorker:
    """One env plus the expert; ``run(seed)`` rolls out one episode."""

    def __init__(self, cfg: GenerateConfig) -> None:
        # One thread per worker: the workers are the parallelism (2 cores, 2 workers).
        os.environ.setdefault("LP_NUM_THREADS", "1")
        from sim.env import KizunaEnv

        randomization = False if cfg.randomization in ("none", "", None) else cfg.randomization
        self.cfg = cfg
        self.env = KizunaEnv(
            cfg.task,
            backend=cfg.backend,
            cameras=cfg.cameras,
            image_size=cfg.image_size,
            randomization=randomization,
            reality=cfg.reality,
            language="en" if cfg.language == "all" else cfg.language,
            # Recording past success shows a policy how to stop there, not only how to arrive.
            terminate_on_success=cfg.hold_after_success == 0,
        )

    def run(self, seed: int) -> EpisodeRecord:
        from sim.expert import ScriptedExpert

        start = time.perf_counter()
        env, spec = self.env, self.env.spec_task
        rng = np.random.default_rng(seed)
        options = {}
        if self.cfg.language == "all":
            phrasings = [s for lang in spec.instructions.values() for s in lang]
            options["instruction"] = phrasings[int(rng.integers(len(phrasings)))]
        obs, info = env.reset(seed=seed, options=options)
        expert = ScriptedExpert(rng)
        expert.reset(env)
        states, actions, rewards = [], [], []
        images: dict[str, list[np.ndarray]] = {c: [] for c in self.cfg.cameras}
        success, held = False, 0
        noise = ExecutionNoise(self.cfg.action_noise_rad, env.robot.dof, rng)
        for _ in range(spec.episode_steps):
            action = expert.act()
            states.append(obs["state"])
            actions.append(action)
            for cam in self.cfg.cameras:
                images[cam].append(obs["images"][cam])
            obs, reward, terminated, truncated, step_info = env.step(noise.apply(action))
            rewards.append(reward)
            held = held + 1 if success else 0  # steps recorded since success was reached
            success = step_info["success"]
            if terminated or truncated or held >= self.cfg.hold_after_success > 0:
                break
        return EpisodeRecord(
            seed=seed,
            success=bool(success),
            states=np.array(states, np.float32),
            actions=np.array(actions, np.float32),
            rewards=np.array(rewards, np.float32),
            images={c: np.stack(v) for c, v in images.items()},
            instruction=env.instruction,
            randomization={**info["episode_params"], "dart_noise_rad": self.cfg.action_noise_rad},
            wall_s=time.perf_counter() - start,
        )


class ExecutionNoise:
    """Smooth per-joint noise for DART: an AR(1) process with stationary std ``std_rad``.

    Correlated over ~``1 / (1 - CORRELATION)`` steps, so the arm really drifts off the plan
    (white noise of the same size would mostly average out in the joint controllers).
    """

    CORRELATION = 0.9

    def __init__(self, std_rad: float, joints: int, rng: np.random.Generator) -> None:
        self.std_rad, self.rng = std_rad, rng
        self.value = rng.normal(0.0, std_rad, joints) if std_rad > 0 else np.zeros(joints)

    def apply(self, action: np.ndarray) -> np.ndarray:
        """``action`` with noise on the joint targets; the gripper command is left alone."""
        if self.std_rad <= 0:
            return action
        c = self.CORRELATION
        self.value = c * self.value + self.rng.normal(
            0.0, self.std_rad * np.sqrt(1 - c * c), len(self.value)
        )
        noisy = action.copy()
        noisy[: len(self.value)] += self.value
        return noisy


def _init_worker(cfg: GenerateConfig) -> None:
    global _worker
    _worker = EpisodeWorker(cfg)


def _run_seed(seed: int) -> EpisodeRecord:
    assert _worker is not None
    return _worker.run(seed)


# ---- the parent side -----------------------------------------------------------------------


def _local_results(cfg: GenerateConfig, seeds: Iterator[int]) -> Iterator[EpisodeRecord]:
    if cfg.workers <= 1:
        worker = EpisodeWorker(cfg)
        for seed in seeds:
            yield worker.run(seed)
        return
    # "spawn": a clean interpreter per worker (no forked GL or engine state).
    ctx = mp.get_context("spawn")
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        yield from pool.imap_unordered(_run_seed, seeds, chunksize=1)


def _ray_results(cfg: GenerateConfig, seeds: Iterator[int]) -> Iterator[EpisodeRecord]:
    """Same work on Ray actors: one env per actor, a bounded number of episodes in flight."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("ray.address needs Ray: pip install 'kizuna[ray]'") from exc
    address = None if cfg.ray.address == "local" else cfg.ray.address
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False)
    actor_cls = ray.remote(num_cpus=1)(EpisodeWorker)
    actors = [actor_cls.remote(cfg) for _ in range(cfg.ray.num_workers)]
    in_flight = {}
    for actor in actors:
        for _ in range(2):  # two queued per actor keeps each busy without overcommitting
            seed = next(seeds, None)
            if seed is not None:
                in_flight[actor.run.remote(seed)] = actor
    while in_flight:
        done, _ = ray.wait(list(in_flight), num_returns=1)
        actor = in_flight.pop(done[0])
        yield ray.get(done[0])
        seed = next(seeds, None)
        if seed is not None:
            in_flight[actor.run.remote(seed)] = actor


def _open_writer(cfg: GenerateConfig) -> DatasetWriter:
    root = cfg.out_dir
    if (root / "meta" / "info.json").exists() and not cfg.resume:
        raise FileExistsError(
            f"{root} already holds a dataset; pass resume=true to continue it, or out=<new dir>"
        )
    if cfg.resume and (root / "meta" / "info.json").exists():
        return DatasetWriter.open(root)
    size = (cfg.image_size, cfg.image_size)
    return DatasetWriter(
        root,
        fps=int(load_task(cfg.task).control_hz),
        robot_id=PANDA.robot_id,
        cameras={c: size for c in cfg.cameras},
        state_names=default_state_names(),
        action_names=default_action_names(),
    )


def _next_seed(cfg: GenerateConfig, root: Path) -> int:
    """After a resume, start past every seed the dataset already holds."""
    if not cfg.resume or not (root / "meta" / "info.json").exists():
        return cfg.seed
    reader = DatasetReader(root)
    provenances = (reader.provenance(i) for i in range(reader.num_episodes))
    seeds = [p.seed for p in provenances if p is not None and p.seed is not None]
    return max(seeds, default=cfg.seed - 1) + 1


@dataclass
class GenerateReport:
    kept: int = 0
    attempts: int = 0
    successes: int = 0
    wall_s: float = 0.0
    out: str = ""

    @property
    def expert_success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0


def generate(
    cfg: GenerateConfig, progress: Callable[[GenerateReport], None] | None = None
) -> GenerateReport:
    """Roll out expert episodes until ``cfg.episodes`` are kept; returns what happened."""
    spec = load_task(cfg.task)
    writer = _open_writer(cfg)
    report = GenerateReport(kept=writer.num_episodes, out=str(cfg.out_dir))
    first_seed = _next_seed(cfg, cfg.out_dir)
    max_attempts = int(np.ceil(cfg.episodes * cfg.max_attempts_factor))
    attempts = iter(range(first_seed, first_seed + max_attempts))
    source = _ray_results if cfg.ray.address else _local_results
    start = time.perf_counter()
    results = source(cfg, attempts)
    try:
        for record in results:
            report.attempts += 1
            report.successes += record.success
            if (record.success or cfg.keep_failures) and report.kept < cfg.episodes:
                _write(writer, cfg, spec, record)
                report.kept += 1
            report.wall_s = time.perf_counter() - start
            if progress:
                progress(report)
            if report.kept >= cfg.episodes:
                break
    finally:
        results.close()  # stops the pool (or Ray actors' feed) after an early break
        writer.close()
    if report.kept < cfg.episodes:
        raise RuntimeError(
            f"kept {report.kept} of {cfg.episodes} episodes after {report.attempts} attempts "
            f"(expert success {report.expert_success_rate:.0%}); the dataset in {cfg.out_dir} "
            "is valid: resume=true continues it"
        )
    return report


def _write(
    writer: DatasetWriter, cfg: GenerateConfig, spec: TaskSpec, record: EpisodeRecord
) -> None:
    provenance = Provenance.for_sim(
        spec,
        backend=cfg.backend,
        randomization=record.randomization,
        seed=record.seed,
        robot_id=PANDA.robot_id,
        reality_profile=cfg.reality,
    )
    writer.add_episode(
        record.states,
        record.actions,
        record.images,
        record.instruction,
        provenance,
        record.success,
        rewards=record.rewards,
    )


# ---- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_overrides_argument(
        parser,
        "generate",
        "task=pick_place episodes=200 workers=2 out=data/pp resume=true ray.address=auto",
    )


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kizuna.hydra_config import compose

    try:
        cfg = compose("generate", args.overrides, GenerateConfig)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    where = f"Ray at {cfg.ray.address}" if cfg.ray.address else f"{cfg.workers} worker(s)"
    print(f"generating {cfg.episodes} {cfg.task} episodes into {cfg.out_dir} with {where}")
    bar = tqdm(total=cfg.episodes, unit="ep", dynamic_ncols=True)

    def progress(report: GenerateReport) -> None:
        bar.n = report.kept
        rate = report.kept / report.wall_s if report.wall_s else 0.0
        bar.set_postfix(
            expert_success=f"{report.expert_success_rate:.0%}",
            eps_per_s=f"{rate:.2f}",
            refresh=False,
        )
        bar.refresh()

    try:
        report = generate(cfg, progress)
    except (FileExistsError, RuntimeError) as exc:
        bar.close()
        print(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted: every finished episode is in {cfg.out_dir}; resume=true continues")
        return 130
    bar.close()
    per_min = 60 * report.kept / report.wall_s if report.wall_s else 0.0
    print(
        f"kept {report.kept} episodes in {report.wall_s:.1f} s ({per_min:.0f}/min); "
        f"expert success {report.successes}/{report.attempts} "
        f"({report.expert_success_rate:.1%}); dataset {report.out}"
    )
    return 0
