"""openpi's websocket policy protocol: the msgpack codec, ``kizuna serve`` and ``RemotePolicy``.

The codec is checked against byte fixtures written by hand from openpi's ``msgpack_numpy``
(openpi-client itself pins numpy<2 and is not installed); the client and server end to end on
loopback with a tiny VLA checkpoint on both sides.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pytest.importorskip("msgpack")
pytest.importorskip("websockets")

from kizuna.cli import main as cli_main  # noqa: E402
from policies import msgpack_numpy  # noqa: E402
from policies.base import load_policy  # noqa: E402
from policies.evaluate import checkpoint_hash  # noqa: E402
from policies.remote import RemotePolicy, mapped_wire, resolve_keys  # noqa: E402
from policies.serve import PolicyServer, server_metadata  # noqa: E402
from policies.vla.testing import make_tiny_checkpoint  # noqa: E402

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
MakeObservation = Callable[..., dict[str, Any]]  # the conftest fixture


# ---- the codec ---------------------------------------------------------------------------


def _same(expected: Any, actual: Any) -> None:
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        assert actual.tobytes() == expected.tobytes()  # bit for bit, NaNs included
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected)
        for key in expected:
            _same(expected[key], actual[key])
    elif isinstance(expected, list | tuple):
        assert isinstance(actual, list) and len(actual) == len(expected)
        for e, a in zip(expected, actual, strict=True):
            _same(e, a)
    elif isinstance(expected, str | float):  # np.str_, np.float64: msgpack's own str, float
        assert actual == expected
    else:
        assert type(actual) is type(expected) and actual == expected


# The cases of openpi's own msgpack_numpy_test.py.
@pytest.mark.parametrize(
    "data",
    [
        1,
        1.0,
        "hello",
        np.bool_(True),
        np.array([1, 2, 3])[0],
        np.str_("asdf"),
        [1, 2, 3],
        {"key": "value"},
        {"key": [1, 2, 3]},
        np.array(1.0),
        np.array([1, 2, 3], dtype=np.int32),
        np.array(["asdf", "qwer"]),
        np.array([True, False]),
        np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32),
        np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], dtype=np.int16),
        np.array([np.nan, np.inf, -np.inf]),
        {"arr": np.array([1, 2, 3]), "nested": {"arr": np.array([4, 5, 6])}},
        [np.array([1, 2]), np.array([3, 4])],
        np.zeros((3, 4, 5), dtype=np.float32),
        np.ones((2, 3), dtype=np.float64),
    ],
)
def test_codec_round_trips_openpis_cases(data: Any) -> None:
    _same(data, msgpack_numpy.unpackb(msgpack_numpy.packb(data)))


DTYPES = [
    *("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
    *("float16", "float32", "float64", ">i4", ">f8", "<U5", "S3"),
]


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.dtype(d) for d in DTYPES]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    ),
    st.booleans(),
)
def test_codec_round_trips_any_dtype_and_shape(array: np.ndarray, transposed: bool) -> None:
    if transposed:  # a non-contiguous view travels in C order
        array = array.T
    message = {"actions": array, "meta": {"shape": list(array.shape), "name": "x"}}
    _same(message, msgpack_numpy.unpackb(msgpack_numpy.packb(message)))


@pytest.mark.parametrize("dtype", ["O", "complex64", [("a", "i4"), ("b", "f4")]])
def test_codec_refuses_what_openpi_refuses(dtype: Any) -> None:
    with pytest.raises(ValueError, match="cannot send dtype"):
        msgpack_numpy.packb(np.zeros(2, dtype=dtype))


def _bin(data: bytes) -> bytes:
    assert len(data) < 256
    return b"\xc4" + bytes([len(data)]) + data  # msgpack bin 8


def _str(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 32
    return bytes([0xA0 | len(data)]) + data  # msgpack fixstr


# Byte fixtures built from the msgpack spec and openpi's pack_array: a map of 4 with bytes keys
# __ndarray__ (true), data (bin: C-order bytes), dtype (str: dtype.str), shape (array).
ARRAY_FIXTURE = (
    b"\x84"
    + _bin(b"__ndarray__")
    + b"\xc3"
    + _bin(b"data")
    + _bin(struct.pack("<3i", 1, 2, 3))
    + _bin(b"dtype")
    + _str("<i4")
    + _bin(b"shape")
    + b"\x91\x03"
)
SCALAR_FIXTURE = (  # np.float32(0.5): item() is a Python float, packed as float 64
    b"\x83"
    + _bin(b"__npgeneric__")
    + b"\xc3"
    + _bin(b"data")
    + b"\xcb"
    + struct.pack(">d", 0.5)
    + _bin(b"dtype")
    + _str("<f4")
)


def test_codec_bytes_match_openpis_format() -> None:
    assert msgpack_numpy.packb(np.array([1, 2, 3], np.int32)) == ARRAY_FIXTURE
    assert msgpack_numpy.packb(np.float32(0.5)) == SCALAR_FIXTURE
    reply = {"actions": np.array([1, 2, 3], np.int32), "prompt": "hi"}
    assert msgpack_numpy.packb(reply) == (
        b"\x82" + _str("actions") + ARRAY_FIXTURE + _str("prompt") + _str("hi")
    )


def test_codec_decodes_openpis_bytes() -> None:
    decoded = msgpack_numpy.unpackb(b"\x81" + _str("actions") + ARRAY_FIXTURE)
    _same({"actions": np.array([1, 2, 3], np.int32)}, decoded)
    scalar = msgpack_numpy.unpackb(SCALAR_FIXTURE)
    assert isinstance(scalar, np.float32) and scalar == 0.5
    assert msgpack_numpy.unpackb(b"\x80") == {}  # openpi's default metadata


# ---- key mapping -----------------------------------------------------------------------------


def test_key_presets_and_mappings_build_openpi_observations(
    make_observation: MakeObservation,
) -> None:
    obs = make_observation()
    libero = mapped_wire(obs, resolve_keys("libero") or {})
    assert sorted(libero) == sorted(
        ["observation/image", "observation/wrist_image", "observation/state", "prompt"]
    )
    assert libero["observation/image"].dtype == np.uint8 and libero["prompt"] == obs["instruction"]
    droid = mapped_wire(obs, resolve_keys("droid") or {})
    np.testing.assert_array_equal(droid["observation/joint_position"], obs["state"][:7])
    np.testing.assert_array_equal(droid["observation/gripper_position"], obs["state"][7:])
    with pytest.raises(ValueError, match="presets"):
        resolve_keys("aloha")
    with pytest.raises(ValueError, match="cannot read source"):
        resolve_keys({"observation/state": "state[0:7"})
    with pytest.raises(KeyError, match="images.top"):
        mapped_wire(obs, {"observation/image": "images.top"})


# ---- servers on loopback ---------------------------------------------------------------------


@contextlib.contextmanager
def running(policy: Any, metadata: dict[str, Any]) -> Iterator[PolicyServer]:
    server = PolicyServer(policy, metadata, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("remote") / "vla")


@pytest.fixture(scope="module")
def served(tiny: Path) -> Iterator[PolicyServer]:
    policy = load_policy(tiny)
    with running(policy, server_metadata(policy, tiny)) as server:
        yield server


def test_remote_actions_equal_local_actions(
    tiny: Path, served: PolicyServer, make_observation: MakeObservation
) -> None:
    local = load_policy(tiny)
    with load_policy(served.uri) as remote:
        assert isinstance(remote, RemotePolicy)
        assert (remote.chunk_size, remote.action_dim) == (local.chunk_size, local.action_dim)
        assert remote.cameras == ("front", "wrist") and remote.image_size == (96, 96)
        assert remote.checkpoint_config_hash == checkpoint_hash(tiny)
        for _ in range(2):  # the second pass checks that reset() re-seeds the server's policy
            remote.reset()
            local.reset()
            for seed in range(3):
                chunk = remote.act(make_observation(seed))
                assert chunk.dtype == np.float32 and chunk.shape == (10, 8)
                np.testing.assert_array_equal(chunk, local.act(make_observation(seed)))
        assert remote.last_timing["server_timing"]["infer_ms"] > 0


def test_an_openpi_style_client_is_served(
    served: PolicyServer, make_observation: MakeObservation
) -> None:
    """What openpi's WebsocketClientPolicy does: connect, read metadata, send, receive."""
    from websockets.sync.client import connect

    with connect(served.uri, compression=None, max_size=None) as ws:
        metadata = msgpack_numpy.unpackb(ws.recv())
        assert metadata["chunk_size"] == 10 and metadata["server"] == "kizuna"
        wire = {k: v for k, v in make_observation().items() if k != "instruction"}
        replies = []
        for _ in range(2):
            ws.send(msgpack_numpy.packb({**wire, "prompt": "touch the red cube"}))
            replies.append(msgpack_numpy.unpackb(ws.recv()))
    assert replies[0]["actions"].shape == (10, 8) and replies[0]["actions"].dtype == np.float32
    assert replies[0]["policy_timing"]["infer_ms"] > 0
    assert "prev_total_ms" in replies[1]["server_timing"]


