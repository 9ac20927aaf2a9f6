"""The pieces of the sandbox's Automation that need no server: JSONPath selectors, runbook checks, substitution,
output conversions and aws:branch conditions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from include.sandbox import automation_actions, jsonpath, runbook
from include.sandbox.protocol import AwsApiError
from include.sandbox.runbook import OutputSpec

RESPONSE = {
    "Reservations": [
        {
            "Instances": [
                {
                    "InstanceId": "i-1",
                    "RootDeviceName": "/dev/xvda",
                    "State": {"Code": 16, "Name": "running"},
                    "Tags": [{"Key": "Role", "Value": "web"}, {"Key": "Env", "Value": "prod"}],
                },
                {"InstanceId": "i-2", "State": {"Code": 80, "Name": "stopped"}, "Tags": []},
            ]
        }
    ],
    "Snapshots": [{"SnapshotId": "snap-1", "Size": 8}, {"SnapshotId": "snap-2", "Size": 30}],
}


@pytest.mark.parametrize(
    ("path", "definite", "values"),
    [
        ("$.Reservations[0].Instances[0].RootDeviceName", True, ["/dev/xvda"]),
        ("$.Reservations[0].Instances[1].RootDeviceName", True, []),
        ("$.Reservations[0].Instances[-1].InstanceId", True, ["i-2"]),
        ("$['Reservations'][0]['Instances'][0]['State']['Name']", True, ["running"]),
        ("$.Snapshots..SnapshotId", False, ["snap-1", "snap-2"]),
        ("$..InstanceId", False, ["i-1", "i-2"]),
        ("$.Reservations[*].Instances[*].State.Name", False, ["running", "stopped"]),
        ("$.Snapshots[0:1].SnapshotId", False, ["snap-1"]),
        ("$.Snapshots[0,1].Size", False, [8, 30]),
        ("$.Snapshots[?(@.Size > 10)].SnapshotId", False, ["snap-2"]),
        ("$..Tags[?(@.Key == 'Role')].Value", False, ["web"]),
        ("$..Instances[?(@.State.Name != 'running' && @.State.Code == 80)].InstanceId", False, ["i-2"]),
        ("$..Instances[?(@.RootDeviceName)].InstanceId", False, ["i-1"]),
        ("$.Nothing[*]", False, []),
    ],
)
def test_jsonpath_selects_as_jayway_does(path: str, definite: bool, values: list[Any]) -> None:
    selection = jsonpath.select(RESPONSE, path)
    assert (selection.definite, selection.values) == (definite, values)


@pytest.mark.parametrize("path", ["Reservations[0]", "$.Reservations[", "$.a[?(@.b =~ /x/)]", "$.[0]"])
def test_jsonpath_refuses_what_it_cannot_read(path: str) -> None:
    with pytest.raises(jsonpath.JsonPathError):
        jsonpath.select(RESPONSE, path)


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("x", "String", "x"),
        (["x"], "String", "x"),
        (5, "String", "5"),
        (True, "String", "true"),
        ("7", "Integer", 7),
        ([7], "Integer", 7),
        ("true", "Boolean", True),
        ("x", "StringList", ["x"]),
        ([1, "a"], "StringList", ["1", "a"]),
        ({"a": 1}, "StringMap", {"a": 1}),
        ([{"a": 1}], "MapList", [{"a": 1}]),
    ],
)
def test_outputs_convert_as_documented(value: Any, kind: str, expected: Any) -> None:
    assert automation_actions.convert_output(value, OutputSpec("Out", "$", kind)) == expected


@pytest.mark.parametrize(
    ("value", "kind"), [(["a", "b"], "String"), ("seven", "Integer"), ({"a": 1}, "String"), ("x", "MapList")]
)
def test_impossible_conversions_fail(value: Any, kind: str) -> None:
    with pytest.raises(ValueError, match="Out"):
        automation_actions.convert_output(value, OutputSpec("Out", "$", kind))


def _book(**top: Any) -> runbook.Runbook:
    steps = top.pop("mainSteps", [{"name": "nap", "action": "aws:sleep", "inputs": {"Duration": "PT1S"}}])
    return runbook.parse({"schemaVersion": "0.3", "mainSteps": steps, **top})


def test_substitution_keeps_types_and_flattens_lists() -> None:
    values = {"Ids": ["i-1", "i-2"], "Count": 3, "Flag": False, "Name": "web", "step.Map": {"k": "v"}}

    def lookup(name: str) -> Any:
        if name not in values:
            raise runbook.UnresolvedReference(name)
        return values[name]

    inputs = {
        "InstanceIds": "{{ Ids }}",
        "More": ["{{Ids}}", "i-3"],
        "MaxResults": "{{ Count }}",
        "DryRun": "{{ Flag }}",
        "Description": "{{ Name }}: {{ Count }} {{ Flag }} {{ step.Map }}",
        "Nested": [{"Value": "{{ Name }}"}],
    }
    assert runbook.substitute(inputs, lookup) == {
        "InstanceIds": ["i-1", "i-2"],
        "More": ["i-1", "i-2", "i-3"],
        "MaxResults": 3,
        "DryRun": False,
        "Description": 'web: 3 false {"k":"v"}',
        "Nested": [{"Value": "web"}],
    }
    with pytest.raises(runbook.UnresolvedReference):
        runbook.substitute({"X": "{{ Missing }}"}, lookup)


def test_parameters_resolve_with_defaults_and_types() -> None:
    book = _book(
        parameters={
            "Ids": {"type": "StringList"},
            "Count": {"type": "Integer", "default": 2},
            "Flag": {"type": "Boolean", "default": True},
            "Maps": {"type": "MapList", "default": [{"a": 1}]},
            "Role": {"type": "AWS::IAM::Role::Arn", "default": ""},
        }
    )
    resolved = runbook.resolve_parameters(book, {"Ids": ["i-1"]})
    assert resolved == {"Ids": ["i-1"], "Count": ["2"], "Flag": ["true"], "Maps": ['{"a":1}'], "Role": [""]}
    typed = {name: runbook.typed_value(book.parameters[name], values) for name, values in resolved.items()}
    assert typed == {"Ids": ["i-1"], "Count": 2, "Flag": True, "Maps": [{"a": 1}], "Role": ""}
    with pytest.raises(AwsApiError, match="Ids is required"):
        runbook.resolve_parameters(book, {})
    assert runbook.resolve_parameters(book, {}, supplied_later={"Ids"})["Count"] == ["2"]


def test_references_to_automation_variables_and_outputs_are_declared() -> None:
    book = _book(
        mainSteps=[
            {
                "name": "run",
                "action": "aws:runCommand",
                "inputs": {
                    "DocumentName": "AWS-RunShellScript",
                    "InstanceIds": ["i-1"],
                    "Comment": "{{ global:REGION }}",
                },
            },
            {"name": "nap", "action": "aws:sleep", "inputs": {"Duration": "PT1S"}, "description": "{{ run.Output }}"},
            {"name": "again", "action": "aws:sleep", "inputs": {"Timestamp": "{{ run.CommandId }}"}},
        ],
        outputs=["run.Status"],
    )
    assert [step.name for step in book.steps] == ["run", "nap", "again"]
    with pytest.raises(AwsApiError, match="global:NOPE"):
        _book(mainSteps=[{"name": "nap", "action": "aws:sleep", "inputs": {"Duration": "{{ global:NOPE }}"}}])


def test_durations() -> None:
    assert runbook.parse_duration("PT30S") == timedelta(seconds=30)
    assert runbook.parse_duration("PT1H30M") == timedelta(hours=1, minutes=30)
    assert runbook.parse_duration("P1DT2S") == timedelta(days=1, seconds=2)
    with pytest.raises(ValueError, match="ISO 8601"):
        runbook.parse_duration("P")
    with pytest.raises(AwsApiError, match="7 days"):
        _book(mainSteps=[{"name": "nap", "action": "aws:sleep", "inputs": {"Duration": "P8D"}}])


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ({"Variable": "Linux", "StringEquals": "Linux"}, True),
        ({"Variable": "linux", "EqualsIgnoreCase": "LINUX"}, True),
        ({"Variable": "ami-123", "StartsWith": "ami-"}, True),
        ({"Variable": "x.yaml", "EndsWith": ".json"}, False),
        ({"Variable": ["a", "b"], "Contains": "b"}, True),
        ({"Variable": "abc", "Contains": "bc"}, True),
        ({"Variable": 5, "NumericEquals": 5}, True),
        ({"Variable": "7", "NumericGreater": 5}, True),
        ({"Variable": 3, "NumericLesser": 2}, False),
        ({"Variable": 3, "NumericGreaterOrEquals": 3}, True),
        ({"Variable": "true", "BooleanEquals": True}, True),
        ({"Or": [{"Variable": 1, "NumericEquals": 2}, {"Variable": "a", "StringEquals": "a"}]}, True),
        ({"Not": {"Variable": "a", "StringEquals": "a"}}, False),
        ({"Not": [{"Variable": "a", "StringEquals": "b"}]}, True),
    ],
)
def test_branch_conditions(condition: dict[str, Any], holds: bool) -> None:
    assert automation_actions._holds(condition) is holds
