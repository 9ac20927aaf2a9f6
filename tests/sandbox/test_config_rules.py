"""AWS Config in the sandbox: the recorder, rules, evaluations over simulated time, results from the patch state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from include.sandbox import patching
from include.sandbox.config_rules import PATCH_RESOURCE_PREFIX, PATCH_RULE
from include.sandbox.server import SandboxServer
from tests.conftest import advance_clock, client_factory

ACCOUNT = "123456789012"
EAST, WEST = "us-east-1", "eu-west-1"
AL2023 = "ami-0a1b2c3d4e5f60001"
EVALUATION_SECONDS = 10
PATCH_RULE_SOURCE = {"Owner": "AWS", "SourceIdentifier": PATCH_RULE}
ALL_TYPES = ["COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE"]


def scenario(**config: Any) -> dict[str, Any]:
    """us-east-1: three instances behind on patches, two current, one unmanaged; eu-west-1: one instance."""
    return {
        "name": "config",
        "seed": 3,
        "clock": {"start": "2026-11-20T03:00:00Z", "speed": 1.0},
        "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
        "accounts": [
            {
                "id": ACCOUNT,
                "regions": {
                    EAST: {
                        "instance_groups": [
                            {"name": "behind", "count": 3, "ami": AL2023, "patched_through": "2026-08-31"},
                            {"name": "current", "count": 2, "ami": AL2023, "patched_through": "2026-11-20"},
                            {"name": "dark", "count": 1, "ami": AL2023, "agent": "unmanaged"},
                        ]
                    },
                    WEST: {"instance_groups": [{"name": "west", "count": 1, "ami": AL2023}]},
                },
            }
        ],
        "config": {"evaluation_seconds": EVALUATION_SECONDS, **config},
    }


def start(sandbox_factory: Callable[..., SandboxServer], **config: Any) -> tuple[SandboxServer, Any]:
    server = sandbox_factory(scenario(**config))
    return server, client_factory(server.url)("config", region=EAST)


def expected_compliance(server: SandboxServer, region: str = EAST) -> dict[str, str]:
    """Config resource id -> compliance, from the sandbox's Patch Manager state (the rule's definition)."""
    with server.world.request():
        instances = server.world.instances(ACCOUNT, region)
        return {
            PATCH_RESOURCE_PREFIX + iid: "COMPLIANT" if patching.is_compliant(i.report) else "NON_COMPLIANT"
            for iid, i in instances.items()
            if i.registered and i.report is not None
        }


def results(client: Any, rule: str, **kwargs: Any) -> dict[str, str]:
    pages = client.get_paginator("get_compliance_details_by_config_rule").paginate(
        ConfigRuleName=rule, ComplianceTypes=ALL_TYPES, **kwargs
    )
    found = {}
    for page in pages:
        for result in page["EvaluationResults"]:
            qualifier = result["EvaluationResultIdentifier"]["EvaluationResultQualifier"]
            assert qualifier["ResourceType"] == "AWS::SSM::PatchCompliance"
            assert qualifier["ResourceId"] not in found, "a resource is listed twice across pages"
            found[qualifier["ResourceId"]] = result["ComplianceType"]
    return found


def status(client: Any, rule: str) -> dict[str, Any]:
    return dict(client.describe_config_rule_evaluation_status(ConfigRuleNames=[rule])["ConfigRulesEvaluationStatus"][0])


def put_patch_rule(client: Any, name: str = "patch") -> None:
    client.put_config_rule(
        ConfigRule={
            "ConfigRuleName": name,
            "Source": PATCH_RULE_SOURCE,
            "Scope": {"ComplianceResourceTypes": ["AWS::SSM::PatchCompliance"]},
        }
    )


def error(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def test_recorder_follows_the_scenario_per_region(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server, east = start(sandbox_factory, regions={WEST: "none"}, recorded_resource_types=["AWS::EC2::Instance"])
    (recorder,) = east.describe_configuration_recorders()["ConfigurationRecorders"]
    assert recorder["name"] == "default"
    assert recorder["recordingGroup"]["allSupported"] is False
    assert recorder["recordingGroup"]["resourceTypes"] == ["AWS::EC2::Instance"]
    (state,) = east.describe_configuration_recorder_status()["ConfigurationRecordersStatus"]
    assert state["recording"] is True and state["lastStatus"] == "Success"
    west = client_factory(server.url)("config", region=WEST)
    assert west.describe_configuration_recorders()["ConfigurationRecorders"] == []
    assert west.describe_configuration_recorder_status()["ConfigurationRecordersStatus"] == []
    with pytest.raises(ClientError) as raised:
        east.describe_configuration_recorder_status(ConfigurationRecorderNames=["other"])
    assert error(raised)[0] == "NoSuchConfigurationRecorderException"


def test_stop_and_start_the_recorder(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server, client = start(sandbox_factory, recorder="stopped")
    assert client.describe_configuration_recorder_status()["ConfigurationRecordersStatus"][0]["recording"] is False
    client.start_configuration_recorder(ConfigurationRecorderName="default")
    (state,) = client.describe_configuration_recorder_status()["ConfigurationRecordersStatus"]
    assert state["recording"] is True
    assert state["lastStartTime"].astimezone(UTC) >= server.world.now() - timedelta(seconds=5)
    client.stop_configuration_recorder(ConfigurationRecorderName="default")
    assert client.describe_configuration_recorder_status()["ConfigurationRecordersStatus"][0]["recording"] is False


def test_put_config_rule_needs_a_recorder_and_a_valid_managed_rule(
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    server, east = start(sandbox_factory, regions={WEST: "none"})
    west = client_factory(server.url)("config", region=WEST)
    with pytest.raises(ClientError) as raised:
        put_patch_rule(west)
    assert error(raised)[0] == "NoAvailableConfigurationRecorderException"
    with pytest.raises(ClientError) as raised:
        east.put_config_rule(ConfigRule={"ConfigRuleName": "x", "Source": {"Owner": "AWS", "SourceIdentifier": "NOPE"}})
    assert error(raised)[0] == "InvalidParameterValueException" and "NOPE" in error(raised)[1]
    with pytest.raises(ClientError) as raised:
        east.put_config_rule(
            ConfigRule={"ConfigRuleName": "x", "Source": PATCH_RULE_SOURCE, "InputParameters": '{"severity": "x"}'}
        )
    assert error(raised)[0] == "InvalidParameterValueException"
    assert east.describe_config_rules()["ConfigRules"] == []


def test_a_new_rule_is_evaluated_after_the_evaluation_time_from_the_patch_state(
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    server, client = start(sandbox_factory)
    put_patch_rule(client)
    (rule,) = client.describe_config_rules(ConfigRuleNames=["patch"])["ConfigRules"]
    assert rule["Source"] == PATCH_RULE_SOURCE
    assert rule["ConfigRuleArn"] == f"arn:aws:config:{EAST}:{ACCOUNT}:config-rule/{rule['ConfigRuleId']}"
    first = status(client, "patch")
    assert first["FirstEvaluationStarted"] is True and "LastSuccessfulEvaluationTime" not in first
    assert results(client, "patch") == {}  # nothing is visible before the evaluation completes

    advance_clock(server.url, EVALUATION_SECONDS + 1)
    done = status(client, "patch")
    assert done["LastSuccessfulEvaluationTime"] - done["LastSuccessfulInvocationTime"] == timedelta(
        seconds=EVALUATION_SECONDS
    )
    expected = expected_compliance(server)
    assert results(client, "patch") == expected
    behind = {i.instance_id for i in server.world.instances(ACCOUNT, EAST).values() if i.group == "behind"}
    non_compliant = {rid.removeprefix(PATCH_RESOURCE_PREFIX) for rid, c in expected.items() if c == "NON_COMPLIANT"}
    assert non_compliant == behind and len(expected) == 5  # the unmanaged instance has no patch state


def test_compliance_details_page_and_filter_within_the_limits(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server, client = start(sandbox_factory)
    put_patch_rule(client)
    advance_clock(server.url, EVALUATION_SECONDS + 1)
    expected = expected_compliance(server)
    assert results(client, "patch", PaginationConfig={"PageSize": 2}) == expected
    page = client.get_compliance_details_by_config_rule(ConfigRuleName="patch", ComplianceTypes=["NON_COMPLIANT"])
    assert {r["ComplianceType"] for r in page["EvaluationResults"]} == {"NON_COMPLIANT"}
    with pytest.raises(ClientError) as raised:
        client.get_compliance_details_by_config_rule(ConfigRuleName="patch", ComplianceTypes=["INSUFFICIENT_DATA"])
    assert error(raised)[0] == "InvalidParameterValueException"
    unchecked = unchecked_client(server.url)
    with pytest.raises(ClientError) as raised:
        unchecked.get_compliance_details_by_config_rule(ConfigRuleName="patch", Limit=101)
    assert error(raised)[0] == "ValidationException" and "less than or equal to 100" in error(raised)[1]
    with pytest.raises(ClientError) as raised:
        unchecked.describe_config_rules(ConfigRuleNames=[f"r{n}" for n in range(26)])
    assert "less than or equal to 25" in error(raised)[1]
    with pytest.raises(ClientError) as raised:
        client.get_compliance_details_by_config_rule(ConfigRuleName="missing")
    assert error(raised)[0] == "NoSuchConfigRuleException"


def unchecked_client(url: str) -> Any:
    """A config client that sends what it is given, so the sandbox's own limit checks are what answers."""
    config = Config(parameter_validation=False, retries={"mode": "standard", "max_attempts": 1})
    return boto3.client("config", region_name=EAST, endpoint_url=url, config=config)


