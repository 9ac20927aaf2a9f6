"""ConfigComplianceOperator against the sandbox: the rule created once and found after, compliance that matches
the sandbox's patch state (the evaluation waited for in ConfigEvaluationTrigger), and a region where Config
cannot evaluate recorded as such."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from include.sandbox import patching
from include.sandbox.server import SandboxServer
from patchcycle.config import Target
from patchcycle.core.config_compliance import CONFIG_COLUMNS, DEFAULT_RULE_NAME, PATCH_RULE_IDENTIFIER
from patchcycle.operators.base import DEFER_MARGIN
from patchcycle.operators.config_compliance import ConfigComplianceOperator
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.run_artifacts import CONFIG_COMPLIANCE, CONFIG_SUMMARY, TARGET_ERROR, RunArtifacts, Step
from patchcycle.triggers.config_evaluation import ConfigEvaluationTrigger
from tests.conftest import advance_clock, client_factory, first_trigger_payload, sandbox_calls
from tests.operators.install_helpers import BUCKET, context, cycle_config, run_artifacts, s3_root

ACCOUNT = "123456789012"
EAST, WEST, STOPPED = "us-east-1", "eu-west-1", "us-west-2"
AL2023 = "ami-0a1b2c3d4e5f60001"
CLOCK_SPEED = 20.0  # simulated seconds per real second: an evaluation takes a quarter of a second
EVALUATION_SECONDS = 5
ROOT = s3_root("config-compliance")


def scenario() -> dict[str, Any]:
    group = {"ami": AL2023, "instance_type": "t3.medium"}
    return {
        "name": "config-operator",
        "seed": 5,
        "clock": {"start": "2026-11-20T03:00:00Z", "speed": CLOCK_SPEED},
        "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
        "accounts": [
            {
                "id": ACCOUNT,
                "regions": {
                    EAST: {
                        "instance_groups": [
                            {"name": "behind", "count": 3, "patched_through": "2026-08-31", **group},
                            {"name": "current", "count": 2, "patched_through": "2026-11-20", **group},
                            {"name": "silent", "count": 1, **group},
                            {"name": "dark", "count": 1, "agent": "unmanaged", **group},
                        ],
                        "s3_buckets": [{"name": BUCKET}],  # the artifact store
                    },
                    WEST: {"instance_groups": [{"name": "west", "count": 1, **group}]},
                    STOPPED: {"instance_groups": [{"name": "oregon", "count": 1, **group}]},
                },
            }
        ],
        "config": {"evaluation_seconds": EVALUATION_SECONDS, "regions": {WEST: "none", STOPPED: "stopped"}},
    }


SCENARIO = scenario()


@pytest.fixture(scope="module", autouse=True)
def silent_instance(server: SandboxServer) -> None:
    """A managed instance that never reported a patch state: Config has no PatchCompliance item for it."""
    with server.world.request():
        for instance in server.world.instances(ACCOUNT, EAST).values():
            if instance.group == "silent":
                instance.report = None


def config(**params: Any) -> dict[str, Any]:
    """A scan run's validated config (quick polls); the stage reads its rule name and poll interval."""
    return cycle_config(ROOT, mode="scan", **{"poll_seconds": 0.05, **params})


def operator(
    region: str = EAST, evaluation_timeout: timedelta = timedelta(minutes=1), **params: Any
) -> ConfigComplianceOperator:
    return ConfigComplianceOperator(
        task_id="config_compliance", region_name=region, config=config(**params), evaluation_timeout=evaluation_timeout
    )


def artifacts_of(run_id: str) -> RunArtifacts:
    return run_artifacts(config(), run_id)


