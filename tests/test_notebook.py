"""notebooks/quickstart.ipynb: a valid nbformat-4 notebook whose code cells run top to bottom
on a CPU (with tiny settings here; no Jupyter needed: the cells are executed as one script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "quickstart.ipynb"


def code_cells() -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert cells and all("outputs" in c and "execution_count" in c for c in cells)
    return ["".join(c["source"]) for c in cells]


def test_notebook_is_valid_nbformat_4() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.read(str(NOTEBOOK), as_version=4))


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text("\n\n".join(code_cells()) + "\n")
    env = os.environ | {
        "KIZUNA_QUICKSTART_DIR": str(tmp_path / "out"),
        "KIZUNA_QUICKSTART_TINY": "1",
        "MUJOCO_GL": "egl",
        "OMP_NUM_THREADS": "1",
    }
    root = NOTEBOOK.parents[1]  # the notebook runs from the repository root
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    video = done.stdout.split("video:")[-1].strip().splitlines()[0]
    assert Path(video).is_file() and video.endswith(".mp4")
    assert "reach" in done.stdout and "success" in done.stdout
