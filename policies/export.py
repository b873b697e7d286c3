"""``kizuna export``: a VLA checkpoint -> an ONNX directory that onnxruntime runs without torch.

```sh
kizuna export runs/vla/last                   # -> runs/vla/<step>-onnx/ (fp32)
kizuna export runs/vla/last --int8            # -> ...-onnx-int8/ (dynamic int8 MatMul/Gemm)
kizuna eval checkpoint=runs/vla/step_020000-onnx task=pick_place   # same Policy interface
```

One graph computes one chunk, exactly as ``VLAPolicy.act`` does after resizing: normalization,
image encoders, trunk, the flow head's Euler steps unrolled (their number fixed at export,
``--flow-steps`` to change it) with the initial noise as an input, unnormalization, relative ->
absolute joints and the gripper clip. So torch and onnxruntime given the same noise must agree;
every export checks that on a random observation and records the difference in config.json.

``--int8`` is onnxruntime's dynamic quantization of the MatMul/Gemm weights (the trunk, the
action expert, the projections: int8 weights, activations quantized per call). Convolutions stay
fp32: dynamic int8 convolutions (ConvInteger) ran about 2x slower than fp32 ones here.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kizuna import __version__
from policies.onnx_policy import (
    ACTIONS_OUTPUT,
    CONFIG_FILE,
    FORMAT_VERSION,
    LANGUAGE_CACHE_FILE,
    LANGUAGE_INPUT,
    MODEL_FILE,
    NOISE_INPUT,
    NORMALIZATION_FILE,
    ONNX_TYPE,
    STATE_INPUT,
    ExportError,
    image_input,
    make_session,
)
from policies.vla.checkpoint import Checkpoint, atomic_directory, load_checkpoint
from policies.vla.model import VLAModel
from policies.vla.normalize import Normalizer, to_absolute
from policies.vla.policy import GRIPPER

# torch vs onnxruntime, same noise, max |difference| of the actions (rad; gripper 0..1).
FP32_TOLERANCE = 1e-4
# int8: in normalized action units (the flow head's [-1, 1] scale); times the action scale
# (normalization.json) gives rad. 0.05 is 2.5 % of a min-max normalized joint's range.
INT8_TOLERANCE_NORMALIZED = 0.05
# Dynamic int8 for these ops only: ConvInteger is slower than fp32 Conv in onnxruntime's CPU EP.
INT8_OPS = ("MatMul", "Gemm")


class ChunkGraph(nn.Module):
    """``VLAPolicy.act`` minus resizing, as one traceable module with explicit noise."""

    def __init__(self, model: VLAModel, normalizer: Normalizer, flow_steps: int) -> None:
        super().__init__()
        self.model = model.eval()
        self.normalizer = normalizer
        self.flow_steps = flow_steps

    def forward(self, *inputs: Tensor) -> Tensor:
        cfg = self.model.cfg
        cameras = len(cfg.cameras)
        images = {
            camera: self.normalizer.normalize_images(camera, pixels)
            for camera, pixels in zip(cfg.cameras, inputs[:cameras], strict=True)
        }
        raw_state, language = inputs[cameras], inputs[cameras + 1]
        state = self.normalizer.state.normalize(raw_state)
        memory = self.model.encode(images, state, language)
        if cfg.head == "flow":
            normalized = euler_sample(self.model, memory, inputs[cameras + 2], self.flow_steps)
        else:
            normalized = self.model.regress(memory)
        actions = self.normalizer.action.unnormalize(normalized)
        if cfg.action_space == "relative":
            actions = to_absolute(actions, raw_state)
        gripper = actions[..., GRIPPER:].clamp(0.0, 1.0)
        return torch.cat([actions[..., :GRIPPER], gripper], dim=-1)


def euler_sample(model: VLAModel, memory: Tensor, noise: Tensor, steps: int) -> Tensor:
    """``VLAModel.sample``'s Euler loop from a given ``noise`` (there drawn from a generator)."""
    x, dt = noise, 1.0 / steps
    for i in range(steps):
        t = torch.full((noise.shape[0],), 1.0 - i * dt, device=noise.device)
        x = x - dt * model.velocity(memory, x, t)
    return x


