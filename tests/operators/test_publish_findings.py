"""PublishFindingsOperator against the sandbox: idempotent across runs, findings resolved once the run proves
them fixed (and reopened when they fail again), CVE findings from the inspect stage, failures that fail the task."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.sandbox import patching
from include.sandbox.server import SandboxServer
from patchcycle.config import Target
from patchcycle.core.asff import CVE_GENERATOR, PATCH_GENERATOR, build_findings, finding_id, product_arn
from patchcycle.core.frames import typed_frame
from patchcycle.core.inspection import CVE_COLUMNS
from patchcycle.core.inventory import INVENTORY_COLUMNS
from patchcycle.core.plan import COMPLIANCE_COLUMNS, PLAN_COLUMNS
from patchcycle.core.report import REPORT_SCHEMA, build_report
from patchcycle.core.scope import SCOPE_COLUMNS
from patchcycle.core.verdicts import VERDICT_COLUMNS, ReasonCode
from patchcycle.links.security_hub import SecurityHubFindingsLink
from patchcycle.operators.publish_findings import UPDATED_BY, PublishFindingsOperator
from patchcycle.run_artifacts import CVES, PUBLISHED_FINDINGS, REPORT_JSON, TARGET_ERROR, Step
from patchcycle.run_records import PublishedFindings
from tests.conftest import client_factory, sandbox_calls
from tests.operators.install_helpers import (
    BUCKET,
    LinkTi,
    context,
    cycle_config,
    linked_context,
    run_artifacts,
    s3_root,
)

ACCOUNT = "123456789012"
EAST, WEST = "us-east-1", "eu-west-1"
TARGET = Target("aws_default", EAST)
AL2023 = "ami-0a1b2c3d4e5f60001"


def scenario() -> dict[str, Any]:
    group = {"ami": AL2023}
    return {
        "name": "publish",
        "seed": 11,
        "clock": {"start": "2026-11-20T03:00:00Z"},
        "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
        "accounts": [
            {
                "id": ACCOUNT,
                "regions": {
                    EAST: {
                        "instance_groups": [
                            {"name": "behind", "count": 3, "patched_through": "2026-08-31", **group},
                            {"name": "current", "count": 2, "patched_through": "2026-11-20", **group},
                        ],
                        "s3_buckets": [{"name": BUCKET}],  # install mode keeps its artifacts in S3
                    },
                    WEST: {"instance_groups": [{"name": "west", "count": 1, **group}]},
                },
            }
        ],
        "securityhub": {"disabled_regions": [WEST]},
    }


SCENARIO = scenario()
SANDBOX_MAX_ATTEMPTS = 1


def config(root: str, mode: str = "scan") -> dict[str, Any]:
    """The run's validated config over both regions (scan mode may keep its artifacts in file://)."""
    return cycle_config(root, regions=(EAST, WEST), mode=mode)


def scan_config(tmp_path: Path) -> dict[str, Any]:
    return config(f"file://{tmp_path}")


def report_entry(server: SandboxServer, instance: Any) -> dict[str, Any]:
    """The report's entry for an instance, from the sandbox's Patch Manager state (as the match stage reads it)."""
    report = instance.report
    outstanding = {pid: state for pid, state in report.states.items() if state in patching.NON_COMPLIANT_STATES}
    patches = []
    for patch_id, state in sorted(outstanding.items()):
        patch = server.world.catalog.get(patch_id)
        assert patch is not None
        patches.append(
            {
                "patch_id": patch_id,
                "title": patch.title,
                "classification": patch.classification,
                "severity": patch.severity,
                "state": state,
                "cve_ids": list(patch.cves),
            }
        )
    counts = patching.report_counts(report)
    compliant = not outstanding
    entry = {
        "resource_id": instance.instance_id,
        "resource_type": "ec2",
        "account_id": ACCOUNT,
        "region": instance.region,
        "responsibility": "customer",
        "verdict": "ALREADY_COMPLIANT" if compliant else "NON_COMPLIANT",
        "compliance_state": "COMPLIANT" if compliant else "NON_COMPLIANT",
        "reason_code": ReasonCode.NO_MISSING_PATCHES if compliant else ReasonCode.PATCHES_OUTSTANDING,
        "reason": "nothing missing" if compliant else f"{len(patches)} outstanding patches",
        "name": instance.group,
        "environment": "production",
        "missing_patches": patches,
        "cve_ids": sorted({cve for p in patches for cve in p["cve_ids"]}),
        "patch_state": {
            "operation": report.operation,
            "operation_end_time": report.end.isoformat().replace("+00:00", "Z"),
            "baseline_id": report.baseline_id,
            "patch_group": report.patch_group,
            "missing": counts["MissingCount"],
            "failed": counts["FailedCount"],
            "installed_pending_reboot": counts["InstalledPendingRebootCount"],
            "installed": counts["InstalledCount"],
            "critical_non_compliant": counts["CriticalNonCompliantCount"],
            "security_non_compliant": counts["SecurityNonCompliantCount"],
            "other_non_compliant": counts["OtherNonCompliantCount"],
        },
        "wave": None,
        "snapshot_ids": [],
    }
    jsonschema.validate(entry, REPORT_SCHEMA["properties"]["resources"]["items"])
    return entry


