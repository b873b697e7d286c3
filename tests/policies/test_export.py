"""ONNX export: torch and onnxruntime agree on the same noise; the export loads as a Policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kizuna.cli import main as cli_main
from policies.base import Policy, load_policy
from policies.export import FP32_TOLERANCE, INT8_TOLERANCE_NORMALIZED, export_onnx
from policies.onnx_policy import NOISE_INPUT, ExportError, ONNXPolicy, resize_chw
from policies.vla.model import resize_images
from policies.vla.policy import VLAPolicy
from policies.vla.testing import make_tiny_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny relative-action checkpoint, exported through the CLI as fp32 and int8."""
    root = tmp_path_factory.mktemp("export")
    checkpoint = make_tiny_checkpoint(root / "ckpt", action_space="relative")
    assert cli_main(["export", str(checkpoint), "--out", str(root / "fp32")]) == 0
    assert cli_main(["export", str(checkpoint), "--int8", "--out", str(root / "int8")]) == 0
    return {"checkpoint": checkpoint, "fp32": root / "fp32", "int8": root / "int8"}


def same_noise_chunks(
    exported: dict[str, Path], variant: str, observation: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """``VLAPolicy.act`` and the ONNX graph, fed the noise the torch policy drew."""
    torch_policy = load_policy(exported["checkpoint"])
    onnx_policy = load_policy(exported[variant], threads=1)
    assert isinstance(torch_policy, VLAPolicy) and isinstance(onnx_policy, ONNXPolicy)
    expected = torch_policy.act(observation)  # noise: the first draw of a generator seeded 0
    noise = torch.randn((1, 10, 8), generator=torch.Generator().manual_seed(0)).numpy()
    feeds = onnx_policy.inputs(observation) | {NOISE_INPUT: noise}
    return expected, onnx_policy.session.run(["actions"], feeds)[0][0]


@pytest.mark.parametrize("size", [(96, 96), (120, 104), (64, 80)])  # as is, area, bilinear
def test_onnx_fp32_matches_torch_given_the_same_noise(
    exported: dict[str, Path], make_observation: Callable[..., dict], size: tuple[int, int]
) -> None:
    observation = make_observation(seed=3)
    rng = np.random.default_rng(0)
    observation["images"] = {
        c: rng.integers(0, 256, (*size, 3), np.uint8) for c in ("front", "wrist")
    }
    expected, found = same_noise_chunks(exported, "fp32", observation)
    assert np.abs(found - expected).max() <= FP32_TOLERANCE  # rad (gripper: 0..1)


def test_onnx_int8_stays_within_its_tolerance(
    exported: dict[str, Path], make_observation: Callable[..., dict]
) -> None:
    scale = np.array(
        json.loads((exported["int8"] / "normalization.json").read_text())["action"]["scale"]
    )
    for seed in range(5):
        expected, found = same_noise_chunks(exported, "int8", make_observation(seed=seed))
        assert (np.abs(found - expected) / scale).max() <= INT8_TOLERANCE_NORMALIZED
    meta = json.loads((exported["int8"] / "config.json").read_text())
    assert meta["precision"] == "int8-dynamic" and meta["int8_ops"] == ["MatMul", "Gemm"]
    assert (exported["int8"] / "model.onnx").stat().st_size < (
        exported["fp32"] / "model.onnx"
    ).stat().st_size


def test_exported_policy_keeps_the_policy_contract(
    exported: dict[str, Path], make_observation: Callable[..., dict]
) -> None:
    policy = load_policy(exported["fp32"])
    assert isinstance(policy, Policy) and policy.cameras == ("front", "wrist")
    observation = make_observation(seed=1)
    first = policy.act(observation)
    assert first.shape == (10, 8) and first.dtype == np.float32
    assert (first[:, -1] >= 0).all() and (first[:, -1] <= 1).all()
    assert not np.array_equal(policy.act(observation), first)  # fresh noise
    policy.reset()
    assert np.array_equal(policy.act(observation), first)  # reset replays the episode
    # An instruction the export has not cached goes through the (installed) hash encoder.
    new = dict(observation, instruction="wave at the camera")
    assert policy.act(new).shape == (10, 8)


def test_resize_matches_torch() -> None:
    rng = np.random.default_rng(0)
    for size_in, size_out in [((120, 104), (96, 96)), ((64, 80), (96, 96)), ((97, 200), (48, 50))]:
        image = rng.uniform(0, 255, (3, *size_in)).astype(np.float32)
        expected = resize_images(torch.from_numpy(image)[None], size_out)[0].numpy()
        # Pixel values 0..255: float32 rounding only (the summation order differs).
        assert np.abs(resize_chw(image, size_out) - expected).max() < 5e-3


def test_threads_caps_numpys_blas_while_preparing_inputs(
    exported: dict[str, Path],
    make_observation: Callable[..., dict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """threads=1 holds OpenBLAS to one thread inside act (a pinned process stalled ~100 ms on
    its helper threads otherwise) and gives the process its own setting back afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import policies.onnx_policy as onnx_policy

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    seen: list[list[int]] = []
    resize = onnx_policy.resize_chw

    def spy(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        seen.append(blas_threads())
        return resize(image, size)

    monkeypatch.setattr(onnx_policy, "resize_chw", spy)
    observation = make_observation(seed=2, size=120)  # resized: BLAS does run
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() and set(blas_threads()) == {2}
        load_policy(exported["fp32"], threads=1).act(observation)
        assert seen and all(set(threads) == {1} for threads in seen)
        assert set(blas_threads()) == {2}  # restored
        seen.clear()
        load_policy(exported["fp32"]).act(observation)  # no threads: numpy left alone
        assert seen and all(set(threads) == {2} for threads in seen)


def test_kizuna_eval_runs_an_export_unchanged(exported: dict[str, Path], tmp_path: Path) -> None:
    overrides = ["task=reach", "episodes=1", "max_steps=12", "videos=0", f"out={tmp_path}"]
    assert cli_main(["eval", f"checkpoint={exported['fp32']}", *overrides]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["policy"] == "ONNXPolicy" and report["episodes"] == 1


def test_errors_name_the_file_and_what_to_do(exported: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such checkpoint directory"):
        export_onnx(tmp_path / "absent")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "normalization.json", "language_cache.safetensors"):
        (broken / name).write_bytes((exported["fp32"] / name).read_bytes())
    with pytest.raises(ExportError, match=r"model\.onnx: missing"):
        load_policy(broken)
    (broken / "model.onnx").write_bytes((exported["fp32"] / "model.onnx").read_bytes())
    meta = json.loads((broken / "config.json").read_text())
    meta["inputs"]["state"] = [1, 9]
    (broken / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="do not match config.json"):
        load_policy(broken)
    with pytest.raises(ValueError, match="--flow-steps 7"):
        load_policy(exported["fp32"], flow_steps=7)
