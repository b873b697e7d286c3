"""The adapt report is one self-contained page whose videos play in headless Chromium.

Needs Debian's ``chromium`` (the Makefile's SYSTEM_PACKAGES installs it); skipped without it.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kizuna.report_html import adapt_report_html, data_uri, render_page, write_page
from kizuna.video import write_mp4

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"
)


def video_status(page: Path) -> dict:
    """Load ``page`` in headless Chromium and read what its script wrote about each video."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--mute-audio",
            f"--user-data-dir={page.parent / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r'<pre id="video-status">(.*?)</pre>', done.stdout, re.S)
    assert match, "the page has no video-status element"
    return json.loads(html.unescape(match.group(1)))


@pytest.fixture
def good_video(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(20)]
    path = tmp_path / "success_seed1.mp4"
    write_mp4(path, frames, fps=20)
    return path


def summary(videos: dict[str, list[str]]) -> dict:
    probe = {
        "step": 10,
        "train_s": 30.0,
        "wall_s": 60.0,
        "episodes": 4,
        "successes": 1,
        "success_rate": 0.25,
        "ci95": [0.05, 0.7],
    }
    final = {
        **probe,
        "step": 20,
        "train_s": 70.0,
        "successes": 3,
        "success_rate": 0.75,
        "ci95": [0.3, 0.95],
    }
    return {
        "task": "reach_left_blue",
        "target": 0.8,
        "spec_yaml": "name: reach_left_blue\n# <script>alert(1)</script>",
        "run": {"base checkpoint": "ckpt"},
        "data": {"episodes": 3},
        "training": {"steps": 20},
        "probes": [probe],
        "final": final | {"videos": videos},
    }


def test_page_is_self_contained(good_video: Path, tmp_path: Path) -> None:
    page = adapt_report_html(summary({"success": [str(good_video)], "failure": []}))
    assert "data:video/mp4;base64," in page and "data:image/png;base64," in page
    assert not re.search(r'src="(?!data:)', page), "every src is embedded"
    assert "<script>alert(1)" not in page, "the task spec is escaped"
    assert "75%" in page and "95 % confidence interval" in page


def test_every_evaluation_is_listed(good_video: Path) -> None:
    """A missed evaluation that sent training on stays in the report beside the final one."""
    data = summary({"success": [str(good_video)], "failure": []})
    missed = {**data["probes"][0], "step": 15, "wall_s": 65.0, "successes": 2}
    data["evaluations"] = [missed, data["final"]]
    page = adapt_report_html(data)
    assert "step 10<" in page  # the probe
    assert "step 15 (evaluation)" in page and "step 20 (evaluation)" in page


def test_unknown_media_refused(tmp_path: Path) -> None:
    (tmp_path / "x.gif").write_bytes(b"GIF")
    with pytest.raises(ValueError, match="x.gif"):
        data_uri(tmp_path / "x.gif")


@needs_chromium
def test_report_videos_load_in_chromium(good_video: Path, tmp_path: Path) -> None:
    page = write_page(
        tmp_path / "report.html",
        adapt_report_html(summary({"success": [str(good_video)], "failure": [str(good_video)]})),
    )
    status = video_status(page)
    assert status["done"], status
    assert set(status["videos"]) == {"video-success-0", "video-failure-0"}
    assert all(v["ok"] and v["readyState"] >= 2 for v in status["videos"].values()), status


@needs_chromium
def test_a_broken_video_is_detected(good_video: Path, tmp_path: Path) -> None:
    broken = tmp_path / "failure_seed2.mp4"
    broken.write_bytes(good_video.read_bytes()[:200])  # a truncated file
    headline = {"success_rate": 0.5, "successes": 1, "episodes": 2, "ci95": [0.1, 0.9]}
    videos = {"success": [str(good_video)], "failure": [str(broken)]}
    page = write_page(tmp_path / "broken.html", render_page("t", headline, [], videos))
    status = video_status(page)
    assert status["videos"]["video-success-0"]["ok"]
    assert not status["videos"]["video-failure-0"]["ok"], status
