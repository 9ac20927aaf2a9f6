"""SSM Run Command and DescribeInstanceInformation as the sandbox serves them (simulation in commands.py).

Each handler returns the response members of botocore's ssm output shape (python datetimes for
timestamps). What AWS does that a client could trip over is reproduced: right after SendCommand
the invocations are not visible yet (ListCommandInvocations answers an empty list and
GetCommandInvocation InvocationDoesNotExist until the scenario's ``delivery_seconds`` have passed);
a SendCommand by Targets answers TargetCount 0, its targets being resolved afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.sandbox import commands
from include.sandbox.api import Handler, RequestContext
from include.sandbox.commands import Command, CommandStore, Invocation, State
from include.sandbox.paging import paginate
from include.sandbox.protocol import AwsApiError

if TYPE_CHECKING:
    from include.sandbox.world import ManagedInstance, World

# Which of these operations moto 5.2.5 answers with 500 NotImplemented, and which it answers wrongly.
MOTO_MISSING: list[str] = ["ListCommandInvocations", "CancelCommand", "DescribeInstanceInformation"]
MOTO_WRONG: list[str] = [
    "SendCommand",  # InstanceIds fan out to every instance of the region; any document; Success at once
    "ListCommands",  # Success and CompletedCount == TargetCount at once; ErrorCount/DeliveryTimedOutCount always 0
    "GetCommandInvocation",  # always Success, plugin aws:runShellScript, a fixed 5-minute run
]

# The newest SSM Agent the sandbox knows (the scenario schema's default agent_version): IsLatestVersion.
LATEST_AGENT_VERSION = "3.3.1142.0"

# The agent's banner between a plugin's stdout and stderr in CommandPlugin.Output.
_ERROR_BANNER = "\n----------ERROR-------\n"

_COMMAND_STATUS_VALUES = frozenset(
    {"Pending", "InProgress", "Success", "Cancelled", "Failed", "TimedOut", "AccessDenied", "DeliveryTimedOut"}
    | {"ExecutionTimedOut", "Incomplete", "NoInstancesInTag", "LimitExceeded"}
)
_INVOCATION_STATUS_VALUES = frozenset(
    {"Pending", "InProgress", "Delayed", "Success", "Cancelled", "Failed", "TimedOut", "AccessDenied"}
    | {"DeliveryTimedOut", "ExecutionTimedOut", "Undeliverable", "InvalidPlatform", "Terminated"}
)


def _store(world: World, ctx: RequestContext) -> CommandStore:
    store = world.commands(ctx.account_id, ctx.region)
    store.advance()  # the server does this too; handlers called directly (tests) must see the same state
    return store


# -- SendCommand / CancelCommand ---------------------------------------------------------------


def send_command(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(world, ctx)
    command = store.send(params)
    return {"Command": render_command(store, command, region=ctx.region, just_sent=True)}


def cancel_command(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _store(world, ctx).cancel(params["CommandId"], list(params.get("InstanceIds") or []))
    return {}


def render_command(store: CommandStore, command: Command, *, region: str, just_sent: bool = False) -> dict[str, Any]:
    """A Command structure: the request echoed back, plus status and counts as of now."""
    request = command.request
    state = store.command_state(command)
    counts = store.counts(command)
    out: dict[str, Any] = {
        "CommandId": command.command_id,
        "DocumentName": command.document.name,
        "DocumentVersion": request.get("DocumentVersion", "$DEFAULT"),
        "Comment": request.get("Comment", ""),
        "ExpiresAfter": command.expires_after,
        "Parameters": dict(request.get("Parameters") or {}),
        "InstanceIds": list(request.get("InstanceIds") or []),
        "Targets": list(request.get("Targets") or []),
        "RequestedDateTime": command.requested,
        "Status": state.status,
        "StatusDetails": state.details,
        "OutputS3Region": request.get("OutputS3Region") or region,
        "OutputS3BucketName": request.get("OutputS3BucketName", ""),
        "OutputS3KeyPrefix": request.get("OutputS3KeyPrefix", ""),
        "MaxConcurrency": request.get("MaxConcurrency", "50"),
        "MaxErrors": request.get("MaxErrors", "0"),
        # SendCommand by Targets answers 0: AWS resolves tag targets after it has replied.
        "TargetCount": 0 if just_sent and request.get("Targets") else counts.target,
        "CompletedCount": counts.completed,
        "ErrorCount": counts.error,
        "DeliveryTimedOutCount": counts.delivery_timed_out,
        "ServiceRole": request.get("ServiceRoleArn", ""),
        "CloudWatchOutputConfig": request.get("CloudWatchOutputConfig")
        or {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
        "TimeoutSeconds": command.timeout_seconds,
        "AlarmConfiguration": request.get("AlarmConfiguration") or {"IgnorePollAlarmFailure": False, "Alarms": []},
        "TriggeredAlarms": [],
    }
    if request.get("NotificationConfig"):
        out["NotificationConfig"] = request["NotificationConfig"]
    return out


# -- ListCommands ------------------------------------------------------------------------------


def list_commands(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(world, ctx)
    if params.get("CommandId"):
        command = store.get(params["CommandId"])
        if command is None:
            raise AwsApiError("InvalidCommandId", "Invalid command id.")
        chosen = [command]
    else:
        chosen = store.commands()
    instance_id = params.get("InstanceId")
    if instance_id:
        chosen = [c for c in chosen if _targets_instance(store, c, instance_id)]
    predicate = _command_filter(store, params.get("Filters") or [])
    chosen = [c for c in chosen if predicate(c)]
    page, token = paginate(chosen, params, 50)
    return {"Commands": [render_command(store, c, region=ctx.region) for c in page], **token}


def _targets_instance(store: CommandStore, command: Command, instance_id: str) -> bool:
    listed = instance_id in (command.request.get("InstanceIds") or [])
    return listed or (store.visible(command) and command.invocation(instance_id) is not None)


def _command_filter(store: CommandStore, filters: list[dict[str, str]]) -> Callable[[Command], bool]:
    checks: list[Callable[[Command], bool]] = []
    for spec in filters:
        key, value = spec["key"], spec["value"]
        if key in ("InvokedAfter", "InvokedBefore", "DocumentName"):
            checks.append(_common_filter(key, value))
        elif key == "Status":
            _check_value(key, value, _COMMAND_STATUS_VALUES)
            checks.append(_command_status_filter(store, value))
        elif key == "ExecutionStage":
            _check_value(key, value, frozenset({"Executing", "Complete"}))
            checks.append(_stage_filter(store, complete=value == "Complete"))
        else:
            raise AwsApiError("InvalidFilterKey", f"The filter key {key} isn't valid.")
    return lambda command: all(check(command) for check in checks)


def _command_status_filter(store: CommandStore, value: str) -> Callable[[Command], bool]:
    return lambda command: _status_matches(store.command_state(command), value)


def _stage_filter(store: CommandStore, *, complete: bool) -> Callable[[Command], bool]:
    return lambda command: store.command_state(command).terminal == complete


def _common_filter(key: str, value: str) -> Callable[[Command], bool]:
    """InvokedAfter / InvokedBefore (on RequestedDateTime) and DocumentName, shared by both List APIs."""
    if key == "DocumentName":
        return lambda c: c.document.name == value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise AwsApiError("InvalidFilterValue", f"The filter value {value} isn't a valid timestamp.") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if key == "InvokedAfter":
        return lambda c: c.requested >= moment
    return lambda c: c.requested <= moment


def _check_value(key: str, value: str, allowed: frozenset[str]) -> None:
    if value not in allowed:
        raise AwsApiError("InvalidFilterValue", f"The filter value {value} isn't valid for {key}.")


def _status_matches(state: State, value: str) -> bool:
    """A Status filter matches the Status ("TimedOut" covers both time-outs) or the detail ("DeliveryTimedOut")."""
    return value in (state.status, state.details.replace(" ", ""))


# -- ListCommandInvocations / GetCommandInvocation ---------------------------------------------


def list_command_invocations(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(world, ctx)
    if params.get("CommandId"):
        found = store.get(params["CommandId"])
        chosen = [found] if found is not None else []  # AWS answers an empty list, not an error
    else:
        chosen = store.commands()
    command_ok = _invocation_command_filter(params.get("Filters") or [])
    status_ok = _invocation_status_filter(store, params.get("Filters") or [])
    instance_id = params.get("InstanceId")
    rows = [
        (command, invocation)
        for command in chosen
        if store.visible(command) and command_ok(command)
        for invocation in command.invocations
        if (not instance_id or invocation.instance_id == instance_id) and status_ok(invocation)
    ]
    page, token = paginate(rows, params, 50)
    details = bool(params.get("Details"))
    return {"CommandInvocations": [render_invocation(store, c, i, details=details) for c, i in page], **token}


def _invocation_command_filter(filters: list[dict[str, str]]) -> Callable[[Command], bool]:
    checks: list[Callable[[Command], bool]] = []
    for spec in filters:
        key, value = spec["key"], spec["value"]
        if key in ("InvokedAfter", "InvokedBefore", "DocumentName"):
            checks.append(_common_filter(key, value))
        elif key != "Status":
            # ExecutionStage is a ListCommands filter only (botocore's CommandFilter documentation).
            raise AwsApiError("InvalidFilterKey", f"The filter key {key} isn't valid for ListCommandInvocations.")
    return lambda command: all(check(command) for check in checks)


def _invocation_status_filter(store: CommandStore, filters: list[dict[str, str]]) -> Callable[[Invocation], bool]:
    values = [spec["value"] for spec in filters if spec["key"] == "Status"]
    for value in values:
        _check_value("Status", value, _INVOCATION_STATUS_VALUES)
    return lambda inv: all(_status_matches(store.state(inv), value) for value in values)


def render_invocation(
    store: CommandStore, command: Command, invocation: Invocation, *, details: bool
) -> dict[str, Any]:
    state = store.state(invocation)
    request = command.request
    out: dict[str, Any] = {
        "CommandId": command.command_id,
        "InstanceId": invocation.instance_id,
        "InstanceName": invocation.instance_name,
        "Comment": request.get("Comment", ""),
        "DocumentName": command.document.name,
        "DocumentVersion": request.get("DocumentVersion", "$DEFAULT"),
        "RequestedDateTime": command.requested,
        "Status": state.status,
        "StatusDetails": state.details,
        "TraceOutput": "",
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        # Without Details AWS returns an empty plugin list.
        "CommandPlugins": [_render_plugin(step) for step in steps(store, command, invocation)] if details else [],
        "ServiceRole": request.get("ServiceRoleArn", ""),
        "CloudWatchOutputConfig": request.get("CloudWatchOutputConfig")
        or {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
    }
    if request.get("NotificationConfig"):
        out["NotificationConfig"] = request["NotificationConfig"]
    return out


@dataclass(frozen=True)
class StepView:
    """One step (plugin) of an invocation as the agent reports it."""

    name: str
    state: State
    response_code: int
    stdout: str
    stderr: str
    start: datetime | None
    end: datetime | None
    region: str

    @property
    def output(self) -> str:
        text = self.stdout + (_ERROR_BANNER + self.stderr if self.stderr else "")
        return text[: commands.PLUGIN_OUTPUT_LIMIT]


def steps(store: CommandStore, command: Command, invocation: Invocation) -> list[StepView]:
    """Every step of the document: the one for the instance's platform runs; the others are skipped."""
    return [_step(store, command, invocation, name, platform) for name, platform in command.document.steps]


