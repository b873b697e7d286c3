"""Task specs: shipped ones load; bad ones are refused naming file, field and expectation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kizuna.task import TaskSpecError, load_task, parse_task, shipped_tasks

SHIPPED = ["insert", "pick_place", "push", "reach", "stack"]


def _pick_place() -> dict:
    return yaml.safe_load((Path(__file__).parents[2] / "config/tasks/pick_place.yaml").read_text())


def test_the_five_shipped_tasks_load() -> None:
    assert set(SHIPPED) <= set(shipped_tasks())
    for name in SHIPPED:
        spec = load_task(name)
        assert spec.name == name
        assert len(spec.instructions["en"]) >= 3, "several phrasings per task"
        assert spec.instructions.get("ja"), "Japanese phrasings for the factories"


def test_insert_hole_has_at_most_2mm_clearance() -> None:
    spec = load_task("insert")
    peg, hole = spec.object("peg"), spec.fixture("hole")
    clearance_m = [hole.size_m[k] - peg.size_m[k] for k in (0, 1)]
    assert all(0.0 < c <= 0.002 + 1e-9 for c in clearance_m)


def test_a_task_loads_from_any_path(tmp_path: Path) -> None:
    data = _pick_place()
    data["name"] = "my_cell"
    path = tmp_path / "my_cell.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_task(path).name == "my_cell"


def test_spec_hash_ignores_formatting_but_not_content(tmp_path: Path) -> None:
    data = _pick_place()
    a = parse_task(data)
    b = parse_task(yaml.safe_load(yaml.safe_dump(data, sort_keys=True)))
    assert a.spec_hash() == b.spec_hash()
    data["objects"][0]["mass_kg"] = 0.2
    assert parse_task(data).spec_hash() != a.spec_hash()


def _refused(data: dict, *expected: str) -> str:
    with pytest.raises(TaskSpecError) as err:
        parse_task(data, "cell.yaml")
    message = str(err.value)
    assert message.startswith("cell.yaml: field '")
    for fragment in expected:
        assert fragment in message, message
    return message


def test_unknown_field_is_named() -> None:
    data = _pick_place()
    data["objects"][0]["colr"] = "red"
    _refused(data, "objects[0].colr", "unknown field")


def test_wrong_type_is_named() -> None:
    data = _pick_place()
    data["episode_steps"] = "long"
    _refused(data, "episode_steps", "integer")


def test_impossible_range_is_named() -> None:
    data = _pick_place()
    data["objects"][0]["pose"]["x_m"] = [0.6, 0.4]
    _refused(data, "objects[0].pose.x_m", "low > high")


def test_unreachable_range_is_named() -> None:
    data = _pick_place()
    data["objects"][0]["pose"]["x_m"] = [0.4, 1.5]
    _refused(data, "objects[0].pose", "reaches")


def test_unknown_object_in_predicate_is_named() -> None:
    data = _pick_place()
    data["success"][0]["object"] = "sphere"
    _refused(data, "success[0].object", "'sphere'", "cube")


def test_unknown_shape_and_colour_are_named() -> None:
    data = _pick_place()
    data["objects"][0]["shape"] = "cone"
    _refused(data, "objects[0].shape", "box")
    data = _pick_place()
    data["objects"][0]["color"] = "mauve"
    _refused(data, "objects[0].color", "unknown colour")


def test_predicate_target_of_the_wrong_kind_is_refused() -> None:
    data = _pick_place()
    data["success"][0]["kind"] = "inserted"
    _refused(data, "needs a target of kind")


def test_bad_yaml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(TaskSpecError, match="broken.yaml: not valid YAML"):
        load_task(bad)
    with pytest.raises(TaskSpecError, match="no such task file"):
        load_task(tmp_path / "absent.yaml")
    with pytest.raises(TaskSpecError, match="unknown task 'nope'"):
        load_task("nope")


def test_steps_supply_predicates() -> None:
    data = _pick_place()
    predicate = data.pop("success")[0]
    data["steps"] = [{"order": 1, "text": "put the cube in the bin", "predicate": predicate}]
    assert [p.kind for p in parse_task(data).predicates] == ["in_zone"]


# Any mutation of a valid spec either validates or raises TaskSpecError naming the source:
# never a crash of another kind, never a half-built spec.
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.floats(-2, 2), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


_BASE = _pick_place()
_PATHS = _paths(_BASE)


@settings(max_examples=150, deadline=None)
@given(path=st.sampled_from(_PATHS), value=_values)
def test_mutated_specs_validate_or_are_refused_cleanly(path: tuple, value: object) -> None:
    data = copy.deepcopy(_BASE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    try:
        spec = parse_task(data, "fuzz.yaml")
    except TaskSpecError as exc:
        assert str(exc).startswith("fuzz.yaml: ")
    else:
        assert spec.predicates, "a valid spec always has success checks"
