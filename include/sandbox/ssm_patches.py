"""Patch Manager's read APIs (botocore service "ssm") that moto 5.2.5 lacks, answered from the World.

Requests arrive validated against botocore's input shapes (lengths, ranges, enums); these
handlers add the checks AWS makes beyond the model. What the sandbox chose where AWS's documents
leave room:

- Reports are the instance's last Scan/Install (include/sandbox/patching.py), as on AWS: an
  instance that has not reported is absent from DescribeInstancePatchStates and compliance lists.
- Default page sizes are small (10, or 50 for DescribeInstancePatchStates, whose 50 ids fit one
  page, and DescribeAvailablePatches), so a client that forgets NextToken finds out here.
- DescribeInstancePatches: KBId is the catalog id (KB number, advisory or USN); CVEIds only on
  MISSING and FAILED patches and InstalledTime 1970-01-01 for patches not installed, as AWS
  documents and does. State filter values may be written Installed / InstalledOther or INSTALLED.
- DescribeAvailablePatches serves what AWS supports (Windows Server and Amazon Linux 2): without a
  PRODUCT filter it lists Windows patches; Linux patches need a PRODUCT filter. Filter keys the
  catalog has no data for (EPOCH, VERSION, RELEASE, ARCH, REPOSITORY, BUGZILLA_ID) are ignored.
- GetPatchBaseline: baselines in moto by id (or ARN), AWS's predefined baselines by their ARN.
  moto keeps no dates, so CreatedDate/ModifiedDate are when the sandbox first saw the baseline.
- ListComplianceItems / ListResourceComplianceSummaries report ComplianceType Patch only (one item
  per reported patch, Severity the patch's compliance level); ExecutionId is the report's
  snapshot id. LESS_THAN / GREATER_THAN compare severities by rank, other values as text.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from moto.ssm.models import ssm_backends

from include.sandbox import patching
from include.sandbox.api import Handler, RequestContext
from include.sandbox.catalog import PRODUCT_FAMILIES, PRODUCTS, VENDORS, Catalog, content_url, windows_update_id
from include.sandbox.paging import paginate
from include.sandbox.protocol import AwsApiError
from include.sandbox.scenario import Patch
from include.sandbox.world import ManagedInstance, PatchReport, World

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# DescribeAvailablePatches serves only the families AWS documents it for.
AVAILABLE_PATCH_FAMILIES = ("WINDOWS", "AMAZON_LINUX_2")
_WINDOWS_KEYS = frozenset({"PATCH_SET", "PRODUCT", "PRODUCT_FAMILY", "MSRC_SEVERITY", "CLASSIFICATION", "PATCH_ID"})
_LINUX_KEYS = frozenset({"PRODUCT", "NAME", "SEVERITY", "CLASSIFICATION", "ADVISORY_ID", "CVE_ID"})
_IGNORED_LINUX_KEYS = frozenset({"EPOCH", "VERSION", "RELEASE", "ARCH", "REPOSITORY", "BUGZILLA_ID"})

_COUNT_KEYS = (
    "InstalledCount",
    "InstalledOtherCount",
    "InstalledPendingRebootCount",
    "InstalledRejectedCount",
    "MissingCount",
    "FailedCount",
    "UnreportedNotApplicableCount",
    "NotApplicableCount",
)
_COUNT_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "Equal": operator.eq,
    "NotEqual": operator.ne,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
}
_INSTANCE_PATCH_KEYS = ("Classification", "KBId", "Severity", "State")
_COMPLIANCE_ITEM_KEYS = ("ComplianceType", "ResourceType", "ResourceId", "Id", "Title", "Status", "Severity")
_SUMMARY_KEYS = ("ComplianceType", "ResourceType", "ResourceId", "Status", "OverallSeverity")
_BASELINE_ID = re.compile(r"^(arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:patchbaseline/)?pb-[0-9a-f]{17}$")


# -- shared helpers ----------------------------------------------------------------------------


def _reported(world: World, ctx: RequestContext) -> list[tuple[ManagedInstance, PatchReport]]:
    """Registered instances of the account/region that have reported, by instance id."""
    instances = world.instances(ctx.account_id, ctx.region)
    return [
        (instance, instance.report)
        for _, instance in sorted(instances.items())
        if instance.registered and instance.report is not None
    ]


def _invalid_filter(message: str) -> AwsApiError:
    return AwsApiError("InvalidFilter", message)


def _filter_key(raw: dict[str, Any], allowed: Iterable[str]) -> str:
    key = raw.get("Key")
    allowed = tuple(allowed)
    if key not in allowed:
        raise _invalid_filter(f"The filter key {key!r} is not valid. Valid keys: {', '.join(allowed)}.")
    return str(key)


def _filter_values(raw: dict[str, Any]) -> list[str]:
    values = raw.get("Values")
    if not values:
        raise _invalid_filter(f"The filter {raw.get('Key')!r} needs at least one value.")
    return [str(value) for value in values]


def _state_entry(instance: ManagedInstance, report: PatchReport) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "InstanceId": instance.instance_id,
        "PatchGroup": report.patch_group,
        "BaselineId": report.baseline_id,
        "SnapshotId": report.snapshot_id,
        **patching.report_counts(report),
        "OperationStartTime": report.start,
        "OperationEndTime": report.end,
        "Operation": report.operation,
        "RebootOption": report.reboot_option,
    }
    if report.install_override_list:
        entry["InstallOverrideList"] = report.install_override_list
    if isinstance(report, patching.PatchStateReport) and report.last_no_reboot_install is not None:
        entry["LastNoRebootInstallOperationTime"] = report.last_no_reboot_install
    return entry


# -- DescribeInstancePatchStates ---------------------------------------------------------------


def describe_instance_patch_states(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """The last report of each requested instance; unknown or unreported ids are simply absent."""
    instances = world.instances(ctx.account_id, ctx.region)
    states = []
    for instance_id in dict.fromkeys(params.get("InstanceIds", [])):
        instance = instances.get(instance_id)
        if instance is not None and instance.registered and instance.report is not None:
            states.append(_state_entry(instance, instance.report))
    page, more = paginate(states, params, 50)
    return {"InstancePatchStates": page, **more}


def _count_filter(raw: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    key = _filter_key(raw, _COUNT_KEYS)
    values = _filter_values(raw)
    try:
        wanted = int(values[0])
    except ValueError as exc:
        raise _invalid_filter(f"The value of filter {key} must be an integer, not {values[0]!r}.") from exc
    compare = _COUNT_OPERATORS[raw["Type"]]
    return lambda entry: compare(int(entry[key]), wanted)


def describe_instance_patch_states_for_patch_group(
    world: World, ctx: RequestContext, params: dict[str, Any]
) -> dict[str, Any]:
    """The last report of every instance that reported for the patch group, filtered on its counts."""
    checks = [_count_filter(raw) for raw in params.get("Filters", [])]
    entries = [
        _state_entry(instance, report)
        for instance, report in _reported(world, ctx)
        if report.patch_group == params["PatchGroup"]
    ]
    matching = [entry for entry in entries if all(check(entry) for check in checks)]
    page, more = paginate(matching, params, 10)
    return {"InstancePatchStates": page, **more}


# -- DescribeInstancePatches -------------------------------------------------------------------


def _managed(world: World, ctx: RequestContext, instance_id: str) -> ManagedInstance:
    instance = world.instance(ctx.account_id, ctx.region, instance_id)
    if instance is None or not instance.registered:
        raise AwsApiError("InvalidInstanceId", f"Instance Id {instance_id} is not a managed instance.")
    return instance


def _patch_entry(catalog: Catalog, report: PatchReport, patch_id: str, state: str) -> dict[str, Any]:
    patch = catalog.get(patch_id)
    entry: dict[str, Any] = {
        "Title": patch.title if patch else patch_id,
        "KBId": patch_id,
        "Classification": patch.classification if patch else "",
        "Severity": patch.severity if patch else "",
        "State": state,
        "InstalledTime": report.installed_time.get(patch_id, EPOCH),
    }
    if patch is not None and patch.cves and state in (patching.MISSING, patching.FAILED):
        entry["CVEIds"] = ",".join(patch.cves)
    return entry


def _squash(state: str) -> str:
    """INSTALLED_OTHER and InstalledOther are the same state to a filter."""
    return state.replace("_", "").lower()


def _instance_patch_filter(raw: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    key = _filter_key(raw, _INSTANCE_PATCH_KEYS)
    values = _filter_values(raw)
    if key == "State":
        states = {_squash(value) for value in values}
        return lambda entry: _squash(entry["State"]) in states
    return lambda entry: entry[key] in values


def describe_instance_patches(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """The patches of the instance's last report (nothing before its first), oldest release first."""
    instance = _managed(world, ctx, params["InstanceId"])
    checks = [_instance_patch_filter(raw) for raw in params.get("Filters", [])]
    report = instance.report
    if report is None:
        return {"Patches": []}
    entries = [_patch_entry(world.catalog, report, pid, state) for pid, state in report.states.items()]
    matching = [entry for entry in entries if all(check(entry) for check in checks)]
    page, more = paginate(matching, params, 10)
    return {"Patches": page, **more}