def _step(store: CommandStore, command: Command, invocation: Invocation, name: str, platform: str | None) -> StepView:
    state = store.state(invocation)
    now = store.world.now()
    started = invocation.start if invocation.start is not None and invocation.start <= now else None
    ended = invocation.end if state.terminal and started is not None else None
    if platform is None or platform == invocation.platform_type:
        return StepView(
            name, state, invocation.response_code, invocation.stdout, invocation.stderr, started, ended, store.region
        )
    if started is None:
        return StepView(name, state, invocation.response_code, "", "", None, None, store.region)
    # The agent skips a step whose platform precondition fails, and reports it successful.
    skipped = (
        f"Step execution skipped due to unsatisfied preconditions: '\"StringEquals\": [platformType, {platform}]'."
    )
    return StepView(name, commands.SUCCESS, 0, f"{skipped} Step name: {name}", "", started, started, store.region)


def _render_plugin(step: StepView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Name": step.name,
        "Status": step.state.status,
        "StatusDetails": step.state.details,
        "ResponseCode": step.response_code,
        "Output": step.output,
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "OutputS3Region": step.region,
        "OutputS3BucketName": "",
        "OutputS3KeyPrefix": "",
    }
    if step.start is not None:
        out["ResponseStartDateTime"] = step.start
    if step.end is not None:
        out["ResponseFinishDateTime"] = step.end
    return out


