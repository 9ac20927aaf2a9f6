"""The report's Auto Scaling groups, built from the real frames of a run on the immutable path: inventory rows of
DescribeInstances and DescribeAutoScalingGroups, the production plan, the bake and group plans, the bakes' results,
each group's refresh, the new instances' checks, the verdicts. The JSON, the CSVs, the KPIs and the HTML section."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import jsonschema
import pandas as pd
import pytest

from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable import bake_plan, group_plan, split_production
from patchcycle.core.immutable_rollout import (
    BAKE_RESULT_COLUMNS,
    GroupRefresh,
    bake_result,
    halt_reason,
    immutable_outcomes,
    refresh_entries,
    refresh_key,
    replacement_check,
)
from patchcycle.core.inventory import ec2_rows
from patchcycle.core.outcomes import ApprovalRecord, StagingRecord
from patchcycle.core.plan import PLAN_COLUMNS, split_cve_ids
from patchcycle.core.report import NEW_INSTANCE_CSV_COLUMNS, REPORT_SCHEMA, build_report, new_instances_csv, report_csv
from patchcycle.core.report_html import render_html
from patchcycle.core.scope import Scope, apply_scope
from patchcycle.core.staging import production_instances
from patchcycle.core.verdicts import install_verdicts
from tests.core.test_report import GENERATED_AT, RUN_ID, install_section

ACCOUNT, REGION = "123456789012", "us-east-1"
SOURCE, BAKED = "ami-0a1b2c3d4e5f60001", "ami-0baked0000000001"
PATCHES = {"ALAS-1": "CVE-2026-0001", "ALAS-2": "CVE-2026-0002"}
# Refreshed in name order: api replaced, web rolled back by its alarm, zzz halted after it.
GROUPS = {"api": ["i-a1", "i-a2"], "web": ["i-w1", "i-w2", "i-w3"], "zzz": ["i-z1"]}
NEW = ["i-n1", "i-n2"]  # api's new instances: i-n2 came up without ALAS-2
ALARM_REASON = "alarm web-asg-health in ALARM"
APPROVED = ApprovalRecord(decision="Approve", mode="auto", by="policy", at="2026-11-20T03:20:00Z", staging_passed=True)


def _inventory() -> pd.DataFrame:
    ids = [i for members in GROUPS.values() for i in members] + ["i-plain"]
    instances = [
        {
            "InstanceId": i,
            "State": {"Name": "running"},
            "ImageId": SOURCE,
            "InstanceType": "t3.medium",
            "PlatformDetails": "Linux/UNIX",
            "Tags": [{"Key": "Environment", "Value": "production"}, {"Key": "Name", "Value": f"{i}-name"}],
        }
        for i in ids
    ]
    managed = [
        {
            "InstanceId": i,
            "PingStatus": "Online",
            "PlatformType": "Linux",
            "PlatformName": "Amazon Linux",
            "PlatformVersion": "2023",
        }
        for i in ids
    ]
    groups = [
        {
            "AutoScalingGroupName": name,
            "Instances": [
                {"InstanceId": i, "LaunchTemplate": {"LaunchTemplateName": f"{name}-lt", "Version": "1"}}
                for i in members
            ],
        }
        for name, members in GROUPS.items()
    ]
    inventory = ec2_rows(ACCOUNT, REGION, instances, managed, groups)
    return apply_scope(inventory, Scope(include_tags={"Environment": ["production"]}))


def _plan(inventory: pd.DataFrame) -> pd.DataFrame:
    rows = [
        {
            "account_id": ACCOUNT,
            "region": REGION,
            "resource_type": "ec2",
            "resource_id": instance_id,
            "patch_id": patch_id,
            "title": f"{patch_id} security update",
            "classification": "Security",
            "severity": "Critical",
            "state": "MISSING",
            "cve_ids": cve,
            "patch_group": "web",
            "baseline_id": "pb-web",
        }
        for instance_id in inventory["resource_id"]
        for patch_id, cve in PATCHES.items()
    ]
    return typed_frame(rows, PLAN_COLUMNS)


def _refreshes() -> dict[str, GroupRefresh]:
    common = {"account_id": ACCOUNT, "region": REGION, "source_image_id": SOURCE, "source_version": "1"}
    api = GroupRefresh(
        **common,
        group="api",
        launch_template="api-lt",
        image_id=BAKED,
        version="2",
        refresh_id="0f3c-api",
        checkpoints=[50, 100],
        state="done",
        status="Successful",
        started_at="2026-11-20T03:30:00Z",
        ended_at="2026-11-20T03:34:30Z",
        default_version_set=True,
        old_instances=GROUPS["api"],
        new_instances=NEW,
        api_calls=9,
    )
    web = GroupRefresh(
        **common,
        group="web",
        launch_template="web-lt",
        image_id=BAKED,
        version="2",
        refresh_id="0f3c-web",
        state="done",
        status="RollbackSuccessful",
        status_reason="The instance refresh was rolled back",
        rollback_reason=ALARM_REASON,
        started_at="2026-11-20T03:35:00Z",
        ended_at="2026-11-20T03:41:00Z",
        old_instances=GROUPS["web"],
        api_calls=11,
    )
    zzz = GroupRefresh(
        account_id=ACCOUNT,
        region=REGION,
        group="zzz",
        launch_template="zzz-lt",
        source_image_id=SOURCE,
        state="halted",
        reason=halt_reason(web),
        old_instances=GROUPS["zzz"],
    )
    return {refresh_key(r.account_id, r.region, r.group): r for r in (api, web, zzz)}


def _report() -> dict[str, Any]:
    """The install report of the run: three groups on the immutable path and one instance patched in place."""
    inventory = _inventory()
    plan = _plan(inventory)
    production = production_instances(inventory, plan, set())
    _, immutable = split_production(production, "asg")
    bakes = bake_plan(immutable)
    groups = group_plan(immutable, bakes)
    execution = {
        "AutomationExecutionId": "e-bake-1",
        "AutomationExecutionStatus": "Success",
        "Outputs": {"createImage.ImageId": [BAKED], "findBuilder.InstanceId": ["i-builder"]},
    }
    results = typed_frame([bake_result(bakes.iloc[0].to_dict(), execution, None)], BAKE_RESULT_COLUMNS)
    refreshes = _refreshes()
    pinned = sorted(PATCHES)
    cves = sorted(PATCHES.values())
    checks = {
        "i-n1": replacement_check(
            "api", BAKED, pinned, dict.fromkeys(pinned, "INSTALLED"), cves, "2026-11-20T03:40:00Z", []
        ),
        "i-n2": replacement_check(
            "api",
            BAKED,
            pinned,
            {"ALAS-1": "INSTALLED", "ALAS-2": "MISSING"},
            cves,
            "2026-11-20T03:40:00Z",
            ["CVE-2026-0002"],
        ),
    }
    outcomes = immutable_outcomes(groups, results, APPROVED, StagingRecord(ran=True, passed=True), refreshes)
    # i-plain is patched in place: it has no outcome of the immutable path, so the report gives it a verdict from
    # its (missing) install outcome, as any instance the waves never reached.
    verdicts = install_verdicts(inventory, typed_frame([], {"resource_id": "str"}), plan, {}, outcomes)
    bake_patches = {str(b["bake_id"]): split_cve_ids(str(b["patch_ids"])) for b in bakes.to_dict("records")}
    section = {
        **install_section(),
        "auto_scaling_groups": refresh_entries(groups, refreshes, checks, bake_patches, outcomes),
    }
    report = build_report(
        RUN_ID, "install", inventory, verdicts, plan, plan.iloc[0:0], [], GENERATED_AT, install=section
    )
    return json.loads(json.dumps(report))  # as report.json holds it


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return _report()


def _groups(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {group["group"]: group for group in report["install"]["auto_scaling_groups"]}


def test_each_group_lists_its_refresh_and_its_instances_with_the_verdicts_of_the_resources(
    report: dict[str, Any],
) -> None:
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)
    groups = _groups(report)
    assert list(groups) == ["api", "web", "zzz"]
    api = groups["api"]
    assert (api["account_id"], api["region"], api["launch_template"]) == (ACCOUNT, REGION, "api-lt")
    assert (api["source_version"], api["version"], api["source_images"], api["image_id"]) == ("1", "2", [SOURCE], BAKED)
    assert (api["refresh_id"], api["status"], api["seconds"]) == ("0f3c-api", "Successful", 270.0)
    assert api["pinned_patches"] == ["ALAS-1", "ALAS-2"]
    web = groups["web"]
    assert web["status"] == "RollbackSuccessful" and web["rollback_reason"] == ALARM_REASON
    assert web["status_reason"] == "The instance refresh was rolled back" and web["new_instances"] == []
    zzz = groups["zzz"]
    assert (zzz["state"], zzz["reason"]) == ("halted", f"the instance refresh of web rolled back: {ALARM_REASON}")
    # Every inventory instance of a group carries the verdict the report gives it as a resource.
    resources = {r["resource_id"]: r for r in report["resources"]}
    listed = {i["instance_id"]: i["verdict"] for g in groups.values() for i in g["instances"]}
    assert listed == {
        **dict.fromkeys(GROUPS["api"], "REPLACED"),
        **dict.fromkeys(GROUPS["web"], "ROLLED_BACK"),
        **dict.fromkeys(GROUPS["zzz"], "SKIPPED_HALTED"),
    }
    assert all(resources[i]["verdict"] == verdict for i, verdict in listed.items())
    assert {i: resources[i]["auto_scaling_group"] for i in listed} == {i: g for g, ids in GROUPS.items() for i in ids}
    assert resources["i-plain"]["auto_scaling_group"] == ""


def test_the_new_instances_carry_patch_managers_and_inspectors_results(report: dict[str, Any]) -> None:
    new = {n["instance_id"]: n for n in _groups(report)["api"]["new_instances"]}
    assert new["i-n1"]["checked"] and new["i-n1"]["compliant"] and new["i-n1"]["cves_closed"]
    assert new["i-n1"]["cves"] == sorted(PATCHES.values()) and new["i-n1"]["still_active"] == []
    assert not new["i-n2"]["compliant"] and new["i-n2"]["not_installed"] == ["ALAS-2"]
    assert not new["i-n2"]["cves_closed"] and new["i-n2"]["still_active"] == ["CVE-2026-0002"]
    # The KPIs count them apart from the resources (the inventory did not know them).
    fleet = report["kpis"]["fleet"]
    assert fleet["replacements"] == {"launched": 2, "compliant": 1, "cves_closed": 1, "not_checked": 0}
    assert report["kpis"]["targets"][0]["replacements"] == fleet["replacements"]
    assert fleet["patched"] == len(GROUPS["api"]) and fleet["rolled_back"] == len(GROUPS["web"])


def test_the_resources_csv_names_each_instances_group_and_a_csv_lists_the_new_instances(
    report: dict[str, Any],
) -> None:
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert {r["resource_id"]: r["auto_scaling_group"] for r in rows} == {
        **{i: g for g, ids in GROUPS.items() for i in ids},
        "i-plain": "",
    }
    text = new_instances_csv(report)
    assert text.splitlines()[0] == ",".join(NEW_INSTANCE_CSV_COLUMNS)
    new = {r["instance_id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert list(new) == NEW
    assert new["i-n1"] | {"inspector_scanned_at": ""} == {
        "account_id": ACCOUNT,
        "region": REGION,
        "auto_scaling_group": "api",
        "instance_id": "i-n1",
        "refresh_id": "0f3c-api",
        "launch_template": "api-lt",
        "launch_template_version": "2",
        "image_id": BAKED,
        "replaced_images": SOURCE,
        "checked": "yes",
        "compliant": "yes",
        "not_installed": "",
        "cves_closed": "yes",
        "still_active_cves": "",
        "inspector_scanned_at": "",
    }
    assert (new["i-n2"]["compliant"], new["i-n2"]["not_installed"]) == ("no", "ALAS-2")
    assert (new["i-n2"]["cves_closed"], new["i-n2"]["still_active_cves"]) == ("no", "CVE-2026-0002")


def _visible_text(html: str) -> str:
    """What a reader sees: tags and their attributes (titles hold the verdict keys) removed, entities read."""
    text = re.sub(r"<[^>]+>", " ", html)
    return " ".join(text.replace("&rarr;", "→").replace("&#x27;", "'").split())


def test_the_page_tells_the_groups_in_words(report: dict[str, Any]) -> None:
    html = render_html(report)
    start = html.index('<h2 id="auto-scaling">')
    section = html[start : html.index("<h2", start + 1)]
    text = _visible_text(section)
    assert text.startswith("Auto Scaling groups (3)")
    for words in (
        "Replaced 0f3c-api",
        "Rolled back 0f3c-web " + ALARM_REASON,
        "Not refreshed: halted",
        "api-lt version 1 → 2 now the default version",
        f"{SOURCE} → {BAKED}",
        "4.5 min",
        "not run",
        "2: 2 replaced",
        "3: 3 rolled back",
        "1: 1 skipped: halted",
        "2: 1 compliant, 1 with their CVEs closed",
        "i-n1 launched by the refresh Proven patched Patch Manager: compliant: every pinned patch installed "
        "Amazon Inspector: 2 CVEs closed",
        "i-n2 launched by the refresh Not proven Patch Manager: NOT compliant: ALAS-2 not installed "
        "Amazon Inspector: NOT proven: still active CVE-2026-0002",
        "i-w1 at inventory Rolled back its group's instance refresh failed or a health alarm fired",
    ):
        assert words in text, words
    # Verdicts and refresh states read as words, never as their keys.
    for key in ("SKIPPED_HALTED", "ROLLED_BACK", "REPLACED", "RollbackSuccessful", "Successful"):
        assert key not in text, key
    kpis = _visible_text(html[html.index('<h2 id="kpis">') : html.index("<h2", html.index('<h2 id="kpis">') + 1)])
    assert "New instances from Auto Scaling refreshes 2 launched: 1 compliant, 1 with their CVEs closed" in kpis
