"""core.runbooks: how registration treats an account's document, and the parameters a wave gives each runbook."""

from __future__ import annotations

import pytest

from patchcycle.core.runbooks import (
    RESTORE_RUNBOOK,
    SNAPSHOT_RUNBOOK,
    VALIDATE_RUNBOOK,
    Runbook,
    RunbookError,
    registration,
    runbook_parameters,
    script_lines,
)

MANAGED = {"patchcycle:managed": "true"}
BOOK = Runbook("PatchCycle-Test", "schemaVersion: '0.3'\n")


@pytest.mark.parametrize(
    ("tags", "default", "latest", "action"),
    [
        (None, None, None, "create"),
        (MANAGED, BOOK.content, BOOK.content, "unchanged"),
        (MANAGED, "old", BOOK.content, "set_default"),  # an earlier registration updated, then stopped
        (MANAGED, "old", "old", "update"),
    ],
)
def test_registration_is_idempotent(tags: dict[str, str] | None, default: str, latest: str, action: str) -> None:
    assert registration(BOOK, tags, default, latest) == action


def test_a_document_the_project_does_not_own_is_refused() -> None:
    with pytest.raises(RunbookError, match=r"^PatchCycle-Test: a document of that name exists without the tag"):
        registration(BOOK, {"team": "ops"}, "x", "x")
    with pytest.raises(RunbookError, match=r"registers only documents named PatchCycle-\*"):
        registration(Runbook("Ops-Restore", "x"), None, None, None)


def test_scripts_become_non_blank_lines_within_the_api_limits() -> None:
    assert script_lines("linux.sh", "#!/bin/sh\n\nset -e\n  \necho ok\n") == ["#!/bin/sh", "set -e", "echo ok"]
    with pytest.raises(RunbookError, match=r"^long.sh: line\(s\) \[2\] longer than 512"):
        script_lines("long.sh", "echo\n" + "x" * 513)
    with pytest.raises(RunbookError, match=r"^big.sh: .* 1 to 50 lines, got 51"):
        script_lines("big.sh", "echo\n" * 51)


def test_each_runbook_gets_its_parameters_and_no_empty_role() -> None:
    checks = {"Linux": ["echo ok"], "Windows": ["Write-Output ok"]}
    args = {"run_id": "manual__1", "wave": 2, "health_checks": checks}
    assert runbook_parameters(SNAPSHOT_RUNBOOK, **args, assume_role="") == {"RunId": ["manual__1"], "Wave": ["2"]}
    validate = runbook_parameters(VALIDATE_RUNBOOK, **args, assume_role="arn:aws:iam::111122223333:role/r")
    assert validate == {
        "LinuxHealthCheck": ["echo ok"],
        "WindowsHealthCheck": ["Write-Output ok"],
        "AutomationAssumeRole": ["arn:aws:iam::111122223333:role/r"],
    }
    assert set(runbook_parameters(RESTORE_RUNBOOK, **args, assume_role="")) == {
        "RunId",
        "LinuxHealthCheck",
        "WindowsHealthCheck",
    }
