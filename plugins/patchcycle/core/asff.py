"""Security Hub findings (AWS Security Finding Format, ASFF) from a run's report and its Inspector check.

Two kinds of finding, both on the account's default product
(``arn:aws:securityhub:<region>:<account>:product/<account>/default``):

* patch compliance: one per EC2 instance the report calls NON_COMPLIANT (Compliance FAILED, severity
  from its worst outstanding patch), and one per RDS DB instance it calls NON_COMPLIANT (maintenance pending,
  scheduled or failed: core.rds_findings);
* CVE: one per (instance, CVE) the inspect stage found STILL_ACTIVE after the patches that fix it.
  UNVERIFIED does not count: Inspector could not say either way (no rescan, no coverage), and a
  finding must rest on evidence. It does not resolve an existing finding either (see `reconcile`).

Ids are stable, ``patchcycle/<account>/<region>/<instance>/patch-compliance`` and
``patchcycle/<account>/<region>/<instance>/<CVE id>``, so a rerun updates a finding instead of adding
one; an update keeps the finding's CreatedAt and FirstObservedAt. Severity and Types are sent both
top-level and in FindingProviderFields, the copy a finding provider may update.

`reconcile` decides what happens to this project's findings already in Security Hub: a finding is
resolved only on evidence that its problem is fixed (the instance is COMPLIANT or NOT_APPLICABLE in the
report; the CVE is REMEDIATED or NOT_FOUND by Inspector). Findings about resources this run says nothing
about (another target, an instance out of scope or unassessed, CVEs in scan mode) are left as they are,
so a partial or scan-mode run never closes what it did not check. A RESOLVED finding that is back in the
new set is reopened (Workflow NEW): re-importing a FAILED finding does not reopen it by itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from patchcycle.core.inventory import partition_of
from patchcycle.core.timestamps import iso_utc

SCHEMA_VERSION: Final = "2018-10-08"
GENERATOR_PREFIX: Final = "patchcycle/"
PATCH_GENERATOR: Final = "patchcycle/patch-compliance"
CVE_GENERATOR: Final = "patchcycle/cve"
PATCH_SUBJECT: Final = "patch-compliance"
PATCH_TYPE: Final = "Software and Configuration Checks/Patch Management/Compliance"
CVE_TYPE: Final = "Software and Configuration Checks/Vulnerabilities/CVE"
RESOURCE_TYPE: Final = "AwsEc2Instance"
MAX_TITLE: Final = 256
MAX_DESCRIPTION: Final = 1024
MAX_RECOMMENDATION: Final = 512
MAX_PRODUCT_FIELD_VALUE: Final = 2048
MAX_FINDING_BYTES: Final = 240 * 1024
# Inspector statuses of a CVE after the install (inspect stage): only STILL_ACTIVE makes a finding.
ACTIVE_CVE_STATUSES: Final = frozenset({"STILL_ACTIVE"})
FIXED_CVE_STATUSES: Final = frozenset({"REMEDIATED", "NOT_FOUND"})
FIXED_COMPLIANCE_STATES: Final = frozenset({"COMPLIANT", "NOT_APPLICABLE"})
OPEN_WORKFLOW: Final = frozenset({"NEW", "NOTIFIED"})
SEVERITY_ORDER: Final = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
# Vendor severities (Amazon Linux, Red Hat, MSRC, Ubuntu priority, Inspector) -> ASFF label.
_SEVERITY_LABELS: Final[Mapping[str, str]] = {
    "critical": "CRITICAL",
    "high": "HIGH",
    "important": "HIGH",
    "medium": "MEDIUM",
    "moderate": "MEDIUM",
    "low": "LOW",
    "informational": "INFORMATIONAL",
}
PATCH_RECOMMENDATION: Final = (
    "Install the outstanding patches with Patch Manager (AWS-RunPatchBaseline, Operation=Install) in the next "
    "patch cycle, reboot if a patch is pending a reboot, then scan again."
)
PATCH_MANAGER_URL: Final = "https://docs.aws.amazon.com/systems-manager/latest/userguide/patch-manager.html"
NVD_URL: Final = "https://nvd.nist.gov/vuln/detail/{cve}"


def product_arn(account_id: str, region: str) -> str:
    """The account's default Security Hub product: where a customer's own findings go."""
    return f"arn:{partition_of(region)}:securityhub:{region}:{account_id}:product/{account_id}/default"


def finding_id(account_id: str, region: str, instance_id: str, subject: str) -> str:
    """Stable finding id: subject is PATCH_SUBJECT or a CVE id."""
    return f"{GENERATOR_PREFIX}{account_id}/{region}/{instance_id}/{subject}"


def severity_label(severity: str, floor: str = "LOW") -> str:
    """The ASFF label of a vendor severity; unknown or unrated ones get `floor` (a failed check is at least LOW)."""
    label = _SEVERITY_LABELS.get(severity.strip().lower(), floor)
    return max(label, floor, key=SEVERITY_ORDER.index)


def worst_severity(severities: Iterable[str]) -> str:
    """The most severe ASFF label among vendor severities (LOW when there are none)."""
    return max((severity_label(s) for s in severities), key=SEVERITY_ORDER.index, default="LOW")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _instance_resource(account_id: str, region: str, instance_id: str) -> dict[str, Any]:
    partition = partition_of(region)
    return {
        "Type": RESOURCE_TYPE,
        "Id": f"arn:{partition}:ec2:{region}:{account_id}:instance/{instance_id}",
        "Partition": partition,
        "Region": region,
    }


def product_fields(fields: Mapping[str, str]) -> dict[str, str]:
    # ASFF refuses empty strings: leave out what is unknown.
    return {key: clip(value, MAX_PRODUCT_FIELD_VALUE) for key, value in fields.items() if value.strip()}


def base_finding(
    account_id: str,
    region: str,
    instance_id: str,
    subject: str,
    generator: str,
    kind: str,
    label: str,
    original: str,
    now: str,
    created_at: str | None,
) -> dict[str, Any]:
    severity = {"Label": label, "Original": clip(original.strip() or "Unspecified", 64)}
    finding: dict[str, Any] = {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding_id(account_id, region, instance_id, subject),
        "ProductArn": product_arn(account_id, region),
        "GeneratorId": generator,
        "AwsAccountId": account_id,
        "Types": [kind],
        "CreatedAt": created_at or now,
        "UpdatedAt": now,
        "FirstObservedAt": created_at or now,
        "LastObservedAt": now,
        "Severity": severity,
        "FindingProviderFields": {"Severity": dict(severity), "Types": [kind]},
        "Resources": [_instance_resource(account_id, region, instance_id)],
        "RecordState": "ACTIVE",
    }
    if created_at is None:
        finding["Workflow"] = {"Status": "NEW"}  # only a new finding takes a workflow from its provider
    return finding


def patch_compliance_finding(
    resource: Mapping[str, Any], run_id: str, mode: str, now: str, created_at: str | None = None
) -> dict[str, Any]:
    """The finding for a non-compliant EC2 instance (a report `resources[]` entry)."""
    account_id, region = str(resource["account_id"]), str(resource["region"])
    instance_id = str(resource["resource_id"])
    patches = list(resource.get("missing_patches") or [])
    worst = max(
        (str(p.get("severity", "")) for p in patches),
        key=lambda s: SEVERITY_ORDER.index(severity_label(s)),
        default="",
    )
    label = worst_severity([worst]) if patches else "LOW"
    finding = base_finding(
        account_id, region, instance_id, PATCH_SUBJECT, PATCH_GENERATOR, PATCH_TYPE, label, worst, now, created_at
    )
    name = str(resource.get("name") or "")
    who = f"EC2 instance {instance_id}" + (f" ({name})" if name else "")
    count = len(patches)
    finding["Title"] = clip(
        f"{who} is not patch compliant: {count} outstanding patch{'es' if count != 1 else ''}", MAX_TITLE
    )
    listed = ", ".join(f"{p['patch_id']} ({p.get('severity') or 'unrated'}, {p.get('state', '')})" for p in patches)
    cves = list(resource.get("cve_ids") or [])
    description = (
        f"Patch cycle run {run_id} ({mode} mode) found {who} non-compliant with its patch baseline: "
        f"{resource.get('reason') or resource.get('verdict')}."
        + (f" Outstanding: {listed}." if listed else "")
        + (f" They fix {', '.join(cves)}." if cves else "")
    )
    finding["Description"] = clip(description, MAX_DESCRIPTION)
    finding["Compliance"] = {"Status": "FAILED"}
    finding["Remediation"] = {
        "Recommendation": {"Text": clip(PATCH_RECOMMENDATION, MAX_RECOMMENDATION), "Url": PATCH_MANAGER_URL}
    }
    finding["ProductFields"] = product_fields(
        {
            "patchcycle/RunId": run_id,
            "patchcycle/Mode": mode,
            "patchcycle/Verdict": str(resource.get("verdict", "")),
            "patchcycle/ReasonCode": str(resource.get("reason_code", "")),
            "patchcycle/OutstandingPatches": ";".join(str(p["patch_id"]) for p in patches),
            "patchcycle/Wave": _text(resource.get("wave")),
            # A rolled-back instance's way forward again starts from these (or a failed restore's way back).
            "patchcycle/PrePatchSnapshots": ";".join(str(s) for s in resource.get("snapshot_ids") or []),
        }
    )
    summary = _patch_summary(resource.get("patch_state"))
    if summary is not None:
        finding["PatchSummary"] = summary
    return finding


def _patch_summary(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not state or not state.get("baseline_id"):
        return None
    summary: dict[str, Any] = {
        "Id": str(state["baseline_id"]),
        "InstalledCount": int(state.get("installed", 0)),
        "MissingCount": int(state.get("missing", 0)),
        "FailedCount": int(state.get("failed", 0)),
        "InstalledPendingReboot": int(state.get("installed_pending_reboot", 0)),
    }
    if state.get("operation"):
        summary["Operation"] = str(state["operation"])
    if state.get("operation_end_time"):
        summary["OperationEndTime"] = str(state["operation_end_time"])
    return summary


def cve_finding(
    row: Mapping[str, Any], run_id: str, mode: str, now: str, created_at: str | None = None
) -> dict[str, Any]:
    """The finding for a CVE still active on an instance after the patches that fix it (an inspect cves row)."""
    account_id, region = str(row["account_id"]), str(row["region"])
    instance_id, cve = str(row["resource_id"]), str(row["cve_id"])
    severity = _text(row.get("severity"))
    finding = base_finding(
        account_id,
        region,
        instance_id,
        cve,
        CVE_GENERATOR,
        CVE_TYPE,
        severity_label(severity),
        severity,
        now,
        created_at,
    )
    patch_ids = [p for p in _text(row.get("patch_ids")).split(";") if p]
    finding["Title"] = clip(f"{cve} is still present on EC2 instance {instance_id} after patching", MAX_TITLE)
    fixes = f" It is fixed by {', '.join(patch_ids)}." if patch_ids else ""
    reason = _text(row.get("reason"))
    description = (
        f"Amazon Inspector still reports {cve} on EC2 instance {instance_id} after patch cycle run {run_id} "
        f"({mode} mode).{fixes}" + (f" {reason}." if reason else "")
    )
    finding["Description"] = clip(description, MAX_DESCRIPTION)
    finding["Vulnerabilities"] = [
        {"Id": cve, "FixAvailable": "YES" if patch_ids else "NO", "ReferenceUrls": [NVD_URL.format(cve=cve)]}
    ]
    text = (
        f"Install {', '.join(patch_ids)} on the instance, reboot if required, and let Inspector rescan it."
        if patch_ids
        else "No patch in the baseline fixes it yet: apply the vendor's mitigation and track the advisory."
    )
    finding["Remediation"] = {
        "Recommendation": {"Text": clip(text, MAX_RECOMMENDATION), "Url": NVD_URL.format(cve=cve)}
    }
    finding["ProductFields"] = product_fields(
        {
            "patchcycle/RunId": run_id,
            "patchcycle/Mode": mode,
            "patchcycle/PatchIds": ";".join(patch_ids),
            "patchcycle/InspectorStatus": _text(row.get("status")),
            "patchcycle/InspectorFindingArn": _text(row.get("finding_arn")),
            "patchcycle/LastScannedAt": iso_utc(row.get("last_scanned_at")),
        }
    )
    return finding


@dataclass
class FindingSet:
    """What one target's run says: the findings to import, and the ids it proves fixed."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    fixed_ids: set[str] = field(default_factory=set)

    @property
    def ids(self) -> set[str]:
        return {str(f["Id"]) for f in self.findings}


