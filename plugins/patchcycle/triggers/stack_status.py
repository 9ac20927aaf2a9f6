"""Waits, in the triggerer, until a staging CloudFormation stack is created or deleted (botocore's waiters)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.triggers.base import TriggerEvent

from patchcycle.hooks.staging_stack import StagingStackHook

# botocore's cloudformation waiters this trigger may run.
WAITERS = ("stack_create_complete", "stack_delete_complete")


class StackStatusTrigger(AwsBaseWaiterTrigger):
    """Runs `stack_create_complete` or `stack_delete_complete` on one stack.

    Events: {"status": "success", "stack_name": ...}, or {"status": "error", "message": ..., "stack_name": ...}
    when the waiter reaches a failure state (a rollback, a missing stack for stack_create_complete, a
    DELETE_FAILED), gets a non-retriable error, or runs out of attempts.
    """

    aws_hook_class = StagingStackHook

    def __init__(
        self,
        *,
        stack_name: str,
        waiter_name: str,
        waiter_delay: int = 30,
        waiter_max_attempts: int = 120,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        if waiter_name not in WAITERS:
            raise ValueError(f"waiter_name must be one of {list(WAITERS)}, got {waiter_name!r}")
        verb = "created" if waiter_name == "stack_create_complete" else "deleted"
        super().__init__(
            serialized_fields={"stack_name": stack_name, "waiter_name": waiter_name},
            waiter_name=waiter_name,
            waiter_args={"StackName": stack_name},
            failure_message=f"CloudFormation stack {stack_name} was not {verb}",
            status_message=f"Waiting for CloudFormation stack {stack_name} to be {verb}",
            # The stack's status and reason, or the error a failure acceptor matched (e.g. "does not exist").
            status_queries=["Stacks[0].StackStatus", "Stacks[0].StackStatusReason", "Error.Message"],
            return_key="stack_name",
            return_value=stack_name,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )
        self.stack_name = stack_name

    def hook(self) -> StagingStackHook:
        return StagingStackHook(**self._hook_parameters)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # First look after one delay, as CommandCompletionTrigger does (and for the same reason).
        await asyncio.sleep(self.waiter_delay)
        async for event in super().run():
            yield event
