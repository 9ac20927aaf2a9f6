"""core.config_compliance: the managed rule, the recorder check, evaluation times and the compliance table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from include.sandbox.protocol import validate_request
from patchcycle.core.config_compliance import (
    COMPLIANCE_TYPES,
    CONFIG_COLUMNS,
    NO_RESULT_ANNOTATION,
    PATCH_COMPLIANCE_TYPE,
    PATCH_RESOURCE_PREFIX,
    PATCH_RULE_IDENTIFIER,
    EvaluationTimes,
    check_rule_name,
    choose_patch_rule,
    compliance_counts,
    compliance_table,
    expected_instances,
    instance_id_of,
    patch_rule_definition,
    recorder_state,
)

ACCOUNT, REGION = "123456789012", "eu-west-1"
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def result(instance_id: str, compliance: str, recorded: datetime = T0, **extra: Any) -> dict[str, Any]:
    return {
        "EvaluationResultIdentifier": {
            "EvaluationResultQualifier": {
                "ConfigRuleName": "patch",
                "ResourceType": PATCH_COMPLIANCE_TYPE,
                "ResourceId": PATCH_RESOURCE_PREFIX + instance_id,
                "EvaluationMode": "DETECTIVE",
            },
            "OrderingTimestamp": recorded - timedelta(minutes=5),
        },
        "ComplianceType": compliance,
        "ResultRecordedTime": recorded,
        **extra,
    }


def recorder(name: str = "default", **group: Any) -> dict[str, Any]:
    return {"name": name, "recordingGroup": {"allSupported": True, **group}}


def test_instance_id_of_maps_patch_compliance_items_back_to_instances() -> None:
    assert instance_id_of("AWS::SSM::ManagedInstanceInventory/i-0abc1234def567890") == "i-0abc1234def567890"
    assert instance_id_of("i-0abc1234def567890") == "i-0abc1234def567890"


def test_the_rule_definition_is_a_valid_put_config_rule_request() -> None:
    rule = patch_rule_definition("patchcycle-patch")
    validate_request("config", "PutConfigRule", {"ConfigRule": rule})
    assert rule["Source"] == {"Owner": "AWS", "SourceIdentifier": PATCH_RULE_IDENTIFIER}
    assert rule["Scope"]["ComplianceResourceTypes"] == [PATCH_COMPLIANCE_TYPE]
    for bad in ("", "  ", "x" * 65):
        with pytest.raises(ValueError, match="rule_name"):
            check_rule_name(bad)


def test_choose_patch_rule_prefers_the_named_rule_and_skips_others() -> None:
    def rule(name: str, identifier: str = PATCH_RULE_IDENTIFIER, state: str = "ACTIVE") -> dict[str, Any]:
        return {
            "ConfigRuleName": name,
            "Source": {"Owner": "AWS", "SourceIdentifier": identifier},
            "ConfigRuleState": state,
        }

    rules = [
        rule("b-patch"),
        rule("a-patch"),
        rule("mine", "S3_BUCKET_VERSIONING_ENABLED"),
        rule("c", state="DELETING"),
    ]
    assert choose_patch_rule(rules, "mine") == rules[1]  # "mine" is another check: the first patch rule by name
    named = choose_patch_rule([*rules, rule("mine-too")], "mine-too")
    assert named is not None and named["ConfigRuleName"] == "mine-too"
    assert choose_patch_rule(rules[2:], "mine") is None


def test_recorder_state_says_why_config_cannot_evaluate() -> None:
    assert recorder_state([], []).problem == "there is no AWS Config configuration recorder in this region"
    stopped = recorder_state([recorder()], [{"name": "default", "recording": False, "lastStatus": "NotApplicable"}])
    assert "is not recording" in stopped.problem and not stopped.recording
    narrow = recorder_state(
        [recorder(allSupported=False, resourceTypes=["AWS::EC2::Instance"])], [{"name": "default", "recording": True}]
    )
    assert f"does not record {PATCH_COMPLIANCE_TYPE}" in narrow.problem
    excluded = recorder_state(
        [
            recorder(
                allSupported=False,
                exclusionByResourceTypes={"resourceTypes": [PATCH_COMPLIANCE_TYPE]},
                recordingStrategy={"useOnly": "EXCLUSION_BY_RESOURCE_TYPES"},
            )
        ],
        [{"name": "default", "recording": True}],
    )
    assert excluded.problem
    fine = recorder_state([recorder()], [{"name": "default", "recording": True, "lastStatus": "Success"}])
    assert fine.problem == "" and fine.as_dict() == {
        "name": "default",
        "recording": True,
        "records_patch_compliance": True,
        "last_status": "Success",
    }


def test_evaluation_times_tell_a_fresh_evaluation_from_an_old_one() -> None:
    before = EvaluationTimes.of(
        {"LastSuccessfulInvocationTime": T0, "LastSuccessfulEvaluationTime": T0 + timedelta(seconds=30)}
    )
    assert not before.in_progress
    running = EvaluationTimes.of(
        {"LastSuccessfulInvocationTime": T0 + timedelta(minutes=2), "LastSuccessfulEvaluationTime": before.evaluated}
    )
    assert running.in_progress and not running.newer_than(before, running.invoked)
    done = EvaluationTimes(running.invoked, T0 + timedelta(minutes=3))
    assert done.newer_than(before, running.invoked)
    assert not done.newer_than(before, T0 + timedelta(minutes=4))  # finished before the invocation we wait for
    assert EvaluationTimes.of({}).evaluated is None and not EvaluationTimes.of({}).in_progress
    assert EvaluationTimes(T0, None).in_progress


def test_compliance_table_adds_insufficient_data_for_expected_instances_without_results() -> None:
    results = [result("i-2", "NON_COMPLIANT"), result("i-1", "COMPLIANT", Annotation="ok")]
    table = compliance_table(results, ACCOUNT, REGION, expected=["i-1", "i-3"])
    assert list(table.columns) == list(CONFIG_COLUMNS)
    assert all(str(dtype) == "str" for dtype in table.dtypes)
    rows = table.set_index("resource_id").to_dict("index")
    assert list(rows) == ["i-1", "i-2", "i-3"]
    assert rows["i-1"]["annotation"] == "ok" and rows["i-1"]["evaluated_at"] == "2026-11-20T03:00:00Z"
    assert rows["i-2"]["config_resource_id"] == PATCH_RESOURCE_PREFIX + "i-2"
    assert rows["i-3"] == {
        "account_id": ACCOUNT,
        "region": REGION,
        "config_resource_type": PATCH_COMPLIANCE_TYPE,
        "config_resource_id": PATCH_RESOURCE_PREFIX + "i-3",
        "compliance": "INSUFFICIENT_DATA",
        "annotation": NO_RESULT_ANNOTATION,
        "evaluated_at": "",
    }
    assert compliance_counts(table) == {"COMPLIANT": 1, "NON_COMPLIANT": 1, "NOT_APPLICABLE": 0, "INSUFFICIENT_DATA": 1}
    assert set(compliance_counts(compliance_table([], ACCOUNT, REGION))) == set(COMPLIANCE_TYPES)


def test_expected_instances_are_in_scope_managed_ec2_instances() -> None:
    inventory = pd.DataFrame(
        {
            "resource_type": ["ec2", "ec2", "ec2", "rds"],
            "resource_id": ["i-b", "i-a", "i-c", "db"],
            "managed": [True, True, False, True],
            "in_scope": [True, False, True, True],
        }
    )
    assert expected_instances(inventory) == ["i-b"]
    assert expected_instances(inventory.drop(columns="in_scope")) == ["i-a", "i-b"]
    assert expected_instances(None) == []