# -- DescribeAvailablePatches ------------------------------------------------------------------


def _available_values(catalog: Catalog, patch: Patch, key: str) -> set[str] | None:
    """A patch's values for a DescribeAvailablePatches key: None = ignored key, empty = no such property."""
    keys = _WINDOWS_KEYS if patch.os == "WINDOWS" else _LINUX_KEYS
    if key in _IGNORED_LINUX_KEYS and patch.os != "WINDOWS":
        return None
    if key not in keys:
        return set()
    if key == "NAME":
        package = catalog.package(patch.id)
        return {package} if package else set()
    return patching.patch_values(patch, key) or set()


def _available_filter(catalog: Catalog, raw: dict[str, Any]) -> Callable[[Patch], bool]:
    key = _filter_key(raw, sorted(_WINDOWS_KEYS | _LINUX_KEYS | _IGNORED_LINUX_KEYS))
    values = set(_filter_values(raw))

    def check(patch: Patch) -> bool:
        have = _available_values(catalog, patch, key)
        return have is None or "*" in values or not have.isdisjoint(values)

    return check


def _available_entry(catalog: Catalog, patch: Patch) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ReleaseDate": patching.released_at(patch),
        "Title": patch.title,
        "Description": patch.title,
        "ContentUrl": content_url(patch),
        "Vendor": VENDORS[patch.os],
        "ProductFamily": PRODUCT_FAMILIES[patch.os],
        "Product": PRODUCTS[patch.os],
        "Classification": patch.classification,
    }
    if patch.os == "WINDOWS":
        # MSRC severity and KB number apply to Windows only; Id is Windows Update's GUID, not the KB.
        entry.update(Id=windows_update_id(patch), MsrcSeverity=patch.severity, KbNumber=patch.id, Language="All")
        return entry
    entry.update(Severity=patch.severity, AdvisoryIds=[patch.id], CVEIds=list(patch.cves))
    package = catalog.package(patch.id)
    if package:
        entry["Name"] = package
    return entry


