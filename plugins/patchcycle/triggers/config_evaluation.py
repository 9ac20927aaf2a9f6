"""Waits, in the triggerer, until AWS Config has evaluated a rule afresh: an evaluation invoked by this stage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import ClientError

from patchcycle.core.config_compliance import EvaluationTimes
from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.config_rules import ConfigRulesHook


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _optional(value: str | None) -> datetime | None:
    return _instant(value) if value else None


class ConfigEvaluationTrigger(BaseTrigger):
    """Waits for an evaluation of `rule_name` invoked now, until `deadline` (ISO 8601 UTC wall-clock time).

    `before_invoked`/`before_evaluated` are the rule's DescribeConfigRuleEvaluationStatus times read before
    the wait (ISO 8601, or None when it had none). With `start` False (a rule just created, which Config
    evaluates on its own) it waits for the first evaluation no earlier than `before_invoked`. With `start` True
    it has Config evaluate the rule (StartConfigRulesEvaluation): an evaluation already running began before
    this stage, so it is let finish first; a start Config refuses (LimitExceededException: one running, or one
    started less than a minute ago) is retried each interval. It then waits for an evaluation newer than
    `before` and no earlier than that invocation (EvaluationTimes.newer_than).

    Event: {"status": "evaluated", "invoked_at": ISO or "", "evaluated_at": ISO} or {"status": "deadline"}.
    """

    def __init__(
        self,
        *,
        aws_conn_id: str | None,
        region_name: str | None,
        rule_name: str,
        start: bool,
        before_invoked: str | None,
        before_evaluated: str | None,
        deadline: str,
        poll_seconds: float = 15.0,
        resume: dict[str, Any] | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.rule_name = rule_name
        self.start = bool(start)
        # A bad time fails here, in the worker, not in the triggerer.
        self.before_invoked = iso_utc(_optional(before_invoked)) or None
        self.before_evaluated = iso_utc(_optional(before_evaluated)) or None
        self.deadline = iso_utc(_instant(deadline))
        self.poll_seconds = float(poll_seconds)
        # What the resumed task needs from before the deferral, returned in the event: Airflow 3.3.2 does not
        # hand defer(kwargs=...) to the resumed method.
        self.resume = dict(resume or {})
        self.verify = verify
        self.botocore_config = botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "rule_name": self.rule_name,
                "start": self.start,
                "before_invoked": self.before_invoked,
                "before_evaluated": self.before_evaluated,
                "deadline": self.deadline,
                "poll_seconds": self.poll_seconds,
                "resume": self.resume,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        before = EvaluationTimes(_optional(self.before_invoked), _optional(self.before_evaluated))
        # First look after one interval, as CommandCompletionTrigger does (the Airflow 3.3.2 race it avoids).
        await asyncio.sleep(self.poll_seconds)
        hook = ConfigRulesHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
        async with await hook.get_async_conn() as client:

            async def status() -> EvaluationTimes:
                """DescribeConfigRuleEvaluationStatus, read as ConfigRulesHook.evaluation_status reads it."""
                response = await client.describe_config_rule_evaluation_status(ConfigRuleNames=[self.rule_name])
                statuses = response["ConfigRulesEvaluationStatus"]
                if not statuses:
                    raise LookupError(f"config:DescribeConfigRuleEvaluationStatus knows no rule {self.rule_name}")
                return EvaluationTimes.of(statuses[0])

            async def start() -> bool:
                """StartConfigRulesEvaluation, as ConfigRulesHook.start_evaluation: False when Config refuses now."""
                try:
                    await client.start_config_rules_evaluation(ConfigRuleNames=[self.rule_name])
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") == "LimitExceededException":
                        return False
                    raise
                return True

            times = await self._evaluation(status, start, before)
        if times is None:
            yield TriggerEvent({"status": "deadline", "resume": self.resume})
            return
        yield TriggerEvent(
            {
                "status": "evaluated",
                "invoked_at": iso_utc(times.invoked),
                "evaluated_at": iso_utc(times.evaluated),
                "resume": self.resume,
            }
        )

    async def _evaluation(
        self,
        status: Callable[[], Awaitable[EvaluationTimes]],
        start: Callable[[], Awaitable[bool]],
        before: EvaluationTimes,
    ) -> EvaluationTimes | None:
        """The rule's times once the evaluation waited for has finished; None at the deadline."""
        if not self.start:
            return await self._until(status, EvaluationTimes(None, None), before.invoked)
        if before.in_progress:
            finished = await self._until(status, before, before.invoked)
            if finished is None:
                return None
            before = finished
        while not await start():
            if not await self._pause():
                return None
        return await self._until(status, before, (await status()).invoked)

    async def _until(
        self, status: Callable[[], Awaitable[EvaluationTimes]], before: EvaluationTimes, invoked: datetime | None
    ) -> EvaluationTimes | None:
        """The rule's times once an evaluation is newer than `before` (from `invoked` on); None at the deadline."""
        while True:
            times = await status()
            if times.newer_than(before, invoked):
                return times
            self.log.info("Config rule %s not evaluated afresh yet", self.rule_name)
            if not await self._pause():
                return None

    async def _pause(self) -> bool:
        """Sleep one interval, unless it would end past the deadline (then False: the operator's old rule)."""
        if datetime.now(UTC).timestamp() + self.poll_seconds > _instant(self.deadline).timestamp():
            return False
        await asyncio.sleep(self.poll_seconds)
        return True