def build_findings(
    report: Mapping[str, Any],
    cves: pd.DataFrame | None,
    account_id: str,
    region: str,
    now: Any,
    created_at: Mapping[str, str] | None = None,
) -> FindingSet:
    """The findings of one account and region from report.json and (install mode) the inspect cves table.

    created_at: {finding id: CreatedAt} of the findings already in Security Hub, kept on update.
    """
    stamp = iso_utc(now)
    created = dict(created_at or {})
    run_id, mode = str(report["run_id"]), str(report["mode"])
    result = FindingSet()
    for resource in report.get("resources") or []:
        where = (str(resource["account_id"]), str(resource["region"]))
        if where != (account_id, region) or resource["resource_type"] not in ("ec2", "rds"):
            continue
        fid = finding_id(account_id, region, str(resource["resource_id"]), PATCH_SUBJECT)
        state = str(resource.get("compliance_state", ""))
        if state == "NON_COMPLIANT" and resource["resource_type"] == "rds":
            from patchcycle.core.rds_findings import rds_finding  # it builds on this module

            result.findings.append(rds_finding(resource, run_id, mode, stamp, created.get(fid)))
        elif state == "NON_COMPLIANT":
            result.findings.append(patch_compliance_finding(resource, run_id, mode, stamp, created.get(fid)))
        elif state in FIXED_COMPLIANCE_STATES:
            result.fixed_ids.add(fid)
    rows = [] if cves is None else cves.to_dict("records")
    for row in rows:
        if (str(row["account_id"]), str(row["region"])) != (account_id, region):
            continue
        fid = finding_id(account_id, region, str(row["resource_id"]), str(row["cve_id"]))
        status = str(row.get("status", ""))
        if status in ACTIVE_CVE_STATUSES:
            result.findings.append(cve_finding(row, run_id, mode, stamp, created.get(fid)))
        elif status in FIXED_CVE_STATUSES:
            result.fixed_ids.add(fid)
    # One finding per id: the inspect table has one row per (instance, CVE), but never trust input twice.
    unique = {str(f["Id"]): f for f in result.findings}
    result.findings = [unique[key] for key in sorted(unique)]
    result.fixed_ids -= result.ids
    for finding in result.findings:
        if len(json.dumps(finding).encode()) > MAX_FINDING_BYTES:
            raise ValueError(f"finding {finding['Id']} is larger than Security Hub's {MAX_FINDING_BYTES} bytes")
    return result