def describe_available_patches(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Released catalog patches of the families AWS serves here, Windows unless a PRODUCT filter says otherwise."""
    raw_filters = params.get("Filters", [])
    checks = [_available_filter(world.catalog, raw) for raw in raw_filters]
    by_product = any(raw.get("Key") == "PRODUCT" for raw in raw_filters)
    families = AVAILABLE_PATCH_FAMILIES if by_product else ("WINDOWS",)
    now = world.now()
    patches = [
        patch
        for os in families
        for patch in patching.applicable_patches(world.catalog, os, now)
        if all(check(patch) for check in checks)
    ]
    page, more = paginate(patches, params, 50)
    return {"Patches": [_available_entry(world.catalog, patch) for patch in page], **more}


# -- GetPatchBaseline --------------------------------------------------------------------------


def _patch_groups(backend: Any, baseline_id: str) -> list[str]:
    return sorted(name for name, group in backend.patch_groups.items() if baseline_id in group.associations.values())


def baseline_fields(world: World, fake: Any) -> dict[str, Any]:
    """A moto baseline as GetPatchBaseline and UpdatePatchBaseline answer it (without PatchGroups)."""
    response: dict[str, Any] = {
        "BaselineId": fake.id,
        "Name": fake.name,
        "OperatingSystem": fake.operating_system,
        "ApprovalRules": fake.approval_rules or {"PatchRules": []},
        "ApprovedPatches": list(fake.approved_patches or []),
        "ApprovedPatchesComplianceLevel": fake.approved_patches_compliance_level or "UNSPECIFIED",
        "ApprovedPatchesEnableNonSecurity": bool(fake.approved_patches_enable_non_security),
        "RejectedPatches": list(fake.rejected_patches or []),
        "RejectedPatchesAction": fake.rejected_patches_action or "ALLOW_AS_DEPENDENCY",
        "CreatedDate": patching.baseline_created(world, fake.id),
        "ModifiedDate": patching.baseline_modified(world, fake.id),
        "Sources": list(fake.sources or []),
    }
    if fake.global_filters:
        response["GlobalFilters"] = fake.global_filters
    if fake.description:
        response["Description"] = fake.description
    return response


def _moto_baseline(world: World, backend: Any, fake: Any) -> dict[str, Any]:
    return {**baseline_fields(world, fake), "PatchGroups": _patch_groups(backend, fake.id)}


def _predefined_baseline(view: patching.BaselineView) -> dict[str, Any]:
    # AWS's predefined baselines are old and never change from the client's point of view.
    created = datetime(2023, 3, 15, tzinfo=UTC)
    return {
        "BaselineId": view.baseline_id,
        "Name": view.name,
        "OperatingSystem": view.os,
        "GlobalFilters": {"PatchFilters": []},
        "ApprovalRules": patching.api_rules(view.rules),
        "ApprovedPatches": [],
        "ApprovedPatchesComplianceLevel": "UNSPECIFIED",
        "ApprovedPatchesEnableNonSecurity": False,
        "RejectedPatches": [],
        "RejectedPatchesAction": "ALLOW_AS_DEPENDENCY",
        "PatchGroups": [],
        "CreatedDate": created,
        "ModifiedDate": created,
        "Description": view.description,
        "Sources": [],
    }


def get_patch_baseline(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """A baseline of this account/region from moto, or one of AWS's predefined baselines by ARN."""
    baseline_id = params["BaselineId"]
    if not _BASELINE_ID.match(baseline_id):
        raise AwsApiError("InvalidResourceId", f"Invalid baseline id {baseline_id}.")
    backend = ssm_backends[ctx.account_id][ctx.region]
    own_arn = f"arn:aws:ssm:{ctx.region}:{ctx.account_id}:patchbaseline/"
    fake = backend.baselines.get(baseline_id.removeprefix(own_arn))
    if fake is not None:
        return _moto_baseline(world, backend, fake)
    view = patching.find_default_baseline(ctx.region, baseline_id)
    if view is not None:
        return _predefined_baseline(view)
    raise AwsApiError("DoesNotExistException", f"Patch Baseline {baseline_id} does not exist.")


# -- compliance --------------------------------------------------------------------------------

_SEVERITY_RANK = {level: rank for rank, level in enumerate(reversed(patching.COMPLIANCE_LEVELS))}


def _compare(key: str, have: str, kind: str, wanted: str) -> bool:
    if kind == "BEGIN_WITH":
        return have.startswith(wanted)
    if kind in ("LESS_THAN", "GREATER_THAN"):
        # Severities order by rank (CRITICAL is greatest); anything else compares as text.
        if key in ("Severity", "OverallSeverity") and have in _SEVERITY_RANK and wanted in _SEVERITY_RANK:
            order = _SEVERITY_RANK[have] - _SEVERITY_RANK[wanted]
        else:
            order = (have > wanted) - (have < wanted)
        return order < 0 if kind == "LESS_THAN" else order > 0
    return have == wanted


def _compliance_filter(raw: dict[str, Any], keys: Iterable[str]) -> Callable[[dict[str, Any]], bool]:
    key = _filter_key(raw, keys)
    values = _filter_values(raw)
    kind = raw.get("Type") or "EQUAL"
    if kind == "NOT_EQUAL":
        return lambda entry: all(entry[key] != value for value in values)
    return lambda entry: any(_compare(key, str(entry[key]), kind, value) for value in values)


def _check_resource_types(params: dict[str, Any]) -> None:
    for resource_type in params.get("ResourceTypes", []):
        if resource_type != "ManagedInstance":
            raise AwsApiError("InvalidResourceType", f"Resource type {resource_type} is not supported.")


def _execution(report: PatchReport) -> dict[str, Any]:
    return {"ExecutionTime": report.end, "ExecutionId": report.snapshot_id, "ExecutionType": "Command"}


def _status(state: str) -> str:
    return "NON_COMPLIANT" if state in patching.NON_COMPLIANT_STATES else "COMPLIANT"


def _details(patch: Patch | None, report: PatchReport, patch_id: str, state: str) -> dict[str, str]:
    installed = report.installed_time.get(patch_id)
    details = {
        "Classification": patch.classification if patch else "",
        "PatchSeverity": patch.severity if patch else "",
        "PatchState": state,
        "PatchBaselineId": report.baseline_id,
        "PatchGroup": report.patch_group,
        "InstalledTime": installed.isoformat() if installed else "",
        "DocumentName": "AWS-RunPatchBaseline",
    }
    if patch is not None and patch.cves and state in (patching.MISSING, patching.FAILED):
        details["CVEIds"] = ",".join(patch.cves)
    return details


def _compliance_items(catalog: Catalog, instance: ManagedInstance, report: PatchReport) -> list[dict[str, Any]]:
    items = []
    for patch_id, state in report.states.items():
        patch = catalog.get(patch_id)
        items.append(
            {
                "ComplianceType": "Patch",
                "ResourceType": "ManagedInstance",
                "ResourceId": instance.instance_id,
                "Id": patch_id,
                "Title": (patch.title if patch else patch_id)[:500],
                "Status": _status(state),
                "Severity": patching.compliance_level(report, patch_id),
                "ExecutionSummary": _execution(report),
                "Details": _details(patch, report, patch_id, state),
            }
        )
    return items


def list_compliance_items(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """One Patch compliance item per reported patch of the (one) requested managed instance."""
    _check_resource_types(params)
    resource_ids = params.get("ResourceIds")
    if resource_ids is not None and len(resource_ids) > 1:
        raise AwsApiError("ValidationException", "Currently, you can only specify one resource ID.")
    checks = [_compliance_filter(raw, _COMPLIANCE_ITEM_KEYS) for raw in params.get("Filters", [])]
    items = [
        item
        for instance, report in _reported(world, ctx)
        if resource_ids is None or instance.instance_id in resource_ids
        for item in _compliance_items(world.catalog, instance, report)
    ]
    matching = [item for item in items if all(check(item) for check in checks)]
    page, more = paginate(matching, params, 10)
    return {"ComplianceItems": page, **more}


def _severity_summary(severities: list[str]) -> dict[str, int]:
    return {f"{level.capitalize()}Count": severities.count(level) for level in patching.COMPLIANCE_LEVELS}


def _resource_summary(catalog: Catalog, instance: ManagedInstance, report: PatchReport) -> dict[str, Any]:
    items = _compliance_items(catalog, instance, report)
    compliant = [item["Severity"] for item in items if item["Status"] == "COMPLIANT"]
    noncompliant = [item["Severity"] for item in items if item["Status"] == "NON_COMPLIANT"]
    worst = noncompliant or compliant or ["UNSPECIFIED"]
    return {
        "ComplianceType": "Patch",
        "ResourceType": "ManagedInstance",
        "ResourceId": instance.instance_id,
        "Status": "NON_COMPLIANT" if noncompliant else "COMPLIANT",
        "OverallSeverity": min(worst, key=patching.COMPLIANCE_LEVELS.index),
        "ExecutionSummary": _execution(report),
        "CompliantSummary": {"CompliantCount": len(compliant), "SeveritySummary": _severity_summary(compliant)},
        "NonCompliantSummary": {
            "NonCompliantCount": len(noncompliant),
            "SeveritySummary": _severity_summary(noncompliant),
        },
    }


def list_resource_compliance_summaries(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """One Patch compliance summary per managed instance of the account/region that has reported."""
    checks = [_compliance_filter(raw, _SUMMARY_KEYS) for raw in params.get("Filters", [])]
    summaries = [_resource_summary(world.catalog, instance, report) for instance, report in _reported(world, ctx)]
    matching = [summary for summary in summaries if all(check(summary) for check in checks)]
    page, more = paginate(matching, params, 10)
    return {"ResourceComplianceSummaryItems": page, **more}


HANDLERS: dict[tuple[str, str], Handler] = {
    ("ssm", "DescribeInstancePatchStates"): describe_instance_patch_states,
    ("ssm", "DescribeInstancePatchStatesForPatchGroup"): describe_instance_patch_states_for_patch_group,
    ("ssm", "DescribeInstancePatches"): describe_instance_patches,
    ("ssm", "DescribeAvailablePatches"): describe_available_patches,
    ("ssm", "GetPatchBaseline"): get_patch_baseline,
    ("ssm", "ListComplianceItems"): list_compliance_items,
    ("ssm", "ListResourceComplianceSummaries"): list_resource_compliance_summaries,
}

# The operations above that moto 5.2.5 does not implement (it answers them 500 NotImplemented): all of them.
MOTO_MISSING: list[str] = [
    "DescribeInstancePatchStates",
    "DescribeInstancePatchStatesForPatchGroup",
    "DescribeInstancePatches",
    "DescribeAvailablePatches",
    "GetPatchBaseline",
    "ListComplianceItems",
    "ListResourceComplianceSummaries",
]
