"""ConfigRulesHook against the sandbox: recorder reads, rule paging, evaluation start and results 100 a page."""

from __future__ import annotations

import math
from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.sandbox import patching
from include.sandbox.server import SandboxServer
from patchcycle.core.config_compliance import PATCH_RULE_IDENTIFIER, QUERYABLE_COMPLIANCE_TYPES, patch_rule_definition
from patchcycle.hooks.config_rules import MAX_RESULTS_PER_PAGE, ConfigRulesHook
from tests.conftest import advance_clock, sandbox_calls

ACCOUNT, REGION = "123456789012", "us-east-1"
AL2023 = "ami-0a1b2c3d4e5f60001"
EVALUATION_SECONDS = 5
FLEET = 150  # more than one page of results
SCENARIO: dict[str, Any] = {
    "name": "config-hook",
    "clock": {"start": "2026-11-20T03:00:00Z"},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [{"name": "web", "count": FLEET, "ami": AL2023, "patched_through": "2026-10-01"}]
                }
            },
        }
    ],
    "config": {"evaluation_seconds": EVALUATION_SECONDS},
}
# One attempt: exact call counts, and LimitExceededException is not retried by botocore.
SANDBOX_MAX_ATTEMPTS = 1
pytestmark = pytest.mark.usefixtures("server")


def hook() -> ConfigRulesHook:
    return ConfigRulesHook(aws_conn_id="aws_default", region_name=REGION)


def calls(server: SandboxServer, operation: str) -> int:
    return sandbox_calls(server.url, f"config:{operation}")


def test_recorder_reads() -> None:
    (recorder,) = hook().configuration_recorders()
    (status,) = hook().recorder_statuses()
    assert recorder["name"] == status["name"] == "default" and status["recording"] is True


def test_config_rules_reads_every_page(server: SandboxServer) -> None:
    config = hook()
    names = [f"paged-{n:02d}" for n in range(30)]
    for name in names:
        config.put_config_rule(patch_rule_definition(name))
    before = calls(server, "DescribeConfigRules")
    rules = config.config_rules()
    listed = [rule["ConfigRuleName"] for rule in rules]
    assert set(names) <= set(listed) and len(listed) == len(set(listed))
    assert calls(server, "DescribeConfigRules") - before == math.ceil(len(listed) / 25)
    assert {rule["Source"]["SourceIdentifier"] for rule in rules} == {PATCH_RULE_IDENTIFIER}


def test_start_evaluation_reports_a_refusal_instead_of_raising(server: SandboxServer) -> None:
    hook().put_config_rule(patch_rule_definition("start"))
    assert hook().start_evaluation("start") is False  # the creation's evaluation is still running
    advance_clock(server.url, EVALUATION_SECONDS + 61)
    assert hook().start_evaluation("start") is True
    status = hook().evaluation_status("start")
    assert status["ConfigRuleName"] == "start" and "LastSuccessfulInvocationTime" in status
    with pytest.raises(ClientError, match="NoSuchConfigRuleException"):
        hook().start_evaluation("missing")


def test_compliance_details_read_every_result_100_a_page(server: SandboxServer) -> None:
    hook().put_config_rule(patch_rule_definition("details"))
    advance_clock(server.url, EVALUATION_SECONDS + 1)
    with server.world.request():
        instances = server.world.instances(ACCOUNT, REGION).values()
        expected = {i.instance_id: patching.is_compliant(i.report) for i in instances if i.report is not None}
    before = calls(server, "GetComplianceDetailsByConfigRule")
    results = hook().compliance_details("details", QUERYABLE_COMPLIANCE_TYPES)
    assert calls(server, "GetComplianceDetailsByConfigRule") - before == math.ceil(FLEET / MAX_RESULTS_PER_PAGE) == 2
    found: dict[str, Any] = {
        r["EvaluationResultIdentifier"]["EvaluationResultQualifier"]["ResourceId"].rsplit("/", 1)[1]: r[
            "ComplianceType"
        ]
        for r in results
    }
    assert len(results) == len(found) == FLEET
    assert found == {iid: "COMPLIANT" if ok else "NON_COMPLIANT" for iid, ok in expected.items()}