def run(task: ConfigComplianceOperator, run_id: str) -> dict[str, Any]:
    """execute() defers on the evaluation wait; the trigger runs as the triggerer would; execute_complete() resumes."""
    with pytest.raises(TaskDeferred) as raised:
        task.execute(context(run_id))
    deferred = raised.value
    trigger = deferred.trigger
    assert isinstance(trigger, ConfigEvaluationTrigger) and deferred.method_name == "execute_complete"
    assert deferred.timeout == task.evaluation_timeout + DEFER_MARGIN
    assert not deferred.kwargs  # Airflow 3.3.2 drops them: what the resumed task needs rides in the event
    return dict(task.execute_complete(context(run_id), first_trigger_payload(trigger)))


def inventory(run_id: str, region: str = EAST) -> None:
    InventoryOperator(task_id="inventory", region_name=region, config=config()).execute(context(run_id))


def all_calls(server: SandboxServer) -> dict[str, int]:
    """Every "service:Operation" the sandbox has served, with its count."""
    with urllib.request.urlopen(f"{server.url}/_sandbox/calls", timeout=10) as response:
        calls: dict[str, int] = json.loads(response.read())
    return calls


def patch_state(server: SandboxServer) -> dict[str, str]:
    """Instance id -> what the rule must say, from the sandbox's Patch Manager state (only instances that reported)."""
    with server.world.request():
        return {
            iid: "COMPLIANT" if patching.is_compliant(i.report) else "NON_COMPLIANT"
            for iid, i in server.world.instances(ACCOUNT, EAST).items()
            if i.registered and i.report is not None
        }


def group_ids(server: SandboxServer, group: str) -> list[str]:
    return sorted(i.instance_id for i in server.world.instances(ACCOUNT, EAST).values() if i.group == group)


def test_creates_the_rule_when_missing_then_finds_it_and_matches_the_patch_state(server: SandboxServer) -> None:
    east = Target("aws_default", EAST)
    inventory("run_1")
    puts = sandbox_calls(server.url, "config:PutConfigRule")
    first = run(operator(), "run_1")
    assert sandbox_calls(server.url, "config:PutConfigRule") - puts == 1
    assert first["status"] == "evaluated" and first["rule_created"] is True and first["rule_name"] == DEFAULT_RULE_NAME

    rules = client_factory(server.url)("config", region=EAST).describe_config_rules()["ConfigRules"]
    assert [(r["ConfigRuleName"], r["Source"]["SourceIdentifier"]) for r in rules] == [
        (DEFAULT_RULE_NAME, PATCH_RULE_IDENTIFIER)
    ]
    run_1 = artifacts_of("run_1")
    table = run_1.read(CONFIG_COMPLIANCE, target=east)
    assert list(table.columns) == list(CONFIG_COLUMNS)
    compliance = dict(zip(table["resource_id"], table["compliance"], strict=True))
    expected = patch_state(server)
    (silent,) = group_ids(server, "silent")
    assert compliance == {**expected, silent: "INSUFFICIENT_DATA"}  # the unmanaged instance is not expected at all
    assert {iid for iid, c in compliance.items() if c == "NON_COMPLIANT"} == set(group_ids(server, "behind"))
    assert set(table["account_id"]) == {ACCOUNT} and set(table["region"]) == {EAST}
    assert table.loc[table["compliance"] != "INSUFFICIENT_DATA", "evaluated_at"].str.endswith("Z").all()

    summary = run_1.read(CONFIG_SUMMARY, target=east)
    assert summary.rule is not None and summary.evaluation is not None
    assert summary.rule.created is True and summary.rule.arn == rules[0]["ConfigRuleArn"]
    assert summary.recorder["recording"] is True
    assert summary.counts == {"COMPLIANT": 2, "NON_COMPLIANT": 3, "NOT_APPLICABLE": 0, "INSUFFICIENT_DATA": 1}
    assert summary.evaluation.evaluated_at > summary.evaluation.invoked_at
    assert first["non_compliant"] == 3 and first["insufficient_data"] == 1

    # The cycle patches the instances that were behind; the next run finds the rule and sees them compliant.
    with server.world.request():
        now = server.world.now()
        for instance in server.world.instances(ACCOUNT, EAST).values():
            if instance.group == "behind":
                patching.install(server.world, instance, now, now)
    advance_clock(server.url, 61)  # Config takes one StartConfigRulesEvaluation a minute
    starts = sandbox_calls(server.url, "config:StartConfigRulesEvaluation")
    puts = sandbox_calls(server.url, "config:PutConfigRule")
    second = run(operator(), "run_2")
    assert second["rule_created"] is False
    assert sandbox_calls(server.url, "config:PutConfigRule") == puts
    assert sandbox_calls(server.url, "config:StartConfigRulesEvaluation") - starts == 1
    run_2 = artifacts_of("run_2")
    table = run_2.read(CONFIG_COMPLIANCE, target=east)
    assert dict(zip(table["resource_id"], table["compliance"], strict=True)) == patch_state(server)
    assert set(table["compliance"]) == {"COMPLIANT"}  # no inventory in run_2: no INSUFFICIENT_DATA rows
    summary = run_2.read(CONFIG_SUMMARY, target=east)
    assert summary.rule is not None and summary.evaluation is not None
    assert summary.rule.found is True and summary.evaluation.requested is True


