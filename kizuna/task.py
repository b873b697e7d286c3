"""Task specs: a manipulation task is a YAML file, not Python.

A spec names the objects (primitive shapes with size, mass, friction and colour), where they
start, the fixtures (zones, bins, a peg hole, a reach target), the instruction phrasings, the
success predicates (all must hold) and the episode length. ``load_task`` validates it and refuses
a bad spec with a message naming the file, the field and what was expected.

Frames: the robot base is the origin, x forward, z up; the table top is z = 0. Metres, radians.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kizuna.paths import config_dir

COLORS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.12, 0.12, 1.0),
    "green": (0.15, 0.7, 0.2, 1.0),
    "blue": (0.15, 0.3, 0.85, 1.0),
    "yellow": (0.95, 0.85, 0.15, 1.0),
    "orange": (0.95, 0.5, 0.1, 1.0),
    "purple": (0.55, 0.2, 0.7, 1.0),
    "white": (0.92, 0.92, 0.92, 1.0),
    "black": (0.08, 0.08, 0.08, 1.0),
    "gray": (0.5, 0.5, 0.5, 1.0),
    "brown": (0.55, 0.35, 0.2, 1.0),
}
PREDICATES = ("reach", "in_zone", "lifted", "stacked_on", "inserted")
# Where the arm can place things: a ring around the base on the table (metres).
REACH_MIN_M, REACH_MAX_M = 0.25, 0.75

Range = Annotated[tuple[float, float], Field(description="[low, high]")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if low > high:
        raise ValueError(f"range [{low}, {high}] has low > high; write it as [low, high]")
    return value


class PoseRange(_Strict):
    """Uniform ranges for a start (or fixture) pose on the table."""

    x_m: Range
    y_m: Range
    yaw_rad: Range = (0.0, 0.0)
    z_m: Range = (0.0, 0.0)  # height above the table; used by reach targets

    _ranges = field_validator("x_m", "y_m", "yaw_rad", "z_m")(_check_range)

    @model_validator(mode="after")
    def _reachable(self) -> PoseRange:
        for x in self.x_m:
            for y in self.y_m:
                r = (x * x + y * y) ** 0.5
                if not REACH_MIN_M <= r <= REACH_MAX_M:
                    raise ValueError(
                        f"corner (x={x}, y={y}) is {r:.2f} m from the robot base; the arm reaches "
                        f"{REACH_MIN_M}..{REACH_MAX_M} m, so narrow x_m/y_m"
                    )
        return self


def _check_color(value: str | tuple[float, ...]) -> str | tuple[float, ...]:
    if isinstance(value, str):
        if value not in COLORS:
            raise ValueError(
                f"unknown colour {value!r}; use one of {sorted(COLORS)} or [r, g, b, a]"
            )
    elif len(value) != 4 or not all(0.0 <= c <= 1.0 for c in value):
        raise ValueError("an RGBA colour is four numbers in 0..1")
    return value


class ObjectSpec(_Strict):
    """A movable rigid object. ``size_m``: box [x, y, z]; cylinder [radius, height]; sphere [r]."""

    name: str
    shape: Literal["box", "cylinder", "sphere"]
    size_m: tuple[float, ...]
    mass_kg: float = Field(0.1, gt=0.0, le=5.0)
    friction: float = Field(1.0, gt=0.0, le=5.0)
    color: str | tuple[float, float, float, float] = "red"
    pose: PoseRange

    _color = field_validator("color")(_check_color)

    @model_validator(mode="after")
    def _size_matches_shape(self) -> ObjectSpec:
        arity = {"box": 3, "cylinder": 2, "sphere": 1}[self.shape]
        if len(self.size_m) != arity:
            raise ValueError(
                f"size_m of a {self.shape} has {arity} numbers, got {len(self.size_m)}"
            )
        if not all(0.005 <= s <= 0.3 for s in self.size_m):
            raise ValueError("each size_m entry must be 0.005..0.3 m (graspable by the gripper)")
        return self

    @property
    def rgba(self) -> tuple[float, float, float, float]:
        return COLORS[self.color] if isinstance(self.color, str) else tuple(self.color)  # type: ignore[return-value]

    @property
    def height_m(self) -> float:
        return {"box": self.size_m[-1], "cylinder": self.size_m[-1], "sphere": 2 * self.size_m[0]}[
            self.shape
        ]

    @property
    def footprint_m(self) -> float:
        """Largest horizontal extent (for spacing objects apart)."""
        if self.shape == "box":
            return float(max(self.size_m[0], self.size_m[1]))
        return 2.0 * self.size_m[0]


class FixtureSpec(_Strict):
    """A static part of the cell. ``size_m``: zone [x, y]; bin/hole [x, y, depth]; target [r]."""

    name: str
    kind: Literal["zone", "bin", "hole", "target"]
    size_m: tuple[float, ...]
    wall_m: float = Field(0.01, gt=0.0, le=0.05)  # bin wall / hole block wall thickness
    color: str | tuple[float, float, float, float] = "gray"
    pose: PoseRange

    _color = field_validator("color")(_check_color)

    @model_validator(mode="after")
    def _size_matches_kind(self) -> FixtureSpec:
        arity = {"zone": 2, "bin": 3, "hole": 3, "target": 1}[self.kind]
        if len(self.size_m) != arity:
            raise ValueError(
                f"size_m of a {self.kind} has {arity} numbers, got {len(self.size_m)}"
            )
        if not all(0.005 <= s <= 0.4 for s in self.size_m):
            raise ValueError("each size_m entry must be 0.005..0.4 m")
        return self

    @property
    def rgba(self) -> tuple[float, float, float, float]:
        return COLORS[self.color] if isinstance(self.color, str) else tuple(self.color)  # type: ignore[return-value]


class Predicate(_Strict):
    """One success condition; a task succeeds when all of its predicates hold."""

    kind: Literal["reach", "in_zone", "lifted", "stacked_on", "inserted"]
    object: str | None = None  # the object moved (none for reach: the gripper itself)
    target: str | None = None  # fixture or object name
    tolerance_m: float = Field(0.02, ge=0.0, le=0.2)
    height_m: float = Field(0.08, gt=0.0, le=0.5)  # lifted: how high above the table
    depth_m: float = Field(0.02, gt=0.0, le=0.2)  # inserted: how deep below the hole rim

    @model_validator(mode="after")
    def _arguments(self) -> Predicate:
        needs_object = self.kind != "reach"
        needs_target = self.kind != "lifted"
        if needs_object and not self.object:
            raise ValueError(f"predicate {self.kind} needs 'object'")
        if needs_target and not self.target:
            raise ValueError(f"predicate {self.kind} needs 'target'")
        return self


class Step(_Strict):
    """An ordered step of a structured task description (text plus the check that ends it)."""

    order: int = Field(ge=1)
    text: str
    predicate: Predicate


class TaskSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    episode_steps: int = Field(gt=0, le=2000)
    control_hz: float = Field(20.0, gt=0.0, le=1000.0)
    # Phrasings per language; may be left out when ``steps`` are given (their texts, in order,
    # become the English instruction).
    instructions: dict[str, list[str]] = {}
    objects: list[ObjectSpec] = []
    fixtures: list[FixtureSpec] = []
    success: list[Predicate] = []
    steps: list[Step] = []

    @field_validator("instructions", mode="before")
    @classmethod
    def _plain_list_is_english(cls, value: object) -> object:
        return {"en": value} if isinstance(value, list) else value

    @field_validator("instructions")
    @classmethod
    def _non_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if any(not s.strip() for phrasings in value.values() for s in phrasings):
            raise ValueError("instruction phrasings must not be empty")
        return value

    @model_validator(mode="after")
    def _instruction_from_steps(self) -> TaskSpec:
        orders = [s.order for s in self.steps]
        if len(set(orders)) != len(orders):
            raise ValueError(f"steps: each 'order' must be unique, got {sorted(orders)}")
        if not self.instructions.get("en"):
            if not self.steps:
                raise ValueError(
                    "instructions: give at least one English phrasing under 'en' "
                    "(or ordered 'steps', whose texts become the instruction)"
                )
            texts = [s.text.strip().rstrip(".") for s in self.ordered_steps]
            derived = {**self.instructions, "en": [", then ".join(texts)]}
            object.__setattr__(self, "instructions", derived)
        return self

    @model_validator(mode="after")
    def _cross_references(self) -> TaskSpec:
        names = [o.name for o in self.objects] + [f.name for f in self.fixtures]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"names must be unique across objects and fixtures: {duplicates}")
        if not self.success and not self.steps:
            raise ValueError("a task needs 'success' predicates (or 'steps' with predicates)")
        objects = {o.name for o in self.objects}
        for i, p in enumerate(self.predicates):
            if p.object is not None and p.object not in objects:
                raise ValueError(
                    f"success[{i}].object {p.object!r} is not one of {sorted(objects)}"
                )
            if p.target is not None and p.target not in names:
                raise ValueError(f"success[{i}].target {p.target!r} is not one of {sorted(names)}")
            self._check_predicate_target(i, p)
        return self

    def _check_predicate_target(self, i: int, p: Predicate) -> None:
        wanted = {
            "reach": ("target",),
            "in_zone": ("zone", "bin"),
            "inserted": ("hole",),
            "stacked_on": ("object",),
        }.get(p.kind)
        if wanted is None or p.target is None:
            return
        kind = self.fixture(p.target).kind if p.target in self.fixture_names else "object"
        if kind not in wanted:
            raise ValueError(f"success[{i}] {p.kind} needs a target of kind {wanted}, got {kind}")
        if p.kind == "inserted":
            hole, peg = self.fixture(p.target), self.object(p.object or "")
            if peg.shape != "box" or any(peg.size_m[k] >= hole.size_m[k] for k in (0, 1)):
                raise ValueError(
                    f"success[{i}] the peg {peg.name!r} must be a box narrower than the hole "
                    f"{hole.name!r} opening {list(hole.size_m[:2])}"
                )

    @property
    def ordered_steps(self) -> list[Step]:
        return sorted(self.steps, key=lambda s: s.order)

    @property
    def predicates(self) -> list[Predicate]:
        """The success checks: explicit ones, then those of the ordered steps."""
        return list(self.success) + [s.predicate for s in self.ordered_steps]

    @property
    def fixture_names(self) -> list[str]:
        return [f.name for f in self.fixtures]

    def object(self, name: str) -> ObjectSpec:
        return next(o for o in self.objects if o.name == name)

    def fixture(self, name: str) -> FixtureSpec:
        return next(f for f in self.fixtures if f.name == name)

    def spec_hash(self) -> str:
        """Content hash of the validated spec (stable across formatting and key order)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class TaskSpecError(ValueError):
    """A task spec was refused; the message names the file, the field and what was expected."""


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_task(data: object, source: str = "<task>") -> TaskSpec:
    """Validate an already-parsed YAML mapping."""
    if not isinstance(data, dict):
        raise TaskSpecError(f"{source}: a task spec is a YAML mapping, got {type(data).__name__}")
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = _field_path(tuple(p for p in err["loc"] if not str(p).startswith("function-")))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field; check the spelling against config/tasks/README.md"
            lines.append(f"{source}: field '{field}': {msg}")
        raise TaskSpecError("\n".join(lines)) from None


def shipped_tasks() -> list[str]:
    """Names of the task specs shipped in config/tasks."""
    return sorted(p.stem for p in (config_dir() / "tasks").glob("*.yaml"))


def resolve_task_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise TaskSpecError(f"{path}: no such task file")
        return path
    shipped = config_dir() / "tasks" / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise TaskSpecError(
            f"unknown task {str(name_or_path)!r}: not a .yaml path and not one of "
            f"{shipped_tasks()}"
        )
    return shipped


def load_task(name_or_path: str | Path) -> TaskSpec:
    """Load a shipped task by name (``pick_place``) or any task YAML by path."""
    path = resolve_task_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaskSpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_task(data, str(path))
