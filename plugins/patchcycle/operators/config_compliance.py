"""AWS Config: confirm each instance's patch compliance with the managed rule, after verify (scan and install mode)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from patchcycle.artifacts import ArtifactStore
from patchcycle.core.config_compliance import (
    DEFAULT_RULE_NAME,
    PATCH_RULE_IDENTIFIER,
    QUERYABLE_COMPLIANCE_TYPES,
    EvaluationTimes,
    RecorderState,
    check_rule_name,
    choose_patch_rule,
    compliance_counts,
    compliance_table,
    empty_compliance_table,
    expected_instances,
    patch_rule_definition,
    recorder_state,
)
from patchcycle.core.inventory import iso_utc
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.config_rules import ConfigRulesHook
from patchcycle.operators.base import PatchCycleOperator
from patchcycle.operators.match_tables import read_frame

STAGE = "config"
EVALUATED = "evaluated"
NOT_EVALUATED = "not_evaluated"


class ConfigComplianceOperator(PatchCycleOperator):
    """Finds (or creates) the EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK rule, has Config evaluate it now,
    waits for that evaluation within `evaluation_timeout_minutes`, and writes each instance's compliance.

    Where no configuration recorder records AWS::SSM::PatchCompliance, Config cannot evaluate: the stage
    records that (status not_evaluated, with the reason) and succeeds, creating nothing.
    """

    template_fields: Sequence[str] = (
        *PatchCycleOperator.template_fields,
        "rule_name",
        "evaluation_timeout_minutes",
        "poll_seconds",
    )

    def __init__(
        self,
        *,
        rule_name: str = DEFAULT_RULE_NAME,
        evaluation_timeout_minutes: float | str = 15,
        poll_seconds: float | str = 15,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rule_name = rule_name
        self.evaluation_timeout_minutes = evaluation_timeout_minutes
        self.poll_seconds = poll_seconds

    def execute(self, context: Context) -> dict[str, Any]:
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            rule_name = check_rule_name(str(self.rule_name))
            hook = ConfigRulesHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
            if not self.account_id:
                with aws_call("sts:GetCallerIdentity", "(unknown)", self.region_name):
                    self.account_id = hook.account_id
            with aws_call("config:DescribeConfigurationRecorders", self.account_id, self.region_name):
                recorders = hook.configuration_recorders()
            with aws_call("config:DescribeConfigurationRecorderStatus", self.account_id, self.region_name):
                statuses = hook.recorder_statuses()
            recorder = recorder_state(recorders, statuses)
            if recorder.problem:
                return self._not_evaluated(store, recorder)
            return self._evaluate(store, hook, rule_name, recorder)

    def _not_evaluated(self, store: ArtifactStore, recorder: RecorderState) -> dict[str, Any]:
        message = f"AWS Config cannot evaluate patch compliance: {recorder.problem}"
        self.log.warning("%s (account %s, region %s)", message, self.account_id, self.region_name)
        table = empty_compliance_table()
        self._write(store, table, status=NOT_EVALUATED, message=message, recorder=recorder, rule=None, evaluation=None)
        return {**self._summary(NOT_EVALUATED, table, rule_created=False), "message": message}

    def _evaluate(
        self, store: ArtifactStore, hook: ConfigRulesHook, rule_name: str, recorder: RecorderState
    ) -> dict[str, Any]:
        account, region = self.account_id, self.region_name
        with aws_call("config:DescribeConfigRules", account, region):
            rule = choose_patch_rule(hook.config_rules(), rule_name)
        created = rule is None
        if rule is None:
            with aws_call("config:PutConfigRule", account, region):
                hook.put_config_rule(patch_rule_definition(rule_name))
            with aws_call("config:DescribeConfigRules", account, region):
                rule = choose_patch_rule(hook.config_rules(), rule_name)
            if rule is None:
                raise LookupError(f"config rule {rule_name} was created but DescribeConfigRules does not list it")
            self.log.info("Created config rule %s (%s) in %s", rule_name, PATCH_RULE_IDENTIFIER, region)
        name = str(rule["ConfigRuleName"])
        times = self._wait_for_fresh_evaluation(hook, name, requested=not created)
        with aws_call("config:GetComplianceDetailsByConfigRule", account, region):
            results = hook.compliance_details(name, QUERYABLE_COMPLIANCE_TYPES)
        expected = expected_instances(read_frame(store, "inventory", f"{self.target.key}.parquet"))
        table = compliance_table(results, account, region, expected)
        self._write(
            store,
            table,
            status=EVALUATED,
            message="",
            recorder=recorder,
            rule={
                "name": name,
                "arn": str(rule.get("ConfigRuleArn", "")),
                "id": str(rule.get("ConfigRuleId", "")),
                "created": created,
                "found": not created,
            },
            evaluation={
                "requested": not created,
                "invoked_at": iso_utc(times.invoked),
                "evaluated_at": iso_utc(times.evaluated),
            },
        )
        summary = self._summary(EVALUATED, table, rule_created=created)
        self.log.info("Config %s in %s: %s", name, region, summary)
        return {**summary, "rule_name": name}

    def _wait_for_fresh_evaluation(self, hook: ConfigRulesHook, rule_name: str, *, requested: bool) -> EvaluationTimes:
        """Wait (within the timeout) for an evaluation invoked now: a new rule's first one, or one we start.

        An evaluation already running when we look began before this stage: it is let finish, then a new
        one is started (Config refuses a start while one runs, or within a minute of the last).
        """
        deadline = time.monotonic() + float(self.evaluation_timeout_minutes) * 60
        before = self._times(hook, rule_name)
        if not requested:
            return self._until(hook, rule_name, deadline, EvaluationTimes(None, None), before.invoked)
        if before.in_progress:
            before = self._until(hook, rule_name, deadline, before, before.invoked)
        while True:
            with aws_call("config:StartConfigRulesEvaluation", self.account_id, self.region_name):
                started = hook.start_evaluation(rule_name)
            if started:
                break
            self._pause(deadline, rule_name)
        invoked = self._times(hook, rule_name).invoked
        return self._until(hook, rule_name, deadline, before, invoked)

    def _until(
        self, hook: ConfigRulesHook, rule_name: str, deadline: float, before: EvaluationTimes, invoked: Any
    ) -> EvaluationTimes:
        while True:
            times = self._times(hook, rule_name)
            if times.newer_than(before, invoked):
                return times
            self._pause(deadline, rule_name)

    def _times(self, hook: ConfigRulesHook, rule_name: str) -> EvaluationTimes:
        with aws_call("config:DescribeConfigRuleEvaluationStatus", self.account_id, self.region_name):
            return EvaluationTimes.of(hook.evaluation_status(rule_name))

    def _pause(self, deadline: float, rule_name: str) -> None:
        if time.monotonic() + float(self.poll_seconds) > deadline:
            # Retryable: Config may just be slow; a task retry starts over.
            raise TimeoutError(
                f"config rule {rule_name} was not evaluated within {float(self.evaluation_timeout_minutes):g} minutes "
                f"in account {self.account_id}, region {self.region_name}"
            )
        time.sleep(float(self.poll_seconds))

    def _write(
        self,
        store: ArtifactStore,
        table: Any,
        *,
        status: str,
        message: str,
        recorder: RecorderState,
        rule: dict[str, Any] | None,
        evaluation: dict[str, Any] | None,
    ) -> None:
        store.write_frame(STAGE, f"{self.target.key}.compliance", table)
        store.write_json(
            STAGE,
            f"{self.target.key}.json",
            {
                **self.target.as_kwargs(),
                "account_id": self.account_id,
                "status": status,
                "message": message,
                "recorder": recorder.as_dict(),
                "rule": rule,
                "evaluation": evaluation,
                "counts": compliance_counts(table),
                "instances": len(table),
            },
        )

    def _summary(self, status: str, table: Any, *, rule_created: bool) -> dict[str, Any]:
        counts = compliance_counts(table)
        return {
            **self.target.as_kwargs(),
            "status": status,
            "rule_created": rule_created,
            **{kind.lower(): count for kind, count in counts.items()},
        }
