"""End to end on one sandbox and one Airflow database: an install cycle over two accounts (the second reached
through its connection's role_arn, as make cycle and make demo set it up) and its evidence (Inspector per-CVE
proof, AWS Config, Security Hub findings, CloudWatch KPIs), then patch_compliance_watch finding the drift after a
patch is uninstalled. (That a rerun updates findings rather than duplicating them is proven by the publish_findings
operator tests.)

Every expectation is derived from the scenario: which instance keeps its patches pending a reboot, which
unpatched vulnerabilities it injects, what the cycle installed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from include import connections
from include.cycle import CycleEnvironment, CycleResult
from include.sandbox.scenario import load_scenario
from tests.conftest import uninstall_patches
from tests.e2e.install_helpers import CONF, scenario_file, small_fleet

REGION = "us-east-1"
OTHER_ACCOUNT = "210987654321"
OTHER_GROUP = "web-prod-shared"


def evidence_fleet(document: dict[str, Any]) -> None:
    """The small fleet with one app server whose patches stay pending a reboot, and a second account's web tier."""
    small_fleet(document)
    document["failures"] = [{"group": "app-prod-use1", "count": 1, "reboot_required": True}]
    groups = document["accounts"][0]["regions"][REGION]["instance_groups"]
    web = next(g for g in groups if g["name"] == "web-prod-use1")
    other = {**web, "name": OTHER_GROUP, "count": 4, "tags": {**web["tags"], "App": "portal"}}
    region = {"instance_groups": [other]}
    document["accounts"].append({"id": OTHER_ACCOUNT, "name": "shared", "regions": {REGION: region}})


def client(url: str, service: str) -> Any:
    return boto3.client(
        service, region_name=REGION, endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def all_findings(url: str) -> list[dict[str, Any]]:
    pages = (
        client(url, "securityhub")
        .get_paginator("get_findings")
        .paginate(Filters={"GeneratorId": [{"Value": "patchcycle/", "Comparison": "PREFIX"}]})
    )
    return [finding for page in pages for finding in page["Findings"]]


def fleet_metric(url: str, name: str) -> float | None:
    """The latest fleet-wide (no dimensions) datapoint of a PatchCycle metric."""
    cloudwatch = client(url, "cloudwatch")
    series = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {"Namespace": "PatchCycle", "MetricName": name},
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime="2026-01-01T00:00:00Z",
        EndTime="2027-12-31T00:00:00Z",
    )["MetricDataResults"][0]
    return max(series["Values"]) if series["Values"] else None


@pytest.fixture(scope="module")
def scenario_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scenario_file(tmp_path_factory.mktemp("scenario"), "evidence", evidence_fleet)


@pytest.fixture(scope="module")
def targets(scenario_path: Path) -> list[dict[str, Any]]:
    """Both accounts: aws_default and the second account's role connection."""
    found = connections.targets(load_scenario(scenario_path))
    assert [t["aws_conn_id"] for t in found] == ["aws_default", f"aws_{OTHER_ACCOUNT}"]
    return found


@pytest.fixture(scope="module")
def environment(scenario_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CycleEnvironment]:
    with CycleEnvironment(scenario_path, tmp_path_factory.mktemp("evidence")) as env:
        yield env


@pytest.fixture(scope="module")
def first_cycle(
    environment: CycleEnvironment, targets: list[dict[str, Any]]
) -> tuple[CycleResult, dict[str, Any], list[dict[str, Any]]]:
    result = environment.run_cycle("install", {**CONF, "targets": targets, "canary": "2"})
    assert result.report_json is not None, f"no report; see {result.log_path}"
    return result, json.loads(result.report_json.read_text()), all_findings(environment.url)


def test_before_any_cycle_the_watch_has_nothing_to_compare(
    environment: CycleEnvironment, targets: list[dict[str, Any]]
) -> None:
    succeeded, log_path, drift_json = environment.run_watch({"targets": targets})
    assert succeeded, f"see {log_path}"
    assert drift_json is None and "No patch_cycle report yet" in log_path.read_text()


def test_the_cycle_proves_each_cve_closed_or_says_why_not(
    first_cycle: tuple[CycleResult, dict[str, Any], list[dict[str, Any]]], scenario_path: Path
) -> None:
    result, report, _ = first_cycle
    assert result.succeeded, f"see {result.log_path}"
    scenario = load_scenario(scenario_path)
    by_id = {r["resource_id"]: r for r in report["resources"]}
    cves = report["inspection"]["cves"]
    patched = {r["resource_id"] for r in report["resources"] if r["verdict"] in ("PATCHED", "PATCHED_PENDING_REBOOT")}
    # Every patched instance's CVEs are accounted for, one row per (instance, CVE) its missing patches fix.
    assert {row["resource_id"] for row in cves} == {i for i in patched if by_id[i]["cve_ids"]}
    for instance in patched:
        assert sorted(row["cve_id"] for row in cves if row["resource_id"] == instance) == by_id[instance]["cve_ids"]
    pending = {i for i in patched if by_id[i]["verdict"] == "PATCHED_PENDING_REBOOT"}
    assert len(pending) == 1, "the scenario keeps one app server's patches pending a reboot"
    for row in cves:
        if row["resource_id"] in pending:
            assert row["status"] == "STILL_ACTIVE" and "pending reboot" in row["reason"], row
        else:
            assert row["status"] == "REMEDIATED", row
    assert report["inspection"]["by_status"] == dict(sorted(Counter(row["status"] for row in cves).items()))
    # The unpatched vulnerability the scenario injects on the web tier is residual, on exactly that many instances.
    (injected,) = scenario.inspector.unpatched_findings
    residual = [row for row in report["inspection"]["residual"] if row["cve_id"] == injected.cve]
    assert len(residual) == injected.count and {row["severity"] for row in residual} == {injected.severity}


