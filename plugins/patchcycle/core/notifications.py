"""What the cycle tells people through Amazon SNS: an approval waiting, a rollout halted, a run ended.

Each message is a subject (SNS: at most 100 printable ASCII characters) and a plain-text body with the link a
reader acts on: the approval page, the run in the Airflow UI, the report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

SUBJECT_LIMIT: Final = 100
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


def _subject(text: str) -> str:
    """SNS's subject rules: printable ASCII, no line breaks, at most 100 characters (shortened with "...")."""
    text = _NOT_PRINTABLE.sub("?", " ".join(text.split()))
    return text if len(text) <= SUBJECT_LIMIT else text[: SUBJECT_LIMIT - 3] + "..."


def _lines(*parts: str) -> str:
    return "\n".join(part for part in parts if part) + "\n"


def approval_waiting(run_id: str, page: str, timeout_hours: float, staging: str) -> Message:
    """A person must approve or reject the rollout; no answer rejects it after `timeout_hours`."""
    return Message(
        _subject(f"Patch cycle {run_id}: approval needed"),
        _lines(
            f"Patch cycle {run_id} staged its patches and waits for a decision: Approve rolls them out to "
            f"production, Reject skips production. No answer within {timeout_hours:g} hours rejects.",
            f"Staging: {staging}" if staging else "",
            f"Answer here: {page}" if page else "Answer in the Airflow UI: the run's approve_production task.",
        ),
    )


def rollout_halted(run_id: str, wave: int, reason: str, page: str, rollout: str = "", step: str = "wave") -> Message:
    """A wave stopped the rollout: the later waves will not run. `rollout` names which ("RDS", "Auto Scaling"; "":
    the EC2 instances'); `step` what it proceeds by ("wave"; "group" for Auto Scaling refreshes)."""
    name = f"{rollout} " if rollout else ""
    return Message(
        _subject(f"Patch cycle {run_id}: {name}rollout halted at {step} {wave}"),
        _lines(
            f"Patch cycle {run_id} halted its production {name}rollout at {step} {wave}: {reason}",
            f"The later {name}{step}s will not run; the run goes on to verify and report what was done.",
            f"Run: {page}" if page else "",
        ),
    )


def run_ended(title: str, run_id: str, ok: bool, problems: Sequence[str], report: str, page: str) -> Message:
    """The run's outcome (`title` names the DAG to people: "Patch cycle", "Compliance watch"), with the report."""
    verdict = "ran its course" if ok else "did not run its course"
    return Message(
        _subject(f"{title} {run_id}: {verdict}"),
        _lines(
            f"{title} {run_id} {verdict}.",
            *(f"- {problem}" for problem in problems),
            f"Report: {report}" if report else "",
            f"Run: {page}" if page else "",
        ),
    )
