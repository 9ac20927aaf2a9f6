"""AWS Config: confirm each instance's patch compliance with the managed rule, after verify (scan and install mode)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
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
from patchcycle.triggers.config_evaluation import ConfigEvaluationTrigger

STAGE = "config"
EVALUATED = "evaluated"
NOT_EVALUATED = "not_evaluated"
# The trigger's deadline bounds the wait; the task's own timeout leaves it room to report.
DEFER_MARGIN = timedelta(minutes=10)


class ConfigComplianceOperator(PatchCycleOperator):
    """Finds (or creates) the EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK rule, has Config evaluate it now,
    waits (in the triggerer: ConfigEvaluationTrigger) for that evaluation within `evaluation_timeout_minutes`,
    and writes each instance's compliance.

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
        self._write(
            store, table, status=NOT_EVALUATED, message=message, recorder=recorder.as_dict(), rule=None, evaluation=None
        )
        return {**self._summary(NOT_EVALUATED, table, rule_created=False), "message": message}

    def _evaluate(
        self, store: ArtifactStore, hook: ConfigRulesHook, rule_name: str, recorder: RecorderState
    ) -> dict[str, Any]:
        """Find or create the rule, then wait in the triggerer for an evaluation invoked now (ConfigEvaluationTrigger:
        a new rule's first one, or one it starts once any evaluation already running has finished)."""
        account, region = self.account_id, self.region_name
        wait = timedelta(minutes=float(self.evaluation_timeout_minutes))
        deadline = datetime.now(UTC) + wait
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
        with aws_call("config:DescribeConfigRuleEvaluationStatus", account, region):
            before = EvaluationTimes.of(hook.evaluation_status(name))
        self.log.info("Waiting up to %s for Config to evaluate %s in %s", wait, name, region)
        self.defer(
            trigger=ConfigEvaluationTrigger(
                aws_conn_id=self.aws_conn_id,
                region_name=region,
                rule_name=name,
                start=not created,
                before_invoked=iso_utc(before.invoked) or None,
                before_evaluated=iso_utc(before.evaluated) or None,
                deadline=iso_utc(deadline),
                poll_seconds=float(self.poll_seconds),
                resume={
                    "account_id": account,
                    "recorder": recorder.as_dict(),
                    "rule": {
                        "name": name,
                        "arn": str(rule.get("ConfigRuleArn", "")),
                        "id": str(rule.get("ConfigRuleId", "")),
                        "created": created,
                        "found": not created,
                    },
                },
            ),
            method_name="execute_complete",
            timeout=wait + DEFER_MARGIN,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        resume = event["resume"]  # what execute() knew, carried through the trigger
        recorder, rule = resume["recorder"], resume["rule"]
        self.account_id = resume["account_id"]  # found in execute() when not configured; the task starts afresh
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            account, region, name = self.account_id, self.region_name, str(rule["name"])
            if event.get("status") != EVALUATED:
                # Retryable: Config may just be slow; a task retry starts over.
                raise TimeoutError(
                    f"config rule {name} was not evaluated within {float(self.evaluation_timeout_minutes):g} "
                    f"minutes in account {account}, region {region}"
                )
            hook = ConfigRulesHook(aws_conn_id=self.aws_conn_id, region_name=region)
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
                rule=rule,
                evaluation={
                    "requested": not rule["created"],
                    "invoked_at": str(event.get("invoked_at", "")),
                    "evaluated_at": str(event.get("evaluated_at", "")),
                },
            )
            summary = self._summary(EVALUATED, table, rule_created=bool(rule["created"]))
            self.log.info("Config %s in %s: %s", name, region, summary)
            return {**summary, "rule_name": name}

    def _write(
        self,
        store: ArtifactStore,
        table: Any,
        *,
        status: str,
        message: str,
        recorder: dict[str, Any],
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
                "recorder": recorder,
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
