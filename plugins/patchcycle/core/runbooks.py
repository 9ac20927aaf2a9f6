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
BAKE_RUNBOOK: Final = "PatchCycle-BakeAmi"
RUNBOOKS: Final = (SNAPSHOT_RUNBOOK, VALIDATE_RUNBOOK, RESTORE_RUNBOOK, BAKE_RUNBOOK)
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


def bake_parameters(
    *,
    source_ami: str,
    instance_type: str,
    patch_ids: Sequence[str],
    override_list: str,
    run_id: str,
    image_name: str,
    health_checks: Mapping[str, Sequence[str]],
    instance_profile: str,
    subnet_id: str,
    assume_role: str,
) -> dict[str, list[str]]:
    """PatchCycle-BakeAmi's parameters for one source AMI: exactly its pinned patches, as the override list names
    them. Empty optional values are left out (an empty value is not a valid parameter value: the defaults apply)."""
    if not patch_ids:
        raise RunbookError(f"{BAKE_RUNBOOK}: {source_ami} has no pinned patch to bake in")
    if len(patch_ids) > MAX_PARAMETER_VALUES:
        raise RunbookError(
            f"{BAKE_RUNBOOK}: PatchIds takes at most {MAX_PARAMETER_VALUES} values, {source_ami} has {len(patch_ids)} "
            "pinned patches"
        )
    parameters = {
        "SourceAmiId": [source_ami],
        "InstanceType": [instance_type],
        "PatchIds": list(patch_ids),
        "InstallOverrideList": [override_list],
        "RunId": [run_id[:MAX_PARAMETER_VALUE_LENGTH]],
        "TargetImageName": [image_name],
        "LinuxHealthCheck": list(health_checks["Linux"]),
        "WindowsHealthCheck": list(health_checks["Windows"]),
    }
    optional = {"IamInstanceProfileName": instance_profile, "SubnetId": subnet_id, "AutomationAssumeRole": assume_role}
    parameters.update({name: [value] for name, value in optional.items() if value})
    return parameters


def image_name(run_id: str, bake_id: str, source_ami: str) -> str:
    """The baked AMI's name: unique per run and bake, within CreateImage's 3-128 allowed characters."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:12]
    return f"patchcycle-{source_ami}-{bake_id}-{digest}"
