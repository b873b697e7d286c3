"""MP4 writing with PyAV (H.264 in a yuv420p stream that browsers and LeRobot can decode)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    crf: int = 23,
    gop: int | None = None,
) -> int:
    """Encode HxWx3 uint8 frames; returns the number of frames written.

    Frame ``i`` is stamped at ``i / round(fps)`` seconds, which is what LeRobot's
    timestamp-based decoding expects. ``gop`` sets the keyframe interval (smaller: faster random
    access, larger files); ``None`` keeps the encoder's default. Odd frame sizes are padded by
    one pixel because yuv420p needs even dimensions.
    """
    import av  # lazily: only video-writing code pays for it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = None
        for frame in frames:
            if stream is None:
                h, w = frame.shape[:2]
                stream = container.add_stream("libx264", rate=round(fps))
                stream.width, stream.height = w + w % 2, h + h % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), **({"g": str(gop)} if gop else {})}
            padded = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return count


def count_frames(
    path: str | Path, start_s: float = 0.0, end_s: float = float("inf"), tolerance_s: float = 1e-4
) -> int:
    """Decoded frame count of the first video stream (of the frames in ``[start_s, end_s)``)."""
    import av

    with av.open(str(path)) as container:
        return sum(
            1
            for frame in container.decode(video=0)
            if start_s - tolerance_s <= float(frame.time or 0.0) < end_s - tolerance_s
        )


def read_mp4(
    path: str | Path, start_s: float = 0.0, end_s: float = float("inf"), tolerance_s: float = 1e-4
) -> np.ndarray:
    """Decode the frames stamped in ``[start_s, end_s)`` as a ``[T, H, W, 3]`` uint8 array.

    The window lets one file hold several episodes (LeRobot v3 packs them and addresses each by
    ``from_timestamp``/``to_timestamp``); the tolerance absorbs the time base's rounding.
    """
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            t = float(frame.time or 0.0)
            if t >= end_s - tolerance_s:
                break
            if t >= start_s - tolerance_s:
                frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(frames)
