"""Distillation: the student's shape, its loss going down, ``kizuna distill`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kizuna.cli import main as cli_main
from kizuna.dataset.synthetic import write_synthetic
from kizuna.hydra_config import compose
from policies.base import load_policy
from policies.vla.checkpoint import load_checkpoint
from policies.vla.config import TrainConfig
from policies.vla.distill import (
    REPORT_FILE,
    DistillConfig,
    StudentConfig,
    distill_loss,
    student_config,
    training_data,
)
from policies.vla.model import VLAModel
from policies.vla.testing import tiny_model_config
from policies.vla.train import listify_overrides, train

torch.set_num_threads(1)

TEACHER = [
    "threads=1",
    "batch_size=4",
    "warmup_steps=1",
    "language.encoder=hash",
    "language.hash_dim=32",
    "model.d_model=16",
    "model.n_heads=2",
    "model.trunk_layers=2",
    "model.expert_layers=1",
    "model.chunk_size=4",
    "model.flow_steps=6",
    "model.vision.channels=[8,8,8,8]",
    "model.vision.groups=4",
    "steps=2",
]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A (barely) trained tiny teacher whose config.json names its dataset."""
    root = tmp_path_factory.mktemp("distill")
    write_synthetic(root / "data", [10, 8])
    overrides = [*TEACHER, f"dataset={root / 'data'}", f"out={root / 'teacher'}"]
    result = train(compose("train", listify_overrides(overrides), TrainConfig), progress=False)
    assert result.last_checkpoint is not None
    return result.last_checkpoint


def test_the_default_student_is_half_as_wide_and_takes_fewer_steps() -> None:
    teacher = tiny_model_config()  # d_model 32, channels (8, 16, 16, 16), 4 flow steps
    student = student_config(teacher, StudentConfig(flow_steps=2))
    assert student.d_model == 16 and student.vision.channels == (4, 8, 8, 8)
    assert student.flow_steps == 2 and student.trunk_layers == 1 and student.expert_layers == 1
    assert (student.cameras, student.chunk_size, student.action_space) == (
        teacher.cameras,
        teacher.chunk_size,
        teacher.action_space,
    )
    assert student.d_model % student.n_heads == 0


def test_the_student_learns_the_teachers_chunks(teacher: Path) -> None:
    checkpoint = load_checkpoint(teacher)
    cfg = DistillConfig(teacher=str(teacher), threads=1)
    data = training_data(cfg, checkpoint, progress=False)
    torch.manual_seed(0)
    student = VLAModel(student_config(checkpoint.config, StudentConfig(flow_steps=2)))
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    batch = data.sample(8, generator)

    def loss() -> float:  # the same noise and times every call: a fixed objective
        return distill_loss(student, checkpoint.model, batch, torch.Generator().manual_seed(1))[
            "loss"
        ].item()

    before = loss()
    for _ in range(40):
        terms = distill_loss(student, checkpoint.model, batch, torch.Generator().manual_seed(1))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    assert loss() < 0.5 * before


def test_kizuna_distill_writes_a_normal_checkpoint(teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "student_run"
    overrides = [f"teacher={teacher}", f"out={out}", "steps=3", "batch_size=4", "threads=1"]
    assert cli_main(["distill", *overrides, "student.flow_steps=2", "data_weight=0.5"]) == 0
    policy = load_policy(out / "student")  # the teacher's datasets were found in its config
    assert policy.flow_steps == 2 and policy.chunk_size == 4
    teacher_params = sum(p.numel() for p in load_checkpoint(teacher).model.parameters())
    assert sum(p.numel() for p in policy.model.parameters()) < teacher_params
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["steps"] == 3 and report["flow_steps"] == {"teacher": 6, "student": 2}
    meta = json.loads((out / "student" / "config.json").read_text())
    assert meta["type"] == "kizuna_vla" and meta["training"]["distilled_from"]


def test_distill_without_a_teacher_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["distill", "steps=1"]) == 2
    assert "teacher=PATH is required" in capsys.readouterr().out
