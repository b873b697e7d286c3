"""The ROS 2 / pip packaging contract, checked without a ROS install.

package.xml declares what the code imports; setup.py installs the ament index marker,
package.xml, launch files and every config file where ROS tools (and ``kizuna.paths``) look;
the console scripts resolve; pip and colcon each put the scripts where their users look.
"""

from __future__ import annotations

import ast
import configparser
import importlib
import importlib.metadata
import os
import re
import runpy
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_EXEC_DEPENDS = {
    "rclpy",
    "sensor_msgs",
    "std_msgs",
    "trajectory_msgs",
    "diagnostic_msgs",
    "lifecycle_msgs",
    "launch",
    "launch_ros",
}
# Import names of ROS 2 packages (their rosdep key is the same name, but for the exceptions).
ROS_MODULE = re.compile(
    r"^(rclpy|rosbag2_py|launch|launch_ros|launch_testing(_ros)?|ament_index_python"
    r"|message_filters|cv_bridge|tf2_\w+|\w+_(msgs|srvs|interfaces))$"
)
ROS_KEY_FOR_MODULE = {"tf2_ros": "tf2_ros_py"}
SKIP_DIRS = {".venv", "venv", "build", "install", "log", "outputs", "runs", "demo_out"}


def _package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def _depends(root: ET.Element, *tags: str) -> set[str]:
    return {(e.text or "").strip() for tag in tags for e in root.iter(tag)}


@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
    """Run setup.py with setuptools.setup replaced, and return what it would have built."""
    setuptools = pytest.importorskip("setuptools")
    captured: dict = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    cwd = Path.cwd()
    try:
        os.chdir(ROOT)  # as pip and colcon do: data_files paths are relative
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
        os.chdir(cwd)
    return captured


# ---- package.xml -------------------------------------------------------------------------


def test_package_xml_is_an_ament_python_format_3_package() -> None:
    root = _package_xml()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "kizuna"
    assert root.findtext("license") == "Apache-2.0"
    assert root.findtext("export/build_type") == "ament_python"
    maintainer = root.find("maintainer")
    assert maintainer is not None and maintainer.get("email")


def test_package_xml_declares_the_ros_runtime() -> None:
    missing = REQUIRED_EXEC_DEPENDS - _depends(_package_xml(), "exec_depend", "depend")
    assert not missing, f"package.xml lacks <exec_depend> for {sorted(missing)}"


def test_versions_agree() -> None:
    import kizuna

    assert _package_xml().findtext("version") == kizuna.__version__


