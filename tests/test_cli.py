"""The ``kizuna`` command line: subcommands are listed, task specs are listed and validated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kizuna.cli import COMMANDS, main
from kizuna.task import parse_task, shipped_tasks

SHIPPED = ["insert", "pick_place", "push", "reach", "stack"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_subcommand() -> None:
    # A real process, as a user runs it: also checks `python -m kizuna.cli` works.
    result = subprocess.run(
        [sys.executable, "-m", "kizuna.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout
    assert {"tasks", "demo"} <= set(COMMANDS)


def test_every_subcommand_builds_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: kizuna {name}" in capsys.readouterr().out


def test_demo_takes_its_options_from_the_sim_station(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "--out" in out and "--backend" in out


def test_tasks_command_does_not_import_the_stations() -> None:
    code = (
        "import sys; from kizuna.cli import main; rc = main(['tasks']);"
        "loaded = {'sim', 'mujoco', 'torch', 'rclpy', 'pybullet'} & set(sys.modules);"
        "assert not loaded, loaded; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_subcommand_prints_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([], capsys)
    assert code == 2
    assert "tasks" in err


def test_tasks_lists_the_shipped_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["tasks"], capsys)
    assert code == 0
    rows = out.strip().splitlines()[1:]
    listed = [row.split()[0] for row in rows]
    assert listed == shipped_tasks()
    assert set(SHIPPED) <= set(listed)
    pick_place = next(row.split() for row in rows if row.startswith("pick_place"))
    assert pick_place[1:3] == ["1", "1"]  # one object (the cube), one fixture (the bin)
    assert len(pick_place[3]) == 16  # the spec hash


def test_tasks_show_prints_yaml_that_validates_to_the_same_spec(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(["tasks", "show", "pick_place"], capsys)
    assert code == 0
    header, _, body = out.partition("\n")
    spec = parse_task(yaml.safe_load(body))
    assert spec.name == "pick_place"
    assert spec.spec_hash() in header


def test_tasks_show_unknown_name_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["tasks", "show", "no_such_task"], capsys)
    assert code == 1
    assert "no_such_task" in err


def _bad_task(tmp_path: Path) -> Path:
    """pick_place with ``color`` misspelt ``colr`` on its object."""
    from kizuna.paths import config_dir

    data = yaml.safe_load((config_dir() / "tasks" / "pick_place.yaml").read_text("utf-8"))
    data["objects"][0]["colr"] = data["objects"][0].pop("color")
    path = tmp_path / "bad_task.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_tasks_validate_refuses_an_unknown_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _bad_task(tmp_path)
    code, out, err = run(["tasks", "validate", str(bad)], capsys)
    assert code == 1
    assert str(bad) in err
    assert "objects[0].colr" in err
    assert "unknown field" in err
    assert "ok" not in out


def test_tasks_validate_reports_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kizuna.paths import config_dir

    good = config_dir() / "tasks" / "reach.yaml"
    bad = _bad_task(tmp_path)
    code, out, err = run(["tasks", "validate", str(good), str(bad)], capsys)
    assert code == 1  # one bad file fails the whole run
    assert out.startswith(f"ok  {good}")
    assert str(bad) in err


def test_tasks_validate_all_shipped_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    from kizuna.paths import config_dir

    paths = sorted(str(p) for p in (config_dir() / "tasks").glob("*.yaml"))
    code, out, _ = run(["tasks", "validate", *paths], capsys)
    assert code == 0
    assert len([line for line in out.splitlines() if line.startswith("ok  ")]) == len(paths)


def test_tasks_validate_not_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    code, _, err = run(["tasks", "validate", str(path)], capsys)
    assert code == 1
    assert str(path) in err and "not valid YAML" in err
