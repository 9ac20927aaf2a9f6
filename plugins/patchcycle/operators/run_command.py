"""Run Command plumbing the stages share: reading a wait's invocations, and sending the health checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from patchcycle.core.quantities import CountOrPercent
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_manager import PatchManagerHook, ScriptDocument, batches

HEALTHCHECKS = Path(__file__).resolve().parents[3] / "include" / "healthchecks"
# Platform type (SSM) -> the document that runs the health check, and its script in HEALTHCHECKS.
SCRIPT_DOCUMENTS: dict[str, tuple[ScriptDocument, str]] = {
    "Linux": ("AWS-RunShellScript", "linux.sh"),
    "Windows": ("AWS-RunPowerShellScript", "windows.ps1"),
}


def late_commands(event: Mapping[str, Any]) -> set[str]:
    """The commands a CommandCompletionTrigger event says were still running at its time limit."""
    return set(event.get("pending", [])) if event.get("status") == "timeout" else set()


def invocations(
    hook: PatchManagerHook,
    command_ids: Iterable[str],
    late: set[str],
    account: str,
    region: str,
    *,
    details: bool = False,
) -> dict[str, dict[str, Any]]:
    """Instance id -> its invocation over `command_ids`; the late ones are cancelled first (they count as failed)."""
    found: dict[str, dict[str, Any]] = {}
    for command_id in command_ids:
        if command_id in late:
            with aws_call("ssm:CancelCommand", account, region):
                hook.cancel_command(command_id)
        with aws_call("ssm:ListCommandInvocations", account, region):
            for invocation in hook.command_invocations(command_id, details=details):
                found[invocation["InstanceId"]] = {**invocation, "CommandId": command_id}
    return found


def send_health_checks(
    hook: PatchManagerHook,
    ids_by_platform: Mapping[str, Sequence[str]],
    *,
    sent: dict[str, str],
    save: Callable[[dict[str, str]], object],
    account: str,
    region: str,
    healthchecks: Path,
    timeout_minutes: float,
    max_concurrency: CountOrPercent,
    comment: str,
) -> dict[str, str]:
    """Send include/healthchecks per platform, 50 instances per command; `sent` ("platform.batch" -> command id)
    is saved after each command, and what it already holds is not sent again (a retried task)."""
    for platform, ids in sorted(ids_by_platform.items()):
        if platform not in SCRIPT_DOCUMENTS:
            raise AirflowFailException(f"no health check for platform {platform!r} in {healthchecks}")
        document, script = SCRIPT_DOCUMENTS[platform]
        for number, batch in enumerate(batches(sorted(ids))):
            key = f"{platform}.{number}"
            if key in sent:
                continue
            with aws_call("ssm:SendCommand", account, region):
                sent[key] = hook.send_script(
                    batch,
                    document=document,
                    commands=[(healthchecks / script).read_text()],
                    execution_timeout_seconds=int(timeout_minutes * 60),
                    max_concurrency=str(max_concurrency),
                    max_errors="100%",  # every instance gets checked, whatever the others do
                    comment=comment,
                )
            save(sent)
    return sent
