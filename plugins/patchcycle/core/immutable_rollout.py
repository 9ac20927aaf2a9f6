"""The immutable path as it runs: the baked AMIs and their proof, the approver's section, the auto policy's
condition, each group's instance refresh, and what happened to every Auto Scaling instance of the inventory.

core/immutable plans it (one bake per group's launch AMI and patch list, the groups to refresh); this module judges
what the bake, staging, Inspector and the refreshes did. Pure: the operators fetch, this decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable import NO_LAUNCH_TEMPLATE
from patchcycle.core.outcomes import ApprovalRecord, StagingRecord
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.staging import PROFILE_COLUMNS, instance_family, most_common
from patchcycle.core.verdicts import OUTCOME_COLUMNS, REASON_CODES, Outcome, ReasonCode

# One row per planned bake, once its PatchCycle-BakeAmi execution ended (or could not start).
BAKE_RESULT_COLUMNS: Final[Mapping[str, str]] = {
    "bake_id": "str",
    "account_id": "str",
    "region": "str",
    "source_image_id": "str",
    "image_id": "str",  # the baked AMI; "" when the bake failed
    "execution_id": "str",  # the PatchCycle-BakeAmi execution
    "status": "str",  # its AutomationExecutionStatus (Success, Failed, TimedOut, ...)
    "builder_instance_id": "str",
    "patch_ids": "str",  # the pinned patches baked in, ";"-joined
    "baked": "bool",
    "reason": "str",  # why the bake failed; "" when it did not
}

# One row per baked AMI: what Inspector saw on the staging instance launched from it.
IMAGE_PROOF_COLUMNS: Final[Mapping[str, str]] = {
    "bake_id": "str",
    "account_id": "str",
    "region": "str",
    "image_id": "str",
    "instance_id": "str",  # the staging instance launched from the baked AMI
    "scanned_at": "str",  # Inspector's lastScannedAt of it; "" when it was not scanned
    "cves": "str",  # the CVEs the pinned patches fix, ";"-joined
    "closed": "str",  # those Inspector shows no active finding for, on a scanned instance
    "still_active": "str",  # those with an active finding
    "proven": "bool",
    "reason": "str",  # why it is not proven; "" when it is
}

# StartInstanceRefresh statuses the rollout takes as done; the others halt the groups after it.
SUCCESSFUL: Final = "Successful"
ROLLED_BACK_STATUSES: Final = frozenset({"RollbackSuccessful", "RollbackFailed"})


@dataclass(frozen=True, kw_only=True)
class GroupRefresh:
    """One Auto Scaling group's refresh as the rollout ran it (the record refresh_groups keeps per group)."""

    account_id: str
    region: str
    group: str
    launch_template: str
    source_version: str = ""  # the group's own launch template version when the refresh started
    source_image_id: str = ""
    image_id: str = ""  # the baked AMI it was refreshed onto
    version: str = ""  # the new launch template version (only ImageId changed)
    refresh_id: str = ""
    checkpoints: list[int] = field(default_factory=list)
    state: str = "pending"  # pending, refreshing, done, halted (not started: an earlier group failed), refused
    status: str = ""  # the refresh's final InstanceRefreshStatus
    status_reason: str = ""
    rollback_reason: str = ""
    started_at: str = ""  # AWS's StartTime
    ended_at: str = ""  # AWS's EndTime
    default_version_set: bool = False
    old_instances: list[str] = field(default_factory=list)  # its InService instances at inventory time
    new_instances: list[str] = field(default_factory=list)  # the instances the refresh launched and kept
    api_calls: int = 0  # the Auto Scaling and EC2 calls this group's refresh made
    reason: str = ""  # for people: why it was halted or refused
    foreign_refresh_id: str = ""  # halted at this group: a refresh this run did not start was replacing it
    # halted by a wave gate before this group's refresh (HALTED_BY_CALENDAR, HALTED_BY_ALARM); "": by a refresh
    halt_code: str = ""

    @property
    def seconds(self) -> float:
        """The refresh's duration on AWS's clock (0 when it did not run to an end)."""
        if not self.started_at or not self.ended_at:
            return 0.0
        return float((pd.Timestamp(self.ended_at) - pd.Timestamp(self.started_at)).total_seconds())


