"""Run Command in the sandbox: the commands sent in one account and region, and their invocations over simulated time.

moto 5.2.5's SendCommand fans out to every instance of the region, accepts any document and
reports Success at once. Here a command reaches only its targets, and each invocation lives
through the states AWS documents ("Understanding command statuses" in the Systems Manager User
Guide, and the StatusDetails text of botocore's ssm model):

- An invocation is Pending until SSM has sent it and the agent has picked it up (the scenario's
  ``delivery_seconds`` after dispatch), then InProgress for its document's duration, then Success,
  Failed or TimedOut ("Execution Timed Out").
- MaxConcurrency bounds the invocations dispatched at once; the rest stay Pending until a slot
  frees. Once the errors (Failed, Execution Timed Out) exceed MaxErrors, SSM stops sending: every
  invocation not yet sent ends Cancelled with StatusDetails "Terminated" (the Status enum has no
  Terminated; botocore documents the detail as "subsequent command invocations were canceled").
- An invocation never delivered (agent offline, or no slot before TimeoutSeconds passed) ends
  TimedOut / "Delivery Timed Out" when the command expires: ExpiresAfter = RequestedDateTime +
  TimeoutSeconds + the document's execution timeout (the "total timeout" of the user guide).
  An offline agent's invocation takes no concurrency slot: SSM never managed to send it.

Everything is decided by simulated time and the instances' faults, never by the wall clock or
chance, so a scenario replays identically. ``CommandStore.advance`` applies every event whose
time has passed, in time order, across all commands of the store; the effects on instances
(patching.scan / patching.install) happen when the invocation completes in simulated time.
"""

from __future__ import annotations

import heapq
import math
import random
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import yaml
from moto.s3.models import s3_backends

from include.sandbox import patching
from include.sandbox.protocol import AwsApiError

if TYPE_CHECKING:
    from include.sandbox.world import Ec2States, ManagedInstance, World


# -- statuses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """A Status (botocore's CommandStatus / CommandInvocationStatus enum) with its StatusDetails text."""

    status: str
    details: str

    @property
    def terminal(self) -> bool:
        return self.status not in ("Pending", "InProgress", "Delayed", "Cancelling")


PENDING = State("Pending", "Pending")
IN_PROGRESS = State("InProgress", "In Progress")
SUCCESS = State("Success", "Success")
FAILED = State("Failed", "Failed")
EXECUTION_TIMED_OUT = State("TimedOut", "Execution Timed Out")
DELIVERY_TIMED_OUT = State("TimedOut", "Delivery Timed Out")
CANCELLED = State("Cancelled", "Cancelled")
TERMINATED = State("Cancelled", "Terminated")  # never sent: the command exceeded MaxErrors
UNDELIVERABLE = State("Failed", "Undeliverable")  # the instance was gone when SSM sent it
INVALID_PLATFORM = State("Failed", "Invalid Platform")  # a tag target the document cannot run on
# Command-level only.
INCOMPLETE = State("Failed", "Incomplete")
NO_INSTANCES_IN_TAG = State("Failed", "No Instances In Tag")

# Count against MaxErrors and make up ErrorCount ("the status is Failed or Execution Timed Out").
ERROR_STATES = frozenset({FAILED, EXECUTION_TIMED_OUT})
# Terminal, but counted neither as errors nor against Success (user guide, Undeliverable / Invalid Platform).
NEUTRAL_STATES = frozenset({UNDELIVERABLE, INVALID_PLATFORM})

NOT_RUN_CODE = -1  # "If the response code is -1, then the command hasn't started running"
TIMED_OUT_CODE = 137  # SSM Agent's exit code for a command it stopped (128 + SIGKILL)

# Output limits of the API: CommandPlugin.Output and GetCommandInvocation's StandardOutputContent.
PLUGIN_OUTPUT_LIMIT = 2500
CONTENT_LIMIT = 24000


# -- documents ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One parameter of an SSM document: required when it has no default."""

    default: tuple[str, ...] | None = None
    allowed: tuple[str, ...] = ()
    pattern: str | None = None
    is_list: bool = False  # StringList (commands); every other parameter takes exactly one value


@dataclass(frozen=True)
class Document:
    """What the sandbox knows of an AWS-owned Command document."""

    name: str
    kind: str  # "patch" or "script"
    platforms: frozenset[str]  # PlatformType values the document runs on
    steps: tuple[tuple[str, str | None], ...]  # (step / plugin name, platform it is limited to)
    parameters: Mapping[str, Param]
    execution_timeout: int  # seconds, when the document has no executionTimeout parameter


