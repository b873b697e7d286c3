"""Randomization is a pure, seeded function; reality profiles load from any path and shift it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kizuna.task import load_task
from sim.randomization import EpisodeParams, load_randomization, randomize
from sim.reality import apply_reality, load_reality

SPEC = load_task("stack")
CFG = load_randomization("default")


def test_same_seed_same_draw_and_other_seed_differs() -> None:
    a = randomize(SPEC, np.random.default_rng(3), CFG)
    b = randomize(SPEC, np.random.default_rng(3), CFG)
    c = randomize(SPEC, np.random.default_rng(4), CFG)
    assert a == b
    assert a != c


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_draw_stays_inside_the_configured_ranges(seed: int) -> None:
    p = randomize(SPEC, np.random.default_rng(seed), CFG)
    for name in ("red_cube", "blue_cube"):
        assert CFG.mass_scale[0] <= p.physics.mass_scale[name] <= CFG.mass_scale[1]
        assert CFG.friction_scale[0] <= p.physics.friction_scale[name] <= CFG.friction_scale[1]
        assert CFG.size_scale[0] <= p.physics.size_scale[name] <= CFG.size_scale[1]
        assert all(0.0 <= c <= 1.0 for c in p.physics.rgba[name])
    lo, hi = CFG.joint_damping_scale
    assert lo <= p.physics.joint_damping_scale <= hi
    assert all(
        abs(v) <= CFG.camera_pos_jitter_m[1] for v in p.physics.camera_pos_offset_m["front"]
    )
    lat = CFG.action_latency_steps
    assert lat[0] <= p.sensors.action_latency_steps <= lat[1]


def test_randomization_config_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("mass_scale: [1.5, 0.5]\n")
    with pytest.raises(ValueError, match="mass_scale"):
        load_randomization(bad)
    bad.write_text("mass_scael: [0.5, 1.5]\n")
    with pytest.raises(ValueError, match="mass_scael"):
        load_randomization(bad)


def test_shipped_profiles_load_and_grow_harder() -> None:
    easy, medium, hard = (load_reality(n) for n in ("easy", "medium", "hard"))
    assert easy.control_latency_steps <= medium.control_latency_steps <= hard.control_latency_steps
    assert abs(1 - easy.mass_scale) < abs(1 - medium.mass_scale) < abs(1 - hard.mass_scale)
    assert hard.backend == "pybullet"


def test_a_new_profile_is_just_a_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "my_cell.yaml"
    path.write_text(
        yaml.safe_dump({"name": "my_cell", "mass_scale": 2.0, "control_latency_steps": 3})
    )
    profile = load_reality(path)
    shifted = apply_reality(EpisodeParams(), profile, SPEC)
    assert shifted.physics.mass_scale == {"red_cube": 2.0, "blue_cube": 2.0}
    assert shifted.sensors.action_latency_steps == 3


def test_profile_errors_name_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "mass_scale": -1}))
    with pytest.raises(ValueError, match=r"bad.yaml: field 'mass_scale'"):
        load_reality(path)
    path.write_text(yaml.safe_dump({"name": "bad", "joint_offset_rad": [0.1, 0.2]}))
    with pytest.raises(ValueError, match="joint_offset_rad"):
        load_reality(path)
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_reality("nonexistent")


def test_reality_multiplies_on_top_of_randomization() -> None:
    drawn = randomize(SPEC, np.random.default_rng(0), CFG)
    hard = load_reality("hard")
    shifted = apply_reality(drawn, hard, SPEC)
    m = drawn.physics.mass_scale["red_cube"]
    assert shifted.physics.mass_scale["red_cube"] == pytest.approx(m * hard.mass_scale)
    lat = drawn.sensors.action_latency_steps + hard.control_latency_steps
    assert shifted.sensors.action_latency_steps == lat
    assert shifted.sensors.joint_offset_rad == hard.joint_offset_rad
