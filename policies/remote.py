"""``RemotePolicy``: a policy served over openpi's websocket protocol, behind ``Policy``.

Heavy models run on a GPU machine (``kizuna serve``, or an openpi ``serve_policy.py``); the cell
computer holds only this client. ``load_policy("ws://gpu-box:8000")`` returns one; so does a
directory whose ``config.json`` is ``{"type": "remote", "uri": "ws://...", ...}`` (the other
settings of ``RemotePolicy`` may sit next to ``uri``), which is how ``kizuna eval`` and
``kizuna deploy`` reach an openpi server that needs a key mapping.

What goes over the wire (``policies.msgpack_numpy``, the protocol of ``policies.serve``): on
connect the server sends its metadata; each ``act`` sends one observation and reads one reply
holding ``"actions"`` ``[T, D]``. The observation, by default (``keys=None``), is kizuna's own
with the instruction renamed as openpi names it::

    {"state": float32 [8], "images": {camera: uint8 [H, W, 3]}, "prompt": str, ...}

(any other observation entry, e.g. ``privileged_state``, is sent under its own name). An openpi
model that expects other keys is driven with ``keys``: a ``{wire key: source}`` mapping or the
name of a preset in ``KEY_PRESETS``. A source is ``state``, ``state[a:b]`` (a slice),
``images.<camera>``, ``instruction`` or any other observation key. The mapping renames inputs
only: the model must still answer with kizuna's action (absolute joint targets in rad + gripper
0..1, Contract 3), which a LIBERO or DROID checkpoint as released does not.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from policies import msgpack_numpy
from policies.base import is_remote_uri

try:
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
    from websockets.sync.client import ClientConnection, connect
except ImportError as exc:  # an optional extra: say what to install
    raise ImportError(
        "policies.remote needs websockets: pip install 'kizuna[remote]' (msgpack, websockets)"
    ) from exc

ACTION_DIM = 8  # Contract 3, when a server does not say
MAX_MESSAGE_BYTES = 64 * 2**20  # a few camera frames are < 1 MiB; refuse runaway messages
# kizuna's additions to the protocol (policies/serve.py), used only with a server that says so.
CONTROL_KEY = "__kizuna_control__"
RESET = {CONTROL_KEY: "reset"}
REPLACED_CLOSE_CODE = 4001  # `kizuna serve` gave the policy to a newer client

# openpi's example clients, as {wire key: kizuna source}. They name the keys only: the state and
# action spaces of those models are not kizuna's (see the module docstring).
KEY_PRESETS: dict[str, dict[str, str]] = {
    "libero": {  # openpi pi0/pi05 LIBERO examples
        "observation/image": "images.front",
        "observation/wrist_image": "images.wrist",
        "observation/state": "state",
        "prompt": "instruction",
    },
    "droid": {  # openpi pi0/pi05 DROID examples
        "observation/exterior_image_1_left": "images.front",
        "observation/wrist_image_left": "images.wrist",
        "observation/joint_position": "state[0:7]",
        "observation/gripper_position": "state[7:8]",
        "prompt": "instruction",
    },
}

_SOURCE = re.compile(
    r"^(?P<key>[A-Za-z_]\w*)"  # an observation key: state, images, instruction, ...
    r"(?:\.(?P<camera>\w+))?"  # images.<camera>
    r"(?:\[(?P<a>\d*):(?P<b>\d*)\])?$"  # a slice: state[0:7]
)
# What a `kizuna serve` metadata may tell about the policy; set on RemotePolicy when present,
# so `kizuna eval` builds the env the served policy needs.
_DECLARED = ("cameras", "image_size", "action_mode", "observation", "layout")


def resolve_keys(keys: Mapping[str, str] | str | None) -> dict[str, str] | None:
    """A preset name or a mapping -> a checked ``{wire key: source}`` (``None``: kizuna's)."""
    if keys is None:
        return None
    if isinstance(keys, str):
        if keys not in KEY_PRESETS:
            raise ValueError(f"keys={keys!r}: no such preset; presets: {sorted(KEY_PRESETS)}")
        return dict(KEY_PRESETS[keys])
    bad = [f"{wire}: {source!r}" for wire, source in keys.items() if not _SOURCE.match(source)]
    if bad:
        raise ValueError(
            f"keys: cannot read source(s) {bad}; a source is state, state[a:b], "
            "images.<camera>, instruction or another observation key"
        )
    return {str(wire): str(source) for wire, source in keys.items()}


def kizuna_wire(observation: Mapping[str, Any]) -> dict[str, Any]:
    """The default wire observation: kizuna's, with ``instruction`` sent as ``prompt``."""
    wire: dict[str, Any] = {
        key: value for key, value in observation.items() if key not in ("images", "instruction")
    }
    wire["state"] = np.asarray(observation["state"], dtype=np.float32)
    wire["images"] = {
        str(camera): np.ascontiguousarray(pixels)
        for camera, pixels in (observation.get("images") or {}).items()
    }
    wire["prompt"] = str(observation.get("instruction", ""))
    return wire


def mapped_wire(observation: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """The wire observation of a key mapping (``resolve_keys``)."""
    return {wire: _read_source(observation, source) for wire, source in keys.items()}


def _read_source(observation: Mapping[str, Any], source: str) -> Any:
    match = _SOURCE.match(source)
    assert match is not None  # resolve_keys checked every source
    key, camera = match["key"], match["camera"]
    if key == "instruction":
        return str(observation.get("instruction", ""))
    try:
        value = observation[key][camera] if camera else observation[key]
    except (KeyError, TypeError):
        have = sorted(observation.get("images") or {}) if key == "images" else sorted(observation)
        raise KeyError(
            f"keys: source {source!r} is not in the observation (it has {have})"
        ) from None
    value = np.asarray(value, dtype=np.float32) if key == "state" else np.asarray(value)
    if match["a"] is not None:
        value = value[int(match["a"] or 0) : int(match["b"]) if match["b"] else None]
    return np.ascontiguousarray(value)


class RemotePolicy:
    """A policy on a websocket policy server (``kizuna serve`` or openpi's).

    ``chunk_size`` and ``action_dim`` come from the server's metadata (``kizuna serve`` sends
    both); pass them for a server that does not (openpi's metadata is model-specific):
    ``chunk_size`` rows of each reply are returned, the rest dropped, like openpi's
    ``replan_steps``. ``timeout_s`` bounds each ``act`` (raise it for a server whose first call
    compiles the model); ``connect_timeout_s`` bounds opening the connection.
    """

    def __init__(
        self,
        uri: str,
        keys: Mapping[str, str] | str | None = None,
        chunk_size: int | None = None,
        action_dim: int | None = None,
        action_key: str = "actions",
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if not is_remote_uri(uri):
            raise ValueError(f"{uri!r}: a policy server address is ws://host:port (or wss://)")
        self.uri = uri
        self.keys = resolve_keys(keys)
        self.action_key = action_key
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._connection: ClientConnection | None = None
        self.metadata: dict[str, Any] = {}
        self._connect()
        try:
            self.chunk_size = self._declared_int("chunk_size", chunk_size, None)
            self.action_dim = self._declared_int("action_dim", action_dim, ACTION_DIM)
        except ValueError:
            self.close()
            raise
        self.checkpoint_config_hash = self.metadata.get("checkpoint_config_hash")
        for name in _DECLARED:
            if self.metadata.get(name) is not None:
                setattr(self, name, _declared_value(name, self.metadata[name]))
        #: Round trip and the server's own timings of the last ``act``, in ms.
        self.last_timing: dict[str, Any] = {}

    # ---- Policy ------------------------------------------------------------------------

    def reset(self) -> None:
        """A new episode: ``kizuna serve`` re-seeds the served policy; openpi's server has no
        per-episode state to forget (openpi's own client does nothing here either)."""
        if "reset" in self.metadata.get("kizuna_control", ()):
            self._request(msgpack_numpy.packb(RESET))

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """Send ``observation``; the reply's first ``chunk_size`` rows, float32."""
        if self.keys is None:
            wire = kizuna_wire(observation)
        else:
            wire = mapped_wire(observation, self.keys)
        start = time.perf_counter()
        reply = self._request(msgpack_numpy.packb(wire))
        round_trip_ms = (time.perf_counter() - start) * 1000
        self.last_timing = {
            "round_trip_ms": round_trip_ms,
            **{k: v for k, v in reply.items() if k.endswith("_timing")},
        }
        return self._chunk(reply)

    def close(self) -> None:
        """Close the connection (``act`` opens a new one if called again)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> RemotePolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the connection ------------------------------------------------------------------

    def _connect(self) -> ClientConnection:
        """Open the connection and read the metadata; errors name the URI and what to check."""
        try:
            # Entered by hand: this object owns the connection's lifetime (close()), which
            # websockets >= 17 asks to be said so; older versions accept it as well.
            connection = connect(
                self.uri,
                compression=None,  # camera frames do not deflate well; openpi turns it off too
                max_size=MAX_MESSAGE_BYTES,
                open_timeout=self.connect_timeout_s,
                proxy=None,  # a robot cell talks to its GPU box directly
            ).__enter__()
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise ConnectionError(self._unreachable(exc)) from None
        try:
            metadata = msgpack_numpy.unpackb(connection.recv(timeout=self.connect_timeout_s))
        except ConnectionClosed as exc:  # e.g. replaced at once by a newer client
            reason = exc.rcvd.reason if exc.rcvd else "no reason given"
            raise ConnectionError(
                f"policy server at {self.uri} closed the connection: {reason}"
            ) from None
        except TimeoutError:
            connection.close()
            raise ConnectionError(
                f"{self.uri} accepted the connection but sent no metadata within "
                f"{self.connect_timeout_s} s: is it a policy server (kizuna serve / openpi)?"
            ) from None
        self.metadata = metadata if isinstance(metadata, dict) else {}
        self._connection = connection
        return connection

    def _unreachable(self, exc: BaseException) -> str:
        port = urlsplit(self.uri).port or 8000
        return (
            f"cannot reach the policy server at {self.uri} ({type(exc).__name__}: {exc}). "
            f"Is it running? Start one on the model machine with `kizuna serve checkpoint=PATH "
            f"host=0.0.0.0 port={port}` (or openpi's serve_policy.py), and check host, port "
            "and firewall"
        )

    def _request(self, payload: bytes) -> dict[str, Any]:
        """Send one message, read its reply; reconnects once if the server had hung up."""
        for attempt in range(2):
            connection = self._connection or self._connect()
            try:
                connection.send(payload)
                reply = connection.recv(timeout=self.timeout_s)
                break
            except ConnectionClosed as exc:
                self._connection = None
                if exc.rcvd is not None and exc.rcvd.code == REPLACED_CLOSE_CODE:
                    raise ConnectionError(  # reconnecting would take it back: ping-pong
                        f"policy server at {self.uri}: {exc.rcvd.reason}; it serves one client "
                        "at a time, the newest"
                    ) from None
                if attempt:
                    raise ConnectionError(f"policy server at {self.uri} hung up: {exc}") from None
            except TimeoutError:
                self.close()  # a late reply must never be read as the next one
                raise TimeoutError(
                    f"policy server at {self.uri} sent no reply within {self.timeout_s} s "
                    "(timeout_s); the connection was closed, the next act reconnects"
                ) from None
        if isinstance(reply, str):  # openpi's convention: a text frame carries the traceback
            self.close()  # the server closes it too; the next act reconnects
            raise RuntimeError(f"policy server at {self.uri} failed:\n{reply}")
        decoded = msgpack_numpy.unpackb(reply)
        if not isinstance(decoded, dict):
            raise RuntimeError(f"policy server at {self.uri} sent a {type(decoded).__name__}")
        return decoded

    # ---- replies and metadata ----------------------------------------------------------

    def _chunk(self, reply: Mapping[str, Any]) -> np.ndarray:
        if self.action_key not in reply:
            raise RuntimeError(
                f"policy server at {self.uri} replied without {self.action_key!r} "
                f"(keys {sorted(reply)}); pass action_key= to read another"
            )
        actions = np.array(reply[self.action_key], dtype=np.float32)  # a writable copy
        if actions.ndim == 1:
            actions = actions[None]
        rows, width = actions.shape if actions.ndim == 2 else (0, -1)
        if width != self.action_dim or rows < self.chunk_size:
            raise ValueError(
                f"policy server at {self.uri} sent actions of shape {actions.shape}; expected "
                f"[>= {self.chunk_size}, {self.action_dim}] (chunk_size, action_dim)"
            )
        return actions[: self.chunk_size]

    def _declared_int(self, name: str, given: int | None, default: int | None) -> int:
        value = given if given is not None else self.metadata.get(name, default)
        if value is None:
            raise ValueError(
                f"the policy server at {self.uri} does not say its {name} (openpi servers' "
                f"metadata need not): pass {name}=N (e.g. in a remote config.json next to uri)"
            )
        return int(value)


def _declared_value(name: str, value: Any) -> Any:
    if name == "layout":  # [[name, size], ...] as rl_policy lays it out
        return [(str(n), int(size)) for n, size in value]
    return tuple(value) if isinstance(value, list) else value


def load_remote_policy(
    source: str | Path, device: str | None = None, **options: Any
) -> RemotePolicy:
    """``load_policy`` entry for ``ws://`` URIs and ``"type": "remote"`` directories.

    ``device`` is ignored: the model runs where the server put it (``kizuna serve device=``).
    """
    if is_remote_uri(source):
        return RemotePolicy(str(source), **options)
    config = json.loads((Path(source) / "config.json").read_text())
    settings = {k: v for k, v in config.items() if k not in ("type", "uri", "note")}
    if not is_remote_uri(config.get("uri", "")):
        raise ValueError(f'{source}/config.json: a remote policy needs "uri": "ws://host:port"')
    return RemotePolicy(config["uri"], **{**settings, **options})
