"""MP4 writing with PyAV (H.264 in a yuv420p stream that browsers and LeRobot can decode)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float, crf: int = 23) -> int:
    """Encode HxWx3 uint8 frames; returns the number of frames written.

    Odd frame sizes are padded by one pixel because yuv420p needs even dimensions.
    """
    import av  # lazily: only video-writing code pays for it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                h, w = frame.shape[:2]
                stream = container.add_stream("libx264", rate=round(fps))
                stream.width, stream.height = w + w % 2, h + h % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf)}
            padded = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return count


def count_frames(path: str | Path) -> int:
    """Decoded frame count of the first video stream."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