def test_describe_config_rules_pages_by_25(sandbox_factory: Callable[..., SandboxServer]) -> None:
    _, client = start(sandbox_factory)
    names = [f"rule-{n:02d}" for n in range(30)]
    for name in names:
        put_patch_rule(client, name)
    first = client.describe_config_rules()
    assert len(first["ConfigRules"]) == 25 and "NextToken" in first
    listed = [
        r["ConfigRuleName"] for p in client.get_paginator("describe_config_rules").paginate() for r in p["ConfigRules"]
    ]
    assert listed == names
    with pytest.raises(ClientError) as raised:
        client.describe_config_rules(ConfigRuleNames=["rule-00", "nope"])
    assert error(raised)[0] == "NoSuchConfigRuleException"


def test_start_evaluation_is_refused_while_running_or_within_a_minute(
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    server, client = start(sandbox_factory)
    put_patch_rule(client)
    with pytest.raises(ClientError) as raised:
        client.start_config_rules_evaluation(ConfigRuleNames=["patch"])  # the creation's evaluation is running
    assert error(raised)[0] == "LimitExceededException"
    advance_clock(server.url, EVALUATION_SECONDS + 1)
    client.start_config_rules_evaluation(ConfigRuleNames=["patch"])
    advance_clock(server.url, EVALUATION_SECONDS + 1)
    with pytest.raises(ClientError) as raised:
        client.start_config_rules_evaluation(ConfigRuleNames=["patch"])  # finished, but less than a minute ago
    assert error(raised)[0] == "LimitExceededException"
    advance_clock(server.url, 60)
    client.start_config_rules_evaluation(ConfigRuleNames=["patch"])
    with pytest.raises(ClientError) as raised:
        client.start_config_rules_evaluation(ConfigRuleNames=["missing"])
    assert error(raised)[0] == "NoSuchConfigRuleException"


def _install_everything(server: SandboxServer) -> list[str]:
    """Patch the 'behind' instances as an Install would, straight in the World; returns their ids."""
    with server.world.request():
        now = server.world.now()
        behind = [i for i in server.world.instances(ACCOUNT, EAST).values() if i.group == "behind"]
        for instance in behind:
            patching.install(server.world, instance, now, now)
    return [i.instance_id for i in behind]


def test_an_evaluation_reflects_the_state_at_its_invocation(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server, client = start(sandbox_factory)
    put_patch_rule(client)
    before = expected_compliance(server)
    assert "NON_COMPLIANT" in before.values()
    patched = _install_everything(server)  # after the creation's invocation: not in its results
    advance_clock(server.url, EVALUATION_SECONDS + 1)
    assert results(client, "patch") == before

    advance_clock(server.url, 60)
    client.start_config_rules_evaluation(ConfigRuleNames=["patch"])
    advance_clock(server.url, EVALUATION_SECONDS + 1)
    after = results(client, "patch")
    assert after == expected_compliance(server)
    assert all(after[PATCH_RESOURCE_PREFIX + iid] == "COMPLIANT" for iid in patched)


def test_a_stopped_recorder_records_no_change(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server, client = start(sandbox_factory)
    put_patch_rule(client)
    advance_clock(server.url, EVALUATION_SECONDS + 61)
    before = results(client, "patch")
    client.stop_configuration_recorder(ConfigurationRecorderName="default")
    _install_everything(server)
    client.start_config_rules_evaluation(ConfigRuleNames=["patch"])
    advance_clock(server.url, EVALUATION_SECONDS + 1)
    assert (
        status(client, "patch")["LastSuccessfulEvaluationTime"]
        > status(client, "patch")["LastSuccessfulInvocationTime"]
    )
    assert results(client, "patch") == before  # evaluated, but over the configuration items recorded before


def test_periodic_evaluation_follows_the_scenario(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server, client = start(sandbox_factory, periodic_evaluation_minutes=60)
    put_patch_rule(client)
    first = status(client, "patch")["LastSuccessfulInvocationTime"]
    advance_clock(server.url, 30 * 60)
    assert status(client, "patch")["LastSuccessfulInvocationTime"] == first
    patched = _install_everything(server)
    advance_clock(server.url, 31 * 60 + EVALUATION_SECONDS)
    later = status(client, "patch")
    assert later["LastSuccessfulInvocationTime"] == first + timedelta(hours=1)
    assert all(results(client, "patch")[PATCH_RESOURCE_PREFIX + iid] == "COMPLIANT" for iid in patched)
