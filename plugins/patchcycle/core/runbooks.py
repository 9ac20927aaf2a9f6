"""The project's SSM Automation runbooks (include/automation): their names, how registration treats an existing
document, and the parameters the cycle gives them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

SNAPSHOT_RUNBOOK: Final = "PatchCycle-PrePatchSnapshot"
VALIDATE_RUNBOOK: Final = "PatchCycle-ValidateInstance"
RESTORE_RUNBOOK: Final = "PatchCycle-RestoreRootVolume"
RUNBOOKS: Final = (SNAPSHOT_RUNBOOK, VALIDATE_RUNBOOK, RESTORE_RUNBOOK)
RUNBOOK_PREFIX: Final = "PatchCycle-"
MANAGED_TAG: Final = ("patchcycle:managed", "true")
# StartAutomationExecution: a parameter takes at most 50 values of 1 to 512 characters each.
MAX_PARAMETER_VALUES: Final = 50
MAX_PARAMETER_VALUE_LENGTH: Final = 512


class RunbookError(ValueError):
    """A runbook cannot be registered or started as it is (the message names the runbook or the file)."""


@dataclass(frozen=True)
class Runbook:
    """A runbook file: its document name and content."""

    name: str
    content: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


def registration(runbook: Runbook, tags: Mapping[str, str] | None, default: str | None, latest: str | None) -> str:
    """What registering a runbook must do, given the account's document of that name (None: there is none):
    "create", "unchanged", "set_default" (its latest version is this content but not the default: an earlier
    registration stopped half-way) or "update". RunbookError when the document is not the project's."""
    if not runbook.name.startswith(RUNBOOK_PREFIX):
        raise RunbookError(f"{runbook.name}: the project registers only documents named {RUNBOOK_PREFIX}*")
    if tags is None:
        return "create"
    if tags.get(MANAGED_TAG[0]) != MANAGED_TAG[1]:
        raise RunbookError(
            f"{runbook.name}: a document of that name exists without the tag {MANAGED_TAG[0]}={MANAGED_TAG[1]}: "
            "it is not the project's, so it is left alone (rename it, or tag it if it is)"
        )
    if default == runbook.content:
        return "unchanged"
    if latest == runbook.content:
        return "set_default"
    return "update"


def script_lines(name: str, script: str) -> list[str]:
    """A health check script as a StringList parameter: its non-blank lines, within the API's limits."""
    lines = [line.rstrip() for line in script.splitlines() if line.strip()]
    if not lines or len(lines) > MAX_PARAMETER_VALUES:
        raise RunbookError(
            f"{name}: a health check passed to a runbook has 1 to {MAX_PARAMETER_VALUES} lines, got {len(lines)}"
        )
    long = [number for number, line in enumerate(lines, 1) if len(line) > MAX_PARAMETER_VALUE_LENGTH]
    if long:
        raise RunbookError(
            f"{name}: line(s) {long} longer than {MAX_PARAMETER_VALUE_LENGTH} characters (a runbook parameter's limit)"
        )
    return lines


def runbook_parameters(
    runbook: str, *, run_id: str, wave: int, health_checks: Mapping[str, Sequence[str]], assume_role: str
) -> dict[str, list[str]]:
    """The parameters a wave starts `runbook` with (the target instance is the TargetParameterName)."""
    parameters: dict[str, list[str]] = {}
    if runbook in (SNAPSHOT_RUNBOOK, RESTORE_RUNBOOK):
        parameters["RunId"] = [run_id]
    if runbook == SNAPSHOT_RUNBOOK:
        parameters["Wave"] = [str(wave)]
    if runbook in (VALIDATE_RUNBOOK, RESTORE_RUNBOOK):
        parameters["LinuxHealthCheck"] = list(health_checks["Linux"])
        parameters["WindowsHealthCheck"] = list(health_checks["Windows"])
    if assume_role:  # an empty value is not a valid parameter value: the runbook's default ("") applies
        parameters["AutomationAssumeRole"] = [assume_role]
    return parameters
