"""``ONNXPolicy``: an exported VLA (``kizuna export``) behind the ``Policy`` interface, no torch.

```
exported/
├── config.json                  # "type": "kizuna_vla_onnx", cameras, chunk size, flow steps,
│                                #   precision (fp32 | int8), the graph's inputs and their shapes,
│                                #   language encoder + cached instructions, the source checkpoint
├── model.onnx                   # one chunk: images, state, instruction, noise -> actions
├── normalization.json           # the source checkpoint's stats (already inside model.onnx)
└── language_cache.safetensors   # "embeddings" [N, dim], row i = config.json's instructions[i]
```

The graph does everything ``VLAPolicy.act`` does after resizing: image/state normalization, the
trunk, every Euler step of the flow head (with the noise as an input), unnormalization, relative ->
absolute joints, the gripper clip. What stays here is numpy: resizing a camera image that is not
the model's size (the same area/bilinear resampling as ``policies.vla.model.resize_images``), the
instruction embedding lookup, and the noise, drawn from a seeded ``numpy.random.Generator`` that
``reset()`` re-seeds, so an episode replays exactly.

``threads=N`` caps numpy's BLAS at N threads during that preprocessing as well as onnxruntime's
intra-op pool. Without the cap, OpenBLAS sized its pool when numpy was imported (every core);
in a process later pinned to one core its helper threads took the core in turns with the
caller, and a 0.6 ms resize stalled for ~100 ms on ~2 % of calls (bench/edge.py's p99).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from policies.vla.language import InstructionEmbedder

ONNX_TYPE = "kizuna_vla_onnx"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.onnx"
NORMALIZATION_FILE = "normalization.json"
LANGUAGE_CACHE_FILE = "language_cache.safetensors"
STATE_INPUT, LANGUAGE_INPUT, NOISE_INPUT, ACTIONS_OUTPUT = "state", "language", "noise", "actions"


class ExportError(ValueError):
    """An exported policy that cannot be written or loaded; the message names the file."""


def image_input(camera: str) -> str:
    """The graph input of one camera: float32 ``[1, 3, H, W]``, pixel values 0..255."""
    return f"image_{camera}"


# ---- resizing, as torch's interpolate does it (policies.vla.model.resize_images) ------------


@cache
def _resize_matrix(size_in: int, size_out: int, area: bool) -> np.ndarray:
    """``[size_out, size_in]`` weights of one axis: area averaging or bilinear (half-pixel)."""
    matrix = np.zeros((size_out, size_in), np.float32)
    scale = np.float32(size_in / size_out)  # float32 index math, as torch's kernel does it
    for i in range(size_out):
        if area:  # adaptive average pooling's bins
            start, end = (i * size_in) // size_out, -(-((i + 1) * size_in) // size_out)
            matrix[i, start:end] = 1.0 / (end - start)
        else:  # align_corners=False: pixel centres, clamped at the first pixel
            source = max(scale * np.float32(i + 0.5) - np.float32(0.5), np.float32(0.0))
            low = min(int(source), size_in - 1)
            high = min(low + 1, size_in - 1)
            weight = source - low
            matrix[i, low] += 1.0 - weight
            matrix[i, high] += weight
    return matrix


def resize_chw(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 ``[3, H, W]`` -> ``[3, *size]``; area when shrinking both axes, else bilinear."""
    height, width = image.shape[-2:]
    if (height, width) == tuple(size):
        return image
    area = height >= size[0] and width >= size[1]
    rows = _resize_matrix(height, size[0], area)
    cols = _resize_matrix(width, size[1], area)
    # Two matrix products. (A three-operand einsum here ran as one naive loop over all five
    # indices: 0.7 s per 96 -> 80 px image, 90x the model itself.)
    return (rows @ image @ cols.T).astype(np.float32)


# ---- the policy -------------------------------------------------------------------------------


class ONNXPolicy:
    """An exported VLA run by onnxruntime; one chunk per ``act`` call."""

    def __init__(
        self,
        path: Path,
        meta: Mapping[str, Any],
        session: Any,
        seed: int = 0,
        threads: int | None = None,
    ) -> None:
        self.path = path
        self.threads = threads
        self.meta = dict(meta)
        self.session = session
        self.cameras: tuple[str, ...] = tuple(meta["cameras"])
        self.model_image_size = (int(meta["image_size"][0]), int(meta["image_size"][1]))
        self.state_dim = int(meta["state_dim"])
        self.chunk_size = int(meta["chunk_size"])
        self.action_dim = int(meta["action_dim"])
        self.flow_steps = int(meta["flow_steps"])
        self.uses_noise = meta["head"] == "flow"
        self.embedder = _read_embedder(path, meta)
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Re-seed the flow noise: the same observations give the same chunks again."""
        self.rng = np.random.default_rng(self.seed)

    def inputs(self, observation: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The graph's feeds for this observation (the noise included, drawn here)."""
        images = observation.get("images") or {}
        absent = [c for c in self.cameras if c not in images]
        if absent:
            raise KeyError(
                f"observation has no image from camera(s) {absent}; this policy needs "
                f"{list(self.cameras)} (it has {sorted(images)})"
            )
        feeds = {}
        for camera in self.cameras:
            chw = np.asarray(images[camera], np.uint8).transpose(2, 0, 1).astype(np.float32)
            # Real cameras may not match the training size: resize rather than refuse.
            feeds[image_input(camera)] = resize_chw(chw, self.model_image_size)[None]
        state = np.array(observation["state"], np.float32)
        if state.shape != (self.state_dim,):
            raise ValueError(f"observation['state'] has shape {state.shape}, want [8]")
        feeds[STATE_INPUT] = state[None]
        feeds[LANGUAGE_INPUT] = self._embed(str(observation.get("instruction", "")))[None]
        if self.uses_noise:
            shape = (1, self.chunk_size, self.action_dim)
            feeds[NOISE_INPUT] = self.rng.standard_normal(shape, dtype=np.float32)
        return feeds

    def _embed(self, instruction: str) -> np.ndarray:
        try:
            return self.embedder.embed(instruction).astype(np.float32)
        except ImportError as exc:
            known = "; ".join(sorted(self.embedder.cache)) or "none"
            raise ImportError(
                f"{exc}. Instructions this export knows without the encoder: {known}"
            ) from None

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """One action chunk ``[chunk_size, action_dim]`` float32 for this observation."""
        with blas_threads(self.threads):
            feeds = self.inputs(observation)
        actions = self.session.run([ACTIONS_OUTPUT], feeds)[0]
        return np.asarray(actions[0], np.float32)


@cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finds the loaded BLAS libraries once (a few ms)


@contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """numpy's BLAS limited to ``threads`` inside the block (~15 us); ``None``: untouched."""
    if threads is None:
        yield
        return
    try:
        controller = _blas_controller()
    except ImportError as exc:
        raise ImportError(
            f"threads={threads} needs threadpoolctl to cap numpy's BLAS: "
            f"pip install 'kizuna[vla]' ({exc})"
        ) from None
    with controller.limit(limits=threads, user_api="blas"):
        yield


# ---- loading ----------------------------------------------------------------------------------


def read_export_config(path: Path) -> dict[str, Any]:
    file = path / CONFIG_FILE
    if not file.is_file():
        raise ExportError(f"{file}: missing; is {path} a directory written by `kizuna export`?")
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ExportError(f"{file}: not valid JSON ({exc})") from None
    if meta.get("type") != ONNX_TYPE or meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{file}: type {meta.get('type')!r} format {meta.get('format_version')!r}; this "
            f"kizuna reads {ONNX_TYPE!r} format {FORMAT_VERSION}: re-run `kizuna export`"
        )
    return meta


def _read_embedder(path: Path, meta: Mapping[str, Any]) -> InstructionEmbedder:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    language, file = meta["language"], path / LANGUAGE_CACHE_FILE
    try:
        embeddings = load_file(str(file)).get("embeddings")
    except (SafetensorError, OSError) as exc:
        raise ExportError(f"{file}: unreadable ({exc}); re-run `kizuna export`") from None
    instructions = list(language["instructions"])
    if embeddings is None or embeddings.shape != (len(instructions), language["dim"]):
        raise ExportError(
            f"{file}: 'embeddings' does not hold {len(instructions)} x {language['dim']} "
            "vectors as config.json says; re-run `kizuna export`"
        )
    cache = dict(zip(instructions, embeddings.astype(np.float32), strict=True))
    return InstructionEmbedder(language["encoder"], int(language["dim"]), cache)


def make_session(file: Path, threads: int | None = None, device: str = "cpu") -> Any:
    """An onnxruntime session; ``threads`` sets intra-op threads (None: onnxruntime's default)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(
            f"running {file} needs onnxruntime: pip install 'kizuna[vla]' ({exc})"
        ) from None
    providers = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider"]}
    wanted = providers.get(device.split(":")[0])
    if wanted is None or wanted[0] not in ort.get_available_providers():
        raise ValueError(
            f"{file}: device {device!r} has no onnxruntime provider here (available: "
            f"{ort.get_available_providers()}); use device=cpu"
        )
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1  # one graph at a time: no parallel branches worth a thread
    options.log_severity_level = 3  # errors only: not its notes on nodes it cannot pre-fold
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(file), options, providers=wanted)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own (non-public) classes
        raise ExportError(f"{file}: onnxruntime cannot load it ({exc})") from None


def check_session(session: Any, meta: Mapping[str, Any], file: Path) -> None:
    """The graph's inputs and output must be the ones config.json describes."""
    found = {i.name: list(i.shape) for i in session.get_inputs()}
    wanted = {name: list(shape) for name, shape in meta["inputs"].items()}
    outputs = [o.name for o in session.get_outputs()]
    if found != wanted or ACTIONS_OUTPUT not in outputs:
        raise ExportError(
            f"{file}: inputs {found} (outputs {outputs}) do not match config.json's inputs "
            f"{wanted} and output {ACTIONS_OUTPUT!r}; export again into an empty directory"
        )


def load_onnx_policy(
    path: str | Path,
    device: str = "cpu",
    flow_steps: int | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> ONNXPolicy:
    """The ``kizuna_vla_onnx`` loader that ``policies.base.load_policy`` dispatches to."""
    path = Path(path)
    meta = read_export_config(path)
    if flow_steps is not None and flow_steps != meta["flow_steps"]:
        raise ValueError(
            f"{path}: exported with {meta['flow_steps']} flow steps (fixed in the graph); "
            f"export again with `kizuna export CHECKPOINT --flow-steps {flow_steps}`"
        )
    file = path / MODEL_FILE
    if not file.is_file():
        raise ExportError(f"{file}: missing; export again with `kizuna export CHECKPOINT`")
    session = make_session(file, threads, device)
    check_session(session, meta, file)
    return ONNXPolicy(path, meta, session, seed, threads)
