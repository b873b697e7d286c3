"""The DDS scenarios (dds_scenarios.py), run inside a private network namespace.

One pytest run in one namespace (``netns.py``: ``unshare -n``, ``lo`` only, discovery limited
to localhost, a random domain id) executes every scenario; each is reported here as its own
test. Where a namespace cannot be made, these tests fail with the reason: DDS tests never
skip silently, and never run on the host network.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import netns
import pytest

pytestmark = pytest.mark.ros

HERE = Path(__file__).resolve().parent
SCENARIOS = [
    "test_estop_stops_motion_within_one_control_period_and_latches_until_reset",
    "test_a_stalled_camera_holds_within_the_watchdog_threshold_then_recovers",
    "test_shuffled_and_extra_joints_are_matched_by_name",
    "test_bad_input_gives_a_diagnostic_and_a_hold_never_a_crash_or_a_motion",
    "test_the_observation_built_from_sim_messages_is_in_the_observation_space",
    "test_params_files_load_and_every_key_is_declared[policy_node]",
    "test_params_files_load_and_every_key_is_declared[sim_robot_node]",
    "test_kizuna_deploy_ros_runs_episodes_and_shuts_down",
    "test_the_policy_node_drives_the_sim_robot_to_task_success",
    "test_kizuna_loop_via_ros_records_ingests_and_fine_tunes",
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Scenario name -> (passed | failed | skipped, text), from one run in a namespace."""
    netns.check()  # NetnsUnavailableError says what is missing: a failure, not a skip
    out = tmp_path_factory.mktemp("dds")
    junit = out / "junit.xml"
    argv = [sys.executable, "-m", "pytest", str(HERE / "dds_scenarios.py"), "-q", "-s"]
    argv += ["-p", "no:cacheprovider", f"--junitxml={junit}", f"--basetemp={out / 'tmp'}"]
    result = netns.run(argv, timeout_s=420, capture_output=True, text=True, cwd=HERE.parents[1])
    if not junit.is_file():
        output = result.stdout[-4000:] + result.stderr[-4000:]
        pytest.fail(f"the DDS scenarios did not run:\n{output}")
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        problem = next(iter(case), None)
        if problem is None or problem.tag in ("system-out", "system-err"):
            found[case.get("name")] = ("passed", "")
        else:
            text = (problem.get("message") or "") + "\n" + (problem.text or "")
            found[case.get("name")] = ("skipped" if problem.tag == "skipped" else "failed", text)
    print(result.stdout[-2000:])
    return found


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_dds(scenario: str, outcomes: dict[str, tuple[str, str]]) -> None:
    assert scenario in outcomes, f"{scenario} did not run; ran: {sorted(outcomes)}"
    outcome, text = outcomes[scenario]
    if outcome == "skipped":
        pytest.skip(text.strip().splitlines()[0] if text.strip() else "skipped")
    assert outcome == "passed", text


def test_every_scenario_is_listed(outcomes: dict[str, tuple[str, str]]) -> None:
    assert sorted(outcomes) == sorted(SCENARIOS)
