"""End to end: `airflow dags test patch_cycle` in scan mode against the sandbox serving a scenario.

Every expectation is derived from the scenario file (fleet, catalog, baselines, failures),
not from the code under test. The two cycles (the default scenario, and the same under heavy throttling) run
side by side, the throttled one as `python -m include.cycle` in a process of its own: most of its time is
botocore's backoff between retries.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from include.cycle import report_file, run_cycle
from include.sandbox.catalog import build_catalog
from include.sandbox.scenario import DEFAULT_SCENARIO, Baseline, Scenario, load_scenario

REPO = Path(__file__).resolve().parents[2]
# A hung command is cut short after this long (the scenario's other commands take seconds).
CONF = {"command_timeout_minutes": 0.25}
# Sandbox time runs 10x: scans and Config's rule evaluations take a tenth of the time; the command time limit
# above is wall time.
SPEED = 10.0
THROTTLED_TIMEOUT = 500.0


def approved(
    baseline: Baseline, os_family: str, classification: str, severity: str, released: date, now: datetime
) -> bool:
    for rule in baseline.approval_rules:
        if rule.classification and classification not in rule.classification:
            continue
        if rule.severity and severity not in rule.severity:
            continue
        # Patch Manager has no approval delay for Ubuntu: its packages carry no release dates.
        if (
            os_family == "UBUNTU"
            or datetime.combine(released, datetime.min.time(), UTC) + timedelta(days=rule.approve_after_days) <= now
        ):
            return True
    return False


def expected_missing(scenario: Scenario) -> dict[str, set[str]]:
    """Instance group -> the patch ids each of its instances should report missing."""
    assert scenario.clock_start is not None
    catalog = build_catalog(scenario)
    by_group: dict[str, set[str]] = {}
    for _, _, group in scenario.groups():
        os_family = scenario.amis[group.ami].os
        baseline = next(
            (b for b in scenario.baselines if b.os == os_family and group.tags.get("PatchGroup") in b.patch_groups),
            None,
        )
        if baseline is None:  # only unmanaged groups here: they get no patch verdicts
            by_group[group.name] = set()
            continue
        by_group[group.name] = {
            p.id
            for p in catalog.for_os(os_family)
            if group.patched_through is not None
            and p.released > group.patched_through
            and approved(baseline, os_family, p.classification, p.severity, p.released, scenario.clock_start)
        }
    return by_group


def check_report(report: dict[str, Any], scenario: Scenario) -> None:
    catalog = build_catalog(scenario)
    assert report["accounting"]["ok"], report["accounting"]
    assert report["incomplete"] == []
    resources = report["resources"]
    keys = [(r["account_id"], r["region"], r["resource_type"], r["resource_id"]) for r in resources]
    assert len(keys) == len(set(keys)), "a resource appears twice"
    regions = [region for account in scenario.accounts for region in account.regions]
    assert Counter(r["resource_type"] for r in resources) == {
        "ec2": scenario.instance_count,
        "rds": sum(len(region.rds_instances) for region in regions),
        "s3": sum(len(region.s3_buckets) for region in regions),
    }
    missing = expected_missing(scenario)
    failures = {f.group: f for f in scenario.failures}
    for _, region, group in scenario.groups():
        rows = [r for r in resources if r["resource_type"] == "ec2" and r["name"] == group.name]
        assert len(rows) == group.count and {r["region"] for r in rows} == {region.name}
        verdicts = Counter(r["verdict"] for r in rows)
        if group.agent == "unmanaged":
            assert verdicts == {"SKIPPED_UNMANAGED": group.count}
            continue
        if group.agent == "offline":
            assert verdicts == {"SKIPPED_OFFLINE": group.count}
            assert all("ConnectionLost" in r["reason"] for r in rows)
            continue
        failure = failures.get(group.name)
        failed_scans = (
            (failure.count or group.count) if failure and (failure.scan_fails or failure.command_hangs) else 0
        )
        assert verdicts["SCAN_FAILED"] == failed_scans, group.name
        if failure and failure.command_hangs:
            assert all("did not finish" in r["reason"] for r in rows if r["verdict"] == "SCAN_FAILED")
        want = missing[group.name]
        for row in rows:
            if row["verdict"] == "SCAN_FAILED":
                continue
            assert row["verdict"] == ("NON_COMPLIANT" if want else "ALREADY_COMPLIANT"), (group.name, row)
            assert {p["patch_id"] for p in row["missing_patches"]} == want, group.name
            cves = {cve for pid in want for cve in catalog.get(pid).cves}  # type: ignore[union-attr]
            assert set(row["cve_ids"]) == cves, group.name
    for region in regions:
        for db in region.rds_instances:
            row = next(r for r in resources if r["resource_type"] == "rds" and r["resource_id"] == db.id)
            assert row["verdict"] == ("MAINTENANCE_PENDING" if db.pending_maintenance else "ALREADY_COMPLIANT")
            assert row["responsibility"] == "shared"
        for bucket in region.s3_buckets:
            row = next(r for r in resources if r["resource_type"] == "s3" and r["resource_id"] == bucket.name)
            assert (row["verdict"], row["responsibility"]) == ("AWS_MANAGED", "aws")


def outcome(report: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    """The report without run-specific ids: (name, verdict, missing patch ids) per resource."""
    return sorted(
        (r["name"], r["verdict"], tuple(sorted(p["patch_id"] for p in r["missing_patches"])))
        for r in report["resources"]
    )


def scenario_file(folder: Path, name: str, faults: dict[str, Any] | None = None) -> Path:
    """The default scenario, faster; with `faults`, those instead of its own."""
    document = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    document["clock"]["speed"] = SPEED
    if faults is not None:
        document["faults"] = faults
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def throttled_cycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The heavily throttled cycle, started before the default one and run beside it: (its process, its folder)."""
    folder = tmp_path_factory.mktemp("throttled")
    scenario = scenario_file(folder, "throttled", {key: {"throttle_rate": 0.3} for key in ("ssm:*", "ec2:*", "rds:*")})
    argv = [sys.executable, "-m", "include.cycle", "--scenario", str(scenario), "--mode", "scan"]
    argv += ["--out", str(folder / "cycle"), "--conf", json.dumps(CONF)]
    with (folder / "cycle.log").open("wb") as log:
        process = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process, folder
    finally:
        if process.poll() is None:  # a test failed before waiting for it: Ctrl-C stops its sandbox too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def default_report(
    tmp_path_factory: pytest.TempPathFactory, throttled_cycle: tuple[subprocess.Popen[bytes], Path]
) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("cycle")
    result = run_cycle(scenario_file(folder, "default-fast"), "scan", folder, CONF)
    assert result.succeeded, f"see {result.log_path}"
    assert result.report_dir is not None
    assert (result.report_dir / "report.html").read_text().startswith("<!DOCTYPE html>")
    lines = list(csv.reader(io.StringIO((result.report_dir / "report.csv").read_text())))
    report: dict[str, Any] = json.loads((result.report_dir / "report.json").read_text())
    assert len(lines) == len(report["resources"]) + 1
    return report


def test_scan_cycle_reports_the_default_scenario(default_report: dict[str, Any]) -> None:
    assert default_report["mode"] == "scan"
    check_report(default_report, load_scenario(DEFAULT_SCENARIO))


def test_heavy_throttling_gives_the_same_report(
    default_report: dict[str, Any], throttled_cycle: tuple[subprocess.Popen[bytes], Path]
) -> None:
    process, folder = throttled_cycle
    # include.cycle exits 0 only when the run succeeded and wrote its report (and left no staging stack).
    assert process.wait(timeout=THROTTLED_TIMEOUT) == 0, f"see {folder / 'cycle.log'}"
    (report_json,) = (folder / "cycle").glob(f"*/{report_file('report')}")
    report = json.loads(report_json.read_text())
    check_report(report, load_scenario(folder / "throttled.yaml"))
    assert outcome(report) == outcome(default_report)
