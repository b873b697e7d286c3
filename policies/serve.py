"""Serve a checkpoint over openpi's websocket policy protocol, for a robot on another machine.

    kizuna serve checkpoint=runs/vla/last host=0.0.0.0 port=8000 device=cuda

Any ``load_policy`` checkpoint. The protocol is openpi's ``WebsocketPolicyServer``'s, so
``policies.remote.RemotePolicy`` and openpi's own ``WebsocketClientPolicy`` both drive it:

- on connect the server sends one binary message, the metadata (``server_metadata``);
- each binary message from the client is an observation (``policies.msgpack_numpy``), kizuna's
  with the instruction as ``prompt`` (see ``policies.remote``); the answer is one binary message
  ``{"actions": float32 [T, D], "policy_timing": {"infer_ms"}, "server_timing": {"infer_ms",
  "prev_total_ms"}}`` (``prev_total_ms``: decode + inference + encode + send of the previous
  request);
- if the policy fails, the traceback is sent as a text message and the connection closed with
  1011 (internal error), as openpi does; ``GET /healthz`` answers ``200 OK``.

kizuna's additions, which openpi clients ignore: the metadata describes the policy (chunk size,
action dim, cameras, image size, action mode, the hash of the checkpoint's config.json), and a
``{"__kizuna_control__": "reset"}`` message re-seeds it (``RemotePolicy.reset``).

**One client at a time, the newest wins.** The server holds one policy object, whose
per-episode state (the VLA's noise generator) belongs to the connected client: it is reset when
a client connects and on the client's reset message. A new connection takes the policy over and
the previous one is closed with code 4001 naming the newcomer (its ``RemotePolicy`` raises
rather than reconnecting), so a robot that comes back after a reboot or a dropped link is
served at once instead of waiting for the dead connection to time out. Policy calls never
overlap. Ctrl-C or SIGTERM closes the connection with 1001 (going away) and exits once the
request in progress is answered.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kizuna import __version__
from kizuna.hydra_config import add_overrides_argument
from policies import msgpack_numpy
from policies.base import Policy, is_remote_uri
from policies.remote import CONTROL_KEY, MAX_MESSAGE_BYTES, REPLACED_CLOSE_CODE

try:
    from websockets.exceptions import ConnectionClosed
    from websockets.frames import CloseCode
    from websockets.http11 import Request, Response
    from websockets.sync.server import Server, ServerConnection, serve
except ImportError as exc:  # an optional extra: say what to install
    raise ImportError(
        "kizuna serve needs websockets: pip install 'kizuna[remote]' (msgpack, websockets)"
    ) from exc

logger = logging.getLogger("kizuna.serve")

PROTOCOL = "openpi-websocket/1"


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``config/hydra/serve.yaml`` (see there for each key)."""

    checkpoint: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "cpu"
    seed: int = 0
    flow_steps: int | None = None
    chunked: bool = False


def server_metadata(policy: Policy, checkpoint: str | Path) -> dict[str, Any]:
    """What a client learns on connect: the policy's shape and what observation it needs."""
    config_path = Path(checkpoint) / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    image_size = getattr(policy, "image_size", config.get("image_size"))
    return {
        "server": "kizuna",
        "protocol": PROTOCOL,
        "kizuna_version": __version__,
        "policy_type": config.get("type"),
        "policy_class": type(policy).__name__,
        "checkpoint": Path(checkpoint).name,
        # The same hash `kizuna eval` reports for a local checkpoint (policies.evaluate).
        "checkpoint_config_hash": (
            hashlib.sha256(config_path.read_bytes()).hexdigest()[:16] if config else None
        ),
        "chunk_size": int(policy.chunk_size),
        "action_dim": int(policy.action_dim),
        "cameras": list(getattr(policy, "cameras", config.get("cameras", ()))),
        "image_size": list(image_size) if image_size is not None else None,
        "action_mode": getattr(policy, "action_mode", "joint"),
        "observation": getattr(policy, "observation", None),
        "layout": getattr(policy, "layout", None),
        "kizuna_control": ["reset"],
    }


def observation_from_wire(message: dict[str, Any]) -> dict[str, Any]:
    """A wire observation (``policies.remote``'s default layout) -> kizuna's (Contract 2)."""
    observation = dict(message)
    prompt = observation.pop("prompt", None)
    if "instruction" not in observation:
        observation["instruction"] = "" if prompt is None else str(prompt)
    return observation


