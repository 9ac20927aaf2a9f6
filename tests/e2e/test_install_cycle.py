"""End to end: `airflow dags test patch_cycle` in install mode (approval_mode auto) against the sandbox.

The default scenario, with its failures (failed installs, pending reboots, failed scans), every verdict derived
from the scenario file; the other failure paths (a halting canary, a stack that fails to create, a failed
staging health check) are proven by the operator, core and DAG graph tests. The run must leave no staging
stack behind.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from include.sandbox.scenario import load_scenario
from tests.e2e.install_helpers import check_stacks_created_and_deleted, ec2_rows, run, scenario_file
from tests.e2e.test_scan_cycle import expected_missing


def test_install_cycle_patches_the_default_scenario_as_injected(tmp_path: Path) -> None:
    # A threshold above the injected failures: this run must reach every wave.
    scenario_path = scenario_file(tmp_path, "default-fast")
    result, report = run(scenario_path, tmp_path / "cycle", halt_threshold="50%")
    assert result.succeeded, f"see {result.log_path}"
    scenario = load_scenario(scenario_path)
    assert report["mode"] == "install" and report["accounting"]["ok"] and report["incomplete"] == []
    install = report["install"]
    assert install["staging"]["passed"] and install["staging"]["summary"]["failed"] == 0
    assert install["approval"]["decision"] == "Approve" and install["approval"]["mode"] == "auto"
    assert install["approval"]["by"] and install["approval"]["at"]
    assert install["halted_after_wave"] is None
    check_stacks_created_and_deleted(report, {"us-east-1", "eu-west-1"})

    missing = expected_missing(scenario)
    failures = {f.group: f for f in scenario.failures}
    production = 0
    for _, _, group in scenario.groups():
        rows = ec2_rows(report, group.name)
        assert len(rows) == group.count
        verdicts = Counter(r["verdict"] for r in rows)
        failure = failures.get(group.name)
        if group.agent in ("unmanaged", "offline"):
            assert set(verdicts) == {f"SKIPPED_{group.agent.upper()}"}
            continue
        if not missing[group.name]:
            assert verdicts == {"ALREADY_COMPLIANT": group.count}, group.name
            continue
        hit = failure.count or group.count if failure else 0
        if failure and (failure.scan_fails or failure.command_hangs):
            assert verdicts == {"SCAN_FAILED": hit, "PATCHED": group.count - hit}, group.name
        elif failure and failure.install_fails:
            assert verdicts == {"FAILED": hit, "PATCHED": group.count - hit}, group.name
            for row in rows:
                if row["verdict"] == "FAILED":
                    assert all(pid in row["reason"] for pid in failure.install_fails), row["reason"]
        elif failure and failure.reboot_required:
            assert verdicts["PATCHED"] + verdicts["PATCHED_PENDING_REBOOT"] == group.count, group.name
        else:
            assert verdicts == {"PATCHED": group.count}, group.name
        patched = [r for r in rows if r["verdict"] in ("PATCHED", "PATCHED_PENDING_REBOOT", "FAILED")]
        assert all(r["wave"] is not None for r in patched)
        production += len(patched)

    waves = install["waves"]
    assert sum(w["instances"] for w in waves) == production
    assert waves[0]["wave"] == 1 and waves[0]["instances"] == math.ceil(production * 0.05)
    assert all(w["status"] == "done" and w["sent"] == w["instances"] for w in waves)
    assert sum(w["failed"] for w in waves) == sum(r["verdict"] == "FAILED" for r in report["resources"])
