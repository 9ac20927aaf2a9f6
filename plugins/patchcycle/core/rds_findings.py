"""Security Hub findings for RDS DB instances: one patch-compliance finding per DB instance the report calls
NON_COMPLIANT (maintenance pending or scheduled, or its application failed), resolved once it is COMPLIANT
(maintenance applied, none pending), like the EC2 instances' (core.asff)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from patchcycle.core.asff import (
    GENERATOR_PREFIX,
    MAX_DESCRIPTION,
    MAX_RECOMMENDATION,
    MAX_TITLE,
    PATCH_TYPE,
    SCHEMA_VERSION,
    clip,
    finding_id,
    product_arn,
    product_fields,
)
from patchcycle.core.inventory import is_cluster_arn, partition_of

RDS_GENERATOR: Final = f"{GENERATOR_PREFIX}rds-maintenance"
RDS_SUBJECT: Final = "patch-compliance"  # the same subject as an EC2 instance's: one finding per resource
RDS_RESOURCE_TYPE: Final = "AwsRdsDbInstance"
RDS_CLUSTER_RESOURCE_TYPE: Final = "AwsRdsDbCluster"  # an Aurora DB cluster (its cluster-level maintenance)
RDS_RECOMMENDATION: Final = (
    "Apply the pending maintenance actions (ApplyPendingMaintenanceAction) in the next patch cycle, rehearsed on a "
    "restored copy, before AWS applies them at their AutoAppliedAfterDate or ForcedApplyDate."
)
RDS_MAINTENANCE_URL: Final = (
    "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_UpgradeDBInstance.Maintenance.html"
)
# FAILED needs a look now; pending or scheduled maintenance is AWS's to apply on its dates if nobody does.
_SEVERITY: Final[Mapping[str, str]] = {"FAILED": "MEDIUM"}


def rds_finding(
    resource: Mapping[str, Any], run_id: str, mode: str, now: str, created_at: str | None = None
) -> dict[str, Any]:
    """The finding for a non-compliant RDS DB instance or Aurora DB cluster (a report `resources[]` entry; its
    `resource_arn` tells a cluster)."""
    account_id, region = str(resource["account_id"]), str(resource["region"])
    identifier = str(resource["resource_id"])
    verdict = str(resource.get("verdict", ""))
    label = _SEVERITY.get(verdict, "LOW")
    severity = {"Label": label, "Original": verdict or "Unspecified"}
    arn = str(resource.get("resource_arn") or f"arn:{partition_of(region)}:rds:{region}:{account_id}:db:{identifier}")
    cluster = is_cluster_arn(arn)
    who = f"Aurora DB cluster {identifier}" if cluster else f"RDS DB instance {identifier}"
    resource_type = RDS_CLUSTER_RESOURCE_TYPE if cluster else RDS_RESOURCE_TYPE
    finding: dict[str, Any] = {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding_id(account_id, region, identifier, RDS_SUBJECT),
        "ProductArn": product_arn(account_id, region),
        "GeneratorId": RDS_GENERATOR,
        "AwsAccountId": account_id,
        "Types": [PATCH_TYPE],
        "CreatedAt": created_at or now,
        "UpdatedAt": now,
        "FirstObservedAt": created_at or now,
        "LastObservedAt": now,
        "Severity": severity,
        "FindingProviderFields": {"Severity": dict(severity), "Types": [PATCH_TYPE]},
        "Resources": [{"Type": resource_type, "Id": arn, "Partition": partition_of(region), "Region": region}],
        "RecordState": "ACTIVE",
        "Title": clip(f"{who} has maintenance outstanding ({verdict})", MAX_TITLE),
        "Description": clip(
            f"Patch cycle run {run_id} ({mode} mode): {who}: {resource.get('reason') or verdict}.", MAX_DESCRIPTION
        ),
        "Compliance": {"Status": "FAILED"},
        "Remediation": {
            "Recommendation": {"Text": clip(RDS_RECOMMENDATION, MAX_RECOMMENDATION), "Url": RDS_MAINTENANCE_URL}
        },
        "ProductFields": product_fields(
            {
                "patchcycle/RunId": run_id,
                "patchcycle/Mode": mode,
                "patchcycle/Verdict": verdict,
                "patchcycle/ReasonCode": str(resource.get("reason_code", "")),
            }
        ),
    }
    if created_at is None:
        finding["Workflow"] = {"Status": "NEW"}
    return finding
