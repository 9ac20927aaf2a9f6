"""Systems Manager Patch Manager calls, batched to the API's limits and paged."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal, get_args

from airflow.providers.amazon.aws.hooks.ssm import SsmHook

# Documented limits: SendCommand and DescribeInstancePatchStates take at most 50 instance ids.
MAX_IDS_PER_CALL = 50
PATCH_DOCUMENT = "AWS-RunPatchBaseline"
SHELL_DOCUMENT = "AWS-RunShellScript"
POWERSHELL_DOCUMENT = "AWS-RunPowerShellScript"
ScriptDocument = Literal["AWS-RunShellScript", "AWS-RunPowerShellScript"]
SCRIPT_DOCUMENTS: frozenset[str] = frozenset(get_args(ScriptDocument))
# The script documents' executionTimeout parameter: 1 to 172800 seconds (its allowedPattern).
MAX_EXECUTION_TIMEOUT_SECONDS = 172800


def batches(ids: Sequence[str], size: int = MAX_IDS_PER_CALL) -> Iterator[list[str]]:
    """Consecutive slices of at most `size` ids."""
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


class PatchManagerHook(SsmHook):
    """SsmHook plus the paged, batched Patch Manager reads and commands the patch cycle needs."""

    def managed_instances(self) -> list[dict[str, Any]]:
        """Every instance Systems Manager knows in the hook's region (DescribeInstanceInformation)."""
        pages = self.conn.get_paginator("describe_instance_information").paginate(PaginationConfig={"PageSize": 50})
        return [info for page in pages for info in page["InstanceInformationList"]]

    def send_patch_baseline(
        self,
        instance_ids: Sequence[str],
        *,
        operation: str,
        max_concurrency: str,
        max_errors: str,
        reboot_option: str = "NoReboot",
        install_override_list: str | None = None,
        comment: str = "",
    ) -> str:
        """Send AWS-RunPatchBaseline to at most 50 instances; returns the command id."""
        _check_id_count(instance_ids)
        parameters = {"Operation": [operation], "RebootOption": [reboot_option]}
        if install_override_list:
            parameters["InstallOverrideList"] = [install_override_list]
        response = self.conn.send_command(
            InstanceIds=list(instance_ids),
            DocumentName=PATCH_DOCUMENT,
            Parameters=parameters,
            MaxConcurrency=max_concurrency,
            MaxErrors=max_errors,
            Comment=comment[:100],
        )
        return str(response["Command"]["CommandId"])

    def send_script(
        self,
        instance_ids: Sequence[str],
        *,
        document: ScriptDocument,
        commands: Sequence[str],
        execution_timeout_seconds: int,
        max_concurrency: str,
        max_errors: str,
        comment: str = "",
    ) -> str:
        """Send AWS-RunShellScript or AWS-RunPowerShellScript to at most 50 instances; returns the command id."""
        _check_id_count(instance_ids)
        if document not in SCRIPT_DOCUMENTS:
            raise ValueError(f"document must be one of {sorted(SCRIPT_DOCUMENTS)}, got {document!r}")
        if isinstance(commands, str) or not commands:
            raise ValueError("commands must be a non-empty sequence of command lines")
        if not 0 < execution_timeout_seconds <= MAX_EXECUTION_TIMEOUT_SECONDS:
            limit = MAX_EXECUTION_TIMEOUT_SECONDS
            raise ValueError(f"execution_timeout_seconds must be 1 to {limit}, got {execution_timeout_seconds}")
        request: dict[str, Any] = {
            "InstanceIds": list(instance_ids),
            "Parameters": {"commands": list(commands), "executionTimeout": [str(execution_timeout_seconds)]},
            "MaxConcurrency": max_concurrency,
            "MaxErrors": max_errors,
            "Comment": comment[:100],
        }
        # One call per document, each naming its constant: the IAM policy test reads which documents are sent.
        if document == SHELL_DOCUMENT:
            response = self.conn.send_command(DocumentName=SHELL_DOCUMENT, **request)
        else:
            response = self.conn.send_command(DocumentName=POWERSHELL_DOCUMENT, **request)
        return str(response["Command"]["CommandId"])

    def command(self, command_id: str) -> dict[str, Any]:
        """One command's status and aggregate counts (ListCommands)."""
        commands = self.conn.list_commands(CommandId=command_id)["Commands"]
        if not commands:
            raise LookupError(f"ssm:ListCommands knows no command {command_id}")
        return dict(commands[0])

    def patch_commands_to(self, instance_id: str, comment: str) -> list[dict[str, Any]]:
        """The AWS-RunPatchBaseline commands sent to an instance under this comment (ListCommands by InstanceId
        and DocumentName, every page, newest first): how a retry finds a command that was sent but never
        recorded."""
        pages = self.conn.get_paginator("list_commands").paginate(
            InstanceId=instance_id,
            Filters=[{"key": "DocumentName", "value": PATCH_DOCUMENT}],
            PaginationConfig={"PageSize": 50},
        )
        return [dict(c) for page in pages for c in page["Commands"] if c.get("Comment") == comment[:100]]

    def cancel_command(self, command_id: str) -> None:
        """Stop a command on the instances it has not finished on (CancelCommand)."""
        self.conn.cancel_command(CommandId=command_id)

    def command_invocations(self, command_id: str, details: bool = False) -> list[dict[str, Any]]:
        """Every invocation of a command, all pages (ListCommandInvocations).

        With `details`, each invocation's CommandPlugins carry their Status, ResponseCode and Output
        (at most 2,500 characters of it); without, CommandPlugins is empty.
        """
        pages = self.conn.get_paginator("list_command_invocations").paginate(
            CommandId=command_id, Details=details, PaginationConfig={"PageSize": 50}
        )
        return [inv for page in pages for inv in page["CommandInvocations"]]

    def instance_information(self, instance_ids: Sequence[str]) -> list[dict[str, Any]]:
        """DescribeInstanceInformation of these instances, 50 ids per call, all pages.

        An instance Systems Manager has not registered (yet) is absent; an id EC2 does not know
        fails the call (InvalidInstanceId). Read PingStatus for "Online".
        """
        paginator = self.conn.get_paginator("describe_instance_information")
        found: list[dict[str, Any]] = []
        for batch in batches(instance_ids):
            pages = paginator.paginate(
                Filters=[{"Key": "InstanceIds", "Values": batch}], PaginationConfig={"PageSize": 50}
            )
            found.extend(info for page in pages for info in page["InstanceInformationList"])
        return found

    def instance_patch_states(self, instance_ids: Sequence[str]) -> list[dict[str, Any]]:
        """DescribeInstancePatchStates for any number of ids, 50 per call."""
        states: list[dict[str, Any]] = []
        for batch in batches(instance_ids):
            pages = self.conn.get_paginator("describe_instance_patch_states").paginate(InstanceIds=batch)
            states.extend(state for page in pages for state in page["InstancePatchStates"])
        return states

    def instance_patches(self, instance_id: str, states: Sequence[str]) -> list[dict[str, Any]]:
        """One instance's patches in the given states (DescribeInstancePatches, all pages)."""
        pages = self.conn.get_paginator("describe_instance_patches").paginate(
            InstanceId=instance_id,
            Filters=[{"Key": "State", "Values": list(states)}],
            PaginationConfig={"PageSize": 100},
        )
        return [patch for page in pages for patch in page["Patches"]]


def _check_id_count(instance_ids: Sequence[str]) -> None:
    if not 0 < len(instance_ids) <= MAX_IDS_PER_CALL:
        raise ValueError(f"SendCommand takes 1 to {MAX_IDS_PER_CALL} instance ids, got {len(instance_ids)}")
