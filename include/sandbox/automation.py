"""SSM Automation executions in the sandbox (moto 5.2.5 answers them with an HTML 500).

StartAutomationExecution, GetAutomationExecution, DescribeAutomationExecutions,
DescribeAutomationStepExecutions and StopAutomationExecution, over runbooks kept as SSM documents
(ssm_documents.py, runbook.py), their steps really run (automation_actions.py) over the simulated clock.

How time passes. Every execution is a state machine whose next moment is an entry of one event queue
(simulated time, then order of scheduling). Before the sandbox serves any request (and in these handlers)
`advance` applies every event due by now, in time order, under the World's lock; while an event at time
T is applied, the clock reads T in that thread (SimulatedClock.pinned), so what a step calls sees the
world as it was at T (commands, snapshots, ...), and what it changes happens at T. A step's API calls go
through the sandbox's own app in the same thread (loopback.py), signed with the access key that started
the execution, so they land in its account and region as a client's would. Nothing runs in the
background: state is brought up to date when someone looks, which is indistinguishable from outside,
deterministic for tests that move the clock and then poll, and leaves nothing to stop with the server.

Lifecycle: Pending for PENDING_SECONDS after StartAutomationExecution (longer while the account and region
already run MAX_RUNNING executions: the queue of AWS's quota, at most MAX_QUEUED waiting, else
AutomationExecutionLimitExceededException), then InProgress through the steps, then Success, Failed,
TimedOut, or Cancelled (StopAutomationExecution: Cancelling, then Cancelled CANCEL_SECONDS later).

Rate control: with TargetParameterName and Targets (or TargetMaps) the execution is a parent that runs no
steps: it starts one child execution per target (ParentAutomationExecutionId, Target), first one, then more
as each finishes (the queue system's exponential ramp-up: at most `finished + 1`) up to MaxConcurrency at
once; once more than MaxErrors children failed or timed out it starts no more (those running finish) and
ends Failed, else Success when every child has finished.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError
from moto.ec2.models import ec2_backends
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

from include.sandbox import automation_actions as actions
from include.sandbox import commands, protocol, runbook, ssm_documents
from include.sandbox.api import Handler, RequestContext
from include.sandbox.loopback import Loopback, WsgiApp
from include.sandbox.paging import paginate
from include.sandbox.protocol import AwsApiError
from include.sandbox.runbook import Runbook, Step
from include.sandbox.world import World

KEY = "automation"  # World.extra
MOTO_MISSING: list[str] = [
    "StartAutomationExecution",
    "GetAutomationExecution",
    "DescribeAutomationExecutions",
    "DescribeAutomationStepExecutions",
    "StopAutomationExecution",
]

PENDING_SECONDS = 1
CANCEL_SECONDS = 1
MAX_RUNNING = 100  # concurrently running automations per account and Region (children count; parents do not)
MAX_QUEUED = 1000  # automations waiting for one of those slots
MAX_STEP_EXECUTIONS = 1000  # a sandbox guard against a runbook looping forever
DEFAULT_MAX_CONCURRENCY = "10"
DEFAULT_MAX_ERRORS = "0"
RESOLVED_TARGETS_SHOWN = 50
API_ATTEMPTS = 5  # a step's call is retried on throttling and 5xx, as Automation's throttling retry does
NO_OUTPUT = "No output available yet because the step is not successfully executed"
ROLE_NOT_ASSUMABLE = "The defined assume role is unable to be assumed."

PENDING, IN_PROGRESS, SUCCESS, FAILED, TIMED_OUT = "Pending", "InProgress", "Success", "Failed", "TimedOut"
CANCELLING, CANCELLED = "Cancelling", "Cancelled"
TERMINAL = frozenset({SUCCESS, FAILED, TIMED_OUT, CANCELLED})
# Every AutomationExecutionStatus botocore knows (filters take any of them).
STATUSES = frozenset(
    protocol.operation_model("ssm", "GetAutomationExecution")
    .output_shape.members["AutomationExecution"]
    .members["AutomationExecutionStatus"]
    .enum
)
_RETRYABLE = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "SlowDown", "TooManyRequestsException"}
    | {"InternalFailure", "InternalError", "InternalServerError", "ServiceUnavailable"}
)


# -- state ---------------------------------------------------------------------------------------


@dataclass
class StepRun:
    """One StepExecution: a step of the runbook, run once (a step run again by a loop is a new one)."""

    step: Step
    step_execution_id: str
    status: str = PENDING
    start: datetime | None = None
    end: datetime | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  # resolved
    outputs: dict[str, list[str]] = field(default_factory=dict)
    failure_message: str | None = None
    failure_details: dict[str, Any] | None = None
    response: str | None = None
    response_code: str | None = None
    next_step: str | None = None
    attempt: int = 0
    attempt_start: datetime | None = None
    timing_out: bool = False  # the pending event is the step's deadline
    retry: bool = False  # the pending event starts the step's next attempt
    state: dict[str, Any] = field(default_factory=dict)  # the action's own


@dataclass
class Execution:
    execution_id: str
    seq: int
    account_id: str
    region: str
    access_key: str
    executed_by: str
    document_name: str
    document_version: str
    runbook: Runbook
    parameters: dict[str, list[str]]
    created: datetime
    tags: list[dict[str, str]] = field(default_factory=list)
    status: str = PENDING
    end: datetime | None = None
    steps: list[StepRun] = field(default_factory=list)
    current: StepRun | None = None
    following: Step | None = None  # the step the pending event starts
    step_outputs: dict[str, Any] = field(default_factory=dict)  # "step.Output" -> typed value
    failure_message: str | None = None
    critical: str | None = None  # the status a critical step failed with (the execution's, at its end)
    step_count: int = 0
    slot: bool = False  # holds one of the account's running slots
    version: int = 0
    # rate control
    parent_id: str | None = None
    target: str | None = None
    target_parameter_name: str | None = None
    targets: list[dict[str, Any]] | None = None
    target_maps: list[dict[str, list[str]]] | None = None
    max_concurrency: str | None = None
    max_errors: str | None = None
    resolved: list[str] = field(default_factory=list)
    queue: deque[tuple[str | None, dict[str, list[str]]]] = field(default_factory=deque)
    children: list[str] = field(default_factory=list)
    concurrency: int = 0
    error_threshold: int = 0
    running_children: int = 0
    finished_children: int = 0
    child_errors: int = 0
    halted: bool = False

    @property
    def is_parent(self) -> bool:
        return self.targets is not None or self.target_maps is not None

    @property
    def key(self) -> tuple[str, str]:
        return self.account_id, self.region


class _Env:
    """The StepEnv an action sees (automation_actions.StepEnv)."""

    def __init__(self, engine: Engine, execution: Execution, run: StepRun) -> None:
        self.engine, self.execution, self.run = engine, execution, run
        self.step = run.step
        self.inputs = run.inputs
        self.state = run.state

    def now(self) -> datetime:
        return self.engine.world.now()

    def call(self, service: str, api: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return self.engine.call(self.execution, service, api, params)


class Engine:
    """Every execution of every account and region, and the one event queue that moves them."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.loopback: Loopback | None = None
        self._executions: dict[str, Execution] = {}
        self._order: list[Execution] = []
        self._heap: list[tuple[datetime, int, str, int]] = []
        self._counter = itertools.count()
        self._ids = random.Random(f"{world.scenario.seed}/automation")
        self._tokens: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._waiting: dict[tuple[str, str], deque[str]] = {}
        self._running: dict[tuple[str, str], int] = {}
        self._owner: int | None = None

    # -- the event loop ----------------------------------------------------------------------
    def advance(self) -> None:
        """Apply every event due by now, in time order (idempotent; re-entrant calls from a step return)."""
        if self._owner == threading.get_ident():
            return
        try:
            first = self._heap[0][0]
        except IndexError:
            return
        if first > self.world.now():
            return
        with self.world.lock:
            self._owner = threading.get_ident()
            try:
                until = self.world.now()
                while self._heap and self._heap[0][0] <= until:
                    due, _, execution_id, version = heapq.heappop(self._heap)
                    execution = self._executions[execution_id]
                    if execution.version == version:
                        with self.world.clock.pinned(due):
                            self._wake(execution, due)
            finally:
                self._owner = None

    def _schedule(self, execution: Execution, at: datetime) -> None:
        execution.version += 1
        heapq.heappush(self._heap, (at, next(self._counter), execution.execution_id, execution.version))

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _wake(self, execution: Execution, at: datetime) -> None:
        if execution.status == PENDING:
            self._begin(execution, at)
        elif execution.status == CANCELLING:
            self._finish(execution, at, CANCELLED)
        elif execution.status == IN_PROGRESS and execution.following is not None:
            step, execution.following = execution.following, None
            self._start_step(execution, step, at)
        elif execution.status == IN_PROGRESS and execution.current is not None:
            run = execution.current
            if run.retry:
                run.retry = False
                self._attempt(execution, run, at)
            else:
                self._continue(execution, run, at)

    # -- calls ---------------------------------------------------------------------------------
    def call(self, execution: Execution, service: str, api: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One API call of a step, in the execution's account and region (retried on throttling and 5xx)."""
        if self.loopback is None:
            raise actions.ApiError("The sandbox's API is not attached to its Automation (no server).")
        try:
            client = self.loopback.client(service, execution.region, execution.access_key)
        except BotoCoreError:
            raise actions.ApiError(f"Service {service} is not a service namespace of the AWS SDK.") from None
        operation = _operation_name(client, api)
        if operation is None:
            raise actions.ApiError(f"{api} is not an API operation of {service}.")
        method = getattr(client, xform_name(operation))
        for attempt in range(1, API_ATTEMPTS + 1):
            try:
                result: dict[str, Any] = method(**params)
                return result
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in _RETRYABLE or attempt == API_ATTEMPTS:
                    raise actions.call_error(exc) from None
            except BotoCoreError as exc:
                raise actions.call_error(exc) from None
        raise AssertionError("unreachable")

    # -- starting --------------------------------------------------------------------------------
    def start(self, ctx: RequestContext, params: dict[str, Any]) -> str:
        self.advance()
        _unsupported(params)
        token = params.get("ClientToken")
        fingerprint = json.dumps({k: v for k, v in params.items() if k != "ClientToken"}, sort_keys=True)
        if token:
            known = self._tokens.get((ctx.account_id, ctx.region, token.lower()))
            if known is not None:
                if known[0] != fingerprint:
                    raise AwsApiError(
                        "IdempotentParameterMismatch",
                        f"ClientToken {token} was already used to start an execution with other parameters.",
                    )
                return known[1]
        name, version, book = ssm_documents.runbook_for(ctx, params["DocumentName"], params.get("DocumentVersion"))
        target_name = params.get("TargetParameterName")
        targets, target_maps = params.get("Targets"), params.get("TargetMaps")
        _check_rate_control(book, target_name, targets, target_maps)
        given = params.get("Parameters") or {}
        from_targets = {target_name} if target_name else {key for m in target_maps or [] for key in m}
        parameters = runbook.resolve_parameters(book, given, supplied_later=from_targets)
        resolved = self._resolve_targets(ctx, book, target_name, targets, target_maps, given)
        waiting = self._waiting.get((ctx.account_id, ctx.region), deque())
        if len(waiting) >= MAX_QUEUED:
            raise AwsApiError(
                "AutomationExecutionLimitExceededException",
                f"The number of simultaneously running Automation executions exceeded the allowable limit: "
                f"{MAX_RUNNING} running and {MAX_QUEUED} queued in {ctx.region}.",
            )
        now = self.world.now()
        execution = self._create(
            ctx.account_id,
            ctx.region,
            ctx.access_key,
            name,
            version,
            book,
            parameters,
            now,
            tags=list(params.get("Tags") or []),
            runs_steps=resolved is None,
        )
        if resolved is None:
            self._enqueue(execution, now)
        else:
            self._make_parent(execution, params, resolved)
        if token:
            self._tokens[(ctx.account_id, ctx.region, token.lower())] = (fingerprint, execution.execution_id)
        return execution.execution_id

    def _create(
        self,
        account_id: str,
        region: str,
        access_key: str,
        name: str,
        version: str,
        book: Runbook,
        parameters: dict[str, list[str]],
        now: datetime,
        *,
        tags: list[dict[str, str]],
        parent: Execution | None = None,
        target: str | None = None,
        runs_steps: bool = True,
    ) -> Execution:
        execution = Execution(
            execution_id=self._new_id(),
            seq=len(self._order),
            account_id=account_id,
            region=region,
            access_key=access_key,
            executed_by=_caller_arn(account_id, region, access_key),
            document_name=name,
            document_version=version,
            runbook=book,
            parameters=parameters,
            created=now,
            tags=tags,
            parent_id=parent.execution_id if parent else None,
            target=target,
        )
        if runs_steps:  # every step is listed, Pending, from the start
            execution.steps = [StepRun(step, self._new_id()) for step in book.steps]
        self._executions[execution.execution_id] = execution
        self._order.append(execution)
        return execution

    def _make_parent(
        self, execution: Execution, params: dict[str, Any], resolved: list[tuple[str | None, dict[str, list[str]]]]
    ) -> None:
        execution.target_parameter_name = params.get("TargetParameterName")
        execution.targets = list(params["Targets"]) if params.get("Targets") else None
        execution.target_maps = list(params["TargetMaps"]) if params.get("TargetMaps") else None
        if execution.targets is None and execution.target_maps is None:
            execution.targets = []
        execution.max_concurrency = params.get("MaxConcurrency") or DEFAULT_MAX_CONCURRENCY
        execution.max_errors = params.get("MaxErrors") or DEFAULT_MAX_ERRORS
        execution.resolved = [value for value, _ in resolved if value is not None]
        execution.queue = deque(resolved)
        execution.concurrency = commands.concurrency_limit(execution.max_concurrency, len(resolved))
        execution.error_threshold = commands.error_threshold(execution.max_errors, len(resolved))
        self._schedule(execution, execution.created + timedelta(seconds=PENDING_SECONDS))

    def _enqueue(self, execution: Execution, at: datetime) -> None:
        """A (non-parent) execution waits for a running slot: Pending for PENDING_SECONDS, or in the queue."""
        if self._running.get(execution.key, 0) < MAX_RUNNING:
            self._running[execution.key] = self._running.get(execution.key, 0) + 1
            execution.slot = True
            self._schedule(execution, at + timedelta(seconds=PENDING_SECONDS))
        else:
            self._waiting.setdefault(execution.key, deque()).append(execution.execution_id)

    def _release(self, execution: Execution, at: datetime) -> None:
        if not execution.slot:
            return
        execution.slot = False
        self._running[execution.key] -= 1
        waiting = self._waiting.get(execution.key)
        while waiting:
            following = self._executions[waiting.popleft()]
            if following.status == PENDING:
                self._enqueue(following, at)
                break

    def _resolve_targets(
        self,
        ctx: RequestContext,
        book: Runbook,
        target_name: str | None,
        targets: list[dict[str, Any]] | None,
        target_maps: list[dict[str, list[str]]] | None,
        given_parameters: Mapping[str, list[str]],
    ) -> list[tuple[str | None, dict[str, list[str]]]] | None:
        """(Target, parameters) of each child of a rate-controlled execution; None when it is not one."""
        if target_maps:
            for target_map in target_maps:
                unknown = sorted(set(target_map) - set(book.parameters))
                if unknown:
                    raise runbook.parameter_error(
                        f"TargetMaps name parameters the document does not define: {', '.join(unknown)}."
                    )
                given = set(given_parameters) | set(target_map)
                missing = sorted(name for name, p in book.parameters.items() if not p.has_default and name not in given)
                if missing:
                    raise runbook.parameter_error(
                        f"Parameter {missing[0]} is required (it has no default) but a TargetMap does not provide it."
                    )
            return [(None, {k: list(v) for k, v in target_map.items()}) for target_map in target_maps]
        if not targets:
            return None
        assert target_name is not None
        target = targets[0]
        key, values = str(target.get("Key", "")), list(target.get("Values") or [])
        if key in ("ParameterValues", "InstanceIds"):
            chosen = list(dict.fromkeys(values))
        elif key.startswith("tag:") or key == "tag-key":
            chosen = self._tagged_instances(ctx, key, values)
        else:
            raise AwsApiError(
                "InvalidTarget",
                f"Target key {key} is not supported by the sandbox: use ParameterValues, InstanceIds, tag:<key> "
                "or tag-key.",
            )
        return [(value, {target_name: [value]}) for value in chosen]

    def _tagged_instances(self, ctx: RequestContext, key: str, values: list[str]) -> list[str]:
        """The account's EC2 instances in the region (not terminated) that carry the tag: Automation's tag targets."""
        backend = ec2_backends[ctx.account_id][ctx.region]
        chosen = []
        for instance_id, (state, _) in self.world.ec2_states(ctx.account_id, ctx.region).items():
            if state in ("terminated", "shutting-down"):
                continue
            tags = backend.tags.get(instance_id, {})
            if key == "tag-key":
                matches = any(value in tags for value in values)
            else:
                matches = tags.get(key[len("tag:") :]) in values
            if matches:
                chosen.append(instance_id)
        return chosen

    # -- running ---------------------------------------------------------------------------------
    def _begin(self, execution: Execution, at: datetime) -> None:
        execution.status = IN_PROGRESS
        if execution.is_parent:
            if not execution.queue:
                execution.failure_message = "No targets were found for the execution's Targets."
                self._finish(execution, at, FAILED)
                return
            self._dispatch(execution, at)
            return
        problem = self._check_role(execution)
        if problem is not None:
            execution.failure_message = problem
            self._finish(execution, at, FAILED)
            return
        self._start_step(execution, execution.runbook.steps[0], at)

    def _check_role(self, execution: Execution) -> str | None:
        """The execution's assumeRole, if it names one, must be a role that exists (AWS cannot assume it else)."""
        try:
            role = runbook.substitute(execution.runbook.assume_role, self._lookup(execution))
        except (runbook.UnresolvedReference, KeyError, ValueError):
            return ROLE_NOT_ASSUMABLE
        if not role:
            return None  # the steps act with the permissions of the caller
        if not isinstance(role, str) or not role.startswith("arn:aws:iam::") or ":role/" not in role:
            return f"{ROLE_NOT_ASSUMABLE} {role!r} is not a role ARN."
        account = role.split(":")[4]
        try:
            iam_backends[account]["aws"].get_role_by_arn(role)
        except Exception:  # moto's NotFoundException (or an account moto never saw)
            return f"{ROLE_NOT_ASSUMABLE} Role {role} does not exist."
        return None

    def _start_step(self, execution: Execution, step: Step, at: datetime) -> None:
        if execution.step_count >= MAX_STEP_EXECUTIONS:
            execution.failure_message = (
                f"The execution ran {MAX_STEP_EXECUTIONS} steps, the sandbox's limit (does the runbook loop forever?)."
            )
            self._finish(execution, at, FAILED)
            return
        execution.step_count += 1
        run = next(
            (r for r in execution.steps if r.step.name == step.name and r.status == PENDING and r.start is None), None
        )
        if run is None:
            run = StepRun(step, self._new_id())
            execution.steps.append(run)
        run.status, run.start, run.attempt = IN_PROGRESS, at, 0
        execution.current = run
        try:
            run.inputs = runbook.substitute(step.inputs, self._lookup(execution))
        except runbook.UnresolvedReference as exc:
            self._step_failed(execution, run, at, actions.Fail(str(exc), stage="Input", kind="Validation"))
            return
        self._attempt(execution, run, at)

    def _attempt(self, execution: Execution, run: StepRun, at: datetime) -> None:
        run.attempt += 1
        run.attempt_start = at
        run.timing_out = False
        run.state.clear()
        self._apply(execution, run, at, actions.begin(_Env(self, execution, run)))

    def _continue(self, execution: Execution, run: StepRun, at: datetime) -> None:
        env = _Env(self, execution, run)
        if run.timing_out:
            message = actions.on_timeout(env)
            self._step_failed(execution, run, at, actions.Fail(message, stage="Execution", kind="Timeout"), TIMED_OUT)
            return
        self._apply(execution, run, at, actions.resume(env))

    def _apply(self, execution: Execution, run: StepRun, at: datetime, outcome: actions.Outcome) -> None:
        if isinstance(outcome, actions.Wait):
            deadline = self._deadline(run)
            run.timing_out = deadline is not None and outcome.until > deadline
            self._schedule(execution, deadline if run.timing_out and deadline is not None else outcome.until)
        elif isinstance(outcome, actions.Done):
            self._step_succeeded(execution, run, at, outcome)
        elif isinstance(outcome, actions.Unsupported):
            run.status, run.end, run.failure_message = FAILED, at, outcome.message
            run.failure_details = {"FailureStage": "Preparation", "FailureType": "Unsupported"}
            execution.current = None
            execution.failure_message = outcome.message
            self._finish(execution, at, FAILED)
        else:
            self._step_failed(execution, run, at, outcome)

    def _deadline(self, run: StepRun) -> datetime | None:
        seconds = run.step.timeout_seconds or actions.DEFAULT_TIMEOUTS.get(run.step.action)
        if seconds is None or run.attempt_start is None:
            return None
        return run.attempt_start + timedelta(seconds=seconds)

    def _step_succeeded(self, execution: Execution, run: StepRun, at: datetime, outcome: actions.Done) -> None:
        run.status, run.end, run.response, run.response_code = SUCCESS, at, outcome.response, outcome.response_code
        run.next_step = outcome.next_step
        execution.current = None
        for name, value in outcome.outputs.items():
            run.outputs[name] = actions.output_strings(value)
            execution.step_outputs[f"{run.step.name}.{name}"] = value
        self._go_on(execution, run.step, at, outcome.next_step)

    def _step_failed(
        self, execution: Execution, run: StepRun, at: datetime, failure: actions.Fail, status: str = FAILED
    ) -> None:
        step = run.step
        if run.attempt < step.max_attempts and failure.stage != "Input":
            run.retry = True  # maxAttempts: try again at once (as the next event, not deeper in this one)
            self._schedule(execution, at)
            return
        run.status, run.end, run.failure_message, run.response_code = status, at, failure.message, failure.response_code
        run.failure_details = {"FailureStage": failure.stage, "FailureType": failure.kind}
        if failure.details:
            run.failure_details["Details"] = failure.details
        execution.current = None
        if step.is_critical and execution.critical is None:
            execution.critical = status
            execution.failure_message = failure.message
        if step.on_failure == "Abort":
            self._finish(execution, at, execution.critical or SUCCESS)
        elif step.on_failure == "Continue":
            self._go_on(execution, step, at, None)
        else:
            self._then(execution, execution.runbook.step(step.on_failure[len("step:") :]), at)

    def _go_on(self, execution: Execution, step: Step, at: datetime, chosen: str | None) -> None:
        book = execution.runbook
        if chosen is not None:
            following: Step | None = book.step(chosen)
        elif step.is_end:
            following = None
        elif step.next_step is not None:
            following = book.step(step.next_step)
        else:
            following = book.steps[step.index + 1] if step.index + 1 < len(book.steps) else None
        if following is None:
            self._finish(execution, at, execution.critical or SUCCESS)
        else:
            self._then(execution, following, at)

    def _then(self, execution: Execution, step: Step, at: datetime) -> None:
        """The next step starts at once, as an event of its own (steps that take no time never nest)."""
        execution.following = step
        self._schedule(execution, at)

    def _finish(self, execution: Execution, at: datetime, status: str) -> None:
        execution.status, execution.end, execution.current, execution.following = status, at, None, None
        execution.version += 1  # whatever was scheduled for it is void
        self._release(execution, at)
        if execution.parent_id is not None:
            parent = self._executions[execution.parent_id]
            self._child_finished(parent, execution, at)

    def _lookup(self, execution: Execution) -> Callable[[str], Any]:
        def lookup(name: str) -> Any:
            parameter = execution.runbook.parameters.get(name)
            if parameter is not None and name in execution.parameters:
                return runbook.typed_value(parameter, execution.parameters[name])
            if name in execution.step_outputs:
                return execution.step_outputs[name]
            variable = _variable(execution, name, self.world.now())
            if variable is not None:
                return variable
            if "." in name:
                raise runbook.UnresolvedReference(
                    f"{{{{ {name} }}}} has no value: step {name.split('.')[0]} has not produced the output "
                    f"{name.split('.', 1)[1]}."
                )
            raise runbook.UnresolvedReference(f"{{{{ {name} }}}} has no value.")

        return lookup

    # -- rate control ------------------------------------------------------------------------------
    def _dispatch(self, parent: Execution, at: datetime) -> None:
        """Start children while MaxConcurrency (and the ramp-up) allows and MaxErrors has not been exceeded;
        end the parent once none runs and none is left to start."""
        while (
            parent.status == IN_PROGRESS
            and not parent.halted
            and parent.queue
            and parent.running_children < min(parent.concurrency, parent.finished_children + 1)
        ):
            target, values = parent.queue.popleft()
            parameters = {**parent.parameters, **values}
            child = self._create(
                parent.account_id,
                parent.region,
                parent.access_key,
                parent.document_name,
                parent.document_version,
                parent.runbook,
                parameters,
                at,
                tags=list(parent.tags),
                parent=parent,
                target=target,
            )
            parent.children.append(child.execution_id)
            parent.running_children += 1
            try:
                for name, given in values.items():
                    child.parameters[name] = runbook.check_value(parent.runbook.parameters[name], given)
            except AwsApiError as exc:  # the target's value does not suit the parameter: that child fails
                child.status, child.end, child.failure_message = FAILED, at, exc.message
                self._count_child(parent, child)
                continue
            self._enqueue(child, at)
        if parent.status == IN_PROGRESS and parent.running_children == 0 and not parent.queue:
            if parent.halted:
                parent.failure_message = (
                    f"{parent.child_errors} child executions failed, more than MaxErrors ({parent.max_errors}): "
                    "no further targets were started."
                )
                self._finish(parent, at, FAILED)
            else:
                self._finish(parent, at, SUCCESS)

    def _count_child(self, parent: Execution, child: Execution) -> None:
        parent.running_children -= 1
        parent.finished_children += 1
        if child.status in (FAILED, TIMED_OUT):
            parent.child_errors += 1
            if parent.child_errors > parent.error_threshold and not parent.halted:
                parent.halted = True
                parent.queue.clear()

    def _child_finished(self, parent: Execution, child: Execution, at: datetime) -> None:
        self._count_child(parent, child)
        if parent.status == IN_PROGRESS:
            self._dispatch(parent, at)

    # -- stopping ----------------------------------------------------------------------------------
    def stop(self, execution: Execution) -> None:
        self.advance()
        if execution.status in TERMINAL or execution.status == CANCELLING:
            raise AwsApiError(
                "InvalidAutomationStatusUpdateException",
                f"Automation execution {execution.execution_id} is {execution.status}: it cannot be stopped.",
            )
        self._owner = threading.get_ident()  # what _cancel calls (CancelCommand) must not re-enter the loop
        try:
            self._cancel(execution, self.world.now())
        finally:
            self._owner = None

    def _cancel(self, execution: Execution, at: datetime) -> None:
        for child_id in execution.children:
            child = self._executions[child_id]
            if child.status not in TERMINAL and child.status != CANCELLING:
                self._cancel(child, at)
        execution.queue.clear()
        execution.following = None
        run = execution.current
        if run is not None:
            with self.world.clock.pinned(at):
                actions.cancel(_Env(self, execution, run))
            run.status, run.end = CANCELLED, at
            execution.current = None
        waiting = self._waiting.get(execution.key)
        if waiting and execution.execution_id in waiting:
            waiting.remove(execution.execution_id)
        execution.status = CANCELLING
        self._schedule(execution, at + timedelta(seconds=CANCEL_SECONDS))

    # -- reading -----------------------------------------------------------------------------------
    def get(self, ctx: RequestContext, execution_id: str) -> Execution:
        execution = self._executions.get(execution_id)
        if execution is None or execution.key != (ctx.account_id, ctx.region):
            raise AwsApiError(
                "AutomationExecutionNotFoundException", f"Automation execution {execution_id} does not exist."
            )
        return execution

    def executions(self, ctx: RequestContext) -> list[Execution]:
        """The account's executions in the region, newest first."""
        return [e for e in reversed(self._order) if e.key == (ctx.account_id, ctx.region)]


def engine(world: World) -> Engine:
    found = world.extra.get(KEY)
    if found is None:
        with world.lock:
            found = world.extra.get(KEY)
            if found is None:
                found = world.extra[KEY] = Engine(world)
    assert isinstance(found, Engine)
    return found


def attach(world: World, app: WsgiApp) -> None:
    """Let the steps of `world`'s executions call the sandbox app `app` (the server does this at start-up)."""
    engine(world).loopback = Loopback(app)


def advance(world: World) -> None:
    """Bring every execution up to now (the server calls this before it serves any request; cheap when idle)."""
    found = world.extra.get(KEY)
    if isinstance(found, Engine):
        found.advance()


def _operation_name(client: Any, api: str) -> str | None:
    names = client.meta.service_model.operation_names
    if api in names:
        return str(api)
    mapped = client.meta.method_to_api_mapping.get(api)
    return str(mapped) if mapped else None


def _caller_arn(account_id: str, region: str, access_key: str) -> str:
    """Who started the execution (ExecutedBy): what GetCallerIdentity answers for those credentials."""
    try:
        _, arn, _ = sts_backends[account_id]["aws"].get_caller_identity(access_key, region)
        return str(arn)
    except Exception:  # an access key moto cannot place
        return f"arn:aws:sts::{account_id}:user/moto"


def _variable(execution: Execution, name: str, now: datetime) -> str | None:
    values = {
        "global:ACCOUNT_ID": execution.account_id,
        "global:REGION": execution.region,
        "global:AWS_PARTITION": "aws",
        "global:AWS_URL_SUFFIX": "amazonaws.com",
        "global:DATE": now.strftime("%Y-%m-%d"),
        "global:DATE_TIME": now.strftime("%Y-%m-%d_%H.%M.%S"),
        "automation:EXECUTION_ID": execution.execution_id,
        "automation:DOCUMENT_EXECUTION_ID": execution.execution_id,
    }
    return values.get(name)


def _unsupported(params: dict[str, Any]) -> None:
    if params.get("Mode", "Auto") != "Auto":
        raise runbook.parameter_error("The sandbox runs executions in Mode Auto only (Interactive is not supported).")
    for member in ("TargetLocations", "TargetLocationsURL", "AlarmConfiguration"):
        if params.get(member):
            raise runbook.parameter_error(f"{member} is not supported by the sandbox's Automation.")


def _check_rate_control(
    book: Runbook,
    target_name: str | None,
    targets: list[dict[str, Any]] | None,
    target_maps: list[dict[str, list[str]]] | None,
) -> None:
    if targets and target_maps:
        raise runbook.parameter_error("Targets and TargetMaps can't be specified together.")
    if targets and not target_name:
        raise runbook.parameter_error("TargetParameterName is required when Targets are specified.")
    if target_name and not targets and not target_maps:
        raise runbook.parameter_error("Targets (or TargetMaps) are required when TargetParameterName is specified.")
    if target_name and target_name not in book.parameters:
        raise runbook.parameter_error(f"TargetParameterName {target_name} is not a parameter of the document.")
    if targets is not None and not targets and target_name:
        raise AwsApiError("InvalidTarget", "Targets must name one target.")


# -- handlers --------------------------------------------------------------------------------------


def _engine(world: World) -> Engine:
    found = engine(world)
    found.advance()  # the server does this too; handlers called directly must see the same state
    return found


def start_automation_execution(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"AutomationExecutionId": _engine(world).start(ctx, params)}


def get_automation_execution(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    execution = _engine(world).get(ctx, params["AutomationExecutionId"])
    return {"AutomationExecution": render_execution(execution)}


def stop_automation_execution(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    found = _engine(world)
    found.stop(found.get(ctx, params["AutomationExecutionId"]))
    return {}


_EXECUTION_FILTERS = frozenset(
    {"DocumentNamePrefix", "ExecutionStatus", "ExecutionId", "ParentExecutionId", "CurrentAction", "StartTimeBefore"}
    | {"StartTimeAfter", "AutomationType", "TagKey", "TargetResourceGroup", "AutomationSubtype", "OpsItemId"}
)


def describe_automation_executions(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    found = _engine(world)
    checks = [_execution_filter(spec["Key"], list(spec["Values"])) for spec in params.get("Filters") or []]
    chosen = [e for e in found.executions(ctx) if all(check(e) for check in checks)]
    # Tokens name the last execution returned, so executions started between pages do not shift them.
    after = _decode_token(params["NextToken"]) if params.get("NextToken") else None
    if after is not None:
        chosen = [e for e in chosen if e.seq < after]
    size = params.get("MaxResults") or 50
    page = chosen[:size]
    result: dict[str, Any] = {"AutomationExecutionMetadataList": [render_metadata(e) for e in page]}
    if len(chosen) > size:
        result["NextToken"] = _encode_token(page[-1].seq)
    return result


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": seq}).encode()).decode()


def _decode_token(token: str) -> int:
    try:
        seq = json.loads(base64.urlsafe_b64decode(token.encode()))["before"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AwsApiError("InvalidNextToken", "The specified token isn't valid.") from exc
    if not isinstance(seq, int):
        raise AwsApiError("InvalidNextToken", "The specified token isn't valid.")
    return seq


def _timestamp_filter(key: str, values: list[str]) -> datetime:
    try:
        moments = [runbook.parse_timestamp(value) for value in values]
    except ValueError as exc:
        raise AwsApiError("InvalidFilterValue", f"The {key} filter takes ISO 8601 timestamps: {values}.") from exc
    return min(moments) if key.endswith("Before") else max(moments)


def _execution_filter(key: str, values: list[str]) -> Callable[[Execution], bool]:
    if key not in _EXECUTION_FILTERS:
        raise AwsApiError("InvalidFilterKey", f"The filter key {key} isn't valid.")
    wanted = set(values)
    if key == "DocumentNamePrefix":
        return lambda e: any(e.document_name.startswith(v) for v in values)
    if key == "ExecutionStatus":
        bad = sorted(v for v in values if v not in STATUSES)
        if bad:
            raise AwsApiError("InvalidFilterValue", f"The filter value {bad[0]} isn't a valid ExecutionStatus.")
        return lambda e: e.status in wanted
    if key == "ExecutionId":
        return lambda e: e.execution_id in wanted
    if key == "ParentExecutionId":
        return lambda e: e.parent_id in wanted
    if key == "CurrentAction":
        return lambda e: e.current is not None and e.current.step.action in wanted
    if key in ("StartTimeBefore", "StartTimeAfter"):
        moment = _timestamp_filter(key, values)
        if key == "StartTimeBefore":
            return lambda e: e.created <= moment
        return lambda e: e.created >= moment
    if key == "AutomationType":
        return lambda e: "Local" in wanted
    if key == "TagKey":
        return lambda e: any(tag["Key"] in wanted for tag in e.tags)
    return lambda e: False  # resource groups, change requests, OpsItems: none in the sandbox


_STEP_FILTERS = frozenset(
    {"StartTimeBefore", "StartTimeAfter", "StepExecutionStatus", "StepExecutionId", "StepName", "Action"}
    | {"ParentStepExecutionId", "ParentStepIteration", "ParentStepIteratorValue"}
)


def describe_automation_step_executions(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    execution = _engine(world).get(ctx, params["AutomationExecutionId"])
    checks = [_step_filter(spec["Key"], list(spec["Values"])) for spec in params.get("Filters") or []]
    runs = [run for run in execution.steps if all(check(run) for check in checks)]
    if params.get("ReverseOrder"):
        runs.reverse()
    page, token = paginate(runs, params, 50)
    return {"StepExecutions": [render_step(run) for run in page], **token}


def _step_filter(key: str, values: list[str]) -> Callable[[StepRun], bool]:
    if key not in _STEP_FILTERS:
        raise AwsApiError("InvalidFilterKey", f"The filter key {key} isn't valid.")
    wanted = set(values)
    if key == "StepExecutionStatus":
        lowered = {v.lower() for v in values}
        bad = sorted(v for v in values if v.lower() not in {s.lower() for s in STATUSES})
        if bad:
            raise AwsApiError("InvalidFilterValue", f"The filter value {bad[0]} isn't a valid StepExecutionStatus.")
        return lambda run: run.status.lower() in lowered
    if key == "StepExecutionId":
        return lambda run: run.step_execution_id in wanted
    if key == "StepName":
        return lambda run: run.step.name in wanted
    if key == "Action":
        return lambda run: run.step.action in wanted
    if key in ("StartTimeBefore", "StartTimeAfter"):
        moment = _timestamp_filter(key, values)
        if key == "StartTimeBefore":
            return lambda run: run.start is not None and run.start <= moment
        return lambda run: run.start is not None and run.start >= moment
    return lambda run: False  # aws:loop iterations: the sandbox runs no aws:loop


# -- rendering -------------------------------------------------------------------------------------


def _document_outputs(execution: Execution) -> dict[str, list[str]]:
    outputs = {}
    for name in execution.runbook.outputs:
        value = execution.step_outputs.get(name)
        outputs[name] = actions.output_strings(value) if name in execution.step_outputs else [NO_OUTPUT]
    return outputs


def _common(execution: Execution) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AutomationExecutionId": execution.execution_id,
        "DocumentName": execution.document_name,
        "DocumentVersion": execution.document_version,
        "AutomationExecutionStatus": execution.status,
        "ExecutionStartTime": execution.created,
        "ExecutedBy": execution.executed_by,
        "Mode": "Auto",
    }
    if execution.end is not None:
        out["ExecutionEndTime"] = execution.end
    outputs = {} if execution.is_parent else _document_outputs(execution)  # a parent runs no steps
    if outputs:
        out["Outputs"] = outputs
    if execution.failure_message:
        out["FailureMessage"] = execution.failure_message
    if execution.parent_id is not None:
        out["ParentAutomationExecutionId"] = execution.parent_id
    if execution.target is not None:
        out["Target"] = execution.target
    if execution.current is not None:
        out["CurrentStepName"] = execution.current.step.name
        out["CurrentAction"] = execution.current.step.action
    if execution.is_parent:
        if execution.target_parameter_name:
            out["TargetParameterName"] = execution.target_parameter_name
        if execution.targets is not None:
            out["Targets"] = execution.targets
        if execution.target_maps is not None:
            out["TargetMaps"] = execution.target_maps
        out["ResolvedTargets"] = {
            "ParameterValues": execution.resolved[:RESOLVED_TARGETS_SHOWN],
            "Truncated": len(execution.resolved) > RESOLVED_TARGETS_SHOWN,
        }
        out["MaxConcurrency"] = execution.max_concurrency
        out["MaxErrors"] = execution.max_errors
    return out


def render_execution(execution: Execution) -> dict[str, Any]:
    """An AutomationExecution (GetAutomationExecution)."""
    out = _common(execution)
    out["StepExecutions"] = [render_step(run) for run in execution.steps]
    out["StepExecutionsTruncated"] = False
    if execution.parameters:
        out["Parameters"] = {name: list(values) for name, values in execution.parameters.items()}
    return out


def render_metadata(execution: Execution) -> dict[str, Any]:
    """An AutomationExecutionMetadata (DescribeAutomationExecutions)."""
    out = _common(execution)
    out["AutomationType"] = "Local"
    out["LogFile"] = ""
    return out


def render_step(run: StepRun) -> dict[str, Any]:
    step = run.step
    out: dict[str, Any] = {
        "StepName": step.name,
        "Action": step.action,
        "MaxAttempts": step.max_attempts,
        "OnFailure": step.on_failure,
        "StepStatus": run.status,
        "StepExecutionId": run.step_execution_id,
        "IsEnd": step.is_end,
        "IsCritical": step.is_critical,
        "Inputs": {key: json.dumps(value, default=str) for key, value in (run.inputs or step.inputs).items()},
    }
    if step.timeout_seconds is not None or step.action in actions.DEFAULT_TIMEOUTS:
        out["TimeoutSeconds"] = step.timeout_seconds or actions.DEFAULT_TIMEOUTS[step.action]
    if run.start is not None:
        out["ExecutionStartTime"] = run.start
    if run.end is not None:
        out["ExecutionEndTime"] = run.end
    if run.outputs:
        out["Outputs"] = run.outputs
    if run.failure_message:
        out["FailureMessage"] = run.failure_message
    if run.failure_details:
        out["FailureDetails"] = run.failure_details
    if run.response is not None:
        out["Response"] = run.response
    if run.response_code is not None:
        out["ResponseCode"] = run.response_code
    next_step = run.next_step or step.next_step
    if next_step:
        out["NextStep"] = next_step
    valid = _valid_next_steps(step)
    if valid:
        out["ValidNextSteps"] = valid
    return out


def _valid_next_steps(step: Step) -> list[str]:
    if step.action != runbook.BRANCH:
        return [step.next_step] if step.next_step else []
    choices = [str(choice["NextStep"]) for choice in step.inputs.get("Choices", [])]
    default = step.inputs.get("Default")
    return list(dict.fromkeys([*choices, *([str(default)] if default else [])]))


HANDLERS: dict[tuple[str, str], Handler] = {
    ("ssm", "StartAutomationExecution"): start_automation_execution,
    ("ssm", "GetAutomationExecution"): get_automation_execution,
    ("ssm", "DescribeAutomationExecutions"): describe_automation_executions,
    ("ssm", "DescribeAutomationStepExecutions"): describe_automation_step_executions,
    ("ssm", "StopAutomationExecution"): stop_automation_execution,
}

__all__ = ["HANDLERS", "MOTO_MISSING", "Engine", "advance", "attach", "engine"]
