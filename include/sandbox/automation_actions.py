"""The Automation actions the sandbox runs, each as a small state machine over the simulated clock.

An action begins when its step starts and is resumed whenever the time it asked for comes; it answers
with an Outcome: Wait (resume me at that time), Done (the step succeeded, with its outputs and, for
aws:branch, the step to go to), Fail (the step failed), or Unsupported (the action is not one the sandbox
runs: the execution fails). Timeouts, retries (maxAttempts) and onFailure are the engine's business
(automation.py), which also decides what a step may call: `StepEnv.call` goes to the sandbox's own API
surface in the execution's account and region (loopback.py), so AWS errors come back as they would to a
client.

How time passes: an API call takes API_SECONDS of simulated time (the call is made when that time has
passed, and the step ends then); aws:waitForAwsResourceProperty polls every POLL_SECONDS after its first
call; aws:runCommand sends the command after API_SECONDS, then reads the command's status every
POLL_SECONDS until it is done; aws:branch takes no time; aws:sleep takes its Duration.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from botocore.response import StreamingBody

from include.sandbox import jsonpath, runbook
from include.sandbox.runbook import OutputSpec, Step

API_SECONDS = 1
POLL_SECONDS = 5
# aws:waitForAwsResourceProperty times out after an hour unless its step says otherwise (AWS's default).
DEFAULT_TIMEOUTS = {runbook.WAIT: 3600}
COMMAND_RUNNING = frozenset({"Pending", "InProgress", "Cancelling"})
OUTPUT_LIMIT = 2500  # aws:runCommand's Output, as the console shows a plugin's output


# -- outcomes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    until: datetime


@dataclass(frozen=True)
class Done:
    outputs: dict[str, Any] = field(default_factory=dict)  # output name -> typed value
    next_step: str | None = None  # aws:branch's choice
    response: str | None = None
    response_code: str | None = None


@dataclass(frozen=True)
class Fail:
    message: str
    stage: str = "Invocation"
    kind: str = "Action"
    details: dict[str, list[str]] = field(default_factory=dict)
    response_code: str | None = None


@dataclass(frozen=True)
class Unsupported:
    message: str


Outcome = Wait | Done | Fail | Unsupported


class ApiError(Exception):
    """A step's API call failed: the message is what botocore would say to a client (code kept apart)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class StepEnv(Protocol):
    """What an action may use: the time, its step's resolved inputs and state, and the sandbox's API."""

    step: Step
    inputs: dict[str, Any]
    state: dict[str, Any]

    def now(self) -> datetime: ...

    def call(self, service: str, api: str, params: Mapping[str, Any]) -> dict[str, Any]: ...


def begin(env: StepEnv) -> Outcome:
    action = env.step.action
    if action not in runbook.SUPPORTED_ACTIONS:
        return Unsupported(f"{action} is not supported by the sandbox (step {env.step.name}).")
    if action == runbook.BRANCH:
        return _branch(env)
    if action == runbook.SLEEP:
        return _sleep(env)
    env.state["phase"] = "send" if action == runbook.RUN_COMMAND else "call"
    return Wait(env.now() + timedelta(seconds=API_SECONDS))


def resume(env: StepEnv) -> Outcome:
    action = env.step.action
    if action == runbook.EXECUTE_API:
        return _execute_api(env)
    if action == runbook.WAIT:
        return _wait_for_property(env)
    if action == runbook.ASSERT:
        return _assert_property(env)
    if action == runbook.RUN_COMMAND:
        return _run_command(env)
    return Done()  # aws:sleep: its time has passed


def on_timeout(env: StepEnv) -> str:
    """The step ran out of time: stop what it started; the step's FailureMessage."""
    seconds = env.step.timeout_seconds or DEFAULT_TIMEOUTS.get(env.step.action)
    message = f"Step timed out after {seconds} seconds."
    if env.step.action == runbook.WAIT:
        last = env.state.get("last_values")
        message = (
            f"Step timed out while it was waiting for {env.inputs.get('PropertySelector')} to be one of "
            f"{_strings(env.inputs.get('DesiredValues'))}; the last values were {last if last is not None else []}."
        )
    elif env.step.action == runbook.RUN_COMMAND and env.state.get("command_id"):
        cancel(env)
        message = f"Step timed out while polling command {env.state['command_id']}; the command was cancelled."
    return message


def cancel(env: StepEnv) -> None:
    """The execution is being stopped: cancel the command a runCommand step sent."""
    command_id = env.state.get("command_id")
    if env.step.action == runbook.RUN_COMMAND and command_id and not env.state.get("command_done"):
        with contextlib.suppress(ApiError):  # it finished meanwhile
            env.call("ssm", "CancelCommand", {"CommandId": command_id})


# -- aws:executeAwsApi, aws:waitForAwsResourceProperty, aws:assertAwsResourceProperty ------------------

_CONTROL_INPUTS = frozenset({"Service", "Api", "PropertySelector", "DesiredValues"})


