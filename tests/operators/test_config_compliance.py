"""ConfigComplianceOperator against the sandbox: the rule created once and found after, compliance that matches
the sandbox's patch state (the evaluation waited for in ConfigEvaluationTrigger), and a region where Config
cannot evaluate recorded as such."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox import patching
from include.sandbox.server import SandboxServer
from patchcycle.core.config_compliance import CONFIG_COLUMNS, DEFAULT_RULE_NAME, PATCH_RULE_IDENTIFIER
from patchcycle.operators.config_compliance import DEFER_MARGIN, ConfigComplianceOperator
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.triggers.config_evaluation import ConfigEvaluationTrigger
from tests.conftest import advance_clock, client_factory, first_trigger_payload, sandbox_calls

ACCOUNT = "123456789012"
EAST, WEST, STOPPED = "us-east-1", "eu-west-1", "us-west-2"
AL2023 = "ami-0a1b2c3d4e5f60001"
DAG_ID = "patch_cycle"
CLOCK_SPEED = 20.0  # simulated seconds per real second: an evaluation takes a quarter of a second
EVALUATION_SECONDS = 5


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
                        ]
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


def context(run_id: str) -> Any:
    return {"dag": SimpleNamespace(dag_id=DAG_ID), "run_id": run_id, "params": {}}


def artifact(root: Path, run_id: str, stage: str, name: str) -> Path:
    return root / DAG_ID / run_id / stage / name


def operator(root: Path, region: str = EAST, **kwargs: Any) -> ConfigComplianceOperator:
    settings = {"poll_seconds": 0.05, "evaluation_timeout_minutes": 1, **kwargs}
    return ConfigComplianceOperator(
        task_id="config_compliance", region_name=region, artifact_root=f"file://{root}", **settings
    )


def run(task: ConfigComplianceOperator, run_id: str) -> dict[str, Any]:
    """execute() defers on the evaluation wait; the trigger runs as the triggerer would; execute_complete() resumes."""
    with pytest.raises(TaskDeferred) as raised:
        task.execute(context(run_id))
    deferred = raised.value
    trigger = deferred.trigger
    assert isinstance(trigger, ConfigEvaluationTrigger) and deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(minutes=float(task.evaluation_timeout_minutes)) + DEFER_MARGIN
    assert not deferred.kwargs  # Airflow 3.3.2 drops them: what the resumed task needs rides in the event
    return dict(task.execute_complete(context(run_id), first_trigger_payload(trigger)))


def inventory(root: Path, run_id: str, region: str = EAST) -> None:
    InventoryOperator(task_id="inventory", region_name=region, artifact_root=f"file://{root}").execute(context(run_id))


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


def test_creates_the_rule_when_missing_then_finds_it_and_matches_the_patch_state(
    server: SandboxServer, tmp_path: Path
) -> None:
    key = f"aws_default.{EAST}"
    inventory(tmp_path, "run_1")
    puts = sandbox_calls(server.url, "config:PutConfigRule")
    first = run(operator(tmp_path), "run_1")
    assert sandbox_calls(server.url, "config:PutConfigRule") - puts == 1
    assert first["status"] == "evaluated" and first["rule_created"] is True and first["rule_name"] == DEFAULT_RULE_NAME

    rules = client_factory(server.url)("config", region=EAST).describe_config_rules()["ConfigRules"]
    assert [(r["ConfigRuleName"], r["Source"]["SourceIdentifier"]) for r in rules] == [
        (DEFAULT_RULE_NAME, PATCH_RULE_IDENTIFIER)
    ]
    table = pd.read_parquet(artifact(tmp_path, "run_1", "config", f"{key}.compliance.parquet"))
    assert list(table.columns) == list(CONFIG_COLUMNS)
    compliance = dict(zip(table["resource_id"], table["compliance"], strict=True))
    expected = patch_state(server)
    (silent,) = group_ids(server, "silent")
    assert compliance == {**expected, silent: "INSUFFICIENT_DATA"}  # the unmanaged instance is not expected at all
    assert {iid for iid, c in compliance.items() if c == "NON_COMPLIANT"} == set(group_ids(server, "behind"))
    assert set(table["account_id"]) == {ACCOUNT} and set(table["region"]) == {EAST}
    assert table.loc[table["compliance"] != "INSUFFICIENT_DATA", "evaluated_at"].str.endswith("Z").all()

    document = json.loads(artifact(tmp_path, "run_1", "config", f"{key}.json").read_text())
    assert document["rule"]["created"] is True and document["rule"]["arn"] == rules[0]["ConfigRuleArn"]
    assert document["recorder"]["recording"] is True
    assert document["counts"] == {"COMPLIANT": 2, "NON_COMPLIANT": 3, "NOT_APPLICABLE": 0, "INSUFFICIENT_DATA": 1}
    assert document["evaluation"]["evaluated_at"] > document["evaluation"]["invoked_at"]
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
    second = run(operator(tmp_path), "run_2")
    assert second["rule_created"] is False
    assert sandbox_calls(server.url, "config:PutConfigRule") == puts
    assert sandbox_calls(server.url, "config:StartConfigRulesEvaluation") - starts == 1
    table = pd.read_parquet(artifact(tmp_path, "run_2", "config", f"{key}.compliance.parquet"))
    assert dict(zip(table["resource_id"], table["compliance"], strict=True)) == patch_state(server)
    assert set(table["compliance"]) == {"COMPLIANT"}  # no inventory in run_2: no INSUFFICIENT_DATA rows
    document = json.loads(artifact(tmp_path, "run_2", "config", f"{key}.json").read_text())
    assert document["rule"]["found"] is True and document["evaluation"]["requested"] is True


@pytest.mark.parametrize(
    ("region", "problem"),
    [(WEST, "there is no AWS Config configuration recorder"), (STOPPED, "'default' is not recording")],
)
def test_a_region_config_cannot_evaluate_is_recorded_not_failed(
    server: SandboxServer, tmp_path: Path, region: str, problem: str
) -> None:
    key = f"aws_default.{region}"
    inventory(tmp_path, "run_x", region)
    puts = sandbox_calls(server.url, "config:PutConfigRule")
    summary = operator(tmp_path, region=region).execute(context("run_x"))
    assert summary["status"] == "not_evaluated" and problem in summary["message"]
    assert sandbox_calls(server.url, "config:PutConfigRule") == puts  # nothing created where it cannot work
    document = json.loads(artifact(tmp_path, "run_x", "config", f"{key}.json").read_text())
    assert document["status"] == "not_evaluated" and problem in document["message"]
    assert document["rule"] is None and document["account_id"] == ACCOUNT
    assert pd.read_parquet(artifact(tmp_path, "run_x", "config", f"{key}.compliance.parquet")).empty
    assert not artifact(tmp_path, "run_x", "errors", f"config.{key}.json").exists()


def test_an_evaluation_that_does_not_finish_in_time_fails_retryably(server: SandboxServer, tmp_path: Path) -> None:
    slow = operator(tmp_path, rule_name="patchcycle-slow", evaluation_timeout_minutes=0.001)
    with pytest.raises(TimeoutError, match=r"was not evaluated within 0\.001 minutes"):
        run(slow, "run_slow")
    error = json.loads(artifact(tmp_path, "run_slow", "errors", f"config.aws_default.{EAST}.json").read_text())
    assert error["stage"] == "config" and "TimeoutError" in error["error"]
    assert f"in account {ACCOUNT}, region {EAST}" in error["error"]  # the account found before deferring
    assert not artifact(tmp_path, "run_slow", "config", f"aws_default.{EAST}.json").exists()


def test_a_bad_rule_name_fails_before_any_call(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rule_name"):
        operator(tmp_path, rule_name="x" * 65).execute(context("run_bad"))
