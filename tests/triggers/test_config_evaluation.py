"""ConfigEvaluationTrigger: serializes for the triggerer, and waits (aiobotocore, against the sandbox) for an
evaluation of the rule invoked now: a new rule's first one, or one it starts, until its deadline."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.core.config_compliance import EvaluationTimes, patch_rule_definition
from patchcycle.core.timestamps import iso_utc
from patchcycle.triggers.config_evaluation import ConfigEvaluationTrigger
from tests.conftest import advance_clock, client_factory, first_trigger_payload, sandbox_calls

ACCOUNT, REGION = "123456789012", "us-east-1"
AL2023 = "ami-0a1b2c3d4e5f60001"
RULE = "patchcycle-trigger-test"
CLOCK_SPEED = 20.0  # simulated seconds per real second
EVALUATION_SECONDS = 40  # two real seconds: long enough to see it in progress on a loaded machine
SCENARIO: dict[str, Any] = {
    "name": "config-evaluation",
    "seed": 7,
    "clock": {"start": "2026-11-20T03:00:00Z", "speed": CLOCK_SPEED},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {REGION: {"instance_groups": [{"name": "web", "count": 2, "ami": AL2023}]}},
        }
    ],
    "config": {"evaluation_seconds": EVALUATION_SECONDS},
}


def config(server: SandboxServer) -> Any:
    return client_factory(server.url)("config", region=REGION)


def times(server: SandboxServer) -> EvaluationTimes:
    statuses = config(server).describe_config_rule_evaluation_status(ConfigRuleNames=[RULE])
    return EvaluationTimes.of(statuses["ConfigRulesEvaluationStatus"][0])


def trigger(
    before: EvaluationTimes, *, start: bool, seconds: float = 30, poll: float = 0.05
) -> ConfigEvaluationTrigger:
    return ConfigEvaluationTrigger(
        aws_conn_id="aws_default",
        region_name=REGION,
        rule_name=RULE,
        start=start,
        before_invoked=iso_utc(before.invoked) or None,
        before_evaluated=iso_utc(before.evaluated) or None,
        deadline=iso_utc(datetime.now(UTC) + timedelta(seconds=seconds)),
        poll_seconds=poll,
    )


def test_serialize_round_trips_through_an_importable_class_path() -> None:
    original = ConfigEvaluationTrigger(
        aws_conn_id="aws_prod",
        region_name="eu-west-1",
        rule_name=RULE,
        start=True,
        before_invoked="2026-11-20T03:00:00+00:00",
        before_evaluated=None,
        deadline="2026-11-20T03:15:00Z",
        poll_seconds=15,
        resume={"account_id": "123456789012", "rule": {"name": RULE}},
        verify="/etc/ssl/ca.pem",
        botocore_config={"read_timeout": 30},
    )
    path, kwargs = original.serialize()
    assert path == "patchcycle.triggers.config_evaluation.ConfigEvaluationTrigger"
    assert kwargs == {
        "aws_conn_id": "aws_prod",
        "region_name": "eu-west-1",
        "rule_name": RULE,
        "start": True,
        "before_invoked": "2026-11-20T03:00:00Z",
        "before_evaluated": None,
        "deadline": "2026-11-20T03:15:00Z",
        "poll_seconds": 15.0,
        "resume": {"account_id": "123456789012", "rule": {"name": RULE}},
        "verify": "/etc/ssl/ca.pem",
        "botocore_config": {"read_timeout": 30},
    }
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (path, kwargs)
    with pytest.raises(ValueError):
        ConfigEvaluationTrigger(
            aws_conn_id=None,
            region_name=None,
            rule_name=RULE,
            start=False,
            before_invoked="yesterday",
            before_evaluated=None,
            deadline="2026-11-20T03:15:00Z",
        )


def test_a_new_rule_is_waited_for_until_its_first_evaluation(fresh_server: SandboxServer) -> None:
    config(fresh_server).put_config_rule(ConfigRule=patch_rule_definition(RULE))
    before = times(fresh_server)
    assert before.in_progress  # a new rule evaluates on its own
    starts = sandbox_calls(fresh_server.url, "config:StartConfigRulesEvaluation")
    payload = first_trigger_payload(trigger(before, start=False))
    after = times(fresh_server)
    assert payload == {
        "status": "evaluated",
        "invoked_at": iso_utc(before.invoked),
        "evaluated_at": iso_utc(after.evaluated),
        "resume": {},
    }
    assert sandbox_calls(fresh_server.url, "config:StartConfigRulesEvaluation") == starts  # Config started it


def test_a_running_evaluation_is_let_finish_then_a_fresh_one_started_and_waited_for(
    fresh_server: SandboxServer,
) -> None:
    config(fresh_server).put_config_rule(ConfigRule=patch_rule_definition(RULE))
    before = times(fresh_server)  # its own first evaluation, begun before the stage: not the one waited for
    assert before.in_progress
    starts = sandbox_calls(fresh_server.url, "config:StartConfigRulesEvaluation")
    polls = sandbox_calls(fresh_server.url, "config:DescribeConfigRuleEvaluationStatus")
    payload = first_trigger_payload(trigger(before, start=True))
    after = times(fresh_server)
    assert payload["status"] == "evaluated" and payload["evaluated_at"] == iso_utc(after.evaluated)
    assert after.invoked is not None and before.invoked is not None and after.invoked > before.invoked
    assert payload["invoked_at"] == iso_utc(after.invoked) and payload["evaluated_at"] > payload["invoked_at"]
    assert sandbox_calls(fresh_server.url, "config:StartConfigRulesEvaluation") - starts == 1
    assert sandbox_calls(fresh_server.url, "config:DescribeConfigRuleEvaluationStatus") - polls > 2  # it polled


def test_a_refused_start_is_retried_until_config_takes_it(fresh_server: SandboxServer) -> None:
    client = config(fresh_server)
    client.put_config_rule(ConfigRule=patch_rule_definition(RULE))
    advance_clock(fresh_server.url, EVALUATION_SECONDS + 1)
    client.start_config_rules_evaluation(ConfigRuleNames=[RULE])
    # Finished, but started less than a minute ago (by 19 simulated seconds, about one real one): the next start is
    # refused.
    advance_clock(fresh_server.url, EVALUATION_SECONDS + 1)
    before = times(fresh_server)
    assert not before.in_progress
    starts = sandbox_calls(fresh_server.url, "config:StartConfigRulesEvaluation")
    payload = first_trigger_payload(trigger(before, start=True))
    assert payload["status"] == "evaluated"
    assert before.evaluated is not None and payload["evaluated_at"] > iso_utc(before.evaluated)
    assert sandbox_calls(fresh_server.url, "config:StartConfigRulesEvaluation") - starts > 1  # refused, then taken


@pytest.mark.slow  # waits out the trigger's deadline
def test_the_deadline_ends_the_wait(fresh_server: SandboxServer) -> None:
    client = config(fresh_server)
    client.put_config_rule(ConfigRule=patch_rule_definition(RULE))
    advance_clock(fresh_server.url, EVALUATION_SECONDS + 1)
    client.start_config_rules_evaluation(ConfigRuleNames=[RULE])
    advance_clock(fresh_server.url, EVALUATION_SECONDS + 1)
    before = times(fresh_server)  # evaluated; the next evaluation cannot be started and finished within the deadline
    started = datetime.now(UTC)
    payload = first_trigger_payload(trigger(before, start=True, seconds=0.5))
    assert payload == {"status": "deadline", "resume": {}}
    assert datetime.now(UTC) - started >= timedelta(seconds=0.5)