@dataclass(frozen=True, kw_only=True)
class ReplacementCheck:
    """One instance a refresh launched, checked after its group's refresh: Patch Manager's scan of it (every pinned
    patch of its baked AMI installed) and Amazon Inspector's findings on it (the pinned patches' CVEs closed)."""

    group: str
    image_id: str
    compliant: bool = False
    not_installed: list[str] = field(default_factory=list)  # pinned patches the scan did not report installed
    scanned_at: str = ""  # Inspector's lastScannedAt; "" when it did not scan the instance in time
    cves: list[str] = field(default_factory=list)  # the CVEs the pinned patches fix
    still_active: list[str] = field(default_factory=list)
    cves_closed: bool = False


INSTALLED_STATES: Final = frozenset({"INSTALLED", "INSTALLED_OTHER"})


def replacement_check(
    group: str,
    image_id: str,
    pinned: Sequence[str],
    patch_states: Mapping[str, str] | None,
    cves: Sequence[str],
    scanned_at: str,
    active: Sequence[str],
) -> ReplacementCheck:
    """A new instance's check: compliant when its scan reports every pinned patch installed; its CVEs closed when
    Inspector scanned it and shows none of the pinned patches' CVEs active. patch_states: patch id -> the
    DescribeInstancePatches State after its scan (None: no scan result)."""
    states = patch_states or {}
    missing = sorted(p for p in pinned if states.get(p) not in INSTALLED_STATES)
    still = sorted(set(cves) & set(active))
    return ReplacementCheck(
        group=group,
        image_id=image_id,
        compliant=patch_states is not None and not missing,
        not_installed=missing,
        scanned_at=scanned_at,
        cves=sorted(set(cves)),
        still_active=still,
        cves_closed=bool(scanned_at) and not still,
    )


