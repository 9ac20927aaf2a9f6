"""The sandbox's AWS protocol checks agree with botocore's service models (patterns included)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from include.sandbox import ec2_protocol, java_regex, protocol
from include.sandbox.protocol import (
    AwsApiError,
    json_error_body,
    operation_model,
    to_wire,
    validate_query_request,
    validate_request,
    validate_response,
)

INSTANCE = "i-0123456789abcdef0"
START = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
END = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)


def _patch_state(instance_id: str = INSTANCE) -> dict[str, Any]:
    return {
        "InstanceId": instance_id,
        "PatchGroup": "web",
        "BaselineId": "pb-0123456789abcdef0",
        "OperationStartTime": START,
        "OperationEndTime": END,
        "Operation": "Scan",
        "RebootOption": "NoReboot",
        "InstalledCount": 12,
        "MissingCount": 3,
        "FailedCount": 0,
        "CriticalNonCompliantCount": 1,
    }


def _states_body(count: int = 4) -> dict[str, Any]:
    ids = [f"i-{n:017x}" for n in range(count)]
    body: dict[str, Any] = to_wire({"InstancePatchStates": [_patch_state(i) for i in ids], "NextToken": "tok"})
    return body


def _request_error(service: str, operation: str, params: dict[str, Any]) -> AwsApiError:
    with pytest.raises(AwsApiError) as caught:
        validate_request(service, operation, params)
    return caught.value


# --- responses ---------------------------------------------------------------


def test_valid_response_passes_and_round_trips_through_botocore() -> None:
    body = _states_body()
    assert validate_response("ssm", "DescribeInstancePatchStates", body) == []

    op = operation_model("ssm", "DescribeInstancePatchStates")
    raw = {"body": json.dumps(body).encode(), "headers": {}, "status_code": 200}
    parsed = create_parser("json").parse(raw, op.output_shape)

    first = parsed["InstancePatchStates"][0]
    assert len(parsed["InstancePatchStates"]) == 4
    assert first["OperationStartTime"] == START
    assert first["OperationEndTime"] == END
    assert first["Operation"] == "Scan"
    assert first["MissingCount"] == 3
    assert parsed["NextToken"] == "tok"


def test_response_missing_required_member_is_reported_with_path() -> None:
    body = _states_body()
    del body["InstancePatchStates"][2]["BaselineId"]
    assert validate_response("ssm", "DescribeInstancePatchStates", body) == [
        "InstancePatchStates[2].BaselineId: required member is missing"
    ]


def test_response_string_timestamp_is_a_wrong_type() -> None:
    body = _states_body()
    body["InstancePatchStates"][3]["OperationEndTime"] = "2024-05-01T12:30:00Z"
    assert validate_response("ssm", "DescribeInstancePatchStates", body) == [
        "InstancePatchStates[3].OperationEndTime: expected timestamp (epoch seconds number), "
        "got str '2024-05-01T12:30:00Z'"
    ]


def test_response_datetime_left_unconverted_points_at_to_wire() -> None:
    body = _states_body(1)
    body["InstancePatchStates"][0]["OperationStartTime"] = START
    assert validate_response("ssm", "DescribeInstancePatchStates", body) == [
        "InstancePatchStates[0].OperationStartTime: expected timestamp (epoch seconds number), "
        "got datetime (convert it with to_wire)"
    ]


def test_response_enum_value_outside_the_model_is_reported() -> None:
    body = _states_body()
    body["InstancePatchStates"][1]["Operation"] = "Install-Only"
    assert validate_response("ssm", "DescribeInstancePatchStates", body) == [
        "InstancePatchStates[1].Operation: 'Install-Only' violates: Member must satisfy enum value set: [Scan, Install]"
    ]


def test_response_bool_is_not_an_integer() -> None:
    body = _states_body()
    body["InstancePatchStates"][0]["MissingCount"] = True
    assert validate_response("ssm", "DescribeInstancePatchStates", body) == [
        "InstancePatchStates[0].MissingCount: expected integer (32-bit), got bool True"
    ]


def test_response_unknown_members_are_reported_at_every_level() -> None:
    body = _states_body()
    body["InstancePatchStates"][1]["PatchCount"] = 7
    body["Total"] = 4
    assert validate_response("ssm", "DescribeInstancePatchStates", body) == [
        "Total: unknown member (not a member of DescribeInstancePatchStatesResult)",
        "InstancePatchStates[1].PatchCount: unknown member (not a member of InstancePatchState)",
    ]


def test_response_null_member_and_nested_map_problems() -> None:
    body = {
        "Command": {
            "CommandId": "c0ffee00-0000-4000-8000-000000000000",
            "Status": "Success",
            "RequestedDateTime": 1714564800.0,
            "Parameters": {"Operation": ["Scan", 1], "RebootOption": None},
            "Comment": None,
        }
    }
    # Problems come in the model's member order (Comment precedes Parameters).
    assert validate_response("ssm", "SendCommand", body) == [
        "Command.Comment: null; omit the member instead",
        'Command.Parameters["Operation"][1]: expected string, got int 1',
        'Command.Parameters["RebootOption"]: null map value',
    ]


def test_response_problems_leave_the_input_untouched() -> None:
    body = _states_body()
    body["InstancePatchStates"][0]["Operation"] = "Nope"
    before = copy.deepcopy(body)
    assert len(validate_response("ssm", "DescribeInstancePatchStates", body)) == 1
    assert body == before


# --- requests ----------------------------------------------------------------


def test_request_over_fifty_instance_ids_gets_the_aws_message() -> None:
    ids = [f"i-{n:017x}" for n in range(51)]
    error = _request_error("ssm", "DescribeInstancePatchStates", {"InstanceIds": ids})
    assert error.code == "ValidationException"
    assert error.status == 400
    assert error.message == (
        f"1 validation error detected: Value '[{', '.join(ids)}]' at 'instanceIds' "
        "failed to satisfy constraint: Member must have length less than or equal to 50"
    )


def test_request_fifty_instance_ids_is_fine() -> None:
    ids = [f"i-{n:017x}" for n in range(50)]
    validate_request("ssm", "DescribeInstancePatchStates", {"InstanceIds": ids, "MaxResults": 50})


@pytest.mark.parametrize(
    ("max_results", "constraint"),
    [
        (5, "Member must have value greater than or equal to 10"),
        (101, "Member must have value less than or equal to 100"),
    ],
)
def test_request_max_results_out_of_range(max_results: int, constraint: str) -> None:
    params = {"InstanceIds": [INSTANCE], "MaxResults": max_results}
    error = _request_error("ssm", "DescribeInstancePatchStates", params)
    assert error.code == "ValidationException"
    assert error.message == (
        f"1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy constraint: {constraint}"
    )


def test_request_missing_required_member_must_not_be_null() -> None:
    error = _request_error("ssm", "DescribeInstancePatchStates", {"MaxResults": 10})
    assert error.code == "ValidationException"
    assert error.message == (
        "1 validation error detected: Value null at 'instanceIds' failed to satisfy constraint: Member must not be null"
    )


def test_request_bad_enum_is_rejected() -> None:
    params = {"DocumentName": "AWS-RunPatchBaseline", "InstanceIds": [INSTANCE], "DocumentHashType": "Md5"}
    error = _request_error("ssm", "SendCommand", params)
    assert error.code == "ValidationException"
    assert error.message == (
        "1 validation error detected: Value 'Md5' at 'documentHashType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Sha256, Sha1]"
    )


def test_request_several_errors_are_counted_and_nested_paths_use_member_n() -> None:
    params = {
        "DocumentName": "AWS-RunPatchBaseline",
        "Targets": [{"Key": "tag:Patch", "Values": ["yes"]}, {"Key": "", "Values": ["x"]}],
        "TimeoutSeconds": 10,
    }
    error = _request_error("ssm", "SendCommand", params)
    assert error.message == (
        "2 validation errors detected: "
        "Value '' at 'targets.2.member.key' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1; "
        "Value '10' at 'timeoutSeconds' failed to satisfy constraint: "
        "Member must have value greater than or equal to 30"
    )


def test_request_unknown_member_is_named() -> None:
    params = {"InstanceIds": [INSTANCE], "maxResults": 10}
    error = _request_error("ssm", "DescribeInstancePatchStates", params)
    assert error.code == "ValidationException"
    assert error.message == (
        "1 validation error detected: Value '10' at 'maxResults' failed to satisfy constraint: "
        "Member is not defined in the service model"
    )


def test_request_wrong_type_is_a_serialization_exception() -> None:
    # AWS fails to deserialise before validating, so this is not a ValidationException.
    params = {"InstanceIds": [INSTANCE], "MaxResults": "10"}
    error = _request_error("ssm", "DescribeInstancePatchStates", params)
    assert (error.code, error.message) == (
        "SerializationException",
        "Expected integer (32-bit) at 'maxResults', got JSON string",
    )


def test_request_sensitive_values_are_not_echoed() -> None:
    params = {
        "WindowId": "mw-0123456789abcdef0",
        "ResourceType": "INSTANCE",
        "Targets": [{"Key": "InstanceIds", "Values": [INSTANCE]}],
        "OwnerInformation": "",
    }
    error = _request_error("ssm", "RegisterTargetWithMaintenanceWindow", params)
    assert error.message == (
        "1 validation error detected: Value at 'ownerInformation' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )


def test_request_map_values_are_reported_once_on_the_map() -> None:
    # rest-json: resourceArn travels in the URI, so the body need not carry it.
    params = {"tags": {"a": "x" * 257, "b": "y" * 300, "": "ok"}}
    error = _request_error("inspector2", "TagResource", params)
    assert error.message.startswith("2 validation errors detected: Value '{a=")
    assert "at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: " in error.message
    assert "[Member must have length greater than or equal to 1]" in error.message
    assert error.message.endswith(
        "at 'tags' failed to satisfy constraint: Map value must satisfy constraint: "
        "[Member must have length less than or equal to 256]"
    )


def test_request_valid_send_command_is_accepted() -> None:
    validate_request(
        "ssm",
        "SendCommand",
        {
            "DocumentName": "AWS-RunPatchBaseline",
            "InstanceIds": [INSTANCE, "i-0fedcba9876543210"],
            "Parameters": {"Operation": ["Install"], "RebootOption": ["RebootIfNeeded"]},
            "TimeoutSeconds": 3600,
            "MaxConcurrency": "10%",
            "MaxErrors": "1",
            "Comment": "patch cycle",
            "CloudWatchOutputConfig": {"CloudWatchOutputEnabled": True},
        },
    )


# --- patterns ----------------------------------------------------------------

DOCUMENT_NAME_PATTERN = r"^[a-zA-Z0-9_\-.:/]{3,128}$"


@pytest.mark.parametrize("name", ["ab", "not a valid name!"])
def test_request_pattern_violation_is_a_validation_exception(name: str) -> None:
    error = _request_error("ssm", "DescribeDocument", {"Name": name})
    assert (error.code, error.status) == ("ValidationException", 400)
    assert error.message == (
        f"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {DOCUMENT_NAME_PATTERN}"
    )


def test_request_values_that_match_their_patterns_are_accepted() -> None:
    pytest.importorskip("regex")  # \p{L} in TagKey / TagValue
    validate_request("ssm", "DescribeDocument", {"Name": "AWS-RunPatchBaseline", "DocumentVersion": "$LATEST"})
    validate_request(
        "ssm",
        "AddTagsToResource",
        # Java's \p{L} and \p{Z}: any letter and any separator, not just ASCII ones.
        {"ResourceType": "Document", "ResourceId": "doc", "Tags": [{"Key": "Übersicht", "Value": "café au lait"}]},
    )


def test_request_pattern_and_length_violations_are_each_reported() -> None:
    params = {"DocumentName": "AWS-RunPatchBaseline", "InstanceIds": [INSTANCE], "MaxConcurrency": "10000000%"}
    error = _request_error("ssm", "SendCommand", params)
    assert error.message == (
        "2 validation errors detected: "
        "Value '10000000%' at 'maxConcurrency' failed to satisfy constraint: "
        "Member must have length less than or equal to 7; "
        "Value '10000000%' at 'maxConcurrency' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$"
    )


def test_request_patterns_are_searched_not_fully_matched() -> None:
    # Smithy's @pattern is not implicitly anchored: an unanchored pattern ("[\w+=,.@-]+") needs only to occur
    # in the value, an anchored one ("^...$") must cover it.
    validate_query_request("iam", "GetRole", {"RoleName": "web role (old)"})
    assert _request_error("ssm", "DescribeDocument", {"Name": "AWS-RunPatchBaseline (copy)"}).message.endswith(
        DOCUMENT_NAME_PATTERN
    )


def test_request_nested_members_map_keys_and_list_items_are_checked_against_patterns() -> None:
    product = "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default"
    params = {
        "FindingIdentifiers": [{"Id": "f-1", "ProductArn": product}, {"Id": " ", "ProductArn": product}],
        "UserDefinedFields": {"owner": "ops", "  ": "blank key", "blank value": "\t"},
        "Note": {"Text": "ok", "UpdatedBy": "   "},
    }
    error = _request_error("securityhub", "BatchUpdateFindings", params)
    pattern = r"Member must satisfy regular expression pattern: .*\S.*"
    assert error.code == "ValidationException"
    assert error.message.startswith("4 validation errors detected: ")
    assert f"Value ' ' at 'findingIdentifiers.2.member.id' failed to satisfy constraint: {pattern}" in error.message
    assert f"Value '   ' at 'note.updatedBy' failed to satisfy constraint: {pattern}" in error.message
    assert f"at 'userDefinedFields' failed to satisfy constraint: Map keys must satisfy constraint: [{pattern}]" in (
        error.message
    )
    assert f"at 'userDefinedFields' failed to satisfy constraint: Map value must satisfy constraint: [{pattern}]" in (
        error.message
    )


def test_request_batch_import_findings_leaves_blank_strings_to_the_asff_check() -> None:
    # AWS imports the rest and lists such a finding in FailedFindings (securityhub.asff_problems).
    finding = {
        "SchemaVersion": "2018-10-08",
        "Id": "f-1",
        "ProductArn": "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default",
        "GeneratorId": "g",
        "AwsAccountId": "123456789012",
        "CreatedAt": "2024-05-01T12:00:00Z",
        "UpdatedAt": "2024-05-01T12:00:00Z",
        "Title": " ",
        "Description": "d",
        "Resources": [{"Type": "Other", "Id": "r"}],
    }
    validate_request("securityhub", "BatchImportFindings", {"Findings": [finding]})


def test_request_pattern_python_cannot_read_as_java_does_is_skipped() -> None:
    # "[\p{Print}&&[^|:/]]+" is an intersection in Java: "a|b" breaks it, but Python would read it otherwise.
    validate_request("autoscaling-plans", "DeleteScalingPlan", {"ScalingPlanName": "a|b", "ScalingPlanVersion": 1})
    assert r"[\p{Print}&&[^|:/]]+" in java_regex.skipped()
    # The length constraint of the same member still applies.
    error = _request_error("autoscaling-plans", "DeleteScalingPlan", {"ScalingPlanName": "", "ScalingPlanVersion": 1})
    assert error.message.endswith("Member must have length greater than or equal to 1")


def test_query_request_pattern_violation_is_a_validation_error() -> None:
    with pytest.raises(AwsApiError) as caught:
        validate_query_request("iam", "GetRole", {"RoleName": "!!"})
    assert (caught.value.code, caught.value.status) == ("ValidationError", 400)
    assert caught.value.message == (
        "1 validation error detected: Value '!!' at 'roleName' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [\w+=,.@-]+"
    )
    validate_query_request("iam", "GetRole", {"RoleName": "patchcycle-automation"})


def test_ec2_request_pattern_violation_is_an_invalid_parameter_value() -> None:
    form = "Action=DeleteLaunchTemplate&Version=2016-11-15&LaunchTemplateName=%21%21%21"
    with pytest.raises(AwsApiError) as caught:
        ec2_protocol.decode_request("ec2", "DeleteLaunchTemplate", form)
    assert (caught.value.code, caught.value.status) == ("InvalidParameterValue", 400)
    assert caught.value.message == (
        "1 validation error detected: Value '!!!' at 'launchTemplateName' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [a-zA-Z0-9\(\)\.\-/_]+"
    )
    form = "Action=DeleteLaunchTemplate&Version=2016-11-15&LaunchTemplateName=patchcycle-web_1.0"
    assert ec2_protocol.decode_request("ec2", "DeleteLaunchTemplate", form) == {
        "LaunchTemplateName": "patchcycle-web_1.0"
    }


def test_pattern_violation_reaches_a_boto3_client_as_aws_sends_it(aws: Callable[..., Any]) -> None:
    ssm = aws("ssm")
    with pytest.raises(ClientError) as caught:
        ssm.describe_document(Name="ab")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert caught.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": "1 validation error detected: Value 'ab' at 'name' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {DOCUMENT_NAME_PATTERN}",
    }
    # A name the pattern takes reaches the handler.
    with pytest.raises(ClientError) as caught:
        ssm.describe_document(Name="no-such-document")
    assert caught.value.response["Error"]["Code"] == "InvalidDocument"


def test_non_json_services_are_refused() -> None:
    with pytest.raises(ValueError, match="rds speaks query, not JSON"):
        validate_request("rds", "DescribeDBInstances", {})


# --- helpers -----------------------------------------------------------------


def test_to_wire_converts_datetimes_recursively() -> None:
    naive = dt.datetime(2024, 5, 1, 12, 0)
    offset = dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    wire = to_wire({"a": [naive, {"b": offset}], "c": (START,), "d": "keep", "e": 3})
    assert wire == {"a": [1714564800.0, {"b": 1714564800.0}], "c": [1714564800.0], "d": "keep", "e": 3}


def test_json_error_body_is_aws_json_and_botocore_reads_it() -> None:
    error = AwsApiError("ValidationException", "1 validation error detected: x")
    body = json_error_body(error)
    assert json.loads(body) == {"__type": "ValidationException", "message": "1 validation error detected: x"}

    op = operation_model("ssm", "DescribeInstancePatchStates")
    raw = {"body": body, "headers": {}, "status_code": 400}
    parsed = create_parser("json").parse(raw, op.output_shape)
    assert parsed["Error"] == {"Code": "ValidationException", "Message": "1 validation error detected: x"}


def test_operation_model_is_cached() -> None:
    first = operation_model("ssm", "SendCommand")
    assert operation_model("ssm", "SendCommand") is first
    assert first.input_shape.required_members == ["DocumentName"]


@pytest.mark.parametrize(
    ("service", "method", "path", "operation"),
    [
        ("inspector2", "POST", "/findings/list", "ListFindings"),
        ("inspector2", "POST", "/coverage/list", "ListCoverage"),
        ("securityhub", "POST", "/findings", "GetFindings"),
        ("securityhub", "POST", "/findings/import", "BatchImportFindings"),
        ("securityhub", "PATCH", "/findings/batchupdate", "BatchUpdateFindings"),
        # A templated route binds one path segment.
        ("securityhub", "DELETE", "/automationrulesv2/rule-1", "DeleteAutomationRuleV2"),
    ],
)
def test_rest_json_operation_is_found_by_method_and_path(service: str, method: str, path: str, operation: str) -> None:
    assert protocol.rest_json_operation(service, method, path) == operation


@pytest.mark.parametrize(
    ("service", "method", "path"),
    [
        ("securityhub", "GET", "/findings/import"),  # right path, wrong method
        ("securityhub", "DELETE", "/automationrulesv2/a/b"),  # a {name} binds exactly one segment
        ("ssm", "POST", "/"),  # a JSON-target service: routed by X-Amz-Target instead
        ("no-such-service", "POST", "/findings"),
    ],
)
def test_rest_json_operation_is_empty_when_nothing_matches(service: str, method: str, path: str) -> None:
    assert protocol.rest_json_operation(service, method, path) == ""