def get_command_invocation(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(world, ctx)
    command = store.get(params["CommandId"])
    invocation = command.invocation(params["InstanceId"]) if command is not None else None
    if command is None or invocation is None or not store.visible(command):
        raise AwsApiError(
            "InvocationDoesNotExist",
            "The command ID and managed node ID you specified didn't match any invocations. "
            "Verify the command ID and the managed node ID and try again.",
        )
    step = _chosen_step(store, command, invocation, params.get("PluginName"))
    # Without PluginName the invocation's own status answers; a named step answers for itself.
    state = step.state if params.get("PluginName") else store.state(invocation)
    finished = state.terminal
    return {
        "CommandId": command.command_id,
        "InstanceId": invocation.instance_id,
        "Comment": command.request.get("Comment", ""),
        "DocumentName": command.document.name,
        "DocumentVersion": command.request.get("DocumentVersion", "$DEFAULT"),
        "PluginName": step.name,
        "ResponseCode": step.response_code,
        "ExecutionStartDateTime": _iso(step.start),
        "ExecutionElapsedTime": _elapsed(step.start, step.end or (None if finished else store.world.now())),
        "ExecutionEndDateTime": _iso(step.end),
        "Status": state.status,
        "StatusDetails": state.details,
        # "If the command hasn't finished running ... this string is empty."
        "StandardOutputContent": step.stdout[: commands.CONTENT_LIMIT] if finished else "",
        "StandardOutputUrl": "",
        "StandardErrorContent": step.stderr[: commands.CONTENT_LIMIT] if finished else "",
        "StandardErrorUrl": "",
        "CloudWatchOutputConfig": command.request.get("CloudWatchOutputConfig")
        or {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
    }


def _chosen_step(store: CommandStore, command: Command, invocation: Invocation, plugin: str | None) -> StepView:
    views = steps(store, command, invocation)
    if plugin is None:  # the step that runs on the instance's platform
        platforms = [platform for _, platform in command.document.steps]
        runs = [v for v, p in zip(views, platforms, strict=True) if p in (None, invocation.platform_type)]
        return runs[0] if runs else views[0]
    for view in views:
        if view.name == plugin:
            return view
    raise AwsApiError(
        "InvalidPluginName", f"The plugin name {plugin} isn't valid for document {command.document.name}."
    )


def _iso(moment: datetime | None) -> str:
    """GetCommandInvocation's StringDateTime: ISO 8601 with milliseconds, or empty before the plugin starts."""
    if moment is None:
        return ""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _elapsed(start: datetime | None, end: datetime | None) -> str:
    """An ISO 8601 duration such as PT5.041S, or empty before the plugin starts."""
    if start is None or end is None:
        return ""
    return f"PT{(end - start).total_seconds():.3f}S"


# -- DescribeInstanceInformation ---------------------------------------------------------------

_LEGACY_KEYS = frozenset(
    {"InstanceIds", "AgentVersion", "PingStatus", "PlatformTypes", "ActivationIds", "IamRole", "ResourceType"}
    | {"AssociationStatus"}
)
_ALLOWED_VALUES = {
    "PingStatus": frozenset({"Online", "ConnectionLost", "Inactive"}),
    "PlatformTypes": frozenset({"Windows", "Linux", "MacOS"}),
    "ResourceType": frozenset({"EC2Instance", "ManagedInstance"}),
    "AssociationStatus": frozenset({"Success", "Pending", "Failed"}),
}


def describe_instance_information(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    legacy = [(f["key"], list(f["valueSet"])) for f in params.get("InstanceInformationFilterList") or []]
    modern = [(f["Key"], list(f["Values"])) for f in params.get("Filters") or []]
    if legacy and modern:
        raise AwsApiError("InvalidFilterKey", "InstanceInformationFilterList and Filters can't be used together.")
    _check_filter_keys(legacy, modern)
    known = world.instances(ctx.account_id, ctx.region)
    stopped = commands.stopped_instances(world, ctx.account_id, ctx.region)
    _check_instance_ids(world, ctx, legacy + modern)
    predicates = [_instance_filter(world, key, values) for key, values in legacy + modern]
    # "This operation does not return information for nodes that are either Stopped or Terminated."
    rows = [
        inst
        for inst in known.values()
        if inst.registered and inst.instance_id not in stopped and all(p(inst) for p in predicates)
    ]
    page, token = paginate(rows, params, 10)  # "The default value is 10 items."
    now = world.now()
    return {"InstanceInformationList": [render_instance(inst, now) for inst in page], **token}


def _check_filter_keys(legacy: list[tuple[str, list[str]]], modern: list[tuple[str, list[str]]]) -> None:
    for key, _ in legacy:
        if key not in _LEGACY_KEYS:
            raise AwsApiError("InvalidFilterKey", f"The filter key {key} isn't valid.")
    tag_keys = [key for key, _ in modern if key == "tag-key" or key.startswith("tag:")]
    for key, _ in modern:
        if key not in _LEGACY_KEYS | {"SourceIds", "SourceTypes"} and key not in tag_keys:
            raise AwsApiError("InvalidFilterKey", f"The filter key {key} isn't valid.")
    if tag_keys and len(tag_keys) != len(modern):
        raise AwsApiError("InvalidFilterKey", "Tag filters can't be combined with other filter types.")
    for key, values in legacy + modern:
        allowed = _ALLOWED_VALUES.get(key)
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad:
            raise AwsApiError(
                "InvalidInstanceInformationFilterValue", f"The filter value {bad[0]} isn't valid for {key}."
            )


def _check_instance_ids(world: World, ctx: RequestContext, filters: list[tuple[str, list[str]]]) -> None:
    """AWS: "If you specify a node ID that isn't valid or a node that you don't own, you receive an error"."""
    wanted = {value for key, values in filters if key == "InstanceIds" for value in values}
    if not wanted:
        return
    unknown = sorted(wanted - world.ec2_states(ctx.account_id, ctx.region).keys())  # every instance moto holds
    if unknown:
        raise AwsApiError("InvalidInstanceId", f"Instance ids [{', '.join(unknown)}] are not valid.")


def _instance_filter(world: World, key: str, values: list[str]) -> Callable[[ManagedInstance], bool]:
    wanted = set(values)
    by_key: dict[str, Callable[[ManagedInstance], bool]] = {
        "InstanceIds": lambda inst: inst.instance_id in wanted,
        "SourceIds": lambda inst: inst.instance_id in wanted,
        "AgentVersion": lambda inst: inst.agent_version in wanted,
        "PingStatus": lambda inst: _ping_status(inst) in wanted,
        "PlatformTypes": lambda inst: inst.platform_type in wanted,
        "ResourceType": lambda inst: "EC2Instance" in wanted,
        "SourceTypes": lambda inst: "AWS::EC2::Instance" in wanted,
        # EC2 instances have no activation, Quick Setup role or association in the sandbox.
        "ActivationIds": lambda inst: False,
        "IamRole": lambda inst: False,
        "AssociationStatus": lambda inst: False,
    }
    if key in by_key:
        return by_key[key]
    if key == "tag-key":
        return lambda inst: bool(wanted & set(world.tags(inst.account_id, inst.region, inst.instance_id)))
    tag = key[len("tag:") :]
    return lambda inst: world.tags(inst.account_id, inst.region, inst.instance_id).get(tag) in wanted


def _ping_status(instance: ManagedInstance) -> str:
    return "Online" if instance.online else "ConnectionLost"


def render_instance(instance: ManagedInstance, now: datetime) -> dict[str, Any]:
    """An InstanceInformation entry for an EC2 managed node."""
    out: dict[str, Any] = {
        "InstanceId": instance.instance_id,
        "PingStatus": _ping_status(instance),
        # An online agent pings every few minutes; an offline one was last heard of when it registered.
        "LastPingDateTime": now if instance.online else instance.registration_date,
        "AgentVersion": instance.agent_version,
        "IsLatestVersion": instance.agent_version == LATEST_AGENT_VERSION,
        "PlatformType": instance.platform_type,
        "PlatformName": instance.platform_name,
        "PlatformVersion": instance.os_version,
        "ResourceType": "EC2Instance",
        "RegistrationDate": instance.registration_date,
        "SourceId": instance.instance_id,
        "SourceType": "AWS::EC2::Instance",
    }
    if instance.ip_address:
        out["IPAddress"] = instance.ip_address
    if instance.computer_name:
        out["ComputerName"] = instance.computer_name
    return out


HANDLERS: dict[tuple[str, str], Handler] = {
    ("ssm", "SendCommand"): send_command,
    ("ssm", "ListCommands"): list_commands,
    ("ssm", "ListCommandInvocations"): list_command_invocations,
    ("ssm", "GetCommandInvocation"): get_command_invocation,
    ("ssm", "CancelCommand"): cancel_command,
    ("ssm", "DescribeInstanceInformation"): describe_instance_information,
}
