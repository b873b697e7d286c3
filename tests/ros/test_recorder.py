"""The recorder: its state machine without ROS, then the real node over DDS (in a private
network namespace), killed mid-episode, its closed episodes read back and ingested."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import netns
import numpy as np
import pytest

from kizuna.dataset import DatasetReader, check_dataset
from real_robot.bag import is_complete, open_bag, read_custom
from real_robot.ingest_cli import IngestConfig, ingest
from real_robot.recording import EpisodeRecorder, RecorderParams, parse_event
from real_robot.ros.params import ParamError

HERE = Path(__file__).resolve().parent


def cdr(msgtype: str, **fields: object) -> bytes:
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    return bytes(store.serialize_cdr(store.types[msgtype](**fields), msgtype))


def event(**fields: object) -> tuple[str, bytes]:
    text = json.dumps(fields)
    return text, cdr("std_msgs/msg/String", data=text)


def recorder(tmp_path: Path, **params: object) -> EpisodeRecorder:
    values = {"output_dir": str(tmp_path / "bags"), "sync": False, **params}
    return EpisodeRecorder(RecorderParams(**values), log=lambda _: None)  # type: ignore[arg-type]


def test_episodes_become_closed_bags_with_metadata_and_late_labels(tmp_path: Path) -> None:
    rec = recorder(tmp_path, robot_id="cell-1")
    estop = cdr("std_msgs/msg/Bool", data=False)
    rec.on_message("/kizuna/estop", estop, 5)  # between episodes: not recorded
    rec.on_event(*event(event="start", instruction="pick", policy_version="v2"), 10)
    for t in range(20, 30):
        rec.on_message("/kizuna/estop", estop, t)
    rec.on_event(*event(event="end", success=True), 40)
    first = tmp_path / "bags" / "episode_000000"
    assert is_complete(first) and not rec.recording
    meta = read_custom(first)
    assert meta["instruction"] == "pick" and meta["policy_version"] == "v2"
    assert meta["robot_id"] == "cell-1" and meta["success"] is True
    with open_bag(first) as bag:
        assert bag.counts["/kizuna/estop"] == 10 and bag.counts["/kizuna/episode"] == 2
    assert rec.label(False, None, 50) == "labelled episode_000000: failure"
    assert read_custom(first)["success"] is False
    with open_bag(first) as bag:  # the rewritten metadata.yaml is still a valid bag
        assert bag.counts["/kizuna/estop"] == 10


def test_a_start_while_recording_supersedes_and_timeouts_close(tmp_path: Path) -> None:
    rec = recorder(tmp_path, max_episode_s=1.0)
    rec.on_event(*event(event="start", instruction="a"), 0)
    rec.on_event(*event(event="start", instruction="b"), 10)
    assert read_custom(tmp_path / "bags" / "episode_000000")["end_reason"] == "superseded"
    rec.check_timeout(int(0.5e9))
    assert rec.recording
    rec.check_timeout(int(1.5e9))
    assert not rec.recording
    assert read_custom(tmp_path / "bags" / "episode_000001")["end_reason"] == "timeout"
    # A restarted recorder never reuses a number, even that of a cut-off episode.
    (tmp_path / "bags" / "episode_000002").mkdir()
    rec2 = recorder(tmp_path)
    assert rec2.start({"instruction": "c"}, 0).name == "episode_000003"
    rec2.close(1)
    assert read_custom(tmp_path / "bags" / "episode_000003")["end_reason"] == "recorder shutdown"


def test_bad_events_are_refused_with_the_reason(tmp_path: Path) -> None:
    for text, reason in (
        ("{", "not JSON"),
        ('{"event": "pause"}', '"event": "start" | "end"'),
        ('{"event": "start"}', "needs an"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_event(text)
    logs: list[str] = []
    rec = EpisodeRecorder(RecorderParams(output_dir=str(tmp_path)), log=logs.append)
    rec.on_event(*event(event="end"), 0)
    assert not rec.recording and "no episode is being recorded" in logs[-1]
    with pytest.raises(ParamError, match="output_dir"):
        EpisodeRecorder(RecorderParams())


@pytest.mark.ros
def test_recorder_node_over_dds_killed_mid_episode_keeps_closed_episodes(tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    netns.check()  # NetnsUnavailableError says what is missing: a failure, not a skip
    out = tmp_path / "bags"
    argv = [sys.executable, str(HERE / "recorder_scenario.py"), str(out)]
    result = netns.run(argv, timeout_s=120, capture_output=True, text=True, cwd=HERE.parents[1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["label_reply"] == "labelled episode_000001: failure"
    first, second, killed = (out / f"episode_00000{k}" for k in range(3))
    assert is_complete(first) and is_complete(second)
    assert killed.is_dir() and not is_complete(killed)  # SIGKILL: only the open one is lost
    assert read_custom(first)["success"] is True and read_custom(second)["success"] is False
    assert read_custom(second)["policy_version"] == "vla-7"
    for bag_dir in (first, second):
        with open_bag(bag_dir) as bag:
            assert bag.counts["/kizuna/executed_action"] >= 10
            assert bag.counts["/joint_states"] >= 2 * bag.counts["/kizuna/executed_action"] - 5
            assert bag.counts["/camera/front/image_raw"] >= 10
    report = ingest([str(out)], tmp_path / "data", IngestConfig())
    assert report["skipped_incomplete"] == [str(killed)]
    reader = DatasetReader(tmp_path / "data")
    assert reader.num_episodes == 2
    one, two = reader.episode(0), reader.episode(1)
    assert (one.success, two.success) == (True, False)
    assert one.instruction == "put the red cube in the bin"
    assert one.provenance is not None and one.provenance.robot_id == "test-cell"
    assert not one.interventions.any() and 5 <= two.interventions.sum() <= 16
    assert np.allclose(two.actions[two.interventions], 0.5)
    assert check_dataset(tmp_path / "data").ok
    print(json.dumps({k: v for k, v in report["bags"][1].items() if k != "episodes"}))


@pytest.mark.ros
def test_kizuna_deploy_ros_record_writes_one_labelled_bag_per_episode(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    pytest.importorskip("rclpy")
    netns.check()
    bags = tmp_path / "bags"
    argv = [sys.executable, "-m", "kizuna.cli", "deploy", "--backend", "ros", "--task", "reach"]
    argv += ["--checkpoint", str(tiny_checkpoint), "--episodes", "2", "--episode-steps", "10"]
    argv += ["--record", str(bags), "--report", str(tmp_path / "report.json")]
    result = netns.run(argv, timeout_s=240, capture_output=True, text=True, cwd=HERE.parents[1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["recordings"] == str(bags)
    for k, episode in enumerate(report["episodes"]):
        meta = read_custom(bags / f"episode_00000{k}")
        assert meta["success"] is episode["success"] and meta["task"] == "reach"
        assert meta["end_reason"] == "ended"
    assert ingest([str(bags)], tmp_path / "data", IngestConfig())["skipped_incomplete"] == []
    assert check_dataset(tmp_path / "data").ok