def test_health_check(served: PolicyServer) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/healthz", timeout=5) as reply:
        assert reply.status == 200 and reply.read() == b"OK\n"


def test_a_remote_config_directory_selects_the_client(
    served: PolicyServer, tmp_path: Path, make_observation: MakeObservation
) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"type": "remote", "uri": served.uri, "chunk_size": 4})
    )
    with load_policy(tmp_path) as remote:
        assert isinstance(remote, RemotePolicy) and remote.act(make_observation()).shape == (4, 8)


def test_server_side_errors_come_back_with_the_traceback(
    served: PolicyServer, make_observation: MakeObservation
) -> None:
    with load_policy(served.uri) as remote:
        broken = make_observation()
        del broken["images"]["wrist"]
        with pytest.raises(RuntimeError, match="(?s)failed:.*KeyError.*wrist"):
            remote.act(broken)
        assert remote.act(make_observation()).shape == (10, 8)  # reconnected


def test_the_newest_client_takes_the_policy_over(
    served: PolicyServer, make_observation: MakeObservation
) -> None:
    first = load_policy(served.uri)
    first.act(make_observation())
    with load_policy(served.uri) as second:
        with pytest.raises(ConnectionError, match="replaced by client 127.0.0.1"):
            first.act(make_observation())
        assert second.act(make_observation()).shape == (10, 8)
    first.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_down_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionError, match=f"cannot reach the policy server at {uri}.*serve"):
        load_policy(uri)
    assert cli_main(["eval", f"checkpoint={uri}", "task=reach", "episodes=1"]) == 2
    assert f"cannot reach the policy server at {uri}" in capsys.readouterr().out