def image_profiles(bakes: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Staging profiles (PROFILE_COLUMNS) for the baked AMIs: one replica per AMI that baked, launched from the
    baked AMI (not its source), profile id = the bake id. bakes: BAKE_PLAN_COLUMNS; results: BAKE_RESULT_COLUMNS."""
    baked = {str(r["bake_id"]): str(r["image_id"]) for r in results.to_dict("records") if r["baked"]}
    rows = [
        {
            "profile_id": str(bake["bake_id"]),
            "account_id": str(bake["account_id"]),
            "region": str(bake["region"]),
            "platform_name": str(bake["platform_name"]),
            "platform_type": str(bake["platform_type"]),
            "image_id": baked[str(bake["bake_id"])],
            "instance_family": instance_family(str(bake["instance_type"])),
            "instance_type": str(bake["instance_type"]),
            "patch_group": "",
            "patch_ids": str(bake["patch_ids"]),
            "production_instances": int(bake["instances"]),
            "staged": True,
        }
        for bake in bakes.to_dict("records")
        if str(bake["bake_id"]) in baked
    ]
    return typed_frame(rows, PROFILE_COLUMNS)


# What each step of PatchCycle-BakeAmi does, in words, for the reason of a bake that failed there (its branch
# steps cannot fail).
BAKE_STEP_WORDS: Final[Mapping[str, str]] = {
    "launchBuilder": "launching the builder instance",
    "launchBuilderInSubnet": "launching the builder instance",
    "launchBuilderWithoutProfile": "launching the builder instance",
    "launchBuilderInSubnetWithoutProfile": "launching the builder instance",
    "findBuilder": "finding the builder instance it launched",
    "waitForRunning": "waiting for the builder instance to run",
    "waitForSsmOnline": "waiting for the builder instance to be Online in Systems Manager",
    "installPatches": "installing the pinned patches on the builder instance",
    "checkPinnedPatches": "checking that Patch Manager reports every pinned patch installed",
    "getPlatform": "reading the builder instance's platform",
    "linuxHealthCheck": "running the health checks",
    "windowsHealthCheck": "running the health checks",
    "stopBuilder": "stopping the builder instance",
    "waitForStopped": "waiting for the builder instance to stop",
    "createImage": "creating the image",
    "waitForImage": "waiting for the image to be available",
    "assertImageAvailable": "waiting for the image to be available",
    "terminateBuilder": "terminating the builder instance",
}


def _failed_at(step: str) -> str:
    """ " while installing the pinned patches (step installPatches)", or " at step X" for a step without words."""
    if not step:
        return ""
    words = BAKE_STEP_WORDS.get(step)
    return f" while {words} (step {step})" if words else f" at step {step}"


def bake_result(
    bake: Mapping[str, Any], execution: Mapping[str, Any], failed_step: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A BAKE_RESULT_COLUMNS row from a bake (BAKE_PLAN_COLUMNS) and its GetAutomationExecution."""
    status = str(execution.get("AutomationExecutionStatus", ""))
    outputs = execution.get("Outputs") or {}
    image = [str(v) for v in outputs.get("createImage.ImageId", []) if v]
    builder = [str(v) for v in outputs.get("findBuilder.InstanceId", []) if v]
    baked = status == "Success" and bool(image)
    reason = ""
    if not baked:
        where = _failed_at(str((failed_step or {}).get("StepName") or ""))
        message = (failed_step or {}).get("FailureMessage") or execution.get("FailureMessage") or ""
        reason = f"PatchCycle-BakeAmi {status or 'did not end'}{where}" + (f": {message}" if message else "")
        if status == "Success" and not image:
            reason = "PatchCycle-BakeAmi succeeded without an image id in its outputs"
    return {
        "bake_id": str(bake["bake_id"]),
        "account_id": str(bake["account_id"]),
        "region": str(bake["region"]),
        "source_image_id": str(bake["image_id"]),
        "image_id": image[0] if baked else "",
        "execution_id": str(execution.get("AutomationExecutionId", "")),
        "status": status,
        "builder_instance_id": builder[0] if builder else "",
        "patch_ids": str(bake["patch_ids"]),
        "baked": baked,
        "reason": " ".join(reason.split())[:500],
    }


def image_proof(
    bake: Mapping[str, Any], instance_id: str, cves: Sequence[str], scanned_at: str, active: Sequence[str]
) -> dict[str, Any]:
    """An IMAGE_PROOF_COLUMNS row: the pinned CVEs are proven closed on the baked AMI's staging instance when
    Inspector scanned it and shows none of them active. bake: BAKE_RESULT_COLUMNS; active: the CVE ids of the
    instance's ACTIVE findings."""
    expected = sorted(set(cves))
    still = sorted(set(expected) & set(active))
    closed = sorted(set(expected) - set(still)) if scanned_at else []
    if not instance_id:
        reason = "no staging instance was launched from it"
    elif not scanned_at:
        reason = f"Amazon Inspector did not scan {instance_id} in time"
    elif still:
        reason = f"Amazon Inspector still reports {', '.join(still[:10])} on {instance_id}"
    else:
        reason = ""
    return {
        "bake_id": str(bake["bake_id"]),
        "account_id": str(bake["account_id"]),
        "region": str(bake["region"]),
        "image_id": str(bake["image_id"]),
        "instance_id": instance_id,
        "scanned_at": scanned_at,
        "cves": ";".join(expected),
        "closed": ";".join(closed),
        "still_active": ";".join(still),
        "proven": not reason,
        "reason": reason,
    }


def image_problems(
    bakes: pd.DataFrame, results: pd.DataFrame, proofs: pd.DataFrame | None, staging: pd.DataFrame
) -> list[str]:
    """Why the baked AMIs may not go to production ([] when every planned AMI baked, passed staging and Inspector
    proved it): the auto policy approves only then. staging: STAGING_RESULT_COLUMNS (the image replicas' rows
    have the bake id as profile id)."""
    by_bake = {str(r["bake_id"]): r for r in results.to_dict("records")}
    staged = {str(r["profile_id"]): r for r in staging.to_dict("records")}
    proven = {str(r["bake_id"]): r for r in proofs.to_dict("records")} if proofs is not None else None
    problems = []
    for bake in bakes.to_dict("records"):
        bake_id, source = str(bake["bake_id"]), str(bake["image_id"])
        result = by_bake.get(bake_id)
        if result is None:
            problems.append(f"{source} was not baked (the bake did not finish)")
            continue
        if not result["baked"]:
            problems.append(f"{source} was not baked: {result['reason']}")
            continue
        image = str(result["image_id"])
        check = staged.get(bake_id)
        if check is None:
            problems.append(f"{image} (baked from {source}) was not staged")
        elif not check["passed"]:
            problems.append(f"{image} (baked from {source}) failed staging: {check['reason']}")
        if proven is None:
            continue  # no Inspector proof was taken in this run
        proof = proven.get(bake_id)
        if proof is None:
            problems.append(f"{image} (baked from {source}): Amazon Inspector's proof is missing")
        elif not proof["proven"]:
            problems.append(f"{image} (baked from {source}): {proof['reason']}")
    return problems


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|") or " "


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]


