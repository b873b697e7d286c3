"""The LeRobotDataset v3.0 layout, as constants, path helpers, features and Arrow schemas.

Everything that says where a file lives or what a column is called is here, so the writer, the
reader, the checker and the merger agree by construction. Names and templates follow LeRobot's
``lerobot/datasets/utils.py`` (codebase_version "v3.0"); ``kizuna/...`` columns in the episode
metadata are kizuna's own extensions (provenance, success label, file hashes), which LeRobot's
loader carries along without reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from kizuna.dataset.provenance import kizuna_columns
from kizuna.robot import PANDA, RobotDescription

CODEBASE_VERSION = "v3.0"
# Bumped when kizuna's own extension columns change meaning.
KIZUNA_FORMAT_VERSION = 1

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
DATA_DIR = "data"
VIDEO_DIR = "videos"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE + ".parquet"
DATA_PATH = DATA_DIR + "/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = VIDEO_DIR + "/{video_key}/" + CHUNK_FILE + ".mp4"

# LeRobot's defaults: at most 1000 files per chunk folder; file size caps (MB) for rolling.
DEFAULT_CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200

STATE = "observation.state"
ACTION = "action"
IMAGE_PREFIX = "observation.images."
REWARD = "next.reward"
DONE = "next.done"
INTERVENTION = "intervention"
# LeRobot's bookkeeping columns, present in every dataset.
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")
STAT_NAMES = ("min", "max", "mean", "std", "count")

ARROW_TYPES: dict[str, pa.DataType] = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
}


def camera_key(camera: str) -> str:
    """Feature key of a camera: ``front`` -> ``observation.images.front``."""
    return camera if camera.startswith(IMAGE_PREFIX) else IMAGE_PREFIX + camera


def chunk_and_file(episode_index: int, chunks_size: int) -> tuple[int, int]:
    """Where episode ``episode_index`` lives: kizuna writes one episode per file."""
    return episode_index // chunks_size, episode_index % chunks_size


def data_path(chunk_index: int, file_index: int) -> str:
    return DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)


def video_path(video_key: str, chunk_index: int, file_index: int) -> str:
    return VIDEO_PATH.format(video_key=video_key, chunk_index=chunk_index, file_index=file_index)


def episodes_path(chunk_index: int, file_index: int) -> str:
    return EPISODES_PATH.format(chunk_index=chunk_index, file_index=file_index)


def parse_chunk_file(path: Path) -> tuple[int, int] | None:
    """``.../chunk-002/file-017.<ext>`` -> ``(2, 17)``; ``None`` for any other name."""
    chunk, name = path.parent.name, path.name.split(".", 1)[0]
    if not (chunk.startswith("chunk-") and name.startswith("file-")):
        return None
    try:
        return int(chunk[6:]), int(name[5:])
    except ValueError:
        return None


def default_state_names(robot: RobotDescription = PANDA) -> list[str]:
    """Joint positions (rad) then the gripper opening (0..1): Contract 2's ``state``."""
    return [f"{name}.pos_rad" for name in robot.joint_names] + ["gripper.opening"]


def default_action_names(robot: RobotDescription = PANDA) -> list[str]:
    """Joint-position targets (rad) then the gripper command (0..1): Contract 3."""
    return [f"{name}.target_rad" for name in robot.joint_names] + ["gripper.command"]


def video_info(height: int, width: int, fps: int) -> dict[str, Any]:
    """The ``info`` block LeRobot keeps for a video feature (what the encoder produced)."""
    return {
        "video.height": height,
        "video.width": width,
        "video.codec": "h264",
        "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False,
        "video.fps": fps,
        "video.channels": 3,
        "has_audio": False,
    }