def report_of(run_id: str, mode: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A schema-valid report holding these resources (the findings read only its run id, mode and resources;
    its other sections are those of a run that read nothing)."""
    empty = {
        name: typed_frame([], columns)
        for name, columns in (
            ("inventory", {**INVENTORY_COLUMNS, **SCOPE_COLUMNS}),
            ("verdicts", VERDICT_COLUMNS),
            ("plan", PLAN_COLUMNS),
            ("compliance", COMPLIANCE_COLUMNS),
        )
    }
    report = build_report(run_id, mode, **empty, missing_parts=[], generated_at=dt.datetime.now(dt.UTC))
    return report | {"resources": resources}


def write_report(server: SandboxServer, run_config: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The report of `run_id` (in the config's mode), for every instance of the sandbox as it stands (both
    regions)."""
    with server.world.request():
        resources = [
            report_entry(server, instance)
            for region in (EAST, WEST)
            for _, instance in sorted(server.world.instances(ACCOUNT, region).items())
        ]
    report = report_of(run_id, run_config["mode"], resources)
    run_artifacts(run_config, run_id).write(REPORT_JSON, report)
    return report


def non_compliant(report: dict[str, Any], region: str = EAST) -> set[str]:
    return {
        r["resource_id"]
        for r in report["resources"]
        if r["region"] == region and r["compliance_state"] == "NON_COMPLIANT"
    }


def publish(run_config: dict[str, Any], run_id: str, region: str = EAST, ti: LinkTi | None = None) -> dict[str, Any]:
    operator = PublishFindingsOperator(task_id="publish_findings", region_name=region, config=run_config)
    return dict(operator.execute(linked_context(run_id, ti) if ti else context(run_id)))


def published(run_config: dict[str, Any], run_id: str) -> PublishedFindings:
    """What the run's publish_findings recorded for TARGET."""
    return run_artifacts(run_config, run_id).read(PUBLISHED_FINDINGS, target=TARGET)


def hub_findings(server: SandboxServer) -> dict[str, dict[str, Any]]:
    hub = client_factory(server.url)("securityhub", region=EAST)
    pages = hub.get_paginator("get_findings").paginate()
    return {f["Id"]: f for page in pages for f in page["Findings"]}


def foreign_finding(server: SandboxServer) -> str:
    """Import a finding of another patchcycle generator (drift) about one of the instances; returns its id."""
    instance = sorted(server.world.instances(ACCOUNT, EAST))[0]
    fid = finding_id(ACCOUNT, EAST, instance, "drift/patch/KB1")
    finding = {
        "SchemaVersion": "2018-10-08",
        "Id": fid,
        "ProductArn": product_arn(ACCOUNT, EAST),
        "GeneratorId": "patchcycle/drift",
        "AwsAccountId": ACCOUNT,
        "Types": ["Software and Configuration Checks/Patch Management/Drift"],
        "CreatedAt": "2026-11-19T00:00:00Z",
        "UpdatedAt": "2026-11-19T00:00:00Z",
        "Severity": {"Label": "LOW"},
        "Title": "Drift",
        "Description": "A patch went missing after the cycle",
        "Resources": [{"Type": "AwsEc2Instance", "Id": f"arn:aws:ec2:{EAST}:{ACCOUNT}:instance/{instance}"}],
    }
    hub = client_factory(server.url)("securityhub", region=EAST)
    assert hub.batch_import_findings(Findings=[finding])["SuccessCount"] == 1
    return fid


def install(server: SandboxServer, group: str) -> list[str]:
    """Patch a group's instances as a production wave would (straight in the sandbox)."""
    with server.world.request():
        now = server.world.now()
        chosen = [i for i in server.world.instances(ACCOUNT, EAST).values() if i.group == group]
        for instance in chosen:
            patching.install(server.world, instance, now, now)
    return sorted(i.instance_id for i in chosen)


def test_publishing_the_same_report_twice_updates_and_never_duplicates(
    fresh_server: SandboxServer, tmp_path: Path
) -> None:
    run_config = scan_config(tmp_path)
    report = write_report(fresh_server, run_config, "run_1")
    expected = {finding_id(ACCOUNT, EAST, iid, "patch-compliance") for iid in non_compliant(report)}
    assert len(expected) == 3
    foreign = foreign_finding(fresh_server)  # another patchcycle generator's: not this task's to count or touch

    ti = LinkTi()
    first = publish(run_config, "run_1", ti=ti)
    # The task links to the findings it reconciles: its generators', in its account and region, active.
    assert ti.xcom[SecurityHubFindingsLink.key] == {
        "region_name": EAST,
        "aws_domain": "aws.amazon.com",
        "account_id": ACCOUNT,
        "generator_ids": [PATCH_GENERATOR, CVE_GENERATOR],
    }
    assert ti.url(SecurityHubFindingsLink()) == (
        f"https://console.aws.amazon.com/securityhub/home?region={EAST}#/findings?search="
        "GeneratorId%3D%255Coperator%255C%253AEQUALS%255C%253Apatchcycle%252Fpatch-compliance"
        "%26GeneratorId%3D%255Coperator%255C%253AEQUALS%255C%253Apatchcycle%252Fcve"
        f"%26AwsAccountId%3D%255Coperator%255C%253AEQUALS%255C%253A{ACCOUNT}"
        f"%26Region%3D%255Coperator%255C%253AEQUALS%255C%253A{EAST}"
        "%26RecordState%3D%255Coperator%255C%253AEQUALS%255C%253AACTIVE"
    )
    assert first == {
        "aws_conn_id": "aws_default",
        "region_name": EAST,
        "imported": 3,
        "new": 3,
        "updated": 0,
        "resolved": 0,
        "reopened": 0,
        "failed": 0,
        "left_alone": 0,
    }
    stored = hub_findings(fresh_server)
    assert stored.pop(foreign)["Workflow"] == {"Status": "NEW"}
    assert set(stored) == expected
    assert {f["GeneratorId"] for f in stored.values()} == {PATCH_GENERATOR}
    document = published(run_config, "run_1")
    assert document.counts["imported"] == 3 and document.calls == {
        "BatchImportFindings": 1,
        "BatchUpdateFindings": 0,
    }
    assert (document.run_id, document.mode, document.account_id) == ("run_1", "scan", ACCOUNT)

    # The same report again, in another run's store: every finding is updated in place.
    run_artifacts(run_config, "run_2").write(REPORT_JSON, run_artifacts(run_config, "run_1").read(REPORT_JSON))
    second = publish(run_config, "run_2")
    assert (second["imported"], second["new"], second["updated"], second["resolved"]) == (3, 0, 3, 0)
    again = hub_findings(fresh_server)
    assert set(again) == expected | {foreign}
    for fid in expected:
        assert again[fid]["CreatedAt"] == stored[fid]["CreatedAt"]
        assert again[fid]["UpdatedAt"] >= stored[fid]["UpdatedAt"]


def test_a_finding_is_resolved_once_its_instance_is_patched_and_reopened_if_it_fails_again(
    fresh_server: SandboxServer, tmp_path: Path
) -> None:
    run_config = scan_config(tmp_path)
    write_report(fresh_server, run_config, "run_1")
    publish(run_config, "run_1")
    patched = install(fresh_server, "behind")
    updates = sandbox_calls(fresh_server.url, "securityhub:BatchUpdateFindings")

    write_report(fresh_server, run_config, "run_2")
    summary = publish(run_config, "run_2")
    assert (summary["imported"], summary["resolved"], summary["failed"]) == (0, 3, 0)
    assert sandbox_calls(fresh_server.url, "securityhub:BatchUpdateFindings") - updates == 1
    stored = hub_findings(fresh_server)
    for iid in patched:
        finding = stored[finding_id(ACCOUNT, EAST, iid, "patch-compliance")]
        assert finding["Workflow"] == {"Status": "RESOLVED"}
        assert finding["Note"]["Text"] == "Resolved by patch cycle run run_2"
        assert finding["Note"]["UpdatedBy"] == UPDATED_BY == "patchcycle"
    document = published(run_config, "run_2")
    assert document.resolved_ids == sorted(finding_id(ACCOUNT, EAST, iid, "patch-compliance") for iid in patched)

    # A later run finds one of them failing again: the finding reopens rather than staying resolved.
    victim = patched[0]
    with fresh_server.world.request():
        instance = fresh_server.world.instance(ACCOUNT, EAST, victim)
        assert instance is not None and instance.report is not None
        instance.report.states[next(iter(instance.report.states))] = patching.FAILED
    write_report(fresh_server, run_config, "run_3")
    third = publish(run_config, "run_3")
    assert (third["new"], third["updated"], third["reopened"], third["resolved"]) == (0, 1, 1, 0)
    reopened = hub_findings(fresh_server)[finding_id(ACCOUNT, EAST, victim, "patch-compliance")]
    assert reopened["Workflow"] == {"Status": "NEW"} and "run_3" in reopened["Note"]["Text"]
    assert published(run_config, "run_3").reopened_ids == [reopened["Id"]]


def cve_table(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return typed_frame(
        [
            {
                "account_id": ACCOUNT,
                "region": EAST,
                "resource_id": instance,
                "cve_id": cve,
                "patch_ids": "ALAS2023-2026-1134",
                "severity": "CRITICAL",
                "status": status,
                "reason": "Inspector's rescan after the install",
                "finding_arn": f"arn:aws:inspector2:{EAST}:{ACCOUNT}:finding/{cve}",
                "last_scanned_at": "2026-11-20T04:00:00Z",
            }
            for instance, cve, status in rows
        ],
        CVE_COLUMNS,
    )


def test_install_mode_publishes_still_active_cves_and_resolves_remediated_ones(fresh_server: SandboxServer) -> None:
    install_config = config(s3_root("publish-findings"), mode="install")
    write_report(fresh_server, install_config, "run_1")
    target = sorted(
        i.instance_id for i in fresh_server.world.instances(ACCOUNT, EAST).values() if i.group == "current"
    )[0]
    rows = [(target, "CVE-2026-21001", "STILL_ACTIVE"), (target, "CVE-2026-25001", "UNVERIFIED")]
    run_artifacts(install_config, "run_1").write(CVES, cve_table(rows), target=TARGET)
    summary = publish(install_config, "run_1")
    assert summary["new"] == 3 + 1  # three non-compliant instances, one active CVE; UNVERIFIED is no evidence
    active = hub_findings(fresh_server)[finding_id(ACCOUNT, EAST, target, "CVE-2026-21001")]
    assert active["GeneratorId"] == CVE_GENERATOR and active["Vulnerabilities"][0]["Id"] == "CVE-2026-21001"

    write_report(fresh_server, install_config, "run_2")
    remediated = cve_table([(target, "CVE-2026-21001", "REMEDIATED")])
    run_artifacts(install_config, "run_2").write(CVES, remediated, target=TARGET)
    summary = publish(install_config, "run_2")
    assert (summary["resolved"], summary["updated"], summary["new"]) == (1, 3, 0)
    assert hub_findings(fresh_server)[active["Id"]]["Workflow"] == {"Status": "RESOLVED"}

    # A scan-mode run has no Inspector evidence: it reads no CVE table (even one left in its store) and leaves
    # the CVE findings as they are.
    scan = config(install_config["artifact_root"])
    reopen = cve_table([(target, "CVE-2026-21001", "STILL_ACTIVE")])
    write_report(fresh_server, scan, "run_3")
    run_artifacts(scan, "run_3").write(CVES, reopen, target=TARGET)
    summary = publish(scan, "run_3")
    assert (summary["resolved"], summary["reopened"], summary["new"]) == (0, 0, 0)
    assert hub_findings(fresh_server)[active["Id"]]["Workflow"] == {"Status": "RESOLVED"}


def test_refused_findings_fail_the_task_after_the_rest_are_sent(
    fresh_server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = build_findings

    def one_broken(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        found.findings[0]["Title"] = " "  # ASFF refuses a blank title
        return found

    monkeypatch.setattr("patchcycle.operators.publish_findings.build_findings", one_broken)
    run_config = scan_config(tmp_path)
    report = write_report(fresh_server, run_config, "run_1")
    with pytest.raises(AirflowFailException, match="refused 1 finding") as raised:
        publish(run_config, "run_1")
    assert "InvalidInput" in str(raised.value)
    assert len(hub_findings(fresh_server)) == len(non_compliant(report)) - 1
    document = published(run_config, "run_1")
    assert document.counts["failed"] == 1 and document.failed_imports[0]["ErrorCode"] == "InvalidInput"
    error = run_artifacts(run_config, "run_1").read(TARGET_ERROR, step=Step.SECURITY_HUB, target=TARGET)
    assert "refused 1 finding" in error.error and (error.aws_conn_id, error.region) == ("aws_default", EAST)


def test_a_region_without_security_hub_fails_naming_it(fresh_server: SandboxServer, tmp_path: Path) -> None:
    run_config = scan_config(tmp_path)
    write_report(fresh_server, run_config, "run_1")
    with pytest.raises(
        AirflowFailException, match=f"securityhub:GetFindings failed in account {ACCOUNT}, region {WEST}"
    ):
        publish(run_config, "run_1", region=WEST)


def test_no_report_no_publishing(tmp_path: Path) -> None:
    run_config = scan_config(tmp_path)
    artifacts = run_artifacts(run_config, "run_1")
    with pytest.raises(AirflowFailException, match=rf"^{re.escape(artifacts.uri(REPORT_JSON))} is missing"):
        publish(run_config, "run_1")
    assert artifacts.read(TARGET_ERROR, step=Step.SECURITY_HUB, target=TARGET).stage == Step.SECURITY_HUB
    assert not artifacts.exists(PUBLISHED_FINDINGS, target=TARGET)