def _api_call(env: StepEnv) -> dict[str, Any]:
    service, api = env.inputs.get("Service"), env.inputs.get("Api")
    if not isinstance(service, str) or not isinstance(api, str):
        raise ApiError("Service and Api must be strings.")
    params = {k: v for k, v in env.inputs.items() if k not in _CONTROL_INPUTS}
    response: dict[str, Any] = as_json(env.call(service, api, params))
    return response


def _failed_call(error: ApiError) -> Fail:
    details = {"ExceptionMessage": [error.args[0]]}
    if error.code:
        details["ErrorCode"] = [error.code]
    return Fail(str(error.args[0]), details=details)


def _execute_api(env: StepEnv) -> Outcome:
    try:
        response = _api_call(env)
    except ApiError as error:
        return _failed_call(error)
    outputs: dict[str, Any] = {}
    for spec in env.step.outputs:
        try:
            selection = jsonpath.select(response, spec.selector)
        except jsonpath.JsonPathError as exc:
            return Fail(f"Output {spec.name}: {exc}", stage="Output", kind="Verification")
        if not selection.found:
            continue  # a definite path that selects nothing: the output is not set
        try:
            outputs[spec.name] = convert_output(selection.value, spec)
        except ValueError as exc:
            return Fail(str(exc), stage="Output", kind="Verification")
    return Done(outputs)


def _selected_values(env: StepEnv) -> tuple[list[str], list[str]]:
    """(selected values, desired values) as text, for the wait and assert actions."""
    response = _api_call(env)
    selector = str(env.inputs.get("PropertySelector"))
    try:
        selection = jsonpath.select(response, selector)
    except jsonpath.JsonPathError as exc:
        raise ApiError(f"PropertySelector: {exc}") from None
    values = [runbook.text(v) for v in selection.values]
    return values, _strings(env.inputs.get("DesiredValues"))


def _strings(values: Any) -> list[str]:
    return [runbook.text(v) for v in values] if isinstance(values, list) else [runbook.text(values)]


def _wait_for_property(env: StepEnv) -> Outcome:
    try:
        values, desired = _selected_values(env)
    except ApiError as error:
        return _failed_call(error)
    env.state["last_values"] = values
    if values and all(v in desired for v in values):
        return Done()
    return Wait(env.now() + timedelta(seconds=POLL_SECONDS))


def _assert_property(env: StepEnv) -> Outcome:
    try:
        values, desired = _selected_values(env)
    except ApiError as error:
        return _failed_call(error)
    if values and all(v in desired for v in values):
        return Done()
    return Fail(
        f"Step fails when it is verifying {env.inputs.get('PropertySelector')}: the values {values} are not all "
        f"among the desired values {desired}.",
        stage="Verification",
        kind="Verification",
        details={"ActualValues": values or ["(none)"], "DesiredValues": desired or ["(none)"]},
    )


# -- aws:runCommand ----------------------------------------------------------------------------


def _run_command(env: StepEnv) -> Outcome:
    if env.state.get("phase") == "send":
        try:
            sent = env.call("ssm", "SendCommand", dict(env.inputs))
        except ApiError as error:
            return _failed_call(error)
        command = sent["Command"]
        env.state.update(phase="poll", command_id=command["CommandId"], instances=list(command.get("InstanceIds", [])))
        return Wait(env.now() + timedelta(seconds=POLL_SECONDS))
    command_id = str(env.state["command_id"])
    try:
        listed = env.call("ssm", "ListCommands", {"CommandId": command_id})["Commands"]
    except ApiError as error:
        return _failed_call(error)
    status = str(listed[0]["Status"]) if listed else "Pending"
    if status in COMMAND_RUNNING:
        return Wait(env.now() + timedelta(seconds=POLL_SECONDS))
    env.state["command_done"] = True
    outputs: dict[str, Any] = {"CommandId": command_id, "Status": status}
    instances = env.state.get("instances") or []
    code = None
    if len(instances) == 1 and "Targets" not in env.inputs:
        # One instance: its response code and output (AWS gives neither for several instances or tag targets).
        try:
            invocation = env.call("ssm", "GetCommandInvocation", {"CommandId": command_id, "InstanceId": instances[0]})
        except ApiError:
            invocation = {}
        if invocation:
            code = str(invocation.get("ResponseCode", -1))
            outputs["ResponseCode"] = code
            outputs["Output"] = str(invocation.get("StandardOutputContent", ""))[:OUTPUT_LIMIT]
    if status == "Success":
        return Done(outputs, response=status, response_code=code)
    result = ", ".join(f"{key}=[{outputs[key]}]" for key in ("Status", "ResponseCode", "Output") if key in outputs)
    return Fail(
        f"Step fails when it is polling the command status. Command {command_id} returns unexpected invocation "
        f"result: {{{result}}}. Please refer to Automation Service Troubleshooting Guide for more diagnosis details.",
        details={"CommandId": [command_id], "CommandStatus": [status]},
        response_code=code,
    )


# -- aws:branch, aws:sleep ---------------------------------------------------------------------


