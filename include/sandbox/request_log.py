"""The sandbox's request log: which instances each command-sending call named, and a way to stall one answer.

Every call that commands instances (SSM SendCommand, StartAutomationExecution) is logged once it has been
answered (or, when held, once it has done its work and before the answer leaves), with the instances it named,
its comment or client token and its HTTP status. So is every call that changes what an Auto Scaling group's
instances run (StartInstanceRefresh, CreateLaunchTemplateVersion), with the group or launch template it named.
`GET /_sandbox/requests` lists the entries, so a test can count how often each instance was commanded and each
group refreshed.

A hold (`POST /_sandbox/hold`) stalls the answer of the next matching call after the sandbox has done its
work: the command exists and its instances patch, but the caller has not heard back. That is the window in
which a worker that dies has sent a command it never recorded. `POST /_sandbox/release` (or the hold's
time limit) lets the answer go.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# Calls that make instances do something, logged with the instances they name.
COMMANDING: frozenset[str] = frozenset({"ssm:SendCommand", "ssm:StartAutomationExecution"})
# Calls that change what a group's instances run, logged with the group or launch template they name.
REPLACING: frozenset[str] = frozenset({"autoscaling:StartInstanceRefresh", "ec2:CreateLaunchTemplateVersion"})
LOGGED: frozenset[str] = COMMANDING | REPLACING
MAX_HOLD_SECONDS = 600.0


@dataclass(frozen=True)
class LoggedRequest:
    seq: int
    operation: str  # service:Operation
    account_id: str
    region: str
    status: int  # the HTTP status of the answer (200: the call did its work)
    instance_ids: list[str]
    document: str  # the SSM document or runbook
    comment: str  # SendCommand's Comment
    client_token: str  # StartAutomationExecution's ClientToken
    invoked_by: str  # "client", or "automation" for a call an Automation step made (as CloudTrail's invokedBy)
    held: bool = False  # its answer was held (see Hold)
    resource: str = ""  # the Auto Scaling group or launch template a REPLACING call named


@dataclass
class Hold:
    """Stall the answer of the next successful `operation` call whose comment starts with `comment_prefix`."""

    operation: str
    comment_prefix: str
    seconds: float
    released: threading.Event = field(default_factory=threading.Event)
    caught: int | None = None  # the seq of the call it holds (or held)

    def matches(self, operation: str, comment: str) -> bool:
        return self.caught is None and operation == self.operation and comment.startswith(self.comment_prefix)


def commanded_instances(params: dict[str, Any]) -> list[str]:
    """The instances a SendCommand or StartAutomationExecution request names (InstanceIds, or the Targets of
    key InstanceIds / ParameterValues)."""
    ids = [str(i) for i in params.get("InstanceIds") or []]
    for target in params.get("Targets") or []:
        if isinstance(target, dict) and target.get("Key") in ("InstanceIds", "ParameterValues"):
            ids += [str(i) for i in target.get("Values") or []]
    return ids


class RequestLog:
    """The log and the armed hold, shared by the server's request threads."""

    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._hold: Hold | None = None

    def record(
        self,
        operation: str,
        account_id: str,
        region: str,
        params: dict[str, Any],
        status: int,
        invoked_by: str = "client",
    ) -> Hold | None:
        """Log a commanding or replacing call; returns the hold that catches it (its answer must wait), if any.
        params: the request's JSON body, or a query-protocol request's form fields."""
        if operation not in LOGGED:
            return None
        comment = str(params.get("Comment") or "")
        with self._lock:
            armed = self._hold
            hold = (
                armed
                if status == 200 and invoked_by == "client" and armed and armed.matches(operation, comment)
                else None
            )
            entry = LoggedRequest(
                seq=len(self._entries) + 1,
                operation=operation,
                account_id=account_id,
                region=region,
                status=status,
                instance_ids=commanded_instances(params),
                document=str(params.get("DocumentName") or ""),
                comment=comment,
                client_token=str(params.get("ClientToken") or ""),
                invoked_by=invoked_by,
                held=hold is not None,
                resource=str(
                    params.get("AutoScalingGroupName")
                    or params.get("LaunchTemplateName")
                    or params.get("LaunchTemplateId")
                    or ""
                ),
            )
            self._entries.append(entry)
            if hold is not None:
                hold.caught = entry.seq
        return hold

    def wait(self, hold: Hold) -> None:
        """Block the calling request thread until the hold is released or its time is up."""
        hold.released.wait(hold.seconds)

    def entries(self, operation: str = "") -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(e) for e in self._entries if not operation or e.operation == operation]

    def arm(self, request: dict[str, Any]) -> dict[str, Any]:
        """Arm a hold from a control request; ValueError names a bad field."""
        operation = request.get("operation")
        if operation not in COMMANDING:
            raise ValueError(f"operation: one of {sorted(COMMANDING)} is required, got {operation!r}")
        seconds = float(request.get("seconds", 120))
        if not 0 < seconds <= MAX_HOLD_SECONDS:
            raise ValueError(f"seconds: between 0 and {MAX_HOLD_SECONDS:g}, got {seconds:g}")
        with self._lock:
            if self._hold is not None:
                self._hold.released.set()
            self._hold = Hold(str(operation), str(request.get("comment_prefix") or ""), seconds)
            return self._describe(self._hold)

    def release(self) -> dict[str, Any]:
        with self._lock:
            hold, self._hold = self._hold, None
        if hold is None:
            return {"armed": False}
        hold.released.set()
        return {**self._describe(hold), "released_at": time.time()}

    def state(self) -> dict[str, Any]:
        with self._lock:
            return self._describe(self._hold) if self._hold else {"armed": False}

    @staticmethod
    def _describe(hold: Hold) -> dict[str, Any]:
        return {
            "armed": True,
            "operation": hold.operation,
            "comment_prefix": hold.comment_prefix,
            "seconds": hold.seconds,
            "caught": hold.caught,
        }