def _count(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def approval_section(groups: pd.DataFrame, results: pd.DataFrame, proofs: pd.DataFrame, problems: Sequence[str]) -> str:
    """The approver's Markdown about the Auto Scaling groups: each group with its current and new AMI, what Amazon
    Inspector proved on the new AMI, and what stands in the way ("" when no group is on the immutable path).
    groups: GROUP_PLAN_COLUMNS; results: BAKE_RESULT_COLUMNS; proofs: IMAGE_PROOF_COLUMNS."""
    if groups.empty:
        return ""
    baked = {str(r["bake_id"]): r for r in results.to_dict("records")}
    proven = {str(r["bake_id"]): r for r in proofs.to_dict("records")}
    rows = []
    left_out = sorted({str(g["refused"]) for g in groups.to_dict("records") if str(g.get("refused") or "")})
    for group in groups.to_dict("records"):
        if str(group.get("refused") or ""):
            continue
        result = baked.get(str(group["bake_id"]))
        proof = proven.get(str(group["bake_id"]))
        new = str(result["image_id"]) if result is not None and result["baked"] else "not baked"
        if proof is None:
            inspector = "not checked"
        elif proof["proven"]:
            closed = len(split_cve_ids(str(proof["closed"])))
            inspector = f"{_count(closed, 'CVE', 'CVEs')} closed" if closed else "no CVE to close"
        else:
            inspector = str(proof["reason"])
        rows.append(
            [
                group["auto_scaling_group"],
                group["region"],
                int(group["instances"]),
                group["image_id"],
                new,
                inspector,
            ]
        )
    names = sorted(set(groups["auto_scaling_group"]))
    lines = [
        "## Auto Scaling groups: replaced by an instance refresh",
        "",
        f"{_count(len(names), 'group', 'groups')} ({_count(int(groups['instances'].sum()), 'instance', 'instances')}) "
        "are not patched in place: each gets a new launch template version on a baked AMI and an instance refresh "
        "that rolls back on its own if a health alarm fires.",
        "",
        *_table(["Group", "Region", "Instances", "Current AMI", "New AMI", "Amazon Inspector"], rows),
    ]
    if left_out:
        lines += ["", "Left out (the scope excludes one of their instances):", "", *[f"- {why}" for why in left_out]]
    if problems:
        lines += ["", "Not ready:", "", *[f"- {problem}" for problem in problems]]
    return "\n".join(lines) + "\n"


def refresh_key(account_id: str, region: str, group: str) -> str:
    """The key of a group's refresh record: a group name is unique only within its account and region, so two
    groups of one name in two regions or accounts are two records. Account ids and regions hold no "/"."""
    return f"{account_id}/{region}/{group}"


def refresh_order(groups: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The (account, region, group) keys in the order the rollout refreshes them: account, region, group name."""
    keys = {(str(r.account_id), str(r.region), str(r.auto_scaling_group)) for r in groups.itertuples(index=False)}
    return sorted(keys)


def halt_reason(refresh: GroupRefresh) -> str:
    """Why the groups after `refresh` are not refreshed ("" when it succeeded)."""
    if refresh.state == "done" and refresh.status == SUCCESSFUL:
        return ""
    what = refresh.rollback_reason or refresh.status_reason or refresh.reason
    if refresh.status == "RollbackFailed" and refresh.rollback_reason and refresh.status_reason:
        # Why it rolled back, then why the rollback failed (StatusReason): both matter to whoever fixes the group.
        what = f"{refresh.rollback_reason}; then {refresh.status_reason}"
    status = {
        "RollbackSuccessful": "rolled back",
        "RollbackFailed": "failed to roll back",
        "Failed": "failed",
        "Cancelled": "was cancelled",
    }.get(refresh.status, f"ended {refresh.status or 'without a status'}")
    return f"the instance refresh of {refresh.group} {status}" + (f": {what}" if what else "")


# -- a retried refresh_groups: what the attempt before it already did on AWS ------------------------------------------

# InstanceRefreshStatus values of a refresh that is still running (one of them blocks StartInstanceRefresh).
ACTIVE_REFRESH_STATUSES: Final = frozenset({"Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"})


def _version_marker(run_id: str) -> str:
    return f"patchcycle {run_id}: "  # run ids hold colons (their timestamps): the marker ends at ": "


def version_description(run_id: str, source_image_id: str, image_id: str) -> str:
    """The VersionDescription of the launch template version a run makes: it names the run, so a retried task finds
    the version the attempt before it made (run_version)."""
    return f"{_version_marker(run_id)}{source_image_id} patched as {image_id}"


def run_version(versions: Sequence[Mapping[str, Any]], run_id: str, image_id: str) -> str:
    """The number of the newest launch template version this run made for `image_id` ("" when there is none).
    versions: DescribeLaunchTemplateVersions entries."""
    marker = _version_marker(run_id)
    mine = [
        int(v["VersionNumber"])
        for v in versions
        if str(v.get("VersionDescription") or "").startswith(marker)
        and str((v.get("LaunchTemplateData") or {}).get("ImageId") or "") == image_id
    ]
    return str(max(mine)) if mine else ""


def run_refresh(
    refreshes: Sequence[Mapping[str, Any]], template_id: str, template_name: str, version: str
) -> dict[str, Any] | None:
    """The newest instance refresh onto this run's launch template version (None when there is none): the version
    is the run's own (run_version), so a refresh that names it in its desired configuration is the one this run
    started. refreshes: DescribeInstanceRefreshes entries of the group, newest first."""
    for refresh in refreshes:
        wanted = (refresh.get("DesiredConfiguration") or {}).get("LaunchTemplate") or {}
        same_template = (template_id and wanted.get("LaunchTemplateId") == template_id) or (
            template_name and wanted.get("LaunchTemplateName") == template_name
        )
        if version and same_template and str(wanted.get("Version", "")) == version:
            return dict(refresh)
    return None


def foreign_refresh(refreshes: Sequence[Mapping[str, Any]], own_id: str = "") -> dict[str, Any] | None:
    """A refresh of the group that is still running and is not this run's (None when there is none): a start would
    be refused (InstanceRefreshInProgress), and someone else is replacing the group's instances."""
    return next(
        (
            dict(r)
            for r in refreshes
            if str(r.get("Status")) in ACTIVE_REFRESH_STATUSES and str(r.get("InstanceRefreshId")) != own_id
        ),
        None,
    )


def foreign_refresh_reason(group: str, refresh: Mapping[str, Any]) -> str:
    """Why the rollout halts at a group another refresh is replacing (the groups after it are halted too)."""
    started = refresh.get("StartTime")
    since = f" since {pd.Timestamp(started).isoformat()}" if started else ""
    return (
        f"an instance refresh of {group} that this run did not start ({refresh.get('InstanceRefreshId')}, "
        f"{refresh.get('Status')}{since}) is replacing its instances: {group} and the groups after it are not "
        "refreshed; let it end or cancel it, then run the cycle again"
    )


def rollout_halt(refreshes: Mapping[str, GroupRefresh]) -> str:
    """Why the groups not refreshed yet are halted ("" when nothing halts them): a refresh that ended without
    succeeding, or a group that another refresh was replacing."""
    for refresh in refreshes.values():
        if refresh.state == "done" and halt_reason(refresh):
            return halt_reason(refresh)
        if refresh.state == "halted" and (refresh.foreign_refresh_id or refresh.halt_code):
            return refresh.reason
    return ""


def _outcome(where: Mapping[str, Any], instance_id: str, pinned: int, code: ReasonCode, detail: str) -> dict[str, Any]:
    return {
        **dict.fromkeys(OUTCOME_COLUMNS, ""),
        "account_id": str(where["account_id"]),
        "region": str(where["region"]),
        "resource_id": instance_id,
        "outcome": Outcome.REFRESH,
        "reason_code": code,
        "wave": 0,
        "detail": detail,
        "pinned": pinned,
        "installed": 0,
        "pending_reboot": 0,
        "verified": False,
    }


def _rejected(approval: ApprovalRecord | None, staging: StagingRecord) -> tuple[ReasonCode, str]:
    if approval is None:
        return ReasonCode.STAGING_FAILED, staging.error or "the approval gate did not decide"
    if approval.mode == "auto" and not approval.staging_passed:
        return ReasonCode.STAGING_FAILED, f"staging failed, the auto policy rejected: {staging.error}"
    if approval.timed_out:
        return ReasonCode.APPROVAL_TIMEOUT, f"no answer in time: rejected by default at {approval.at}"
    return ReasonCode.REJECTED, f"rejected by {approval.by or 'unknown'} at {approval.at}"


def _refreshed(name: str, refresh: GroupRefresh | None) -> tuple[ReasonCode, str]:
    """The code and reason of an instance of a group the rollout went on to (approved, its AMI baked)."""
    if refresh is None:
        return ReasonCode.NOT_ATTEMPTED, f"{name} was not refreshed: its task did not finish"
    if refresh.state == "refused":
        return ReasonCode.REFRESH_IRREVERSIBLE, refresh.reason
    if refresh.state == "halted":
        code = ReasonCode(refresh.halt_code) if refresh.halt_code else ReasonCode.HALTED_BY_REFRESH
        return code, f"{name} not refreshed: {refresh.reason}"
    if refresh.state != "done":
        return ReasonCode.NOT_ATTEMPTED, f"the refresh of {name} did not finish: {refresh.reason or refresh.state}"
    if refresh.status == SUCCESSFUL:
        kept = ", ".join(refresh.new_instances[:5]) + (" and more" if len(refresh.new_instances) > 5 else "")
        return ReasonCode.REPLACED, (
            f"replaced by the instance refresh of {name} ({refresh.refresh_id}) with instances of "
            f"{refresh.image_id} (launch template {refresh.launch_template} version {refresh.version})"
            + (f": {kept}" if kept else "")
        )
    if refresh.status == "RollbackSuccessful":
        return (
            ReasonCode.REFRESH_ROLLED_BACK,
            f"{halt_reason(refresh)}; its instances are back on {refresh.source_image_id}",
        )
    if refresh.status == "RollbackFailed":
        # Neither rolled forward nor back: some instances may run the baked AMI, some the old one.
        return ReasonCode.REFRESH_FAILED, (
            f"{halt_reason(refresh)}; {name} may now run instances of both {refresh.source_image_id} and "
            f"{refresh.image_id}: look at the group before the next run"
        )
    return ReasonCode.REFRESH_FAILED, halt_reason(refresh)


def immutable_outcomes(
    groups: pd.DataFrame,
    bakes: pd.DataFrame,
    approval: ApprovalRecord | None,
    staging: StagingRecord,
    refreshes: Mapping[str, GroupRefresh],
) -> pd.DataFrame:
    """OUTCOME_COLUMNS (outcome REFRESH) for every Auto Scaling instance of the inventory that the immutable path
    took: groups' GROUP_PLAN_COLUMNS instance ids. bakes: BAKE_RESULT_COLUMNS; refreshes: refresh_key -> its record.
    The reason code decides the verdict: REPLACED, REFRESH_ROLLED_BACK, REFRESH_FAILED, HALTED_BY_REFRESH,
    HALTED_BY_CALENDAR, HALTED_BY_ALARM, REFRESH_IRREVERSIBLE, REFRESH_REPLACES_EXCLUDED, REFRESH_NO_LAUNCH_TEMPLATE,
    BAKE_FAILED, STAGING_FAILED, REJECTED, APPROVAL_TIMEOUT or NOT_ATTEMPTED."""
    baked = {str(r["bake_id"]): r for r in bakes.to_dict("records")}
    rows = []
    for group in groups.to_dict("records"):
        name = str(group["auto_scaling_group"])
        bake = baked.get(str(group["bake_id"]))
        pinned = len(split_cve_ids(str(bake["patch_ids"]))) if bake is not None else 0
        if str(group.get("refused") or ""):
            code = (
                ReasonCode.REFRESH_NO_LAUNCH_TEMPLATE
                if str(group.get("refused_kind") or "") == NO_LAUNCH_TEMPLATE
                else ReasonCode.REFRESH_REPLACES_EXCLUDED
            )
            detail = str(group["refused"])
        elif bake is None or not bake["baked"]:
            why = bake["reason"] if bake is not None else "the bake did not finish"
            code, detail = ReasonCode.BAKE_FAILED, f"no patched AMI for {name}: {why}"
        elif approval is None or not approval.approved:
            code, why = _rejected(approval, staging)
            detail = f"{name} not refreshed: {why}"
        else:
            key = refresh_key(str(group["account_id"]), str(group["region"]), name)
            code, detail = _refreshed(name, refreshes.get(key))
        patched = set(split_cve_ids(str(group.get("patched_ids") or group["instance_ids"])))
        for instance_id in split_cve_ids(str(group["instance_ids"])):
            told = detail
            if instance_id not in patched and code == ReasonCode.REPLACED:
                # A refresh replaces the whole group: said where the instance needed no patch of this run.
                told = (
                    f"{detail}; it needed no pinned patch (compliant, offline or not scanned), but a refresh "
                    f"replaces every instance of {name}"
                )
            rows.append(_outcome(group, instance_id, pinned if instance_id in patched else 0, code, told))
    return typed_frame(rows, OUTCOME_COLUMNS)


_TEXT: Final[dict[str, Any]] = {"type": "string"}
_TEXTS: Final[dict[str, Any]] = {"type": "array", "items": _TEXT}
# One entry of the report's install.auto_scaling_groups (refresh_entries).
AUTO_SCALING_GROUP_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "account_id",
        "region",
        "group",
        "instances",
        "source_images",
        "state",
        "status",
        "reason",
        "image_id",
        "launch_template",
        "version",
        "default_version_set",
        "checkpoints",
        "refresh_id",
        "seconds",
        "api_calls",
        "new_instances",
    ],
    "properties": {
        "account_id": _TEXT,
        "region": _TEXT,
        "group": _TEXT,
        "instances": {
            "type": "array",
            "description": "its instances at inventory time, each with its verdict",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["instance_id", "verdict", "reason_code"],
                "properties": {
                    "instance_id": _TEXT,
                    "verdict": {**_TEXT, "description": "as in resources (REPLACED, ROLLED_BACK, SKIPPED_HALTED, ...)"},
                    "reason_code": _TEXT,
                },
            },
        },
        "source_images": {**_TEXTS, "description": "the AMIs its instances ran at inventory time"},
        "source_version": {**_TEXT, "description": "its launch template version when the refresh started"},
        "state": {"enum": ["pending", "refreshing", "done", "halted", "refused", "not run"]},
        "status": {**_TEXT, "description": "the refresh's final InstanceRefreshStatus"},
        "status_reason": {**_TEXT, "description": "the refresh's StatusReason"},
        "rollback_reason": {**_TEXT, "description": "RollbackDetails.RollbackReason when it rolled back"},
        "reason": {**_TEXT, "description": "why it halted the rollout, or was halted or refused"},
        "image_id": {**_TEXT, "description": "the baked AMI it was refreshed onto"},
        "launch_template": _TEXT,
        "version": {**_TEXT, "description": "the launch template version made for the baked AMI"},
        "default_version_set": {"type": "boolean"},
        "checkpoints": {"type": "array", "items": {"type": "integer"}},
        "refresh_id": _TEXT,
        "pinned_patches": {**_TEXTS, "description": "the patches baked into its new AMI"},
        "started_at": {**_TEXT, "description": "the refresh's StartTime, ISO 8601 UTC; empty when it did not start"},
        "ended_at": {**_TEXT, "description": "the refresh's EndTime, ISO 8601 UTC; empty when it did not end"},
        "seconds": {
            "type": "number",
            "description": "the refresh's duration on AWS's clock (the sandbox's simulated one)",
        },
        "api_calls": {"type": "integer", "minimum": 0},
        "new_instances": {
            "type": "array",
            "description": "the instances the refresh launched and kept, as verify_replacements checked them",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["instance_id", "compliant", "cves_closed"],
                "properties": {
                    "instance_id": _TEXT,
                    "checked": {"type": "boolean", "description": "false: verify_replacements did not check it"},
                    "compliant": {"type": "boolean", "description": "Patch Manager: every pinned patch installed"},
                    "not_installed": {**_TEXTS, "description": "pinned patches its scan did not report installed"},
                    "cves_closed": {"type": "boolean", "description": "Amazon Inspector: no pinned CVE active"},
                    "cves": {**_TEXTS, "description": "the CVEs the pinned patches fix"},
                    "still_active": {**_TEXTS, "description": "those Amazon Inspector still reports active"},
                    "scanned_at": {**_TEXT, "description": "Inspector's last scan of it; empty when it did not scan"},
                },
            },
        },
    },
}


