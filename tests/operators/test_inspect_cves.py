"""InspectCvesOperator against the sandbox: after real installs (pinned override lists, one without a reboot, one
failing), verify's read-back and Inspector's rescans, each (instance, CVE of its pinned patches) gets its status,
and the residual critical and high findings are listed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from airflow.providers.amazon.aws.links.ec2 import EC2InstanceDashboardLink
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError

from include.sandbox.server import SandboxServer
from patchcycle.core.inspection import CVE_COLUMNS, RESIDUAL_COLUMNS
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.inspector import InspectorHook
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.links.inspector import InspectorFindingsLink
from patchcycle.operators.inspect_cves import InspectCvesOperator
from patchcycle.operators.verify_install import VerifyInstallOperator
from patchcycle.run_artifacts import (
    CVES,
    INVENTORY,
    INVENTORY_SUMMARY,
    MATCH_COMPLIANCE,
    MATCH_PLAN,
    OVERRIDES,
    PRODUCTION,
    PROFILES,
    RDS_PLAN,
    RESIDUAL,
    SCAN_FAILURES,
    TARGET_ERROR,
    VERIFIED_PATCHES,
    VERIFY_COMPLIANCE,
    WAVE_PLAN,
    WAVE_SENT,
    Artifact,
    RunArtifacts,
    Step,
)
from patchcycle.run_records import SentCommand
from patchcycle.triggers.inspector_rescan import InspectorRescanTrigger
from tests.conftest import advance_clock, client_factory, first_trigger_payload
from tests.operators.install_helpers import (
    ACCOUNT,
    FAILING_PATCH,
    REGION,
    TARGET,
    LinkTi,
    context,
    copy_run,
    cycle_config,
    deferral,
    linked_context,
    plan_run,
    run_artifacts,
    s3_root,
    scenario,
)

RUN = "scheduled__inspect"
DELAY = 300.0  # simulated seconds from a patch-state change to Inspector's rescan
WAIT_MINUTES = 0.02  # the operator's bound on the rescan wait: a little over a second
UNPATCHED_CVE = "CVE-2026-40117"
UNKNOWN_CVE = "CVE-2026-99999"  # listed by Patch Manager for a patch, never reported by Inspector
NOT_FOUND_PATCH = "ALAS2023-2026-1101"
# The tests share `cycle`, a plan, two waves of installs, verify and the inspect task (about 6 s): not in test-fast.
pytestmark = pytest.mark.slow


def inspect_scenario() -> dict[str, Any]:
    return scenario(
        "inspect",
        inspector={
            "rescan_delay_seconds": DELAY,
            "unpatched_findings": [{"group": "web", "cve": UNPATCHED_CVE, "severity": "HIGH", "package": "libssh2"}],
        },
    )


SCENARIO = inspect_scenario()


ROOT = s3_root("inspect-cves")
CONFIG = cycle_config(ROOT, inspector_wait_minutes=WAIT_MINUTES)
# What the stages before inspect leave a run: inventory, match, plan_install, the waves' sent records (copied apart:
# they are per wave) and verify.
PLANNED = (
    INVENTORY,
    RDS_PLAN,
    INVENTORY_SUMMARY,
    MATCH_PLAN,
    MATCH_COMPLIANCE,
    SCAN_FAILURES,
    PRODUCTION,
    PROFILES,
    WAVE_PLAN,
    OVERRIDES,
)
VERIFIED = (VERIFY_COMPLIANCE, VERIFIED_PATCHES)


@dataclass
class Cycle:
    artifacts: RunArtifacts
    roles: dict[str, list[str]]
    trigger: InspectorRescanTrigger
    payload: dict[str, Any]
    summary: dict[str, Any]
    cves: pd.DataFrame
    residual: pd.DataFrame
    installed_at: dict[str, str]
    links: LinkTi


def send(
    server: SandboxServer, artifacts: RunArtifacts, instances: list[str], profile_of: dict[str, str], reboot: str
) -> list[SentCommand]:
    """The pinned install, one command per profile, as a wave sends it; returns what the wave records as sent."""
    overrides = artifacts.read(OVERRIDES)
    hook = PatchManagerHook(aws_conn_id="aws_default", region_name=REGION)
    sent = []
    for profile in sorted({profile_of[i] for i in instances}):
        batch = sorted(i for i in instances if profile_of[i] == profile)
        command_id = hook.send_patch_baseline(
            batch,
            operation="Install",
            max_concurrency="50",
            max_errors="100%",
            reboot_option=reboot,
            install_override_list=overrides[profile],
        )
        sent.append(SentCommand(command_id=command_id, instance_ids=batch))
    advance_clock(server.url, 60)  # delivery, install and reboot are done
    return sent


def add_unknown_cve(artifacts: RunArtifacts) -> None:
    """Patch Manager lists one more CVE for a patch than Inspector will ever report."""
    plan = artifacts.read(MATCH_PLAN, target=TARGET)
    rows = plan["patch_id"] == NOT_FOUND_PATCH
    assert rows.any()
    plan.loc[rows, "cve_ids"] = plan.loc[rows, "cve_ids"].map(
        lambda ids: ";".join(sorted([*split_cve_ids(ids), UNKNOWN_CVE]))
    )
    artifacts.write(MATCH_PLAN, plan, target=TARGET)


def inspect_operator() -> InspectCvesOperator:
    return InspectCvesOperator(task_id="inspect", region_name=REGION, config=CONFIG)


def copy_cycle(cycle: Cycle, run_id: str, artifacts: tuple[Artifact[Any], ...], waves: bool) -> RunArtifacts:
    """A run holding these artifacts of the cycle's run (and its waves' sent records if `waves`); its artifacts."""
    copied = copy_run(CONFIG, RUN, run_id, artifacts, [TARGET])
    for wave in (1, 2) if waves else ():
        copied.write(WAVE_SENT, cycle.artifacts.read(WAVE_SENT, wave=wave, target=TARGET), wave=wave, target=TARGET)
    return copied


@pytest.fixture(scope="module")
def cycle(server: SandboxServer) -> Cycle:
    """Plan, installs in two waves (the second after the first's rescan), verify, then the inspect task."""
    plan_run(server, CONFIG, RUN)
    artifacts = run_artifacts(CONFIG, RUN)
    add_unknown_cve(artifacts)
    production = artifacts.read(PRODUCTION)
    profile_of = dict(zip(production["resource_id"], production["profile_id"], strict=True))
    failing = {i.instance_id for i in server.world.instances(ACCOUNT, REGION).values() if i.faults.install_fails}
    web = sorted(production.loc[production["patch_group"] == "web", "resource_id"])
    windows = sorted(production.loc[production["patch_group"] == "windows", "resource_id"])
    good_web = [i for i in web if i not in failing]
    roles = {
        "remediated": [*good_web[:2], windows[0]],
        "no_reboot": [good_web[2]],
        "failing": sorted(failing)[:1],
        "late": [windows[1]],
        "undelivered": [good_web[3]],  # the wave lists it, but its agent never got the command
    }
    wave_1 = send(server, artifacts, [*roles["remediated"], *roles["failing"]], profile_of, "RebootIfNeeded")
    wave_1 += send(server, artifacts, roles["no_reboot"], profile_of, "NoReboot")
    undelivered = SentCommand(command_id="5b8c4f2e-0000-4000-8000-000000000001", instance_ids=roles["undelivered"])
    artifacts.write(WAVE_SENT, [*wave_1, undelivered], wave=1, target=TARGET)
    advance_clock(server.url, DELAY)  # Inspector rescans wave 1's instances
    wave_2 = send(server, artifacts, roles["late"], profile_of, "RebootIfNeeded")  # rescanned DELAY later
    artifacts.write(WAVE_SENT, wave_2, wave=2, target=TARGET)
    VerifyInstallOperator(task_id="verify", region_name=REGION, config=CONFIG).execute(context(RUN))

    operator = inspect_operator()
    deferred_at = datetime.now(UTC)
    links = LinkTi()
    deferred = deferral(operator, linked_context(RUN, links))
    wait = timedelta(minutes=WAIT_MINUTES)
    deadline = datetime.fromisoformat(deferred.trigger.deadline.replace("Z", "+00:00"))
    assert deferred_at + wait <= deadline <= datetime.now(UTC) + wait
    trigger = deferred.trigger
    assert isinstance(trigger, InspectorRescanTrigger) and deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(minutes=WAIT_MINUTES) + timedelta(minutes=10)
    payload = first_trigger_payload(trigger)
    summary = operator.execute_complete(context(RUN), payload)
    compliance = artifacts.read(VERIFY_COMPLIANCE, target=TARGET)
    return Cycle(
        artifacts=artifacts,
        roles=roles,
        trigger=trigger,
        payload=payload,
        summary=summary,
        cves=artifacts.read(CVES, target=TARGET),
        residual=artifacts.read(RESIDUAL, target=TARGET),
        installed_at={
            str(r): iso_utc(t) for r, t in zip(compliance["resource_id"], compliance["operation_end_time"], strict=True)
        },
        links=links,
    )


def expected_pairs(artifacts: RunArtifacts, instances: list[str]) -> dict[tuple[str, str], set[str]]:
    """(instance, CVE) -> pinned patches carrying it: production's pinned lists and every plan row's CVE ids."""
    production = artifacts.read(PRODUCTION)
    plan = artifacts.read(MATCH_PLAN, target=TARGET)
    cves_of: dict[str, set[str]] = {}
    for patch_id, ids in zip(plan["patch_id"], plan["cve_ids"], strict=True):
        cves_of.setdefault(patch_id, set()).update(split_cve_ids(ids))
    pairs: dict[tuple[str, str], set[str]] = {}
    for instance_id, pinned in zip(production["resource_id"], production["patch_ids"], strict=True):
        if instance_id in instances:
            for patch_id in split_cve_ids(pinned):
                for cve in cves_of.get(patch_id, ()):
                    pairs.setdefault((instance_id, cve), set()).add(patch_id)
    return pairs


def rows_of(cycle: Cycle, instance_id: str) -> dict[str, dict[str, Any]]:
    return {r["cve_id"]: r for r in cycle.cves[cycle.cves["resource_id"] == instance_id].to_dict("records")}


def test_the_trigger_waits_for_every_installed_instance_until_the_bound(cycle: Cycle) -> None:
    sent = sorted(i for name, role in cycle.roles.items() if name != "undelivered" for i in role)
    assert cycle.trigger.installed_at == {i: cycle.installed_at[i] for i in sent}  # not the undelivered one
    assert (cycle.trigger.aws_conn_id, cycle.trigger.region_name, cycle.trigger.poll_seconds) == (
        "aws_default",
        REGION,
        0.1,
    )
    assert cycle.payload["status"] == "deadline"
    assert set(cycle.payload["not_rescanned"]) == set(cycle.roles["late"])
    assert set(cycle.payload["rescanned"]) == set(sent) - set(cycle.roles["late"])
    for instance_id, scanned in cycle.payload["rescanned"].items():
        assert scanned >= cycle.installed_at[instance_id]


def test_one_row_per_instance_and_cve_of_its_pinned_patches(cycle: Cycle) -> None:
    sent = [i for role in cycle.roles.values() for i in role]
    pairs = expected_pairs(cycle.artifacts, sent)
    assert list(cycle.cves.columns) == list(CVE_COLUMNS)
    assert set(zip(cycle.cves["resource_id"], cycle.cves["cve_id"], strict=True)) == set(pairs)
    assert len(cycle.cves) == len(pairs)
    for row in cycle.cves.to_dict("records"):
        assert set(split_cve_ids(row["patch_ids"])) == pairs[(row["resource_id"], row["cve_id"])]
        assert (row["account_id"], row["region"]) == (ACCOUNT, REGION)
    statuses = cycle.cves["status"].value_counts().to_dict()
    assert cycle.summary["statuses"] == {
        s: statuses.get(s, 0) for s in ("REMEDIATED", "STILL_ACTIVE", "NOT_FOUND", "UNVERIFIED")
    }
    assert (cycle.summary["instances"], cycle.summary["cves"]) == (len(sent), len(cycle.cves))


def test_installed_patches_cves_are_remediated_and_one_inspector_never_had_is_not_found(cycle: Cycle) -> None:
    for instance_id in cycle.roles["remediated"]:
        rows = rows_of(cycle, instance_id)
        assert rows
        for cve, row in rows.items():
            if cve == UNKNOWN_CVE:
                assert row["status"] == "NOT_FOUND" and row["finding_arn"] == ""
                assert row["reason"] == "Inspector reported no finding for it on this instance"
            else:
                assert row["status"] == "REMEDIATED", row
                assert row["reason"].startswith("finding closed at ") and row["finding_arn"]
                assert row["last_scanned_at"] >= cycle.installed_at[instance_id]
    assert any(UNKNOWN_CVE in rows_of(cycle, i) for i in cycle.roles["remediated"])


def test_a_pending_reboot_keeps_the_kernel_cves_active_and_names_the_reboot(
    server: SandboxServer, cycle: Cycle
) -> None:
    (instance_id,) = cycle.roles["no_reboot"]
    rows = rows_of(cycle, instance_id)
    catalog = server.world.catalog
    reboot_patches = {p for r in rows.values() for p in split_cve_ids(r["patch_ids"]) if catalog.get(p).reboot}  # type: ignore[union-attr]
    assert reboot_patches, "a web instance is pinned to a kernel update"
    for cve, row in rows.items():
        carriers = set(split_cve_ids(row["patch_ids"]))
        if carriers & reboot_patches:
            assert row["status"] == "STILL_ACTIVE"
            assert row["reason"] == "pending reboot: " + ", ".join(
                f"{p} is INSTALLED_PENDING_REBOOT" for p in sorted(carriers)
            )
        elif cve != UNKNOWN_CVE:
            assert row["status"] == "REMEDIATED", row


def test_a_failed_install_keeps_its_cves_active(server: SandboxServer, cycle: Cycle) -> None:
    (instance_id,) = cycle.roles["failing"]
    rows = rows_of(cycle, instance_id)
    failed = [r for r in rows.values() if FAILING_PATCH in split_cve_ids(r["patch_ids"])]
    assert failed
    for row in failed:
        assert (row["status"], row["reason"]) == ("STILL_ACTIVE", f"install failed: {FAILING_PATCH} FAILED")
        assert row["severity"] == "CRITICAL"  # Inspector's, for the Critical OpenSSL advisory
    others = [r for cve, r in rows.items() if r not in failed and cve != UNKNOWN_CVE]
    assert others and {r["status"] for r in others} == {"REMEDIATED"}


def test_an_instance_the_install_never_reached_keeps_its_cves_active(cycle: Cycle) -> None:
    (instance_id,) = cycle.roles["undelivered"]
    rows = rows_of(cycle, instance_id)
    assert rows
    for cve, row in rows.items():
        if cve != UNKNOWN_CVE:
            (patch_id,) = split_cve_ids(row["patch_ids"])
            assert (row["status"], row["reason"]) == ("STILL_ACTIVE", f"patch not installed: {patch_id} is MISSING")


def test_an_instance_not_rescanned_within_the_bound_is_unverified(cycle: Cycle) -> None:
    (instance_id,) = cycle.roles["late"]
    rows = rows_of(cycle, instance_id)
    assert rows
    for row in rows.values():
        assert row["status"] == "UNVERIFIED"
        assert row["reason"] == f"Inspector did not rescan {instance_id} within {WAIT_MINUTES:g} minutes"
        assert row["last_scanned_at"] < cycle.installed_at[instance_id]


def test_residual_findings_are_the_active_critical_and_high_ones_not_targeted(
    server: SandboxServer, cycle: Cycle
) -> None:
    sent = [i for role in cycle.roles.values() for i in role]
    pairs = expected_pairs(cycle.artifacts, sent)
    inspector = client_factory(server.url)("inspector2", region=REGION)
    want = set()
    for instance_id in sent:
        pages = inspector.get_paginator("list_findings").paginate(
            filterCriteria={"resourceId": [{"comparison": "EQUALS", "value": instance_id}]}
        )
        for finding in (f for page in pages for f in page["findings"]):
            cve = finding["packageVulnerabilityDetails"]["vulnerabilityId"]
            if (
                finding["status"] == "ACTIVE"
                and finding["severity"] in ("CRITICAL", "HIGH")
                and (instance_id, cve) not in pairs
            ):
                want.add((instance_id, cve))
    assert list(cycle.residual.columns) == list(RESIDUAL_COLUMNS)
    assert set(zip(cycle.residual["resource_id"], cycle.residual["cve_id"], strict=True)) == want
    web = {
        *cycle.roles["no_reboot"],
        *cycle.roles["failing"],
        *cycle.roles["remediated"][:2],
        *cycle.roles["undelivered"],
    }
    unpatched = cycle.residual[cycle.residual["cve_id"] == UNPATCHED_CVE]
    assert set(unpatched["resource_id"]) == web and set(unpatched["fixed_in"]) == {"NotAvailable"}
    assert cycle.summary["residual"] == len(cycle.residual)


def test_the_task_links_to_inspectors_findings_and_to_the_instances_it_inspected(cycle: Cycle) -> None:
    sent = sorted(i for role in cycle.roles.values() for i in role)
    assert cycle.links.url(InspectorFindingsLink()) == (
        f"https://console.aws.amazon.com/inspector/v2/home?region={REGION}#/findings/all"
    )
    assert cycle.links.url(EC2InstanceDashboardLink()) == (
        f"https://console.aws.amazon.com/ec2/home?region={REGION}#Instances:instanceId=:{',:'.join(sent)}"
    )


def test_nothing_sent_writes_empty_frames_without_waiting(server: SandboxServer, cycle: Cycle) -> None:
    run_id = "scheduled__nothing_sent"
    artifacts = copy_cycle(cycle, run_id, PLANNED, waves=False)  # no wave sent records: nothing was installed
    links = LinkTi()
    summary = inspect_operator().execute(linked_context(run_id, links))  # no TaskDeferred
    assert set(links.xcom) == {InspectorFindingsLink.key}  # no instances to link to
    assert summary["cves"] == 0 and summary["residual"] == 0
    for artifact, columns in ((CVES, CVE_COLUMNS), (RESIDUAL, RESIDUAL_COLUMNS)):
        written = artifacts.read(artifact, target=TARGET)
        assert written.empty and list(written.columns) == list(columns)


def test_an_aws_error_is_recorded_for_the_report(
    server: SandboxServer, cycle: Cycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = "scheduled__inspect_denied"
    artifacts = copy_cycle(cycle, run_id, (*PLANNED, *VERIFIED), waves=True)

    def denied(self: InspectorHook, *args: Any, **kwargs: Any) -> Any:
        error = {"Code": "AccessDeniedException", "Message": "not authorized to perform: inspector2:ListFindings"}
        raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}}, "ListFindings")

    monkeypatch.setattr(InspectorHook, "findings", denied)
    with pytest.raises(
        AirflowFailException, match=rf"inspector2:ListFindings failed in account {ACCOUNT}, region {REGION}"
    ):
        inspect_operator().execute_complete(context(run_id), cycle.payload)
    error = artifacts.read(TARGET_ERROR, step=Step.INSPECT, target=TARGET)
    assert error.stage == "inspect" and "AccessDeniedException" in error.error
    assert not artifacts.exists(CVES, target=TARGET)
