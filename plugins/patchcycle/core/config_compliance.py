"""AWS Config's view of patch compliance: the managed rule, the recorder it needs, and its results per instance.

The AWS managed rule EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK evaluates the configuration item
AWS::SSM::PatchCompliance of each managed instance that has reported a patch state; Config names that
item ``AWS::SSM::ManagedInstanceInventory/<instance id>``, which `instance_id_of` maps back to the
EC2 instance. Config can only evaluate where a configuration recorder records that resource type
(`recorder_state`). `compliance_table` (CONFIG_COLUMNS) has one row per evaluated instance, plus an
INSUFFICIENT_DATA row for each in-scope managed instance Config has no result for (the API cannot
filter by INSUFFICIENT_DATA, so the gap is found by comparing with the inventory).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import typed_frame
from patchcycle.core.timestamps import iso_utc, utc_timestamp

PATCH_RULE_IDENTIFIER: Final = "EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK"
PATCH_COMPLIANCE_TYPE: Final = "AWS::SSM::PatchCompliance"
PATCH_RESOURCE_PREFIX: Final = "AWS::SSM::ManagedInstanceInventory/"
DEFAULT_RULE_NAME: Final = "patchcycle-ec2-managedinstance-patch-compliance"
# GetComplianceDetailsByConfigRule names the rule in at most 64 characters.
MAX_RULE_NAME_LENGTH: Final = 64
COMPLIANCE_TYPES: Final = ("COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE", "INSUFFICIENT_DATA")
# What GetComplianceDetailsByConfigRule can filter by (INSUFFICIENT_DATA cannot be asked for).
QUERYABLE_COMPLIANCE_TYPES: Final = ("COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE")
NO_RESULT_ANNOTATION: Final = (
    "AWS Config has no evaluation of this instance: it has reported no patch state to Systems Manager, "
    "or Config has not recorded its patch compliance yet"
)
# Rule states in which a rule still evaluates.
_LIVE_RULE_STATES: Final = frozenset({"ACTIVE", "EVALUATING"})

CONFIG_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",  # EC2 instance id
    "config_resource_type": "str",  # AWS::SSM::PatchCompliance
    "config_resource_id": "str",  # AWS::SSM::ManagedInstanceInventory/<instance id>
    "compliance": "str",  # COMPLIANT | NON_COMPLIANT | NOT_APPLICABLE | INSUFFICIENT_DATA
    "annotation": "str",  # Config's annotation, or why there is no result; "" when none
    "evaluated_at": "str",  # ISO 8601 UTC when Config recorded the result; "" for INSUFFICIENT_DATA
}


def instance_id_of(config_resource_id: str) -> str:
    """The EC2 instance id of a PatchCompliance configuration item ("AWS::SSM::ManagedInstanceInventory/i-0abc")."""
    return config_resource_id.rsplit("/", 1)[-1]


def check_rule_name(name: str) -> str:
    """The rule name, if Config takes it everywhere the stage uses it; ValueError names what is wrong."""
    if not name or not name.strip() or len(name) > MAX_RULE_NAME_LENGTH:
        raise ValueError(f"rule_name: must be 1 to {MAX_RULE_NAME_LENGTH} characters, got {name!r}")
    return name


def patch_rule_definition(rule_name: str) -> dict[str, Any]:
    """The PutConfigRule ConfigRule for the managed patch compliance rule (it takes no parameters)."""
    return {
        "ConfigRuleName": check_rule_name(rule_name),
        "Description": "Created by patchcycle: Systems Manager patch compliance of managed EC2 instances.",
        "Scope": {"ComplianceResourceTypes": [PATCH_COMPLIANCE_TYPE]},
        "Source": {"Owner": "AWS", "SourceIdentifier": PATCH_RULE_IDENTIFIER},
    }


def choose_patch_rule(rules: Iterable[Mapping[str, Any]], rule_name: str) -> Mapping[str, Any] | None:
    """The live rule running the managed patch compliance check: the one named `rule_name` if it is one,
    else the first by name; None when there is none."""
    candidates = sorted(
        (
            rule
            for rule in rules
            if (rule.get("Source") or {}).get("Owner") == "AWS"
            and (rule.get("Source") or {}).get("SourceIdentifier") == PATCH_RULE_IDENTIFIER
            and rule.get("ConfigRuleState", "ACTIVE") in _LIVE_RULE_STATES
        ),
        key=lambda rule: (rule.get("ConfigRuleName") != rule_name, str(rule.get("ConfigRuleName"))),
    )
    return candidates[0] if candidates else None


@dataclass(frozen=True)
class RecorderState:
    """Whether Config can evaluate patch compliance in a region, and if not, why."""

    name: str
    recording: bool
    records_patch_compliance: bool
    last_status: str
    problem: str  # "" when Config can evaluate

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recording": self.recording,
            "records_patch_compliance": self.records_patch_compliance,
            "last_status": self.last_status,
        }


def _records(recorder: Mapping[str, Any], resource_type: str) -> bool:
    group = recorder.get("recordingGroup") or {}
    strategy = (group.get("recordingStrategy") or {}).get("useOnly", "")
    excluded = (group.get("exclusionByResourceTypes") or {}).get("resourceTypes") or []
    if strategy == "EXCLUSION_BY_RESOURCE_TYPES":
        return resource_type not in excluded
    if group.get("allSupported", True) and strategy != "INCLUSION_BY_RESOURCE_TYPES":
        return True
    return resource_type in (group.get("resourceTypes") or [])


def recorder_state(recorders: Sequence[Mapping[str, Any]], statuses: Sequence[Mapping[str, Any]]) -> RecorderState:
    """Config evaluates the rule only with a recorder that is recording AWS::SSM::PatchCompliance."""
    if not recorders:
        return RecorderState("", False, False, "", "there is no AWS Config configuration recorder in this region")
    by_name = {str(status.get("name", "")): status for status in statuses}
    states = []
    for recorder in recorders:
        name = str(recorder.get("name", ""))
        status = by_name.get(name, {})
        recording = bool(status.get("recording", False))
        records = _records(recorder, PATCH_COMPLIANCE_TYPE)
        states.append(RecorderState(name, recording, records, str(status.get("lastStatus", "")), ""))
    usable = next((s for s in states if s.recording and s.records_patch_compliance), None)
    if usable is not None:
        return usable
    first = states[0]
    if not any(state.recording for state in states):
        problem = f"the AWS Config configuration recorder {first.name!r} is not recording"
    else:
        first = next(state for state in states if state.recording)
        problem = f"the AWS Config configuration recorder {first.name!r} does not record {PATCH_COMPLIANCE_TYPE}"
    return RecorderState(first.name, first.recording, first.records_patch_compliance, first.last_status, problem)


@dataclass(frozen=True)
class EvaluationTimes:
    """A rule's DescribeConfigRuleEvaluationStatus times (None when it has none yet)."""

    invoked: datetime | None
    evaluated: datetime | None

    @classmethod
    def of(cls, status: Mapping[str, Any]) -> EvaluationTimes:
        return cls(_when(status.get("LastSuccessfulInvocationTime")), _when(status.get("LastSuccessfulEvaluationTime")))

    @property
    def in_progress(self) -> bool:
        """Invoked after its last completed evaluation: an evaluation is running."""
        return self.invoked is not None and (self.evaluated is None or self.evaluated < self.invoked)

    def newer_than(self, before: EvaluationTimes, invoked_at_least: datetime | None) -> bool:
        """Whether an evaluation finished after `before`'s and no earlier than the invocation we wait for."""
        if self.evaluated is None:
            return False
        if before.evaluated is not None and self.evaluated <= before.evaluated:
            return False
        return invoked_at_least is None or self.evaluated >= invoked_at_least


