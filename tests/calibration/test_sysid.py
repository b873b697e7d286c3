"""System identification from real MCAP bags recorded in the sim under the `medium` profile."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calibration import cli
from calibration.bagio import _typestore, deserialize, read_bag, write_bag
from calibration.intrinsics import CalibrationError
from calibration.synthetic import excitation, record_in_sim
from calibration.sysid import trajectory_from_recording
from sim.randomization import load_randomization
from sim.reality import load_reality


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    return [
        str(write_bag(root / f"bag{i}", record_in_sim(excitation(40, seed=i), "medium", seed=i)))
        for i in range(4)
    ]


def test_dynamics_recovers_the_medium_profile(bags, tmp_path, capsys) -> None:
    out = tmp_path / "calib"
    args = cli.build_args(["dynamics", *bags, "--out-dir", str(out)])
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "mass_scale: not identifiable" in text and "friction_scale: not identifiable" in text
    report = json.loads((out / "sysid.json").read_text())
    truth = load_reality("medium")
    for key in ("actuator_gain_scale", "joint_damping_scale"):
        assert report["identified"][key], key
        assert abs(report["params"][key] / getattr(truth, key) - 1.0) <= 0.10, report["params"]
    assert report["latency_steps"] == truth.control_latency_steps
    assert report["holdout_rms_rad"] < 0.2 * report["nominal_holdout_rms_rad"]
    profile = load_reality(out / "reality.yaml")  # the sim loads what calibration writes
    assert profile.control_latency_steps == 1 and profile.mass_scale == 1.0
    ranges = load_randomization(out / "randomization.yaml")
    assert ranges.actuator_gain_scale[0] < 0.8 < ranges.actuator_gain_scale[1] + 0.05


def test_bag_round_trip_and_rclpy_padding(bags) -> None:
    rec = read_bag(bags[0])
    assert rec.q_rad.shape == (41, 7) and rec.commands.shape == (40, 8)
    store = _typestore()
    types = store.types
    header = types["std_msgs/msg/Header"](types["builtin_interfaces/msg/Time"](0, 0), "")
    msg = types["sensor_msgs/msg/JointState"](header, ["a"], np.ones(1), np.zeros(0), np.zeros(0))
    raw = bytes(store.serialize_cdr(msg, msg.__msgtype__)) + b"\x00" * 4  # rclpy's padding
    assert list(deserialize(store, raw, "sensor_msgs/msg/JointState").name) == ["a"]


def test_short_bag_says_what_to_record(bags) -> None:
    rec = read_bag(bags[0])
    rec.command_t_s, rec.commands = rec.command_t_s[:5], rec.commands[:5]
    with pytest.raises(CalibrationError, match="record at least 20 control periods"):
        trajectory_from_recording(rec, "short")