def _branch(env: StepEnv) -> Outcome:
    choices = env.inputs.get("Choices") or []
    try:
        for choice in choices:
            if _holds({k: v for k, v in choice.items() if k != "NextStep"}):
                return Done(next_step=str(choice["NextStep"]), response=f"Choice: {choice['NextStep']}")
    except (TypeError, ValueError) as exc:
        return Fail(f"Step {env.step.name} could not evaluate its choices: {exc}", stage="Invocation", kind="Branch")
    default = env.inputs.get("Default")
    return Done(next_step=str(default) if default else None, response="Default" if default else "No choice matched")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{value!r} is not a boolean")


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "StringEquals": lambda var, ref: runbook.text(var) == runbook.text(ref),
    "EqualsIgnoreCase": lambda var, ref: runbook.text(var).lower() == runbook.text(ref).lower(),
    "StartsWith": lambda var, ref: runbook.text(var).startswith(runbook.text(ref)),
    "EndsWith": lambda var, ref: runbook.text(var).endswith(runbook.text(ref)),
    "Contains": lambda var, ref: (
        (runbook.text(ref) in [runbook.text(v) for v in var])
        if isinstance(var, list)
        else runbook.text(ref) in runbook.text(var)
    ),
    "NumericEquals": lambda var, ref: _number(var) == _number(ref),
    "NumericGreater": lambda var, ref: _number(var) > _number(ref),
    "NumericLesser": lambda var, ref: _number(var) < _number(ref),
    "NumericGreaterOrEquals": lambda var, ref: _number(var) >= _number(ref),
    "NumericLesserOrEquals": lambda var, ref: _number(var) <= _number(ref),
    "BooleanEquals": lambda var, ref: _boolean(var) == _boolean(ref),
}


def _holds(condition: Mapping[str, Any]) -> bool:
    if "And" in condition:
        return all(_holds(part) for part in condition["And"])
    if "Or" in condition:
        return any(_holds(part) for part in condition["Or"])
    if "Not" in condition:
        inner = condition["Not"]
        return not _holds(inner[0] if isinstance(inner, list) else inner)
    variable = condition["Variable"]
    operator = next(key for key in condition if key in _OPERATORS)
    return _OPERATORS[operator](variable, condition[operator])


def _sleep(env: StepEnv) -> Outcome:
    now = env.now()
    try:
        if "Duration" in env.inputs:
            duration = runbook.parse_duration(str(env.inputs["Duration"]))
            until = now + duration
        else:
            until = max(now, runbook.parse_timestamp(str(env.inputs["Timestamp"])))
            duration = until - now
    except ValueError as exc:
        return Fail(f"Step {env.step.name}: {exc}", stage="Input", kind="Validation")
    if duration > runbook.MAX_SLEEP:
        return Fail(f"Step {env.step.name}: aws:sleep lasts at most 7 days.", stage="Input", kind="Validation")
    return Wait(until)


# -- responses and outputs -----------------------------------------------------------------------


def as_json(value: Any) -> Any:
    """A botocore response as the JSON Automation selects from: timestamps in ISO 8601, blobs base64."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, StreamingBody):
        raise ApiError("Streaming API operations (such as s3:GetObject) are not supported by aws:executeAwsApi.")
    return value


def convert_output(value: Any, spec: OutputSpec) -> Any:
    """A selected value as its output Type, with the conversions AWS documents; ValueError when impossible."""
    kind = spec.type
    if kind in ("String", "Integer", "Boolean", "StringMap") and isinstance(value, list):
        if len(value) != 1:
            raise ValueError(f"Output {spec.name}: {len(value)} values were selected; a {kind} takes one.")
        value = value[0]
    if kind == "String":
        if isinstance(value, (list, dict)):
            raise ValueError(f"Output {spec.name}: the selected value is not a String.")
        return runbook.text(value)
    if kind == "Integer":
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
            raise ValueError(f"Output {spec.name}: {value!r} cannot be converted to an Integer.")
        return int(value)
    if kind == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"Output {spec.name}: {value!r} cannot be converted to a Boolean.")
    if kind == "StringList":
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, (list, dict)) for item in items):
            raise ValueError(f"Output {spec.name}: the selected values are not all strings.")
        return [runbook.text(item) for item in items]
    if kind == "MapList":
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, dict) for item in items):
            raise ValueError(f"Output {spec.name}: the selected values are not all maps.")
        return list(items)
    if not isinstance(value, dict):  # StringMap
        raise ValueError(f"Output {spec.name}: the selected value is not a map.")
    return value


def output_strings(value: Any) -> list[str]:
    """An output as StepExecution.Outputs lists it: strings (maps as JSON)."""
    if isinstance(value, list):
        return [json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else runbook.text(v) for v in value]
    if isinstance(value, dict):
        return [json.dumps(value, separators=(",", ":"))]
    return [runbook.text(value)]


def call_error(exc: Exception) -> ApiError:
    """What botocore raised for a step's call, as the step reports it."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return ApiError(str(exc), code)
    if isinstance(exc, BotoCoreError):
        return ApiError(str(exc), type(exc).__name__)
    return ApiError(str(exc))
