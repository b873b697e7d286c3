"""SIGKILL a process writing episodes: every complete episode survives, and writing resumes.

Two ways to kill: at a chosen step of an episode's commit (deterministic: the child kills itself
just before one particular ``os.replace``), and at a random moment of a write loop.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kizuna.dataset import DatasetReader, check_dataset
from kizuna.dataset.files import temp_files
from kizuna.dataset.synthetic import synthetic_arguments, synthetic_writer

# The child appends episodes 0, 1, 2, ... (seed k, length 4 + 3 * (k % 5)) up to a limit; when
# given a path suffix and a count, it SIGKILLs itself just before that many os.replace calls
# onto a path ending so.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    root, target, occurrence, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    real_replace, seen = os.replace, [0]

    def replace(src, dst):
        if target and str(dst).endswith(target):
            seen[0] += 1
            if seen[0] == occurrence:
                os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    os.replace = replace
    from kizuna.dataset.synthetic import synthetic_arguments, synthetic_writer

    with synthetic_writer(root) as writer:
        for k in range(writer.num_episodes, limit):
            writer.add_episode(**synthetic_arguments(k, 4 + 3 * (k % 5)))
            print(k, flush=True)
    """
)


def _child(root: Path, target: str = "", occurrence: int = 0, limit: int = 5) -> subprocess.Popen:
    args = [sys.executable, "-c", CHILD, str(root), target, str(occurrence), str(limit)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _assert_episodes(root: Path, count: int) -> None:
    """Exactly episodes 0..count-1, each equal to what the child wrote."""
    reader = DatasetReader(root)
    assert reader.num_episodes == count
    for k in range(count):
        expected = synthetic_arguments(k, 4 + 3 * (k % 5))
        episode = reader.episode(k)
        np.testing.assert_array_equal(episode.states, expected["states"])
        np.testing.assert_array_equal(episode.actions, expected["actions"])
        assert episode.instruction == expected["instruction"]
        assert episode.provenance == expected["provenance"]
        for camera, frames in expected["images"].items():
            decoded = episode.images[f"observation.images.{camera}"]
            assert decoded.shape == frames.shape
            assert np.abs(decoded.astype(float) - frames).mean() < 8


def _resume_and_extend(root: Path, complete: int) -> None:
    """Reopening cleans up, keeps every complete episode and continues the numbering."""
    with synthetic_writer(root) as writer:
        assert writer.num_episodes == complete
        assert not list(temp_files(root))
        report = check_dataset(root)
        assert report.ok and not report.warnings, report.lines()
        assert writer.add_episode(**synthetic_arguments(complete, 4 + 3 * (complete % 5))) == (
            complete
        )
    _assert_episodes(root, complete + 1)
    report = check_dataset(root, decode_images=True)
    assert report.ok and not report.problems, report.lines()


@pytest.mark.parametrize(
    ("target", "occurrence", "complete"),
    [
        # Killed inside episode 2's commit, before its metadata row: episodes 0 and 1 exist.
        ("videos/observation.images.wrist/chunk-000/file-002.mp4", 1, 2),
        ("data/chunk-000/file-002.parquet", 1, 2),
        ("meta/episodes/chunk-000/file-002.parquet", 1, 2),
        # Killed after episode 2's row, while refreshing the caches (written once at open).
        ("meta/tasks.parquet", 4, 3),
        ("meta/info.json", 4, 3),
    ],
)
def test_kill_at_each_step_of_a_commit(
    tmp_path: Path, target: str, occurrence: int, complete: int
) -> None:
    root = tmp_path / "ds"
    child = _child(root, target, occurrence)
    out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    assert out.split() == [str(k) for k in range(min(complete, 2))]
    _assert_episodes(root, complete)  # readable before any repair
    report = check_dataset(root)
    assert not report.ok, "the interrupted write should have left something to repair"
    _resume_and_extend(root, complete)


def test_kill_at_a_random_moment(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    delay_s = random.uniform(0.0, 0.05)
    child = _child(root, limit=1000)
    printed = [child.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
    time.sleep(delay_s)
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=60)
    committed = len(printed) + len(rest.split())
    reader = DatasetReader(root)
    # The episode being committed may have got its metadata row just before the kill.
    assert committed <= reader.num_episodes <= committed + 1, f"killed after {delay_s:.3f} s"
    complete = reader.num_episodes
    _assert_episodes(root, complete)
    _resume_and_extend(root, complete)