class ScriptedPolicy:
    """An openpi-like model: 50-row chunks, records what it was sent, optionally slow."""

    chunk_size, action_dim = 50, 8

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s, self.resets, self.seen = delay_s, 0, []

    def reset(self) -> None:
        self.resets += 1

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        self.seen.append(observation)
        time.sleep(self.delay_s)
        return np.tile(np.arange(50, dtype=np.float32)[:, None], (1, 8))


def test_driving_an_openpi_server_with_a_key_mapping(make_observation: MakeObservation) -> None:
    policy = ScriptedPolicy()
    with running(policy, {}) as server:  # openpi's metadata need not say chunk size
        with pytest.raises(ValueError, match="chunk_size"):
            RemotePolicy(server.uri, keys="droid")
        with RemotePolicy(server.uri, keys="droid", chunk_size=10) as remote:
            remote.reset()  # no kizuna control message for a server that does not offer it
            chunk = remote.act(make_observation())
    np.testing.assert_array_equal(chunk[:, 0], np.arange(10))
    droid_keys = [k for k in resolve_keys("droid") or {} if k != "prompt"]
    assert sorted(policy.seen[0]) == sorted([*droid_keys, "instruction"])
    assert policy.seen[0]["instruction"] == "touch the red cube"  # "prompt" on the wire
    assert policy.resets == 2  # one per connection, none from RemotePolicy.reset


def test_a_slow_server_times_out_naming_the_uri(make_observation: MakeObservation) -> None:
    with running(ScriptedPolicy(delay_s=1.0), {"chunk_size": 10}) as server:
        remote = RemotePolicy(server.uri, timeout_s=0.2)
        with pytest.raises(TimeoutError, match=f"{server.uri} sent no reply within 0.2 s"):
            remote.act(make_observation())


def test_kizuna_eval_through_a_remote_policy(
    tiny: Path, served: PolicyServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", f"checkpoint={served.uri}", "task=reach", "episodes=2", "videos=0"]
    assert cli_main([*args, f"out={tmp_path}"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["episodes"] == 2 and report["checkpoint"] == served.uri
    assert report["checkpoint_config_hash"] == checkpoint_hash(tiny)
    assert report["settings"]["cameras"] == ["front", "wrist"]  # from the server's metadata
    assert all(e["policy_calls"] == -(-e["steps"] // 10) for e in report["per_episode"])
    assert cli_main([*args, "episodes=1", "max_steps=5"]) == 0  # no out=: nothing written
    assert "report not written (pass out=DIR)" in capsys.readouterr().out


def test_kizuna_serve_command_serves_and_stops_on_sigterm(
    tiny: Path, make_observation: MakeObservation
) -> None:
    command = [sys.executable, "-m", "kizuna.cli", "serve", f"checkpoint={tiny}", "port=0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        lines = []
        while not any(" on ws://" in line for line in lines):
            line = process.stderr.readline()
            assert line, f"kizuna serve exited: {''.join(lines)}"
            lines.append(line)
        uri = lines[-1].split(" on ")[-1].split(";")[0]
        with RemotePolicy(uri) as remote:
            assert remote.act(make_observation()).shape == (10, 8)
            process.terminate()  # SIGTERM: close the client, exit 0
            assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