class PolicyServer:
    """One policy behind a websocket server; ``port=0`` picks a free port (see ``port``)."""

    def __init__(
        self, policy: Policy, metadata: dict[str, Any], host: str = "127.0.0.1", port: int = 8000
    ) -> None:
        self.policy = policy
        self.metadata = metadata
        # Held around every policy call: handlers run in threads, the policy is not reentrant.
        self._policy_lock = threading.Lock()
        self._current: ServerConnection | None = None  # the client the policy belongs to
        self._server: Server = serve(
            self._handle,
            host,
            port,
            compression=None,
            max_size=MAX_MESSAGE_BYTES,
            process_request=_health_check,
        )

    @property
    def port(self) -> int:
        return int(self._server.socket.getsockname()[1])

    @property
    def uri(self) -> str:
        host = self._server.socket.getsockname()[0]
        return f"ws://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def shutdown(self) -> None:
        """Stop accepting, close the connection (1001), wait for its handler; idempotent."""
        self._server.shutdown(reason="policy server shutting down")

    def __enter__(self) -> PolicyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---- one connection ------------------------------------------------------------------

    def _handle(self, connection: ServerConnection) -> None:
        client = _name(connection)
        with self._policy_lock:  # take the policy over: a fresh episode for this client
            previous, self._current = self._current, connection
            self.policy.reset()
        if previous is not None:
            logger.warning("client %s replaces %s", client, _name(previous))
            previous.close(REPLACED_CLOSE_CODE, f"replaced by client {client}")
        logger.info("client %s connected", client)
        try:
            connection.send(msgpack_numpy.packb(self.metadata))
            calls = self._serve_client(connection)
        except ConnectionClosed:
            calls = 0
        logger.info("client %s left after %d requests", client, calls)
        with self._policy_lock:
            if self._current is connection:
                self._current = None

    def _serve_client(self, connection: ServerConnection) -> int:
        calls, prev_total_s = 0, None
        while True:
            try:
                message = connection.recv()
                start = time.monotonic()
                with self._policy_lock:
                    if self._current is not connection:
                        return calls  # replaced while this request was on its way
                    try:
                        reply = self._answer(message, prev_total_s)
                    except Exception:
                        self._fail(connection)
                        return calls
                connection.send(msgpack_numpy.packb(reply))
            except ConnectionClosed:
                return calls
            prev_total_s = time.monotonic() - start
            calls += 1

    def _answer(self, message: bytes | str, prev_total_s: float | None) -> dict[str, Any]:
        if isinstance(message, str):
            raise TypeError("text frame received; observations are binary msgpack messages")
        request = msgpack_numpy.unpackb(message)
        if not isinstance(request, dict):
            raise TypeError(f"observation is a {type(request).__name__}, not a map")
        if CONTROL_KEY in request:
            return self._control(request[CONTROL_KEY])
        start = time.monotonic()
        actions = self.policy.act(observation_from_wire(request))
        infer_ms = (time.monotonic() - start) * 1000
        server_timing = {"infer_ms": infer_ms}
        if prev_total_s is not None:
            server_timing["prev_total_ms"] = prev_total_s * 1000
        return {
            "actions": actions,
            "policy_timing": {"infer_ms": infer_ms},
            "server_timing": server_timing,
        }

    def _control(self, command: str) -> dict[str, Any]:
        if command != "reset":
            raise ValueError(f"unknown control message {command!r}; known: ['reset']")
        self.policy.reset()
        return {CONTROL_KEY: command, "ok": True}

    @staticmethod
    def _fail(connection: ServerConnection) -> None:
        """openpi's convention: the traceback as a text frame, then close with 1011."""
        logger.exception("request failed; closing the connection")
        try:
            connection.send(traceback.format_exc())
            connection.close(CloseCode.INTERNAL_ERROR, "policy failed; traceback in last frame")
        except ConnectionClosed:
            pass


def _name(connection: ServerConnection) -> str:
    host, port = connection.remote_address[:2]
    return f"{host}:{port}"


def _health_check(connection: ServerConnection, request: Request) -> Response | None:
    """``GET /healthz`` -> 200 OK (load balancers, readiness probes); else the handshake."""
    if request.path == "/healthz":
        return connection.respond(200, "OK\n")
    return None


# ---- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_overrides_argument(parser, "serve", "checkpoint=runs/vla/last host=0.0.0.0 port=8000")


def load_served_policy(cfg: ServeConfig) -> Policy:
    """The checkpoint of ``cfg`` through ``load_policy``, with the serving options."""
    from policies.base import checkpoint_type, load_policy

    if not cfg.checkpoint:
        raise ValueError("checkpoint=PATH is required (a checkpoint directory)")
    if is_remote_uri(cfg.checkpoint):
        raise ValueError(f"checkpoint={cfg.checkpoint}: serve a checkpoint directory, not a URI")
    options: dict[str, Any] = {"device": cfg.device, "seed": cfg.seed}
    if cfg.flow_steps is not None:
        options["flow_steps"] = cfg.flow_steps
    if cfg.chunked:
        if checkpoint_type(Path(cfg.checkpoint)) != "lerobot":
            raise ValueError("chunked=true is for LeRobot checkpoints (kizuna's answer chunks)")
        options["chunked"] = True
    return load_policy(cfg.checkpoint, **options)


def main(args: argparse.Namespace) -> int:
    from kizuna.hydra_config import compose

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # we log connections ourselves
    try:
        cfg = compose("serve", args.overrides, ServeConfig)
        policy = load_served_policy(cfg)
        metadata = server_metadata(policy, cfg.checkpoint or "")
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}")
        return 2
    try:
        server = PolicyServer(policy, metadata, cfg.host, cfg.port)
    except OSError as exc:  # the port is taken, the address is not this machine's, ...
        print(f"error: cannot listen on {cfg.host}:{cfg.port}: {exc}")
        return 2
    # SIGTERM (systemd, docker stop) like Ctrl-C: close the client cleanly, then exit.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    logger.info(
        "serving %s (%s, chunk %d x %d, cameras %s) on %s; Ctrl-C stops",
        cfg.checkpoint,
        metadata["policy_type"],
        metadata["chunk_size"],
        metadata["action_dim"],
        ",".join(metadata["cameras"]) or "none",
        server.uri,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    logger.info("stopped")
    return 0
