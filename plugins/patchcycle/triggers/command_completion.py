"""Waits, in the triggerer, until SSM Run Command commands reach a final status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import AsyncExitStack, aclosing
from typing import Any, Self

from airflow.triggers.base import TriggerEvent
from botocore.exceptions import ClientError

from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.triggers.fleet_wait import FleetWaitTrigger

# ListCommands' final command statuses (botocore's CommandStatus enum less Pending/InProgress/Cancelling).
FINAL_STATUSES = frozenset({"Success", "Failed", "TimedOut", "Cancelled"})


class CommandCompletionTrigger(FleetWaitTrigger):
    """Polls ListCommands' aggregate status and counts for commands in one or more (connection, region)
    pairs until all are final, or until `timeout` seconds after `started_at`.

    Each target is {"aws_conn_id": str | None, "region_name": str | None, "command_ids": [str]}; a
    production wave spans regions, so one trigger waits on all of them. Command ids are globally unique.
    Event: {"status": "done" | "timeout", "commands": {command id: summary}, "pending": [command ids]}.

    The provider's SsmRunCommandTrigger lists invocations once without paging, and an empty
    list (normal right after SendCommand) reads as done; the command's own status and
    TargetCount/CompletedCount do not have that gap.
    """

    IDS_KEY = "command_ids"
    NOUN = "command id"

    @classmethod
    def for_commands(
        cls,
        command_ids: Sequence[str],
        aws_conn_id: str | None,
        region_name: str | None,
        poll_interval: float = 30.0,
        timeout: float = 4 * 3600.0,
        started_at: float | None = None,
    ) -> Self:
        """The trigger for commands of a single (connection, region) pair."""
        target = {"aws_conn_id": aws_conn_id, "region_name": region_name, "command_ids": list(command_ids)}
        return cls([target], poll_interval=poll_interval, timeout=timeout, started_at=started_at)

    @property
    def command_ids(self) -> list[str]:
        """Every command waited on, in target order."""
        return self.ids

    @property
    def aws_conn_id(self) -> str | None:
        """The connection, when every target uses the same (connection, region) pair."""
        return self._single_pair()[0]

    @property
    def region_name(self) -> str | None:
        """The region, when every target uses the same (connection, region) pair."""
        return self._single_pair()[1]

    def _single_pair(self) -> tuple[str | None, str | None]:
        pairs = {(target["aws_conn_id"], target["region_name"]) for target in self.targets}
        if len(pairs) != 1:
            raise AttributeError(f"the trigger spans {len(pairs)} (connection, region) pairs: read .targets")
        return next(iter(pairs))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # One client per (connection, region) pair, however many targets name it, open for the whole wait.
        by_pair: dict[tuple[str | None, str | None], list[str]] = {}
        for target in self.targets:
            by_pair.setdefault((target["aws_conn_id"], target["region_name"]), []).extend(target["command_ids"])
        pending = set(self.command_ids)
        summaries: dict[str, dict[str, Any]] = {}
        # First look after one interval: no command finishes at once, and an event within a second or two of
        # deferring can resume the task before the scheduler has processed the deferring run's exit; Airflow
        # 3.3.2 then fails that attempt ("finished with state success, but ... is running").
        await asyncio.sleep(self.poll_interval)
        async with AsyncExitStack() as stack:
            pollers = [
                await stack.enter_async_context(aclosing(self._polls(aws_conn_id, region_name, command_ids, pending)))
                for (aws_conn_id, region_name), command_ids in by_pair.items()
            ]
            while True:
                for polled in await asyncio.gather(*(anext(poller) for poller in pollers)):
                    for command_id, command in polled.items():
                        summaries[command_id] = _summary(command)
                        if command["Status"] in FINAL_STATUSES:
                            pending.discard(command_id)
                if not pending:
                    yield TriggerEvent({"status": "done", "commands": summaries, "pending": []})
                    return
                if self.timed_out():
                    yield TriggerEvent({"status": "timeout", "commands": summaries, "pending": sorted(pending)})
                    return
                self.log.info(
                    "%d of %d commands still running in %d (connection, region) pairs",
                    len(pending),
                    len(self.command_ids),
                    len(by_pair),
                )
                await asyncio.sleep(self.poll_interval)

    async def _polls(
        self, aws_conn_id: str | None, region_name: str | None, command_ids: Sequence[str], pending: set[str]
    ) -> AsyncGenerator[dict[str, dict[str, Any]]]:
        """One (connection, region) pair's client; each step asks ListCommands about its still pending commands.

        A command not visible yet (right after SendCommand) is left out of that step's answer.
        """
        hook = PatchManagerHook(
            aws_conn_id=aws_conn_id, region_name=region_name, verify=self.verify, config=self.botocore_config
        )
        async with await hook.get_async_conn() as client:
            while True:
                found: dict[str, dict[str, Any]] = {}
                for command_id in sorted(set(command_ids) & pending):
                    try:
                        response = await client.list_commands(CommandId=command_id)
                    except ClientError as error:
                        # Right after SendCommand a command id may not be known yet: ask again next poll.
                        if error.response.get("Error", {}).get("Code") != "InvalidCommandId":
                            raise
                        continue
                    if response.get("Commands"):  # empty: eventual consistency right after SendCommand
                        found[command_id] = response["Commands"][0]
                yield found


def _summary(command: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": command["Status"],
        "target_count": command.get("TargetCount", 0),
        "completed_count": command.get("CompletedCount", 0),
        "error_count": command.get("ErrorCount", 0),
        "delivery_timed_out_count": command.get("DeliveryTimedOutCount", 0),
    }
