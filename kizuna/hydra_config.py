"""Hydra at the entry points only: compose ``config/hydra/<name>.yaml`` with ``key=value``
overrides and hand back a typed, frozen dataclass. Library code never sees a DictConfig."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from kizuna.paths import config_dir

T = TypeVar("T")


def compose(name: str, overrides: Sequence[str], schema: type[T]) -> T:
    """Compose a config; unknown keys and wrong types are refused naming the key."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(config_dir() / "hydra"), version_base=None):
            cfg = hydra_compose(name, overrides=list(overrides))
        typed = OmegaConf.structured(schema)
        _make_writable(typed)  # frozen dataclasses come back read-only, node by node
        merged = OmegaConf.merge(typed, cfg)
        return _to_dataclass(schema, OmegaConf.to_container(merged, resolve=True))
    except (HydraException, OmegaConfBaseException) as exc:
        message = str(exc).split("\n")[0]
        if "Could not override" in message:  # Hydra's hint ("use +key=") would add a typo
            keys = ", ".join(f.name for f in dataclasses.fields(schema))  # type: ignore[arg-type]
            message = f"{message.removesuffix('.')}: not a setting; the settings are {keys}"
        key = getattr(exc, "full_key", None) or getattr(exc.__cause__, "full_key", None)
        where = f" field '{key}':" if key else ""
        raise ValueError(f"config/hydra/{name}.yaml:{where} {message}") from None


def _make_writable(node: Any) -> None:
    from omegaconf import DictConfig, OmegaConf

    OmegaConf.set_readonly(node, False)
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            _make_writable(child)


def _to_dataclass(schema: type[T], values: Any) -> T:
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for f in dataclasses.fields(schema):  # type: ignore[arg-type]
        value = values[f.name]
        if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name]):
            value = _to_dataclass(hints[f.name], value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return schema(**kwargs)


def add_overrides_argument(parser: argparse.ArgumentParser, name: str, example: str) -> None:
    """The ``key=value ...`` positional argument of a Hydra-configured subcommand."""
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help=f"e.g. {example} (all keys: config/hydra/{name}.yaml)",
    )