def _ros_imports(source: str) -> set[str]:
    """Top-level names of ROS packages imported anywhere in ``source`` (lazy imports too)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if ROS_MODULE.match(n)}


def test_ros_import_scanner_sees_lazy_and_from_imports() -> None:
    source = textwrap.dedent(
        """
        import numpy
        from sensor_msgs.msg import JointState
        def f():
            import rclpy.node
            from launch_ros.actions import Node
        """
    )
    assert _ros_imports(source) == {"sensor_msgs", "rclpy", "launch_ros"}


def _python_files() -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS]
        files += [Path(dirpath, f) for f in filenames if f.endswith(".py")]
    return files


def test_every_ros_import_is_declared_in_package_xml() -> None:
    root = _package_xml()
    runtime = _depends(root, "exec_depend", "depend")
    for_tests = runtime | _depends(root, "test_depend")
    undeclared = []
    for path in _python_files():
        rel = path.relative_to(ROOT)
        declared = for_tests if rel.parts[0] == "tests" else runtime
        for module in sorted(_ros_imports(path.read_text(encoding="utf-8"))):
            key = ROS_KEY_FOR_MODULE.get(module, module)
            if key not in declared:
                undeclared.append(f"{rel} imports {module}")
    assert not undeclared, "add to package.xml: " + "; ".join(undeclared)


def test_ros_extra_matches_package_xml(setup_kwargs: dict) -> None:
    """The PyPI ``ros`` extra (ros-jazzy-* wheels) covers the same message packages."""
    declared = _depends(_package_xml(), "exec_depend", "depend")
    for requirement in setup_kwargs["extras_require"]["ros"]:
        name = re.match(r"ros-jazzy-([a-z0-9-]+)", requirement)
        assert name, requirement
        assert name.group(1).replace("-", "_") in declared, requirement


# ---- setup.py / setup.cfg / pyproject.toml ------------------------------------------------


def test_pyproject_is_tool_config_only() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "project" not in pyproject, "a [project] table breaks colcon's ament_python build"
    assert "setuptools" in " ".join(pyproject["build-system"]["requires"])


def test_setup_cfg_puts_colcon_scripts_where_ros2_run_looks() -> None:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    assert cfg["develop"]["script_dir"] == "$base/lib/kizuna"
    assert cfg["install"]["install_scripts"] == "$base/lib/kizuna"


def test_torch_and_pybullet_are_not_core_requirements(setup_kwargs: dict) -> None:
    names = {re.split(r"[<>=!~\[; ]", r)[0].lower() for r in setup_kwargs["install_requires"]}
    assert "torch" not in names, "torch is installed pinned by the Makefile, never unpinned"
    assert "pybullet" not in names, "pybullet has no Python >= 3.12 wheels: extra only"
    assert setup_kwargs["extras_require"]["pybullet"] == ["pybullet"]


def test_packages_are_the_five_stations(setup_kwargs: dict) -> None:
    top_level = {p.split(".")[0] for p in setup_kwargs["packages"]}
    assert top_level == {"kizuna", "sim", "policies", "real_robot", "calibration"}
    assert "kizuna" in setup_kwargs["packages"]


def test_data_files_install_ament_marker_package_xml_launch_and_all_config(
    setup_kwargs: dict,
) -> None:
    installed = {(dest, src) for dest, sources in setup_kwargs["data_files"] for src in sources}
    assert ("share/ament_index/resource_index/packages", "resource/kizuna") in installed
    assert ("share/kizuna", "package.xml") in installed
    expected = {
        ("share/kizuna/launch", p.relative_to(ROOT).as_posix())
        for p in (ROOT / "launch").glob("*.launch.py")
    }
    for path in (ROOT / "config").rglob("*"):
        rel = path.relative_to(ROOT)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            dest = Path("share/kizuna", *rel.parent.parts).as_posix()
            expected.add((dest, rel.as_posix()))
    assert any(src.endswith("config/tasks/pick_place.yaml") for _, src in expected)
    assert expected <= installed, f"not installed: {sorted(expected - installed)}"
    for _, src in installed:
        assert (ROOT / src).is_file(), f"data_files names a missing file: {src}"


def test_console_scripts_resolve_to_callables(setup_kwargs: dict) -> None:
    scripts = setup_kwargs["entry_points"]["console_scripts"]
    assert any(s.replace(" ", "").startswith("kizuna=") for s in scripts)
    for script in scripts:
        name, target = (part.strip() for part in script.split("="))
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), script


def _installed_here() -> bool:
    try:
        importlib.metadata.distribution("kizuna")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_pip_put_the_kizuna_script_in_the_environment_bin() -> None:
    """setup.cfg's [install]/[develop] are for colcon; pip must still install into bin/."""
    if not _installed_here():
        pytest.skip("kizuna is not pip-installed in this environment (run `make install`)")
    script = Path(sysconfig.get_path("scripts")) / "kizuna"
    assert script.exists(), f"{script} missing: did setup.cfg's install_scripts divert it?"


# ---- a real install into a prefix, read through the ament index layout --------------------

# What ament_index_python.get_package_share_directory does, for a machine without ROS.
AMENT_INDEX_STUB = """
import os
from pathlib import Path
class PackageNotFoundError(KeyError):
    pass
def get_package_share_directory(name):
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        index = Path(prefix, "share/ament_index/resource_index/packages")
        if prefix and (index / name).is_file():
            return str(Path(prefix, "share", name))
    raise PackageNotFoundError(name)
"""


def test_install_into_a_prefix_is_found_through_the_ament_index(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")  # --no-build-isolation builds with this environment's tools
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".*", "*.egg-info", "__pycache__", "tests", *SKIP_DIRS),
    )
    prefix = tmp_path / "prefix"
    was_installed = _installed_here()
    # --ignore-installed: without it, pip "replaces" this environment's own kizuna install
    # (uninstalls the editable one from .venv) even though it installs into another prefix.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--ignore-installed", "--prefix", str(prefix), str(src)],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert (prefix / "share/ament_index/resource_index/packages/kizuna").is_file()
    share = prefix / "share/kizuna"
    assert (share / "package.xml").is_file()
    assert (share / "config/tasks/pick_place.yaml").is_file()
    assert (prefix / "bin/kizuna").is_file()
    if was_installed:
        assert _installed_here(), "the prefix install uninstalled kizuna from this environment"

    # The installed code, run away from the source tree, finds its config via the index.
    stub = tmp_path / "stub" / "ament_index_python"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    (stub / "packages.py").write_text(AMENT_INDEX_STUB)
    site = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([site, str(stub.parent)]),
        "AMENT_PREFIX_PATH": str(prefix),
    }
    env.pop("KIZUNA_CONFIG_DIR", None)
    code = "import kizuna.cli, kizuna.paths; print(kizuna.cli.__file__, kizuna.paths.config_dir())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    module_file, config = (Path(p).resolve() for p in out.stdout.split())
    assert module_file.is_relative_to(prefix.resolve()), (
        "imported the source tree, not the install"
    )
    # kizuna.paths looks in sys.prefix before the ament index; only a non-editable install into
    # this environment puts a config there.
    assert config in {(share / "config").resolve(), Path(sys.prefix, "share/kizuna/config")}
