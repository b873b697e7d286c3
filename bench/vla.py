"""VLA speed: inference latency per action chunk, and training steps per second.

    .venv/bin/python bench/vla.py [--repeats 50] [--train-steps 10] [--out FILE.json]

Inference: the default model (two 96×96 cameras, d_model 128) through ``VLAPolicy.act`` from a
saved checkpoint, one thread, ``torch.inference_mode``; median and 90th percentile over
``--repeats`` chunks, for the flow head (10 and 5 Euler steps) and the L1 head. Training: the
default model at batch 64 on 96×96 images (in-memory random frames, augmentation on), with 1
and 2 threads. The machine is shared: the load average is recorded next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from policies.vla.checkpoint import save_checkpoint
from policies.vla.config import AugmentConfig, ModelConfig
from policies.vla.data import Source, TrainingData
from policies.vla.language import InstructionEmbedder
from policies.vla.model import VLAModel, count_parameters
from policies.vla.normalize import identity_normalizer
from policies.vla.policy import load_vla_policy

BUDGET_MS = 20.0


def observation(rng: np.random.Generator) -> dict:
    return {
        "state": rng.normal(0, 0.3, 8).astype(np.float32),
        "images": {c: rng.integers(0, 256, (96, 96, 3), np.uint8) for c in ("front", "wrist")},
        "instruction": "put the red cube in the bin",
    }


def inference_ms(head: str, flow_steps: int, repeats: int) -> dict[str, float]:
    torch.set_num_threads(1)
    cfg = ModelConfig(head=head, flow_steps=flow_steps)
    embedder = InstructionEmbedder("hash", cfg.language_dim)
    embedder.cache["put the red cube in the bin"] = np.ones(cfg.language_dim, np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        model = VLAModel(cfg)
        path = save_checkpoint(
            Path(tmp) / "ckpt", model, identity_normalizer(cfg.cameras), embedder
        )
        policy = load_vla_policy(path)
    rng = np.random.default_rng(0)
    for _ in range(5):  # warm-up: allocator and kernels
        policy.act(observation(rng))
    times = []
    for _ in range(repeats):
        obs = observation(rng)
        start = time.perf_counter()
        policy.act(obs)
        times.append(1000 * (time.perf_counter() - start))
    return {
        "median_ms": round(statistics.median(times), 2),
        "p90_ms": round(float(np.percentile(times, 90)), 2),
        "parameters": count_parameters(model),
    }


def training_steps_per_s(threads: int, steps: int, batch_size: int = 64) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = ModelConfig()
    frames = 2000
    rng = np.random.default_rng(0)
    source = Source(
        root=Path("random"),
        states=rng.normal(size=(frames, 8)).astype(np.float32),
        actions=rng.normal(size=(frames, 8)).astype(np.float32),
        images={c: rng.integers(0, 256, (frames, 96, 96, 3), np.uint8) for c in cfg.cameras},
        episode_end=np.repeat(np.arange(100, frames + 1, 100), 100),
        instructions=["put the red cube in the bin"] * frames,
    )
    language = {"put the red cube in the bin": np.ones(cfg.language_dim, np.float32)}
    data = TrainingData([source], [1.0], language, identity_normalizer(cfg.cameras), 10)
    model = VLAModel(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        batch = data.sample(batch_size, generator, AugmentConfig())
        loss = model.loss(
            batch.images, batch.state, batch.language, batch.actions, batch.action_mask, generator
        )["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--out", default="bench/results/vla.json")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    inference = {
        "flow_10_steps": inference_ms("flow", 10, args.repeats),
        "flow_5_steps": inference_ms("flow", 5, args.repeats),
        "l1": inference_ms("l1", 10, args.repeats),
    }
    for name, r in inference.items():
        print(f"act() {name:<14} median {r['median_ms']:6.2f} ms  p90 {r['p90_ms']:6.2f} ms")
    training = {}
    for threads in (1, 2):
        rate = training_steps_per_s(threads, args.train_steps)
        training[f"{threads}_threads"] = round(rate, 3)
        print(f"train batch 64, 2×96 px, {threads} thread(s): {rate:.2f} steps/s")
    report = {
        "inference_one_thread": inference,
        "inference_budget_ms": BUDGET_MS,
        "training_steps_per_s_batch64_96px": training,
        "load_average_1min": {"before": round(load_before, 2), "after": os.getloadavg()[0]},
        "cpu_count": os.cpu_count(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