def test_the_second_account_is_patched_through_its_role_connection(
    first_cycle: tuple[CycleResult, dict[str, Any], list[dict[str, Any]]], environment: CycleEnvironment
) -> None:
    result, report, _ = first_cycle
    assert result.succeeded and result.stacks_left == (), f"see {result.log_path}"
    assert report["accounting"]["ok"] and report["incomplete"] == []
    other = [r for r in report["resources"] if r["resource_type"] == "ec2" and r["name"] == OTHER_GROUP]
    assert len(other) == 4 and {r["account_id"] for r in other} == {OTHER_ACCOUNT}
    assert {r["verdict"] for r in other} == {"PATCHED"}
    # Staged in that account too (through the assumed role), and the stack deleted.
    stacks = {(s["account_id"], s["region"]): s for s in report["install"]["staging"]["stacks"]}
    assert set(stacks) == {("123456789012", REGION), (OTHER_ACCOUNT, REGION)}
    assert all(s["created"] and s["deleted"] for s in stacks.values())
    # Patch Manager in the second account shows its instances compliant.
    scenario = load_scenario(environment.scenario)
    ssm = connections.account_client(scenario, OTHER_ACCOUNT, environment.url, "ssm", REGION)
    states = ssm.describe_instance_patch_states(InstanceIds=[r["resource_id"] for r in other])["InstancePatchStates"]
    assert len(states) == 4 and {s["MissingCount"] + s["FailedCount"] for s in states} == {0}


def test_config_security_hub_and_cloudwatch_hold_the_cycle_s_evidence(
    first_cycle: tuple[CycleResult, dict[str, Any], list[dict[str, Any]]], environment: CycleEnvironment
) -> None:
    _, report, findings = first_cycle
    compliance = {row["resource_id"]: row["compliance"] for row in report["config"]["resources"]}
    for resource in report["resources"]:
        if resource["verdict"] == "PATCHED":
            assert compliance[resource["resource_id"]] == "COMPLIANT", resource["resource_id"]
        elif resource["verdict"] == "PATCHED_PENDING_REBOOT":
            assert compliance[resource["resource_id"]] == "NON_COMPLIANT"  # pending a reboot is non-compliant
    still_active = {
        (row["resource_id"], row["cve_id"]) for row in report["inspection"]["cves"] if row["status"] == "STILL_ACTIVE"
    }
    non_compliant = {r["resource_id"] for r in report["resources"] if r["compliance_state"] == "NON_COMPLIANT"}
    cve_findings = [f for f in findings if f["GeneratorId"] == "patchcycle/cve"]
    patch_findings = [f for f in findings if f["GeneratorId"] == "patchcycle/patch-compliance"]
    assert {
        (f["Resources"][0]["Id"].rsplit("/", 1)[1], f["Vulnerabilities"][0]["Id"]) for f in cve_findings
    } == still_active
    assert {f["Resources"][0]["Id"].rsplit("/", 1)[1] for f in patch_findings} == non_compliant
    assert len({f["Id"] for f in findings}) == len(findings)
    kpis = report["kpis"]["fleet"]
    assert fleet_metric(environment.url, "Patched") == kpis["patched"]
    assert fleet_metric(environment.url, "InScope") == kpis["in_scope"]
    dashboards = client(environment.url, "cloudwatch").list_dashboards()["DashboardEntries"]
    assert [d["DashboardName"] for d in dashboards] == ["patchcycle"]


def test_the_watch_finds_a_patch_uninstalled_after_the_cycle(
    first_cycle: tuple[CycleResult, dict[str, Any], list[dict[str, Any]]],
    environment: CycleEnvironment,
    targets: list[dict[str, Any]],
) -> None:
    _, report, _ = first_cycle
    # A patch the install cycle put on a web server goes away.
    victim = next(r for r in report["resources"] if r["verdict"] == "PATCHED" and r["name"] == "web-prod-use1")
    patch_id = victim["missing_patches"][0]["patch_id"]
    removed = uninstall_patches(environment.url, REGION, victim["resource_id"], [patch_id])
    assert removed["removed"] == [patch_id]

    succeeded, log_path, drift_json = environment.run_watch({"targets": targets})
    assert succeeded and drift_json is not None, f"see {log_path}"
    drift = json.loads(drift_json.read_text())
    rows = {(row["resource_id"], row["kind"], row["subject"]) for row in drift["drift"]}
    assert (victim["resource_id"], "PATCH_UNINSTALLED", patch_id) in rows
    assert (victim["resource_id"], "CONFIG_NON_COMPLIANT", "patchcycle-ec2-managedinstance-patch-compliance") in rows
    # Nothing else drifted: every row is about the instance that lost its patch.
    assert {row["resource_id"] for row in drift["drift"]} == {victim["resource_id"]}
    assert drift["summary"]["instances_drifted"] == 1 and drift["outcome"]["ok"]
    drift_findings = [f for f in all_findings(environment.url) if f["GeneratorId"] == "patchcycle/drift"]
    assert len(drift_findings) == len(drift["drift"])
    assert all(victim["resource_id"] in f["Resources"][0]["Id"] for f in drift_findings)