def _when(value: Any) -> datetime | None:
    stamp = utc_timestamp(value)
    return None if stamp is None else stamp.to_pydatetime()


def expected_instances(inventory: pd.DataFrame | None) -> list[str]:
    """The in-scope, Systems Manager-managed EC2 instances of an inventory: what Config should evaluate."""
    if inventory is None or inventory.empty:
        return []
    rows = inventory[(inventory["resource_type"] == "ec2") & inventory["managed"].astype(bool)]
    if "in_scope" in rows.columns:
        rows = rows[rows["in_scope"].astype(bool)]
    return sorted(str(instance_id) for instance_id in rows["resource_id"])


def compliance_table(
    results: Iterable[Mapping[str, Any]],
    account_id: str,
    region: str,
    expected: Iterable[str] = (),
) -> pd.DataFrame:
    """CONFIG_COLUMNS from GetComplianceDetailsByConfigRule results, plus INSUFFICIENT_DATA for each
    `expected` instance without a result; one row per instance, sorted by instance id."""
    rows: dict[str, dict[str, Any]] = {}
    for result in results:
        qualifier = (result.get("EvaluationResultIdentifier") or {}).get("EvaluationResultQualifier") or {}
        config_id = str(qualifier.get("ResourceId", ""))
        instance_id = instance_id_of(config_id)
        recorded = result.get("ResultRecordedTime") or (result.get("EvaluationResultIdentifier") or {}).get(
            "OrderingTimestamp"
        )
        rows[instance_id] = {
            "account_id": account_id,
            "region": region,
            "resource_id": instance_id,
            "config_resource_type": str(qualifier.get("ResourceType", "")),
            "config_resource_id": config_id,
            "compliance": str(result.get("ComplianceType", "INSUFFICIENT_DATA")),
            "annotation": str(result.get("Annotation", "")),
            "evaluated_at": iso_utc(recorded),
        }
    for instance_id in expected:
        rows.setdefault(
            instance_id,
            {
                "account_id": account_id,
                "region": region,
                "resource_id": instance_id,
                "config_resource_type": PATCH_COMPLIANCE_TYPE,
                "config_resource_id": PATCH_RESOURCE_PREFIX + instance_id,
                "compliance": "INSUFFICIENT_DATA",
                "annotation": NO_RESULT_ANNOTATION,
                "evaluated_at": "",
            },
        )
    return typed_frame((rows[key] for key in sorted(rows)), CONFIG_COLUMNS)


def empty_compliance_table() -> pd.DataFrame:
    return typed_frame([], CONFIG_COLUMNS)


def compliance_counts(table: pd.DataFrame) -> dict[str, int]:
    """Instances per compliance type, every type present (0 when none)."""
    counts = table["compliance"].value_counts()
    return {kind: int(counts.get(kind, 0)) for kind in COMPLIANCE_TYPES}