@dataclass(frozen=True)
class Reconciliation:
    """What to do with this project's findings already in Security Hub."""

    resolve: list[dict[str, str]]  # {Id, ProductArn}: fixed, per this run's evidence
    reopen: list[dict[str, str]]  # {Id, ProductArn}: RESOLVED earlier, failing again
    new_ids: set[str]  # findings to import that Security Hub does not have yet
    updated_ids: set[str]  # findings to import that it has
    left_alone: int  # ours, neither in the new set nor proved fixed (or suppressed by a person)


def reconcile(existing: Sequence[Mapping[str, Any]], findings: FindingSet) -> Reconciliation:
    """Compare this run's findings with the ACTIVE findings of ours that GetFindings returned."""
    current = findings.ids
    known = {str(f["Id"]): f for f in existing}
    resolve, reopen, left = [], [], 0
    for fid, old in sorted(known.items()):
        status = str((old.get("Workflow") or {}).get("Status", "NEW"))
        identifier = {"Id": fid, "ProductArn": str(old["ProductArn"])}
        if fid in current:
            if status == "RESOLVED":
                reopen.append(identifier)
        elif fid in findings.fixed_ids and status in OPEN_WORKFLOW:
            resolve.append(identifier)
        elif status != "RESOLVED":
            left += 1
    return Reconciliation(
        resolve=resolve,
        reopen=reopen,
        new_ids=current - set(known),
        updated_ids=current & set(known),
        left_alone=left,
    )


def created_at_of(existing: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """{finding id: CreatedAt} of existing findings, so an update keeps when the finding was first created."""
    return {str(f["Id"]): str(f["CreatedAt"]) for f in existing if f.get("CreatedAt")}


def own_findings_filter(account_id: str, region: str) -> dict[str, list[dict[str, str]]]:
    """GetFindings filters for the ACTIVE patch-compliance and CVE findings of one account and region, any
    workflow status (RESOLVED ones may need reopening, SUPPRESSED ones are counted and left alone). Other
    patchcycle generators (e.g. drift) are someone else's to reconcile: the two EQUALS filters are ORed."""
    return {
        "ProductArn": [{"Value": product_arn(account_id, region), "Comparison": "EQUALS"}],
        "GeneratorId": [
            {"Value": PATCH_GENERATOR, "Comparison": "EQUALS"},
            {"Value": CVE_GENERATOR, "Comparison": "EQUALS"},
        ],
        "AwsAccountId": [{"Value": account_id, "Comparison": "EQUALS"}],
        "Region": [{"Value": region, "Comparison": "EQUALS"}],
        "RecordState": [{"Value": "ACTIVE", "Comparison": "EQUALS"}],
    }
