"""Automation runbooks as SSM documents in the sandbox: content checked as AWS checks it, versions, tags, listing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from tests.conftest import client_factory
from tests.sandbox.automation_support import register, runbook, scenario

SCENARIO = scenario()
RUNBOOKS = Path(__file__).resolve().parents[2] / "include" / "automation"

SLEEP = {"name": "pause", "action": "aws:sleep", "inputs": {"Duration": "PT5S"}}
DESCRIBE = {"Service": "ec2", "Api": "DescribeInstances"}


@pytest.fixture(scope="module")
def ssm(server: Any) -> Any:
    return client_factory(server.url)("ssm")


def _error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def _create(ssm: Any, content: str, name: str = "Bad-Runbook", **kwargs: Any) -> Any:
    return lambda: ssm.create_document(
        Name=name,
        Content=content,
        DocumentType="Automation",
        DocumentFormat=kwargs.pop("DocumentFormat", "YAML"),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (yaml.safe_dump({"schemaVersion": "0.3", "description": "no steps"}), "mainSteps"),
        (yaml.safe_dump({"schemaVersion": "0.3", "mainSteps": []}), "mainSteps"),
        (runbook([{"name": "x", "action": "aws:doMagic", "inputs": {}}]), "aws:doMagic"),
        (runbook([SLEEP, SLEEP]), "pause is used more than once"),
        (runbook([{**SLEEP, "nextStep": "nowhere"}]), "nextStep nowhere is not a step"),
        (runbook([{**SLEEP, "onFailure": "step:nowhere"}]), "onFailure nowhere is not a step"),
        (runbook([{**SLEEP, "onFailure": "Retry"}]), "onFailure must be"),
        (
            runbook(
                [{"name": "call", "action": "aws:executeAwsApi", "inputs": {**DESCRIBE, "InstanceIds": ["{{ Id }}"]}}]
            ),
            "{{ Id }}, which is not a parameter declared",
        ),
        (
            runbook(
                [
                    {
                        "name": "call",
                        "action": "aws:executeAwsApi",
                        "inputs": {"Service": "ec2", "Api": "DescribeVpcs"},
                    },
                    {**SLEEP, "inputs": {"Duration": "{{ call.Missing }}"}},
                ]
            ),
            "step call has no output Missing",
        ),
        (runbook([{"name": "call", "action": "aws:executeAwsApi", "inputs": {"Api": "DescribeVpcs"}}]), "Service"),
        (runbook([{**SLEEP, "timeoutSecs": 5}]), "timeoutSecs"),
        (
            runbook(
                [
                    {
                        "name": "b",
                        "action": "aws:branch",
                        "inputs": {"Choices": [{"NextStep": "gone", "Variable": "x", "StringEquals": "y"}]},
                    }
                ]
            ),
            "NextStep gone is not a step",
        ),
        (runbook([SLEEP], parameters={"Count": {"type": "Number"}}), "type Number"),
        (runbook([SLEEP], parameters={"Count": {"type": "Integer", "default": "ten"}}), "not a Integer"),
        (runbook([SLEEP], outputs=["pause.Nothing"]), "pause has no output Nothing"),
        (runbook([{**SLEEP, "inputs": {"Duration": "thirty seconds"}}]), "not an ISO 8601 duration"),
        ("schemaVersion: '0.3'\nmainSteps: [\n", "not valid YAML"),
    ],
    ids=[
        "no-mainSteps",
        "empty-mainSteps",
        "unknown-action",
        "duplicate-step",
        "missing-nextStep",
        "missing-onFailure-step",
        "bad-onFailure",
        "undeclared-parameter",
        "undeclared-output",
        "missing-input",
        "unknown-step-property",
        "branch-to-nowhere",
        "unknown-parameter-type",
        "bad-default",
        "bad-document-output",
        "bad-duration",
        "bad-yaml",
    ],
)
def test_content_is_checked_as_aws_does(ssm: Any, content: str, problem: str) -> None:
    code, message = _error(_create(ssm, content))
    assert code == "InvalidDocumentContent"
    assert problem in message
    assert _error(lambda: ssm.describe_document(Name="Bad-Runbook"))[0] == "InvalidDocument"  # nothing was stored


def test_schema_version_and_reserved_names_and_size(ssm: Any) -> None:
    command_schema = yaml.safe_dump({"schemaVersion": "2.2", "mainSteps": [SLEEP]})
    assert _error(_create(ssm, command_schema))[0] == "InvalidDocumentSchemaVersion"
    assert _error(_create(ssm, runbook([SLEEP]), name="AWS-MyRunbook"))[0] == "ValidationException"
    assert _error(_create(ssm, runbook([SLEEP]), name="amazon-thing"))[0] == "ValidationException"
    huge = runbook([SLEEP], description="x" * 70_000)
    assert _error(_create(ssm, huge))[0] == "MaxDocumentSizeExceeded"


def test_a_runbook_is_described_with_parameters_tags_and_platforms(ssm: Any) -> None:
    content = runbook(
        [SLEEP],
        description="Says nothing",
        parameters={
            "InstanceId": {"type": "String", "description": "The instance"},
            "Commands": {"type": "StringList", "default": ["true", "date"]},
            "Count": {"type": "Integer", "default": 3},
            "Flag": {"type": "Boolean", "default": True},
        },
    )
    created = ssm.create_document(
        Name="Described-Runbook",
        Content=content,
        DocumentType="Automation",
        DocumentFormat="YAML",
        Tags=[{"Key": "patchcycle:managed", "Value": "true"}],
        DisplayName="Described runbook",
    )["DocumentDescription"]
    assert created["Status"] == "Active"
    assert created["DocumentVersion"] == created["DefaultVersion"] == created["LatestVersion"] == "1"
    assert created["SchemaVersion"] == "0.3"
    assert created["PlatformTypes"] == ["Windows", "Linux", "MacOS"]
    assert created["Tags"] == [{"Key": "patchcycle:managed", "Value": "true"}]
    assert created["Description"] == "Says nothing"
    assert created["DisplayName"] == "Described runbook"
    parameters = {p["Name"]: p for p in created["Parameters"]}
    assert parameters["InstanceId"] == {"Name": "InstanceId", "Type": "String", "Description": "The instance"}
    assert parameters["Commands"]["Type"] == "StringList"
    assert json.loads(parameters["Commands"]["DefaultValue"]) == ["true", "date"]
    assert parameters["Count"]["DefaultValue"] == "3"
    assert parameters["Flag"]["DefaultValue"] == "true"
    tags = ssm.list_tags_for_resource(ResourceType="Document", ResourceId="Described-Runbook")["TagList"]
    assert tags == [{"Key": "patchcycle:managed", "Value": "true"}]
    assert _error(_create(ssm, content, name="Described-Runbook"))[0] == "DocumentAlreadyExists"


def test_versions_latest_default_and_their_content(ssm: Any) -> None:
    first = runbook([SLEEP])
    second = runbook([{**SLEEP, "inputs": {"Duration": "PT10S"}}])
    name = register(ssm, first)
    updated = ssm.update_document(Name=name, Content=second, DocumentFormat="YAML")["DocumentDescription"]
    assert (updated["DocumentVersion"], updated["LatestVersion"], updated["DefaultVersion"]) == ("2", "2", "1")
    assert _error(lambda: ssm.update_document(Name=name, Content=second, DocumentFormat="YAML"))[0] == (
        "DuplicateDocumentContent"
    )
    assert (
        _error(lambda: ssm.update_document(Name=name, Content=first, DocumentFormat="YAML", DocumentVersion="1"))[0]
        == "InvalidDocumentVersion"
    )
    bad = runbook([{**SLEEP, "nextStep": "gone"}])
    assert _error(lambda: ssm.update_document(Name=name, Content=bad, DocumentFormat="YAML"))[0] == (
        "InvalidDocumentContent"
    )

    def content(**kwargs: Any) -> Any:
        return yaml.safe_load(ssm.get_document(Name=name, **kwargs)["Content"])

    assert content()["mainSteps"][0]["inputs"]["Duration"] == "PT5S"
    assert content(DocumentVersion="$DEFAULT")["mainSteps"][0]["inputs"]["Duration"] == "PT5S"
    assert content(DocumentVersion="$LATEST")["mainSteps"][0]["inputs"]["Duration"] == "PT10S"
    as_json = ssm.get_document(Name=name, DocumentVersion="2", DocumentFormat="JSON")
    assert as_json["DocumentFormat"] == "JSON"
    assert json.loads(as_json["Content"])["mainSteps"][0]["inputs"]["Duration"] == "PT10S"
    assert ssm.describe_document(Name=name, DocumentVersion="$DEFAULT")["Document"]["DocumentVersion"] == "1"
    assert _error(lambda: ssm.describe_document(Name=name, DocumentVersion="7"))[0] == "InvalidDocumentVersion"

    default = ssm.update_document_default_version(Name=name, DocumentVersion="2")["Description"]
    assert default == {"Name": name, "DefaultVersion": "2"}
    assert ssm.describe_document(Name=name)["Document"]["DefaultVersion"] == "2"
    assert content()["mainSteps"][0]["inputs"]["Duration"] == "PT10S"
    assert _error(lambda: ssm.update_document_default_version(Name=name, DocumentVersion="9"))[0] == (
        "InvalidDocumentVersion"
    )
    ssm.delete_document(Name=name)
    assert _error(lambda: ssm.describe_document(Name=name))[0] == "InvalidDocument"


def test_update_without_a_version_updates_the_latest(ssm: Any) -> None:
    name = register(ssm, runbook([SLEEP]))
    updated = ssm.update_document(Name=name, Content=runbook([{**SLEEP, "name": "other"}]), DocumentFormat="YAML")
    assert updated["DocumentDescription"]["DocumentVersion"] == "2"


def test_json_runbooks_are_accepted(ssm: Any) -> None:
    content = json.dumps({"schemaVersion": "0.3", "mainSteps": [SLEEP]})
    created = ssm.create_document(Name="Json-Runbook", Content=content, DocumentType="Automation")
    assert created["DocumentDescription"]["DocumentFormat"] == "JSON"


def test_list_documents_filters_then_pages(ssm: Any) -> None:
    for index in range(3):
        content = runbook([{**SLEEP, "name": f"listed{index}"}])
        ssm.create_document(
            Name=f"Listed-Runbook-{index}",
            Content=content,
            DocumentType="Automation",
            DocumentFormat="YAML",
            Tags=[{"Key": "Team", "Value": "patching" if index < 2 else "other"}],
        )
    command = json.dumps(
        {
            "schemaVersion": "2.2",
            "mainSteps": [{"name": "s", "action": "aws:runShellScript", "inputs": {"runCommand": ["true"]}}],
        }
    )
    ssm.create_document(Name="Listed-Command", Content=command, DocumentType="Command")

    def listed(**kwargs: Any) -> list[dict[str, Any]]:
        pages = ssm.get_paginator("list_documents").paginate(**kwargs, PaginationConfig={"PageSize": 1})
        return [doc for page in pages for doc in page["DocumentIdentifiers"]]

    automation = listed(Filters=[{"Key": "DocumentType", "Values": ["Automation"]}])
    names = [doc["Name"] for doc in automation]
    assert {f"Listed-Runbook-{i}" for i in range(3)} <= set(names)
    assert "Listed-Command" not in names
    assert len(names) == len(set(names))
    assert all(doc["PlatformTypes"] == ["Windows", "Linux", "MacOS"] for doc in automation)
    tagged = listed(Filters=[{"Key": "tag:Team", "Values": ["patching"]}])
    assert [doc["Name"] for doc in tagged] == ["Listed-Runbook-0", "Listed-Runbook-1"]
    searched = listed(Filters=[{"Key": "SearchKeyword", "Values": ["listed-comm"]}])
    assert [(doc["Name"], doc["PlatformTypes"]) for doc in searched] == [("Listed-Command", ["Linux", "MacOS"])]
    assert listed(Filters=[{"Key": "Owner", "Values": ["Amazon"]}]) == []
    assert _error(lambda: ssm.list_documents(Filters=[{"Key": "Colour", "Values": ["red"]}]))[0] == "InvalidFilterKey"


def test_the_project_runbooks_are_valid_automation_documents(ssm: Any) -> None:
    paths = sorted(RUNBOOKS.glob("*.yaml"))
    assert paths, "include/automation has no runbooks"
    for path in paths:
        created = ssm.create_document(
            Name=f"Check-{path.stem}", Content=path.read_text(), DocumentType="Automation", DocumentFormat="YAML"
        )["DocumentDescription"]
        assert created["Status"] == "Active", path.name
