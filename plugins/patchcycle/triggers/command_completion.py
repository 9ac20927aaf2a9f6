"""Waits, in the triggerer, until SSM Run Command commands reach a final status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import ClientError

from patchcycle.hooks.patch_manager import PatchManagerHook

# ListCommands' final command statuses (botocore's CommandStatus enum less Pending/InProgress/Cancelling).
FINAL_STATUSES = frozenset({"Success", "Failed", "TimedOut", "Cancelled"})


class CommandCompletionTrigger(BaseTrigger):
    """Polls ListCommands' aggregate status and counts for a set of commands until all are final.

    The provider's SsmRunCommandTrigger lists invocations once without paging, and an empty
    list (normal right after SendCommand) reads as done; the command's own status and
    TargetCount/CompletedCount do not have that gap.
    """

    def __init__(
        self,
        command_ids: Sequence[str],
        aws_conn_id: str | None,
        region_name: str | None,
        poll_interval: float = 30.0,
        timeout: float = 4 * 3600.0,
        started_at: float | None = None,
    ) -> None:
        super().__init__()
        self.command_ids = list(command_ids)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.started_at = started_at if started_at is not None else time.time()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "command_ids": self.command_ids,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "started_at": self.started_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = PatchManagerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        pending = set(self.command_ids)
        summaries: dict[str, dict[str, Any]] = {}
        async with await hook.get_async_conn() as client:
            while True:
                for command_id in sorted(pending):
                    try:
                        response = await client.list_commands(CommandId=command_id)
                    except ClientError as error:
                        # Right after SendCommand a command id may not be known yet: ask again next poll.
                        if error.response.get("Error", {}).get("Code") != "InvalidCommandId":
                            raise
                        response = {}
                    command = response["Commands"][0] if response.get("Commands") else None
                    if command is None:
                        continue  # not visible yet: eventual consistency right after SendCommand
                    summaries[command_id] = _summary(command)
                    if command["Status"] in FINAL_STATUSES:
                        pending.discard(command_id)
                if not pending:
                    yield TriggerEvent({"status": "done", "commands": summaries})
                    return
                if time.time() - self.started_at > self.timeout:
                    yield TriggerEvent({"status": "timeout", "commands": summaries, "pending": sorted(pending)})
                    return
                self.log.info("%d of %d commands still running", len(pending), len(self.command_ids))
                await asyncio.sleep(self.poll_interval)


def _summary(command: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": command["Status"],
        "target_count": command.get("TargetCount", 0),
        "completed_count": command.get("CompletedCount", 0),
        "error_count": command.get("ErrorCount", 0),
        "delivery_timed_out_count": command.get("DeliveryTimedOutCount", 0),
    }