def _new_instance(instance_id: str, check: ReplacementCheck | None) -> dict[str, Any]:
    """A new instance's entry: its check, or an unchecked entry when verify_replacements did not check it."""
    if check is None:
        return {
            "instance_id": instance_id,
            "checked": False,
            "compliant": False,
            "not_installed": [],
            "cves_closed": False,
            "cves": [],
            "still_active": [],
            "scanned_at": "",
        }
    return {
        "instance_id": instance_id,
        "checked": True,
        "compliant": check.compliant,
        "not_installed": list(check.not_installed),
        "cves_closed": check.cves_closed,
        "cves": list(check.cves),
        "still_active": list(check.still_active),
        "scanned_at": check.scanned_at,
    }


def refresh_entries(
    groups: pd.DataFrame,
    refreshes: Mapping[str, GroupRefresh],
    checks: Mapping[str, ReplacementCheck] | None = None,
    pinned: Mapping[str, Sequence[str]] | None = None,
    outcomes: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """The report's list of Auto Scaling groups: each with its instances at inventory time and their verdicts, its
    refresh, and the new instances it launched (compliant and with the pinned CVEs closed, or not).
    refreshes: refresh_key -> its record. outcomes: immutable_outcomes' rows (OUTCOME_COLUMNS), whose reason codes
    give the instances' verdicts."""
    codes = {} if outcomes is None else dict(zip(outcomes["resource_id"], outcomes["reason_code"], strict=True))
    entries = []
    for account_id, region, name in refresh_order(groups):
        rows = groups[(groups["account_id"] == account_id) & (groups["region"] == region)]
        rows = rows[rows["auto_scaling_group"] == name]
        instances = sorted({i for joined in rows["instance_ids"] for i in split_cve_ids(str(joined))})
        refresh = refreshes.get(refresh_key(account_id, region, name))
        refused = next((str(r) for r in rows["refused"] if str(r)), "") if "refused" in rows else ""
        if refresh is None and refused:
            refresh = GroupRefresh(
                account_id=account_id,
                region=region,
                group=name,
                launch_template=str(rows["launch_template"].iloc[0]),
                state="refused",
                reason=refused,
            )
        entries.append(
            {
                "account_id": account_id,
                "region": region,
                "group": name,
                "instances": [
                    {
                        "instance_id": instance_id,
                        "verdict": REASON_CODES[ReasonCode(codes[instance_id])][0].value
                        if instance_id in codes
                        else "",
                        "reason_code": str(codes.get(instance_id, "")),
                    }
                    for instance_id in instances
                ],
                "source_images": sorted(set(rows["image_id"])),
                "source_version": (refresh.source_version if refresh else "")
                or most_common([str(v) for v in rows["launch_template_version"]]),
                "state": refresh.state if refresh else "not run",
                "status": refresh.status if refresh else "",
                "status_reason": refresh.status_reason if refresh else "",
                "rollback_reason": refresh.rollback_reason if refresh else "",
                # A refresh that ran: why it ended as it did; one that did not (halted, refused): why not.
                "reason": ((halt_reason(refresh) if refresh.state == "done" else "") or refresh.reason)
                if refresh
                else "",
                "image_id": refresh.image_id if refresh else "",
                "launch_template": refresh.launch_template if refresh else str(rows["launch_template"].iloc[0]),
                "version": refresh.version if refresh else "",
                "default_version_set": refresh.default_version_set if refresh else False,
                "checkpoints": list(refresh.checkpoints) if refresh else [],
                "refresh_id": refresh.refresh_id if refresh else "",
                "pinned_patches": sorted({p for bake in rows["bake_id"] for p in (pinned or {}).get(str(bake), [])}),
                "started_at": refresh.started_at if refresh else "",
                "ended_at": refresh.ended_at if refresh else "",
                "seconds": refresh.seconds if refresh else 0.0,
                "api_calls": refresh.api_calls if refresh else 0,
                "new_instances": [
                    _new_instance(new, (checks or {}).get(new)) for new in (refresh.new_instances if refresh else [])
                ],
            }
        )
    return entries