def build_features(
    fps: int,
    cameras: Mapping[str, tuple[int, int]],
    state_names: Sequence[str],
    action_names: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """The ``features`` of info.json: dtype, shape and names per frame feature."""
    features: dict[str, dict[str, Any]] = {
        STATE: {"dtype": "float32", "shape": [len(state_names)], "names": list(state_names)},
        ACTION: {"dtype": "float32", "shape": [len(action_names)], "names": list(action_names)},
    }
    for camera, (height, width) in cameras.items():
        features[camera_key(camera)] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": video_info(height, width, fps),
        }
    features[REWARD] = {"dtype": "float32", "shape": [1], "names": None}
    features[DONE] = {"dtype": "bool", "shape": [1], "names": None}
    features[INTERVENTION] = {"dtype": "bool", "shape": [1], "names": None}
    features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    for key in BOOKKEEPING[1:]:
        features[key] = {"dtype": "int64", "shape": [1], "names": None}
    return features


def first_difference(a: Any, b: Any, name: str) -> tuple[str, Any, Any] | None:
    """The first field where two JSON-like values differ, as ``(dotted name, a, b)``."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if list(a) != list(b):
            return f"{name} (keys)", list(a), list(b)
        for key in a:
            found = first_difference(a[key], b[key], f"{name}['{key}']")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{name}[{i}]")
            if found:
                return found
        return None
    return None if a == b else (name, a, b)


def video_keys(features: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [key for key, ft in features.items() if ft["dtype"] == "video"]


def column_type(feature: Mapping[str, Any]) -> pa.DataType:
    """Arrow type of a data column, as LeRobot's Hugging Face features lay it out.

    Shape ``[1]`` is a scalar ``Value``; shape ``[n]`` a fixed-size list (``Sequence(length=n)``).
    """
    dtype = ARROW_TYPES[feature["dtype"]]
    shape = list(feature["shape"])
    if shape == [1]:
        return dtype
    if len(shape) == 1:
        return pa.list_(dtype, shape[0])
    raise ValueError(f"kizuna stores 1-D features only; got shape {shape}")


def data_schema(features: Mapping[str, Mapping[str, Any]]) -> pa.Schema:
    """Schema of ``data/*.parquet``: every feature but the videos, in info.json's order."""
    return pa.schema(
        [(key, column_type(ft)) for key, ft in features.items() if ft["dtype"] != "video"]
    )


def stat_ndim(feature: Mapping[str, Any]) -> int:
    """Images keep per-channel stats shaped [3, 1, 1] (LeRobot's convention); the rest [n]."""
    return 3 if feature["dtype"] in ("video", "image") else 1


def _nested(value_type: pa.DataType, depth: int) -> pa.DataType:
    for _ in range(depth):
        value_type = pa.list_(value_type)
    return value_type


def stats_columns(features: Mapping[str, Mapping[str, Any]]) -> list[pa.Field]:
    """``stats/<feature>/<stat>`` columns of the episode metadata."""
    fields = []
    for key, ft in features.items():
        for stat in STAT_NAMES:
            value = pa.int64() if stat == "count" else pa.float64()
            depth = 1 if stat == "count" else stat_ndim(ft)
            fields.append(pa.field(f"stats/{key}/{stat}", _nested(value, depth)))
    return fields


def episodes_schema(features: Mapping[str, Mapping[str, Any]]) -> pa.Schema:
    """Schema of ``meta/episodes/*.parquet``: LeRobot's columns, then kizuna's.

    Typed explicitly so a column that is null in one file (no reality profile, say) has the
    same type in every file; LeRobot concatenates the files and needs one schema.
    """
    fields = [
        pa.field("episode_index", pa.int64()),
        pa.field("tasks", pa.list_(pa.string())),
        pa.field("length", pa.int64()),
        pa.field("data/chunk_index", pa.int64()),
        pa.field("data/file_index", pa.int64()),
        pa.field("dataset_from_index", pa.int64()),
        pa.field("dataset_to_index", pa.int64()),
    ]
    for key in video_keys(features):
        fields += [
            pa.field(f"videos/{key}/chunk_index", pa.int64()),
            pa.field(f"videos/{key}/file_index", pa.int64()),
            pa.field(f"videos/{key}/from_timestamp", pa.float64()),
            pa.field(f"videos/{key}/to_timestamp", pa.float64()),
        ]
    fields += [
        pa.field("meta/episodes/chunk_index", pa.int64()),
        pa.field("meta/episodes/file_index", pa.int64()),
    ]
    return pa.schema(fields + stats_columns(features) + kizuna_columns(video_keys(features)))
