"""Remote policy latency: ``RemotePolicy.act`` round trips to ``kizuna serve`` over loopback.

    .venv/bin/python bench/remote.py [--repeats 200] [--out FILE.json]

Three servers on 127.0.0.1, each in a thread of this process: a policy that returns a constant
chunk (the protocol's own cost: msgpack encoding, websocket framing, one round trip) with two
96×96 and with two 224×224 camera images, and the tiny VLA checkpoint of the tests next to the
same checkpoint called locally. Median and 90th percentile over ``--repeats`` calls, one torch
thread. The machine may be shared: the load average is recorded next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.base import load_policy
from policies.remote import RemotePolicy
from policies.serve import PolicyServer, server_metadata
from policies.vla.testing import make_tiny_checkpoint


class ConstantPolicy:
    chunk_size, action_dim = 10, 8

    def reset(self) -> None:
        pass

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        return np.zeros((10, 8), np.float32)


def observation(size: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "state": rng.normal(0, 0.3, 8).astype(np.float32),
        "images": {c: rng.integers(0, 256, (size, size, 3), np.uint8) for c in ("front", "wrist")},
        "instruction": "touch the red cube",
    }


def timed_ms(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    for _ in range(5):  # warm up
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(times[int(0.9 * len(times))], 3),
    }


def remote_ms(policy: Any, metadata: dict[str, Any], obs: dict[str, Any], repeats: int) -> dict:
    server = PolicyServer(policy, metadata, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with RemotePolicy(server.uri) as remote:
            return timed_ms(lambda: remote.act(obs), repeats)
    finally:
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", default="bench/results/remote.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    constant = {"chunk_size": 10, "action_dim": 8}
    results: dict[str, Any] = {}
    for size in (96, 224):
        obs = observation(size)
        name = f"constant_policy_2x{size}px"
        results[name] = remote_ms(ConstantPolicy(), constant, obs, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_checkpoint(Path(tmp) / "vla")
        policy, obs = load_policy(path), observation(96)
        results["tiny_vla_local_2x96px"] = timed_ms(lambda: policy.act(obs), args.repeats)
        metadata = server_metadata(policy, path)
        results["tiny_vla_remote_2x96px"] = remote_ms(policy, metadata, obs, args.repeats)
    report = {
        "results": results,
        "repeats": args.repeats,
        "transport": "ws://127.0.0.1 (loopback), server in a thread of the same process",
        "cpu_count": os.cpu_count(),
        "load_average_1min": {"before": round(load_before, 2), "after": os.getloadavg()[0]},
    }
    print(json.dumps(report, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
