"""Where an episode came from: kizuna's per-episode extension columns.

Sim and real episodes share one format (Contract 4); these columns say which is which, and
enough to reproduce or audit each one: the backend and randomization draw of a sim episode, or
the robot, calibration and policy of a real one. They live in ``meta/episodes/*.parquet`` next
to LeRobot's own columns, all prefixed ``kizuna/`` so they can never collide with LeRobot's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from kizuna.task import TaskSpec

SOURCES = ("sim", "real")
PREFIX = "kizuna/"
SUCCESS = PREFIX + "success"
INTERVENTION_FRAMES = PREFIX + "intervention_frames"
SHA256_DATA = PREFIX + "sha256/data"


def sha256_video_column(video_key: str) -> str:
    return f"{PREFIX}sha256/videos/{video_key}"


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays in randomization parameters serialize as plain JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(parameters: Mapping[str, Any]) -> str:
    """Canonical JSON (sorted keys): equal parameters give equal strings."""
    return json.dumps(parameters, sort_keys=True, default=_json_default, ensure_ascii=False)


@dataclass(frozen=True)
class Provenance:
    """Per-episode origin. ``source`` is ``"sim"`` or ``"real"``; the rest is free text.

    ``randomization_json`` is a JSON object (the domain-randomization draw of a sim episode,
    ``"{}"`` for a real one); ``reality_profile``, ``calibration_id``, ``policy_version`` and
    ``seed`` may be ``None`` where they do not apply.
    """

    source: Literal["sim", "real"]
    backend: str
    task_name: str
    task_spec_hash: str
    robot_id: str
    randomization_json: str = "{}"
    reality_profile: str | None = None
    calibration_id: str | None = None
    policy_version: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"Provenance.source must be 'sim' or 'real', got {self.source!r}")
        for name in ("backend", "task_name", "task_spec_hash", "robot_id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"Provenance.{name} must be a non-empty string")
        try:
            parsed = json.loads(self.randomization_json)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Provenance.randomization_json is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError("Provenance.randomization_json must be a JSON object ({...})")
        if self.seed is not None and not isinstance(self.seed, int | np.integer):
            raise ValueError(f"Provenance.seed must be an int or None, got {self.seed!r}")

    @property
    def randomization(self) -> dict[str, Any]:
        return json.loads(self.randomization_json)

    @classmethod
    def for_sim(
        cls,
        task: TaskSpec,
        backend: str,
        randomization: Mapping[str, Any],
        seed: int,
        robot_id: str,
        policy_version: str = "scripted-expert",
        reality_profile: str | None = None,
    ) -> Provenance:
        """A simulated episode of ``task``: its name and spec hash come from the spec."""
        return cls(
            source="sim",
            backend=backend,
            task_name=task.name,
            task_spec_hash=task.spec_hash(),
            robot_id=robot_id,
            randomization_json=to_json(randomization),
            reality_profile=reality_profile,
            policy_version=policy_version,
            seed=int(seed),
        )

    def to_columns(self) -> dict[str, Any]:
        return {PREFIX + f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_columns(cls, row: Mapping[str, Any]) -> Provenance:
        return cls(**{f.name: row[PREFIX + f.name] for f in fields(cls)})


_PROVENANCE_TYPES: dict[str, pa.DataType] = {
    f.name: (pa.int64() if f.name == "seed" else pa.string()) for f in fields(Provenance)
}


def kizuna_columns(video_keys: Sequence[str]) -> list[pa.Field]:
    """kizuna's episode-metadata columns: provenance, labels and the file-hash manifest."""
    columns = [
        pa.field(PREFIX + name, type_, nullable=True) for name, type_ in _PROVENANCE_TYPES.items()
    ]
    columns += [
        pa.field(SUCCESS, pa.bool_()),
        pa.field(INTERVENTION_FRAMES, pa.int64()),
        pa.field(SHA256_DATA, pa.string()),
    ]
    columns += [pa.field(sha256_video_column(key), pa.string()) for key in video_keys]
    return columns
