"""AWS Config: confirm each instance's patch compliance with the managed rule (both DAGs, both modes)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import pandas as pd
from airflow.sdk import Context

from patchcycle.config import RunConfig
from patchcycle.core.config_compliance import (
    PATCH_RULE_IDENTIFIER,
    QUERYABLE_COMPLIANCE_TYPES,
    EvaluationTimes,
    RecorderState,
    choose_patch_rule,
    compliance_counts,
    compliance_table,
    empty_compliance_table,
    expected_instances,
    patch_rule_definition,
    recorder_state,
)
from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.config_rules import ConfigRulesHook
from patchcycle.operators.base import DEFER_MARGIN, TargetOperator
from patchcycle.run_artifacts import CONFIG_COMPLIANCE, CONFIG_SUMMARY, INVENTORY, RunArtifacts, Step
from patchcycle.run_records import ConfigEvaluation, ConfigRuleRef, ConfigSummary
from patchcycle.triggers.config_evaluation import ConfigEvaluationTrigger

EVALUATED = "evaluated"
NOT_EVALUATED = "not_evaluated"
# How long Config may take to evaluate the rule; past it the task fails (and retries).
EVALUATION_TIMEOUT = timedelta(minutes=15)


class ConfigComplianceOperator(TargetOperator[ConfigRulesHook, RunConfig]):
    """Finds (or creates) the EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK rule named by the run's
    config_rule_name, has Config evaluate it now, waits (in the triggerer: ConfigEvaluationTrigger) for that
    evaluation within `evaluation_timeout`, and writes each instance's compliance.

    Where no configuration recorder records AWS::SSM::PatchCompliance, Config cannot evaluate: the stage
    records that (status not_evaluated, with the reason) and succeeds, creating nothing.
    """

    aws_hook_class = ConfigRulesHook
    config_class = RunConfig

    def __init__(self, *, evaluation_timeout: timedelta = EVALUATION_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.evaluation_timeout = evaluation_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        with self.recording_failure(artifacts, Step.CONFIG):
            account, region = self.account_or_caller(artifacts), str(self.region_name)
            with aws_call("config:DescribeConfigurationRecorders", account, region):
                recorders = self.hook.configuration_recorders()
            with aws_call("config:DescribeConfigurationRecorderStatus", account, region):
                statuses = self.hook.recorder_statuses()
            recorder = recorder_state(recorders, statuses)
            if recorder.problem:
                return self._not_evaluated(artifacts, recorder)
            self._evaluate(self.settings().config_rule_name, recorder, account)

    def _not_evaluated(self, artifacts: RunArtifacts, recorder: RecorderState) -> dict[str, Any]:
        message = f"AWS Config cannot evaluate patch compliance: {recorder.problem}"
        self.log.warning("%s (account %s, region %s)", message, self._account_id, self.region_name)
        table = empty_compliance_table()
        self._write(artifacts, table, NOT_EVALUATED, message, recorder.as_dict(), None, None)
        return {**self._summary(NOT_EVALUATED, table, rule_created=False), "message": message}

    def _evaluate(self, rule_name: str, recorder: RecorderState, account: str) -> NoReturn:
        """Find or create the rule, then wait in the triggerer for an evaluation invoked now (ConfigEvaluationTrigger:
        a new rule's first one, or one it starts once any evaluation already running has finished)."""
        region = str(self.region_name)
        deadline = datetime.now(UTC) + self.evaluation_timeout
        with aws_call("config:DescribeConfigRules", account, region):
            rule = choose_patch_rule(self.hook.config_rules(), rule_name)
        created = rule is None
        if rule is None:
            with aws_call("config:PutConfigRule", account, region):
                self.hook.put_config_rule(patch_rule_definition(rule_name))
            with aws_call("config:DescribeConfigRules", account, region):
                rule = choose_patch_rule(self.hook.config_rules(), rule_name)
            if rule is None:
                raise LookupError(f"config rule {rule_name} was created but DescribeConfigRules does not list it")
            self.log.info("Created config rule %s (%s) in %s", rule_name, PATCH_RULE_IDENTIFIER, region)
        name = str(rule["ConfigRuleName"])
        with aws_call("config:DescribeConfigRuleEvaluationStatus", account, region):
            before = EvaluationTimes.of(self.hook.evaluation_status(name))
        self.log.info("Waiting up to %s for Config to evaluate %s in %s", self.evaluation_timeout, name, region)
        reference = ConfigRuleRef(
            name=name,
            arn=str(rule.get("ConfigRuleArn", "")),
            id=str(rule.get("ConfigRuleId", "")),
            created=created,
            found=not created,
        )
        self.defer(
            trigger=ConfigEvaluationTrigger(
                aws_conn_id=self.aws_conn_id,
                region_name=region,
                rule_name=name,
                start=not created,
                before_invoked=iso_utc(before.invoked) or None,
                before_evaluated=iso_utc(before.evaluated) or None,
                deadline=iso_utc(deadline),
                poll_seconds=self.settings().poll_seconds,
                # What the resumed task needs, carried through the trigger's event.
                resume={"account_id": account, "recorder": recorder.as_dict(), "rule": asdict(reference)},
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=self.evaluation_timeout + DEFER_MARGIN,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        resume = event["resume"]  # what execute() knew, carried through the trigger
        rule = ConfigRuleRef(**resume["rule"])
        self._account_id = resume["account_id"]  # found in execute() when unknown; the task starts afresh
        artifacts = self.artifacts(context)
        with self.recording_failure(artifacts, Step.CONFIG):
            account, region = self._account_id, str(self.region_name)
            if event.get("status") != EVALUATED:
                # Retryable: Config may just be slow; a task retry starts over.
                raise TimeoutError(
                    f"config rule {rule.name} was not evaluated within "
                    f"{self.evaluation_timeout.total_seconds() / 60:g} minutes in account {account}, region {region}"
                )
            with aws_call("config:GetComplianceDetailsByConfigRule", account, region):
                results = self.hook.compliance_details(rule.name, QUERYABLE_COMPLIANCE_TYPES)
            expected = expected_instances(artifacts.find(INVENTORY, target=self.target))
            table = compliance_table(results, account, region, expected)
            evaluation = ConfigEvaluation(
                requested=not rule.created,
                invoked_at=str(event.get("invoked_at", "")),
                evaluated_at=str(event.get("evaluated_at", "")),
            )
            self._write(artifacts, table, EVALUATED, "", resume["recorder"], rule, evaluation)
            summary = self._summary(EVALUATED, table, rule_created=rule.created)
            self.log.info("Config %s in %s: %s", rule.name, region, summary)
            return {**summary, "rule_name": rule.name}

    def _write(
        self,
        artifacts: RunArtifacts,
        table: pd.DataFrame,
        status: str,
        message: str,
        recorder: dict[str, Any],
        rule: ConfigRuleRef | None,
        evaluation: ConfigEvaluation | None,
    ) -> None:
        artifacts.write(CONFIG_COMPLIANCE, table, target=self.target)
        summary = ConfigSummary(
            **self.target.as_kwargs(),
            account_id=self._account_id,
            status=status,
            message=message,
            recorder=recorder,
            rule=rule,
            evaluation=evaluation,
            counts=compliance_counts(table),
            instances=len(table),
        )
        artifacts.write(CONFIG_SUMMARY, summary, target=self.target)

    def _summary(self, status: str, table: pd.DataFrame, *, rule_created: bool) -> dict[str, Any]:
        counts = compliance_counts(table)
        return {
            **self.target.as_kwargs(),
            "status": status,
            "rule_created": rule_created,
            **{kind.lower(): count for kind, count in counts.items()},
        }
