"""Waits, in the triggerer, until Systems Manager Automation executions reach a final status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from airflow.triggers.base import TriggerEvent

from patchcycle.hooks.automation import AutomationHook
from patchcycle.triggers.fleet_wait import FleetWaitTrigger

# AutomationExecutionStatus values after which nothing changes any more.
FINAL_STATUSES = frozenset(
    {"Success", "Failed", "TimedOut", "Cancelled", "Rejected", "CompletedWithSuccess", "CompletedWithFailure", "Exited"}
)


class AutomationCompletionTrigger(FleetWaitTrigger):
    """Polls GetAutomationExecution for each parent execution (one call per parent per poll: a parent is final
    once its children are) until every one is final, or until `timeout` seconds after `started_at`.

    Each target is {"aws_conn_id", "region_name", "execution_ids"}; a wave spans targets, so one trigger waits on
    all of them. Event: {"status": "done" | "timeout", "executions": {id: status}, "pending": [ids]}.
    """

    IDS_KEY = "execution_ids"
    NOUN = "execution id"

    @property
    def execution_ids(self) -> list[str]:
        return self.ids

    async def run(self) -> AsyncIterator[TriggerEvent]:
        statuses: dict[str, str] = {}
        pending = set(self.execution_ids)
        # First look after one interval, as CommandCompletionTrigger does (the Airflow 3.3.2 race it avoids).
        await asyncio.sleep(self.poll_interval)
        while True:
            for target in self.targets:
                mine = [i for i in target["execution_ids"] if i in pending]
                if not mine:
                    continue
                hook = AutomationHook(
                    aws_conn_id=target["aws_conn_id"],
                    region_name=target["region_name"],
                    verify=self.verify,
                    config=self.botocore_config,
                )
                async with await hook.get_async_conn() as client:
                    for execution_id in mine:
                        response = await client.get_automation_execution(AutomationExecutionId=execution_id)
                        status = str(response["AutomationExecution"]["AutomationExecutionStatus"])
                        statuses[execution_id] = status
                        if status in FINAL_STATUSES:
                            pending.discard(execution_id)
            if not pending:
                yield TriggerEvent({"status": "done", "executions": statuses, "pending": []})
                return
            if self.timed_out():
                yield TriggerEvent({"status": "timeout", "executions": statuses, "pending": sorted(pending)})
                return
            self.log.info("%d of %d Automation executions still running", len(pending), len(self.execution_ids))
            await asyncio.sleep(self.poll_interval)