@pytest.mark.parametrize(
    ("region", "problem"),
    [(WEST, "there is no AWS Config configuration recorder"), (STOPPED, "'default' is not recording")],
)
def test_a_region_config_cannot_evaluate_is_recorded_not_failed(
    server: SandboxServer, region: str, problem: str
) -> None:
    run_id, target = f"run_x_{region}", Target("aws_default", region)
    inventory(run_id, region)
    puts = sandbox_calls(server.url, "config:PutConfigRule")
    summary = operator(region=region).execute(context(run_id))
    assert summary["status"] == "not_evaluated" and problem in summary["message"]
    assert sandbox_calls(server.url, "config:PutConfigRule") == puts  # nothing created where it cannot work
    artifacts = artifacts_of(run_id)
    record = artifacts.read(CONFIG_SUMMARY, target=target)
    assert record.status == "not_evaluated" and problem in record.message
    assert record.rule is None and record.evaluation is None and record.account_id == ACCOUNT
    assert artifacts.read(CONFIG_COMPLIANCE, target=target).empty
    assert not artifacts.exists(TARGET_ERROR, step=Step.CONFIG, target=target)


def test_an_evaluation_that_does_not_finish_in_time_fails_retryably(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    east = Target("aws_default", EAST)
    # An evaluation of an hour: however late the trigger's first look comes on a loaded machine, it is unfinished.
    scenario = server.world.scenario
    hour = dataclasses.replace(scenario.config, evaluation_seconds=3600)
    monkeypatch.setattr(server.world, "scenario", dataclasses.replace(scenario, config=hour))
    slow = operator(config_rule_name="patchcycle-slow", evaluation_timeout=timedelta(minutes=0.001))
    with pytest.raises(TimeoutError, match=r"was not evaluated within 0\.001 minutes"):
        run(slow, "run_slow")
    artifacts = artifacts_of("run_slow")
    error = artifacts.read(TARGET_ERROR, step=Step.CONFIG, target=east)
    assert error.stage == "config" and "TimeoutError" in error.error
    assert f"in account {ACCOUNT}, region {EAST}" in error.error  # the account found before deferring
    assert not artifacts.exists(CONFIG_SUMMARY, target=east)


def test_a_bad_rule_name_fails_before_any_call(server: SandboxServer) -> None:
    # validate_params refuses it; a task handed such a config anyway fails on it before calling AWS.
    bad = ConfigComplianceOperator(
        task_id="config_compliance", region_name=EAST, config={**config(), "config_rule_name": "x" * 65}
    )
    before = all_calls(server)
    with pytest.raises(AirflowFailException, match="invalid run settings: config_rule_name: must be 1 to 64"):
        bad.execute(context("run_bad"))
    assert all_calls(server) == before