# allowedPattern values of the AWS documents' parameters.
_S3_OR_HTTPS = r"(^$)|^https://.+$|^s3://([^/]+)/(.*?([^/]+))$"
_SNAPSHOT = r"(^$)|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_EXECUTION_TIMEOUT = r"([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800)"

_PATCH_COMMON = {
    "Operation": Param(("Scan",), allowed=("Scan", "Install")),
    "SnapshotId": Param(("",), pattern=_SNAPSHOT),
    "RebootOption": Param(("RebootIfNeeded",), allowed=("RebootIfNeeded", "NoReboot")),
    "BaselineOverride": Param(("",), pattern=_S3_OR_HTTPS),
}
_SCRIPT = {
    "commands": Param(is_list=True),
    "workingDirectory": Param(("",)),
    "executionTimeout": Param(("3600",), pattern=_EXECUTION_TIMEOUT),
}
# AWS-RunPatchBaseline's steps, each limited to one platform by a precondition.
_PATCH_STEPS: tuple[tuple[str, str | None], ...] = (
    ("PatchWindows", "Windows"),
    ("PatchLinux", "Linux"),
    ("PatchMacOS", "MacOS"),
)

DOCUMENTS: dict[str, Document] = {
    "AWS-RunPatchBaseline": Document(
        "AWS-RunPatchBaseline",
        "patch",
        frozenset({"Windows", "Linux", "MacOS"}),
        _PATCH_STEPS,
        {**_PATCH_COMMON, "InstallOverrideList": Param(("",), pattern=_S3_OR_HTTPS), "AssociationId": Param(("",))},
        execution_timeout=7200,  # the document's steps run with timeoutSeconds 7200
    ),
    # A wrapper of AWS-RunPatchBaseline with lifecycle hooks; it has no InstallOverrideList and no macOS
    # support. Its hook documents are accepted but not run (they default to AWS-Noop).
    "AWS-RunPatchBaselineWithHooks": Document(
        "AWS-RunPatchBaselineWithHooks",
        "patch",
        frozenset({"Windows", "Linux"}),
        _PATCH_STEPS[:2],
        {
            **_PATCH_COMMON,
            "PreInstallHookDocName": Param(("AWS-Noop",)),
            "PostInstallHookDocName": Param(("AWS-Noop",)),
            "OnExitHookDocName": Param(("AWS-Noop",)),
        },
        execution_timeout=7200,
    ),
    "AWS-RunShellScript": Document(
        "AWS-RunShellScript",
        "script",
        frozenset({"Linux", "MacOS"}),
        (("aws:runShellScript", None),),
        _SCRIPT,
        execution_timeout=3600,
    ),
    "AWS-RunPowerShellScript": Document(
        "AWS-RunPowerShellScript",
        "script",
        frozenset({"Windows", "Linux", "MacOS"}),
        (("aws:runPowerShellScript", None),),
        _SCRIPT,
        execution_timeout=3600,
    ),
}


def document(name: str) -> Document:
    """The document SendCommand names, or AWS's InvalidDocument."""
    found = DOCUMENTS.get(name)
    if found is None:
        raise AwsApiError("InvalidDocument", f"Document with name {name} does not exist.")
    return found


def resolve_parameters(doc: Document, given: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The document's parameters with defaults filled in; InvalidParameters as AWS rejects them."""
    unknown = sorted(set(given) - set(doc.parameters))
    if unknown:
        raise AwsApiError("InvalidParameters", f"Parameter(s) {', '.join(unknown)} not defined in document {doc.name}.")
    resolved: dict[str, list[str]] = {}
    for name, spec in doc.parameters.items():
        if name in given:
            resolved[name] = _checked_value(doc, name, spec, list(given[name]))
        elif spec.default is None:
            raise AwsApiError("InvalidParameters", f"Required parameter {name} is missing for document {doc.name}.")
        else:
            resolved[name] = list(spec.default)
    return resolved


def _checked_value(doc: Document, name: str, spec: Param, values: list[str]) -> list[str]:
    if spec.is_list:
        if not values:
            raise AwsApiError("InvalidParameters", f"Parameter {name} of document {doc.name} needs at least one value.")
        return values
    if len(values) != 1:
        raise AwsApiError("InvalidParameters", f"Parameter {name} of document {doc.name} takes exactly one value.")
    value = values[0]
    if spec.allowed and value not in spec.allowed:
        raise AwsApiError(
            "InvalidParameters",
            f"Value {value!r} of parameter {name} is not one of the allowed values: {', '.join(spec.allowed)}.",
        )
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        raise AwsApiError(
            "InvalidParameters", f"Value {value!r} of parameter {name} does not match the pattern {spec.pattern}."
        )
    return values


# -- rate controls -----------------------------------------------------------------------------
# MaxConcurrency and MaxErrors reach these already checked against the model's patterns
# (protocol.validate_request): a count, or a percentage.


def concurrency_limit(spec: str, targets: int) -> int:
    """Invocations allowed at once: a count, or a percentage of the targets rounded up (at least one)."""
    if spec.endswith("%"):
        return max(1, math.ceil(targets * int(spec[:-1]) / 100))
    return int(spec)


def error_threshold(spec: str, targets: int) -> int:
    """Errors tolerated: a count, or a percentage of the targets rounded down (10% of 50 tolerates 5)."""
    if spec.endswith("%"):
        return math.floor(targets * int(spec[:-1]) / 100)
    return int(spec)


# -- commands and invocations ------------------------------------------------------------------


@dataclass
class Invocation:
    """One target's copy of a command. `state` is set once it is terminal; see CommandStore.state."""

    command_id: str
    index: int
    instance_id: str
    instance_name: str
    platform_type: str
    due: datetime  # when the next event happens to it: completion, or the command's expiry
    dispatched: datetime | None = None
    start: datetime | None = None  # the agent started running it
    end: datetime | None = None
    state: State | None = None
    response_code: int = NOT_RUN_CODE
    stdout: str = ""
    stderr: str = ""
    plan: str = ""  # what the agent does: scan, install, script, hang or fail
    setup_error: str = ""  # why a "fail" plan fails
    override_ids: set[str] | None = None
    baseline: patching.BaselineView | None = None
    installed: bool = False  # install applied; the reboot is still running
    state_after_reboot: State = SUCCESS
    response_code_after_reboot: int = 0
    version: int = 0  # invalidates superseded event-queue entries


@dataclass
class Command:
    """A SendCommand request and the simulation state of its invocations."""

    command_id: str
    seq: int
    document: Document
    request: dict[str, Any]  # the SendCommand members, echoed back as AWS does
    parameters: dict[str, list[str]]  # with the document's defaults
    requested: datetime
    timeout_seconds: int
    execution_timeout: int
    concurrency: int
    error_threshold: int
    visible_after: datetime  # ListCommandInvocations / GetCommandInvocation see nothing before this
    invocations: list[Invocation] = field(default_factory=list)
    next_index: int = 0
    running: int = 0
    errors: int = 0
    stopped: bool = False
    cancelled: bool = False

    @property
    def expires_after(self) -> datetime:
        return self.requested + timedelta(seconds=self.timeout_seconds + self.execution_timeout)

    @property
    def start_deadline(self) -> datetime:
        """TimeoutSeconds: "If this time is reached and the command hasn't already started running, it won't run"."""
        return self.requested + timedelta(seconds=self.timeout_seconds)

    @property
    def operation(self) -> str:
        return self.parameters.get("Operation", [""])[0]

    def invocation(self, instance_id: str) -> Invocation | None:
        return next((inv for inv in self.invocations if inv.instance_id == instance_id), None)


@dataclass(frozen=True)
class Counts:
    target: int
    completed: int
    error: int
    delivery_timed_out: int


class CommandStore:
    """SSM Run Command in one account and region: the commands sent and their simulated invocations."""

    def __init__(self, world: World, account_id: str, region: str) -> None:
        self.world = world
        self.account_id = account_id
        self.region = region
        self._commands: dict[str, Command] = {}
        self._by_seq: list[Command] = []
        self._queue: list[tuple[datetime, int, int, int]] = []  # (due, command seq, invocation index, version)
        # Command ids from the scenario's seed, so a replayed scenario has the same ids.
        self._ids = random.Random(f"{world.scenario.seed}/{account_id}/{region}")
        # SSM's instances, refreshed from moto once per advance(): World.instances scans every EC2
        # instance of the region, too slow to call per invocation of a 10,000-instance command.
        self._live: dict[str, ManagedInstance] = {}
        self._stopped: frozenset[str] = frozenset()

    # -- sending -----------------------------------------------------------------------------
    def send(self, request: dict[str, Any]) -> Command:
        """SendCommand: validate like AWS, resolve the targets, dispatch what MaxConcurrency allows."""
        self.advance()
        doc = document(str(request["DocumentName"]))
        parameters = resolve_parameters(doc, request.get("Parameters") or {})
        max_concurrency = str(request.get("MaxConcurrency", "50"))
        max_errors = str(request.get("MaxErrors", "0"))
        targets = self._targets(doc, request)
        now = self.world.now()
        timeout = int(request.get("TimeoutSeconds", 3600))
        execution_timeout = int(parameters["executionTimeout"][0]) if "executionTimeout" in parameters else None
        command = Command(
            command_id=str(uuid.UUID(int=self._ids.getrandbits(128), version=4)),
            seq=len(self._by_seq),
            document=doc,
            request=dict(request),
            parameters=parameters,
            requested=now,
            timeout_seconds=timeout,
            execution_timeout=execution_timeout or doc.execution_timeout,
            concurrency=concurrency_limit(max_concurrency, len(targets)),
            error_threshold=error_threshold(max_errors, len(targets)),
            visible_after=now + timedelta(seconds=self.world.scenario.commands.delivery_seconds),
        )
        self._commands[command.command_id] = command
        self._by_seq.append(command)
        self._start(command, targets)
        return command

    def _targets(self, doc: Document, request: dict[str, Any]) -> list[ManagedInstance]:
        instance_ids: list[str] = list(request.get("InstanceIds") or [])
        targets: list[dict[str, Any]] = list(request.get("Targets") or [])
        if bool(instance_ids) == bool(targets):
            raise AwsApiError("InvalidParameters", "Specify either InstanceIds or Targets, not both and not neither.")
        if instance_ids:
            return self._by_instance_ids(doc, list(dict.fromkeys(instance_ids)))
        return self._by_targets(targets)

    def _by_instance_ids(self, doc: Document, instance_ids: list[str]) -> list[ManagedInstance]:
        """Exactly these instances; AWS refuses the whole request if SSM does not know one of them."""
        known = self.world.instances(self.account_id, self.region)
        unknown = [iid for iid in instance_ids if iid not in known or not known[iid].registered]
        if unknown:
            raise AwsApiError(
                "InvalidInstanceId",
                f"Instances [[{', '.join(unknown)}]] not in a valid state for account {self.account_id}",
            )
        chosen = [known[iid] for iid in instance_ids]
        wrong = sorted({inst.platform_type for inst in chosen} - doc.platforms)
        if wrong:
            raise AwsApiError(
                "UnsupportedPlatformType", f"The document {doc.name} does not support platform type {wrong[0]}."
            )
        return chosen

    def _by_targets(self, targets: list[dict[str, Any]]) -> list[ManagedInstance]:
        """The registered instances matching every Target (values of one key are alternatives)."""
        for target in targets:
            key = str(target.get("Key", ""))
            if not (key.startswith("tag:") or key == "tag-key" or key.lower() == "instanceids"):
                raise AwsApiError("InvalidParameters", f"Target key {key} is not supported by the sandbox.")
        known = self.world.instances(self.account_id, self.region)
        return [inst for inst in known.values() if inst.registered and self._matches(inst, targets)]

    def _matches(self, instance: ManagedInstance, targets: list[dict[str, Any]]) -> bool:
        tags = self.world.tags(self.account_id, self.region, instance.instance_id)
        for target in targets:
            key, values = str(target["Key"]), list(target.get("Values") or [])
            if key.startswith("tag:"):
                ok = tags.get(key[4:]) in values
            elif key == "tag-key":
                ok = any(value in tags for value in values)
            else:  # InstanceIds; "*" targets every managed node of the account and region
                ok = instance.instance_id in values or "*" in values
            if not ok:
                return False
        return True

    def _start(self, command: Command, targets: list[ManagedInstance]) -> None:
        for index, instance in enumerate(targets):
            invocation = Invocation(
                command_id=command.command_id,
                index=index,
                instance_id=instance.instance_id,
                instance_name=instance.computer_name,
                platform_type=instance.platform_type,
                due=command.expires_after,  # unless it is sent and finishes before
            )
            command.invocations.append(invocation)
            self._schedule(command, invocation)
        for invocation in command.invocations:
            # Only tag targets get here with the wrong platform: listed InstanceIds were refused.
            if invocation.platform_type not in command.document.platforms:
                self._finish(command, invocation, command.requested, INVALID_PLATFORM)
        self._dispatch_more(command, command.requested)

    # -- the event loop ----------------------------------------------------------------------
    def advance(self, until: datetime | None = None) -> None:
        """Apply every event due by now (or by `until`), in time order (idempotent: a second call finds nothing due).

        `until` lets what happens in between (ebs.settle: a root volume restore) come in at its own time.
        """
        with self.world.lock:
            self._live = self.world.instances(self.account_id, self.region)
            self._stopped = stopped_instances(self.world, self.account_id, self.region)
            now = self.world.now() if until is None else until
            while self._queue and self._queue[0][0] <= now:
                due, seq, index, version = heapq.heappop(self._queue)
                command = self._by_seq[seq]
                invocation = command.invocations[index]
                if invocation.state is None and invocation.version == version:
                    self._complete(command, invocation, due)

    def _schedule(self, command: Command, invocation: Invocation) -> None:
        invocation.version += 1
        heapq.heappush(self._queue, (invocation.due, command.seq, invocation.index, invocation.version))

    def _dispatch_more(self, command: Command, at: datetime) -> None:
        """Send the next queued invocations while MaxConcurrency allows and TimeoutSeconds has not passed."""
        while (
            not command.stopped
            and not command.cancelled
            and command.running < command.concurrency
            and command.next_index < len(command.invocations)
            and at < command.start_deadline
        ):
            invocation = command.invocations[command.next_index]
            command.next_index += 1
            if invocation.state is None:
                self._dispatch(command, invocation, at)

    def _dispatch(self, command: Command, invocation: Invocation, at: datetime) -> None:
        instance = self._live.get(invocation.instance_id)
        if instance is None:
            self._finish(command, invocation, at, UNDELIVERABLE, stderr="The instance no longer exists.")
            return
        if not instance.online or instance.instance_id in self._stopped:
            return  # never delivered: stays Pending until the command expires (Delivery Timed Out)
        timings = self.world.scenario.commands
        invocation.dispatched = at
        invocation.start = at + timedelta(seconds=timings.delivery_seconds)
        duration = self._plan(command, invocation, instance)
        if duration > command.execution_timeout:
            invocation.plan, duration = "hang", command.execution_timeout  # the agent stops it at the timeout
        invocation.due = invocation.start + timedelta(seconds=duration)
        if invocation.due > command.expires_after:
            # Still running when the command expires: SSM marks it Delivery Timed Out then.
            invocation.plan, invocation.due = "expire", command.expires_after
        command.running += 1
        self._schedule(command, invocation)

    def _plan(self, command: Command, invocation: Invocation, instance: ManagedInstance) -> float:
        """Decide what the agent will do and return how long it takes (seconds)."""
        timings = self.world.scenario.commands
        if instance.faults.command_hangs:
            invocation.plan = "hang"
            return float(command.execution_timeout)
        if command.document.kind == "script":
            invocation.plan = "script"
            return timings.script_seconds
        try:
            self._read_overrides(command, invocation, instance)
        except OverrideError as exc:
            invocation.plan, invocation.setup_error = "fail", str(exc)
            return 0.0
        if command.operation == "Install":
            invocation.plan = "install"
            return timings.install_seconds
        invocation.plan = "scan"
        return timings.scan_seconds

    def _read_overrides(self, command: Command, invocation: Invocation, instance: ManagedInstance) -> None:
        # The agent downloads both lists when it starts; a bad one fails the invocation at once.
        override_list = command.parameters.get("InstallOverrideList", [""])[0]
        baseline_override = command.parameters["BaselineOverride"][0]
        if command.operation == "Install" and override_list and baseline_override:
            raise OverrideError("InstallOverrideList and BaselineOverride can't be used together.")
        if command.operation == "Install" and override_list:
            invocation.override_ids = read_install_override_list(self.account_id, override_list)
        if baseline_override:
            invocation.baseline = read_baseline_override(self.account_id, baseline_override, instance)

    def _complete(self, command: Command, invocation: Invocation, at: datetime) -> None:
        """An invocation's event is due: it ends (or, for an install that reboots, starts its reboot)."""
        if invocation.dispatched is None or invocation.plan == "expire":
            self._finish(command, invocation, at, DELIVERY_TIMED_OUT)
            return
        instance = self._live.get(invocation.instance_id)
        if instance is None:
            self._finish(command, invocation, at, UNDELIVERABLE, stderr="The instance no longer exists.")
        elif invocation.plan == "hang":
            stderr = f"Execution timed out after {command.execution_timeout} seconds; the command was stopped."
            self._finish(command, invocation, at, EXECUTION_TIMED_OUT, TIMED_OUT_CODE, stderr=stderr)
        elif invocation.plan == "fail":
            self._finish(command, invocation, at, FAILED, 1, stderr=invocation.setup_error)
        elif invocation.plan == "script":
            self._finish_script(command, invocation, instance, at)
        elif invocation.plan == "scan":
            self._finish_scan(command, invocation, instance, at)
        elif invocation.installed:
            self._finish(command, invocation, at, invocation.state_after_reboot, invocation.response_code_after_reboot)
        else:
            self._install(command, invocation, instance, at)

    def _finish_script(self, command: Command, invocation: Invocation, instance: ManagedInstance, at: datetime) -> None:
        if instance.faults.script_fails or instance.health_broken:  # health_broken: the breaks_after_install fault
            self._finish(command, invocation, at, FAILED, 1, stderr="failed to run commands: exit status 1")
        else:
            self._finish(command, invocation, at, SUCCESS, 0)

    def _finish_scan(self, command: Command, invocation: Invocation, instance: ManagedInstance, at: datetime) -> None:
        assert invocation.start is not None
        try:
            with _compliance_kept(instance, keep=invocation.baseline is not None):
                report = patching.scan(self.world, instance, invocation.start, at, baseline=invocation.baseline)
        except patching.ScanFailed as exc:
            self._finish(command, invocation, at, FAILED, 1, stderr=f"Scan failed: {exc}.")
            return
        self._finish(command, invocation, at, SUCCESS, 0, stdout=_summary(report))

    def _install(self, command: Command, invocation: Invocation, instance: ManagedInstance, at: datetime) -> None:
        """Install now; if the instance reboots, the invocation stays InProgress for reboot_seconds more."""
        assert invocation.start is not None
        reboot_option = command.parameters["RebootOption"][0]
        before_installed, before_pending = set(instance.installed), set(instance.pending_reboot)
        try:
            with _compliance_kept(instance, keep=invocation.baseline is not None):
                report, ok = patching.install(
                    self.world,
                    instance,
                    invocation.start,
                    at,
                    reboot_option=reboot_option,
                    override_ids=invocation.override_ids,
                    baseline=invocation.baseline,
                    install_override_list=command.parameters.get("InstallOverrideList", [""])[0] or None,
                )
        except patching.ScanFailed as exc:
            self._finish(command, invocation, at, FAILED, 1, stderr=f"Install failed: {exc}.")
            return
        new = set(instance.installed) - before_installed
        if instance.faults.breaks_after_install:
            instance.broken_by_install |= new  # its health checks fail from now on (World.ManagedInstance)
        invocation.stdout = _summary(report)
        if not ok:
            failed = sorted(pid for pid, state in report.states.items() if state == patching.FAILED)
            invocation.stderr = f"Failed to install: {', '.join(failed)}"
        result, code = (SUCCESS, 0) if ok else (FAILED, 1)
        if reboot_option == patching.REBOOT_IF_NEEDED and self._needs_reboot(instance, new, before_pending):
            invocation.installed = True
            invocation.state_after_reboot, invocation.response_code_after_reboot = result, code
            invocation.due = at + timedelta(seconds=self.world.scenario.commands.reboot_seconds)
            if instance.report is report:
                report.end = invocation.due  # the agent reports after the instance is back
            self._schedule(command, invocation)
            return
        self._finish(command, invocation, at, result, code, stdout=invocation.stdout, stderr=invocation.stderr)

    def _needs_reboot(self, instance: ManagedInstance, new: set[str], pending_before: set[str]) -> bool:
        """RebootIfNeeded reboots when something is pending a reboot or a new patch needs one."""
        if pending_before or (new and instance.faults.reboot_required):
            return True
        return any(patch.reboot for patch in map(self.world.catalog.get, new) if patch is not None)

    def _finish(
        self,
        command: Command,
        invocation: Invocation,
        at: datetime,
        state: State,
        code: int = NOT_RUN_CODE,
        *,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        invocation.state, invocation.end, invocation.response_code = state, at, code
        invocation.stdout, invocation.stderr = stdout or invocation.stdout, stderr or invocation.stderr
        if invocation.dispatched is not None:
            command.running -= 1
        if state in ERROR_STATES:
            command.errors += 1
            if command.errors > command.error_threshold and not command.stopped:
                self._stop(command, at)
        self._dispatch_more(command, at)

    def _stop(self, command: Command, at: datetime) -> None:
        """MaxErrors exceeded: what is already running finishes, nothing more is sent."""
        command.stopped = True
        for invocation in command.invocations:
            if invocation.state is None and invocation.dispatched is None:
                self._finish(command, invocation, at, TERMINATED)

    # -- cancelling --------------------------------------------------------------------------
    def cancel(self, command_id: str, instance_ids: list[str] | None = None) -> None:
        """CancelCommand: every unfinished invocation (of the given instances) ends Cancelled now."""
        self.advance()
        command = self.get(command_id)
        if command is None:
            raise AwsApiError("InvalidCommandId", "Invalid command id.")
        chosen = set(instance_ids or [])
        if not chosen:
            command.cancelled = True
        now = self.world.now()
        for invocation in command.invocations:
            if invocation.state is None and (not chosen or invocation.instance_id in chosen):
                self._finish(command, invocation, now, CANCELLED)

    # -- reading -----------------------------------------------------------------------------
    def get(self, command_id: str) -> Command | None:
        return self._commands.get(command_id)

    def commands(self) -> list[Command]:
        """Every command, newest first (as ListCommands returns them)."""
        self.advance()
        return list(reversed(self._by_seq))

    def visible(self, command: Command) -> bool:
        """Whether the invocations can be read yet: right after SendCommand, AWS does not list them."""
        return self.world.now() >= command.visible_after

    def state(self, invocation: Invocation) -> State:
        if invocation.state is not None:
            return invocation.state
        if invocation.start is not None and self.world.now() >= invocation.start:
            return IN_PROGRESS
        return PENDING

    def counts(self, command: Command) -> Counts:
        states = [self.state(inv) for inv in command.invocations]
        return Counts(
            target=len(states),
            completed=sum(state.terminal for state in states),
            error=sum(state in ERROR_STATES for state in states),
            delivery_timed_out=sum(state == DELIVERY_TIMED_OUT for state in states),
        )

    def command_state(self, command: Command) -> State:
        """The command's aggregate status, by the user guide's "Detailed status for a command"."""
        states = [self.state(inv) for inv in command.invocations]
        if not states:
            return NO_INSTANCES_IN_TAG
        if not all(state.terminal for state in states):
            started = any(state != PENDING for state in states)
            return IN_PROGRESS if started else PENDING
        if command.cancelled:
            return CANCELLED
        return _final_state(states, max(command.error_threshold, 1))


def stopped_instances(world: World, account_id: str, region: str) -> frozenset[str]:
    """EC2 instances whose agent cannot run: SSM accepts commands for them, which are never delivered."""
    return world.ec2_derived(account_id, region, "stopped", _stopped)


def _stopped(live: Ec2States) -> frozenset[str]:
    return frozenset(i for i, (state, _) in live.items() if state in ("stopping", "stopped", "shutting-down"))


def _final_state(states: list[State], threshold: int) -> State:
    """Failed when MaxErrors or more invocations failed, Success when all ran fine, else Incomplete."""
    failed = states.count(FAILED)
    errors = failed + states.count(EXECUTION_TIMED_OUT)
    if errors >= threshold:
        return FAILED if failed else EXECUTION_TIMED_OUT
    succeeded = states.count(SUCCESS)
    neutral = sum(state in NEUTRAL_STATES for state in states)
    if succeeded + neutral == len(states):
        return SUCCESS if succeeded else FAILED  # all Undeliverable / Invalid Platform: Failed
    if states.count(DELIVERY_TIMED_OUT) >= threshold:
        return DELIVERY_TIMED_OUT
    return INCOMPLETE


# -- install override lists and baseline overrides ---------------------------------------------


class OverrideError(Exception):
    """An InstallOverrideList or BaselineOverride the agent could not use; the invocation fails."""


_VIRTUAL_HOST = re.compile(r"^(?P<bucket>.+)\.s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")
_PATH_HOST = re.compile(r"^s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key) of s3://BUCKET/KEY, https://BUCKET.s3[.REGION].amazonaws.com/KEY or path-style https."""
    parsed = urlparse(url)
    path = parsed.path.lstrip("/")
    if parsed.scheme == "s3" and parsed.netloc and path:
        return parsed.netloc, path
    if parsed.scheme == "https":
        host = parsed.hostname or ""
        virtual = _VIRTUAL_HOST.match(host)
        if virtual and not _PATH_HOST.match(host) and path:
            return virtual.group("bucket"), path
        if _PATH_HOST.match(host) and "/" in path:
            bucket, key = path.split("/", 1)
            return bucket, key
    raise OverrideError(f"{url} is not an S3 object URL (s3://bucket/key or https://bucket.s3.amazonaws.com/key).")


def read_s3_object(account_id: str, url: str) -> bytes:
    """The object's bytes from moto's S3 backend of the account; OverrideError if it cannot be read."""
    bucket, key = parse_s3_url(url)
    try:
        obj = s3_backends[account_id]["aws"].get_object(bucket, key)
    except Exception as exc:  # moto raises MissingBucket / MissingKey (and others) as its own error types
        raise OverrideError(f"Failed to download {url}: {getattr(exc, 'code', type(exc).__name__)}") from exc
    if obj is None:
        raise OverrideError(f"Failed to download {url}: NoSuchKey")
    return bytes(obj.value)


def read_install_override_list(account_id: str, url: str) -> set[str]:
    """The patch ids of a Patch Manager install override list (YAML: ``patches: [{id: ...}, ...]``)."""
    try:
        doc = yaml.safe_load(read_s3_object(account_id, url))
    except yaml.YAMLError as exc:
        raise OverrideError(f"The InstallOverrideList at {url} is not valid YAML: {exc}") from exc
    patches = doc.get("patches") if isinstance(doc, dict) else None
    if not isinstance(patches, list) or not all(isinstance(p, dict) and p.get("id") for p in patches):
        raise OverrideError(f"The InstallOverrideList at {url} must be YAML 'patches: [{{id: PATCH_ID}}, ...]'.")
    return {str(p["id"]) for p in patches}


def read_baseline_override(account_id: str, url: str, instance: ManagedInstance) -> patching.BaselineView | None:
    """The baseline for the instance's OS from a BaselineOverride JSON list; None when it has none for that OS."""
    try:
        entries = yaml.safe_load(read_s3_object(account_id, url))  # JSON is YAML
    except yaml.YAMLError as exc:
        raise OverrideError(f"The BaselineOverride at {url} is not valid JSON: {exc}") from exc
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise OverrideError(f"The BaselineOverride at {url} must be a JSON list of patch baselines.")
    entry = next((e for e in entries if e.get("OperatingSystem", "WINDOWS") == instance.os), None)
    if entry is None:
        return None
    return patching.baseline_view(
        SimpleNamespace(
            id=f"BaselineOverride:{url}",
            name="BaselineOverride",
            operating_system=instance.os,
            approval_rules=entry.get("ApprovalRules"),
            approved_patches=entry.get("ApprovedPatches"),
            rejected_patches=entry.get("RejectedPatches"),
            global_filters=entry.get("GlobalFilters"),
            approved_patches_compliance_level=entry.get("ApprovedPatchesComplianceLevel"),
            rejected_patches_action=entry.get("RejectedPatchesAction"),
            description="",
        )
    )


@contextmanager
def _compliance_kept(instance: ManagedInstance, *, keep: bool) -> Iterator[None]:
    """Under a BaselineOverride the results only go to the command output: the instance's compliance is kept."""
    saved = instance.report
    try:
        yield
    finally:
        if keep:
            instance.report = saved


def _summary(report: Any) -> str:
    """The command output of a patching operation: what a Patch Manager run prints last, in short."""
    counts = patching.report_counts(report)
    lines = [
        f"Operation: {report.operation}",
        f"Baseline: {report.baseline_id}",
        f"Snapshot: {report.snapshot_id}",
        *(f"{name}: {value}" for name, value in counts.items() if value),
    ]
    non_compliant = sorted(pid for pid, state in report.states.items() if state in patching.NON_COMPLIANT_STATES)
    if non_compliant:
        lines.append("NonCompliant: " + ", ".join(non_compliant))
    return "\n".join(lines)