def input_shapes(checkpoint: Checkpoint) -> dict[str, list[int]]:
    """The graph's inputs (batch 1), in the order ``ChunkGraph.forward`` takes them."""
    cfg = checkpoint.config
    height, width = cfg.image_size
    shapes = {image_input(c): [1, 3, height, width] for c in cfg.cameras}
    shapes[STATE_INPUT] = [1, cfg.state_dim]
    shapes[LANGUAGE_INPUT] = [1, cfg.language_dim]
    if cfg.head == "flow":
        shapes[NOISE_INPUT] = [1, cfg.chunk_size, cfg.action_dim]
    return shapes


def example_inputs(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs: pixels 0..255, unit-normal state, language and noise."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in shapes.items():
        pixels = name.startswith("image_")
        values = rng.uniform(0, 255, shape) if pixels else rng.normal(0, 1, shape)
        feeds[name] = values.astype(np.float32)
    return feeds


def torch_actions(graph: ChunkGraph, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return graph(*(torch.from_numpy(v) for v in feeds.values())).numpy()


def write_onnx(graph: ChunkGraph, shapes: dict[str, list[int]], file: Path) -> None:
    """torch.onnx's (dynamo) exporter, its progress chatter kept off the terminal."""
    args = tuple(torch.from_numpy(v) for v in example_inputs(shapes).values())
    chatter = io.StringIO()
    with quiet_logs(), contextlib.redirect_stdout(chatter), torch.no_grad():
        program = torch.onnx.export(
            graph,
            args,
            input_names=list(shapes),
            output_names=[ACTIONS_OUTPUT],
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        if program is None:
            raise ExportError(f"{file}: torch.onnx.export returned no program")
        program.save(str(file), external_data=False)
    strip_metadata(file)


def strip_metadata(file: Path) -> None:
    """Drop the exporter's per-node stack traces: 60 % of a small model's file, no use here."""
    import onnx

    proto = onnx.load(str(file))
    for node in proto.graph.node:
        del node.metadata_props[:]
    del proto.metadata_props[:]
    onnx.save(proto, str(file))


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization (weights int8, activations per call) of ``INT8_OPS``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_logs():  # its "consider pre-processing" advice
        quantize_dynamic(
            source, target, op_types_to_quantize=list(INT8_OPS), weight_type=QuantType.QInt8
        )


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Warnings and log records below ERROR off while the exporter and quantizer talk."""
    loggers = [logging.getLogger(name) for name in ("", "onnxscript", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def default_out(checkpoint: Path, int8: bool) -> Path:
    """``<checkpoint>-onnx[-int8]`` next to the checkpoint (``last`` resolved to its step)."""
    resolved = checkpoint.resolve()
    return resolved.parent / f"{resolved.name}-onnx{'-int8' if int8 else ''}"


def export_config(
    checkpoint: Checkpoint, shapes: dict[str, list[int]], int8: bool, flow_steps: int
) -> dict[str, Any]:
    cfg, meta = checkpoint.config, checkpoint.meta
    config_file = checkpoint.path / CONFIG_FILE
    return {
        "type": ONNX_TYPE,
        "format_version": FORMAT_VERSION,
        "kizuna_version": __version__,
        "cameras": list(cfg.cameras),
        "image_size": list(cfg.image_size),
        "state_dim": cfg.state_dim,
        "action_dim": cfg.action_dim,
        "chunk_size": cfg.chunk_size,
        "action_space": cfg.action_space,  # of the model; the graph already returns absolute
        "flow_steps": flow_steps,
        "head": cfg.head,
        "precision": "int8-dynamic" if int8 else "fp32",
        "int8_ops": list(INT8_OPS) if int8 else [],
        "inputs": shapes,
        "outputs": {ACTIONS_OUTPUT: [1, cfg.chunk_size, cfg.action_dim]},
        "language": meta["language"],
        "source": {
            "checkpoint": str(checkpoint.path.resolve()),
            "config_sha256": hashlib.sha256(config_file.read_bytes()).hexdigest()[:16],
            "training": meta.get("training", {}),
        },
        "model": meta["model"],
    }


def verify(graph: ChunkGraph, file: Path, shapes: dict[str, list[int]]) -> float:
    """Max |torch - onnxruntime| of the actions on a random input with the same noise."""
    feeds = example_inputs(shapes, seed=1)
    session = make_session(file, threads=1)
    found = session.run([ACTIONS_OUTPUT], feeds)[0]
    return float(np.abs(found - torch_actions(graph, feeds)).max())


def export_onnx(
    checkpoint: str | Path,
    out: str | Path | None = None,
    int8: bool = False,
    flow_steps: int | None = None,
) -> Path:
    """Export ``checkpoint`` into the directory ``out`` (written atomically); returns it."""
    path = Path(checkpoint)
    if not path.is_dir():
        raise ExportError(
            f"{path}: no such checkpoint directory; pass one written by `kizuna train` "
            "(e.g. runs/vla/last)"
        )
    loaded = load_checkpoint(path)
    steps = flow_steps or loaded.config.flow_steps
    graph = ChunkGraph(loaded.model, loaded.normalizer, steps)
    shapes = input_shapes(loaded)
    out = Path(out) if out is not None else default_out(path, int8)
    meta = export_config(loaded, shapes, int8, steps)
    with atomic_directory(out) as tmp, tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / MODEL_FILE
        write_onnx(graph, shapes, fp32)
        if int8:
            quantize_int8(fp32, tmp / MODEL_FILE)
        else:
            shutil.copyfile(fp32, tmp / MODEL_FILE)
        difference = verify(graph, tmp / MODEL_FILE, shapes)
        meta["verification"] = {
            "max_abs_action_diff_vs_torch": difference,
            "tolerance": FP32_TOLERANCE if not int8 else None,
            "tolerance_normalized": INT8_TOLERANCE_NORMALIZED if int8 else None,
            "note": "one random observation, same noise in both",
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        for name in (NORMALIZATION_FILE, LANGUAGE_CACHE_FILE):
            shutil.copyfile(path / name, tmp / name)
    if not int8 and difference > FP32_TOLERANCE:
        warnings.warn(
            f"{out}: onnxruntime differs from torch by {difference:.2e} (> {FP32_TOLERANCE})",
            stacklevel=2,
        )
    return out


# ---- command line ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a kizuna_vla checkpoint directory")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="only onnx for now")
    parser.add_argument("--int8", action="store_true", help="dynamic int8 MatMul/Gemm weights")
    parser.add_argument("--out", type=Path, help="default: <checkpoint>-onnx[-int8] beside it")
    parser.add_argument(
        "--flow-steps", type=int, help="Euler steps baked into the graph (default: checkpoint's)"
    )


def main(args: argparse.Namespace) -> int:
    try:
        out = export_onnx(args.checkpoint, args.out, args.int8, args.flow_steps)
    except (ValueError, ImportError) as exc:  # CheckpointError and ExportError included
        print(f"error: {exc}")
        return 2
    meta = json.loads((out / CONFIG_FILE).read_text())
    size_mb = (out / MODEL_FILE).stat().st_size / 1e6
    difference = meta["verification"]["max_abs_action_diff_vs_torch"]
    print(
        f"exported {args.checkpoint} -> {out} ({meta['precision']}, {size_mb:.2f} MB, "
        f"{meta['flow_steps']} flow steps); max |onnx - torch| on a random input: "
        f"{difference:.2e}"
    )
    return 0
