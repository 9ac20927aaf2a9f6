"""CloudWatch alarms: DescribeAlarms and SetAlarmState as AWS answers them, and the scenario's alarms.

moto 5.2.5 keeps metric and composite alarms (PutMetricAlarm, PutCompositeAlarm, DeleteAlarms stay
moto's), but its DescribeAlarms applies only the first of ActionPrefix, AlarmNamePrefix, AlarmNames and
StateValue it is given, ignores AlarmTypes (composite alarms come back when only metric alarms were
asked for, and the reverse), ChildrenOfAlarmName and ParentsOfAlarmName, accepts AlarmNames together with
AlarmNamePrefix, never pages (MaxRecords and NextToken are ignored) and lists alarms in creation order.
Its SetAlarmState stamps the wall clock. Here, over moto's alarms:

- DescribeAlarms: every filter given applies (AND); AlarmNames and AlarmNamePrefix together, or
  ChildrenOfAlarmName / ParentsOfAlarmName with anything but MaxRecords and NextToken, is
  InvalidParameterCombination; AlarmTypes MetricAlarm (the default), CompositeAlarm, LogAlarm; alarms in
  name order, MaxRecords (1-100, default 50) per page, NextToken (InvalidNextToken when it is not one of
  ours).
- SetAlarmState: ResourceNotFound (404) for an unknown alarm, InvalidFormat when StateReasonData is not
  JSON; the state is stamped with the simulated clock (StateUpdatedTimestamp, and StateTransitionedTimestamp
  when the value changes).
- The scenario's `alarms` are created at start-up (``seed``). One with ``fires_after_installs: N`` watches
  its group's (or tagged) instances: once N of them have completed an AWS-RunPatchBaseline (or
  ...WithHooks) Install, successful or failed, it goes to ALARM, stamped with the simulated time the Nth
  install completed. Evaluated lazily, on DescribeAlarms and SetAlarmState of its account and region; it
  fires once (a later SetAlarmState is kept). Replacing the alarm (PutMetricAlarm of the same name) or
  deleting it ends that.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends
from moto.core.serialize import AttributePickerContext, JSONSerializer, XFormedAttributePicker
from moto.core.utils import get_service_model

from include.sandbox import commands
from include.sandbox.api import Handler, RequestContext
from include.sandbox.protocol import AwsApiError
from include.sandbox.scenario import AlarmSpec, Scenario
from include.sandbox.world import ManagedInstance, World

DEFAULT_PAGE = 50
NAMESPACE = "PatchCycle/Sandbox"
METRIC_NAME = "CompletedPatchInstalls"
_SEEDED = "alarms.seeded"  # World.extra: (account, region, name) -> (AlarmSpec, moto's Alarm object)
_FIRED = "alarms.fired"  # World.extra: set of (account, region, name) whose fires_after_installs has fired
_LISTS = {"MetricAlarm": "MetricAlarms", "CompositeAlarm": "CompositeAlarms", "LogAlarm": "LogAlarms"}
# The alarms an AlarmRule references: ALARM(name), OK("name"), INSUFFICIENT_DATA(arn) ...
_RULE_REFERENCE = re.compile(r"\b(?:ALARM|OK|INSUFFICIENT_DATA)\(\s*\"?([^\")]+?)\"?\s*\)")

MOTO_WRONG: list[str] = ["DescribeAlarms", "SetAlarmState"]
MOTO_MISSING: list[str] = ["PutCompositeAlarm"]


# -- the scenario's alarms ---------------------------------------------------------------------------


def placements(scenario: Scenario, spec: AlarmSpec) -> list[tuple[str, str]]:
    """(account, region) pairs an alarm of the scenario lives in."""
    home = next(((a.id, r.name) for a, r, g in scenario.groups() if g.name == spec.group), None)
    account_id = spec.account or (home[0] if home else scenario.accounts[0].id)
    account = next(a for a in scenario.accounts if a.id == account_id)
    if spec.region:
        return [(account_id, spec.region)]
    return [(account_id, home[1])] if home else [(account_id, region.name) for region in account.regions]


def _watched(spec: AlarmSpec) -> str:
    parts = [f"group {spec.group}"] if spec.group else []
    parts += [f"tag {key}={value}" for key, value in sorted(spec.tags.items())]
    return " and ".join(parts)


def seed(world: World) -> None:
    """Create the scenario's alarms in moto, stamped with the clock's start, in their initial state."""
    seeded: dict[tuple[str, str, str], tuple[AlarmSpec, Any]] = world.extra.setdefault(_SEEDED, {})
    start = world.clock.start
    for spec in world.scenario.alarms:
        dimensions = [{"Name": "InstanceGroup", "Value": spec.group}] if spec.group else []
        dimensions += [{"Name": f"tag:{key}", "Value": value} for key, value in sorted(spec.tags.items())]
        description = spec.description or (
            f"Sandbox scenario alarm: ALARM once {spec.fires_after_installs} instances of {_watched(spec)} completed "
            "an AWS-RunPatchBaseline Install."
            if spec.fires_after_installs
            else "Sandbox scenario alarm."
        )
        for account_id, region in placements(world.scenario, spec):
            alarm: Any = cloudwatch_backends[account_id][region].put_metric_alarm(
                name=spec.name,
                namespace=NAMESPACE,
                metric_name=METRIC_NAME,
                comparison_operator="GreaterThanOrEqualToThreshold",
                evaluation_periods=1,
                period=60,
                threshold=float(spec.fires_after_installs or 1),
                statistic="Maximum",
                description=description,
                dimensions=dimensions,
                alarm_actions=[],
                treat_missing_data="notBreaching",
            )
            alarm.configuration_updated_timestamp = start
            alarm.state_value = spec.state
            if spec.state != "OK":
                alarm.state_reason = f"Sandbox scenario: the alarm starts in {spec.state}."
            alarm.state_updated_timestamp = alarm.state_transitioned_timestamp = start
            seeded[(account_id, region, spec.name)] = (spec, alarm)


def completed_installs(world: World, account_id: str, region: str) -> dict[str, datetime]:
    """Instance id -> when it first completed an AWS-RunPatchBaseline Install (Success or Failed) in the region.

    Read from Run Command's invocations: an invocation that timed out, was cancelled or never reached the
    instance did not complete.
    """
    first: dict[str, datetime] = {}
    for command in world.commands(account_id, region).commands():
        if command.document.kind != "patch" or command.operation != "Install":
            continue
        for invocation in command.invocations:
            if invocation.state in (commands.SUCCESS, commands.FAILED) and invocation.end is not None:
                known = first.get(invocation.instance_id)
                first[invocation.instance_id] = min(known, invocation.end) if known else invocation.end
    return first


def _matches(world: World, spec: AlarmSpec, instance: ManagedInstance | None) -> bool:
    """Whether a (still existing) instance is one the alarm watches: its group, and its tags."""
    if instance is None or (spec.group is not None and instance.group != spec.group):
        return False
    tags = world.tags(instance.account_id, instance.region, instance.instance_id) if spec.tags else {}
    return all(tags.get(key) == value for key, value in spec.tags.items())


def evaluate(world: World, account_id: str, region: str) -> None:
    """Fire the region's scenario alarms whose fires_after_installs has been reached (lazily, idempotent)."""
    seeded: dict[tuple[str, str, str], tuple[AlarmSpec, Any]] = world.extra.get(_SEEDED, {})
    fired: set[tuple[str, str, str]] = world.extra.setdefault(_FIRED, set())
    pending = [
        (key, spec, alarm)
        for key, (spec, alarm) in seeded.items()
        if key[:2] == (account_id, region) and spec.fires_after_installs and key not in fired
    ]
    if not pending:
        return
    backend = cloudwatch_backends[account_id][region]
    completions = completed_installs(world, account_id, region)
    known = world.instances(account_id, region)
    for key, spec, alarm in pending:
        if not _is_current(backend, spec.name, alarm):
            fired.add(key)  # deleted or replaced through the API: no longer the scenario's alarm
            continue
        times = sorted(at for instance_id, at in completions.items() if _matches(world, spec, known.get(instance_id)))
        threshold = spec.fires_after_installs or 1
        if len(times) < threshold:
            continue
        fired.add(key)
        if alarm.state_value != "ALARM":
            _fire(alarm, spec, threshold, times[threshold - 1])


def _is_current(backend: Any, name: str, alarm: Any) -> bool:
    """Whether the region's alarm of that name is still the object the scenario created."""
    return backend.alarms.get(name) is alarm


def _fire(alarm: Any, spec: AlarmSpec, count: int, at: datetime) -> None:
    stamp = at.astimezone(UTC)
    period_start = stamp.replace(second=0, microsecond=0)
    value = float(count)
    reason = (
        f"Threshold Crossed: 1 datapoint [{value} ({period_start:%d/%m/%y %H:%M:%S})] was greater than or equal to "
        f"the threshold ({value}): {count} instance{'s' if count != 1 else ''} of {_watched(spec)} completed an "
        "AWS-RunPatchBaseline Install."
    )
    data = {
        "version": "1.0",
        "queryDate": _reason_time(stamp),
        "startDate": _reason_time(period_start),
        "statistic": "Maximum",
        "period": 60,
        "recentDatapoints": [value],
        "threshold": value,
        "evaluatedDatapoints": [{"timestamp": _reason_time(period_start), "sampleCount": 1.0, "value": value}],
    }
    alarm.update_state(reason, json.dumps(data), "ALARM")
    alarm.state_updated_timestamp = alarm.state_transitioned_timestamp = stamp


def _reason_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


# -- DescribeAlarms ----------------------------------------------------------------------------------


def _kind(alarm: Any) -> str:
    return "CompositeAlarm" if getattr(alarm, "rule", None) is not None else "MetricAlarm"


def _references(alarm: Any) -> set[str]:
    """The alarm names a composite alarm's rule references (ARNs reduced to names)."""
    return {ref.strip().rsplit(":alarm:", 1)[-1] for ref in _RULE_REFERENCE.findall(alarm.rule or "")}


def _combination(message: str) -> AwsApiError:
    return AwsApiError("InvalidParameterCombination", message)


def _check_combinations(params: dict[str, Any]) -> None:
    if params.get("AlarmNames") and params.get("AlarmNamePrefix"):
        raise _combination("AlarmNamePrefix and AlarmNames cannot be specified together.")
    for family in ("ChildrenOfAlarmName", "ParentsOfAlarmName"):
        if family in params:
            others = sorted(set(params) - {family, "MaxRecords", "NextToken"})
            if others:
                raise _combination(f"If {family} is specified, only MaxRecords and NextToken can be specified with it.")


def _selected(alarms: Iterable[Any], params: dict[str, Any]) -> list[Any]:
    names = set(params.get("AlarmNames") or ())
    prefix = params.get("AlarmNamePrefix")
    state = params.get("StateValue")
    action = params.get("ActionPrefix")
    types = set(params.get("AlarmTypes") or ["MetricAlarm"])
    by_name = {alarm.name: alarm for alarm in alarms}
    if "ChildrenOfAlarmName" in params:
        parent = by_name.get(params["ChildrenOfAlarmName"])
        wanted = _references(parent) if parent is not None and _kind(parent) == "CompositeAlarm" else set()
        return [by_name[name] for name in sorted(wanted) if name in by_name]
    if "ParentsOfAlarmName" in params:
        child = params["ParentsOfAlarmName"]
        return [a for a in by_name.values() if _kind(a) == "CompositeAlarm" and child in _references(a)]
    chosen = []
    for alarm in by_name.values():
        if _kind(alarm) not in types or (names and alarm.name not in names):
            continue
        if (prefix and not alarm.name.startswith(prefix)) or (state and alarm.state_value != state):
            continue
        actions = [*alarm.alarm_actions, *alarm.ok_actions, *alarm.insufficient_data_actions]
        if action and not any(arn.startswith(action) for arn in actions):
            continue
        chosen.append(alarm)
    return chosen


def _token(name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": name}).encode()).decode()


def _after(token: str) -> str:
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise AwsApiError("InvalidNextToken", "The next token specified is invalid.") from exc
    if not isinstance(after, str):
        raise AwsApiError("InvalidNextToken", "The next token specified is invalid.")
    return after


class _AlarmPicker(XFormedAttributePicker):
    """moto's attribute picker, plus the composite alarm's rule (moto keeps AlarmRule as `rule`)."""

    def __call__(self, context: AttributePickerContext) -> Any:
        if context.key == "AlarmRule":
            return getattr(context.obj, "rule", None)
        return super().__call__(context)


@functools.cache
def _describe_alarms_model() -> Any:
    return get_service_model("cloudwatch").operation_model("DescribeAlarms")  # moto's copy of botocore's model


def _render(alarms: dict[str, list[Any]]) -> dict[str, Any]:
    """The alarms as DescribeAlarms members, serialised by moto's serializer from its own Alarm objects."""
    serializer = JSONSerializer(operation_model=_describe_alarms_model(), value_picker=_AlarmPicker())
    rendered: dict[str, Any] = json.loads(serializer.serialize(alarms)["body"] or "{}")
    for alarm in [*rendered.get("MetricAlarms", ()), *rendered.get("CompositeAlarms", ())]:
        if alarm.get("StateReasonData") in ("", "{}"):  # moto's placeholder: AWS has none until a state change
            alarm.pop("StateReasonData")
        if alarm.get("Metrics") == []:  # only a metric-math alarm has Metrics
            alarm.pop("Metrics")
    return rendered


def describe_alarms(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _check_combinations(params)
    evaluate(world, ctx.account_id, ctx.region)
    backend = cloudwatch_backends[ctx.account_id][ctx.region]
    chosen = sorted(_selected(list(backend.alarms.values()), params), key=lambda alarm: str(alarm.name))
    if params.get("NextToken"):
        after = _after(params["NextToken"])
        chosen = [alarm for alarm in chosen if alarm.name > after]
    size = params.get("MaxRecords") or DEFAULT_PAGE
    page, more = chosen[:size], len(chosen) > size
    lists: dict[str, list[Any]] = {"MetricAlarms": [], "CompositeAlarms": []}
    if "LogAlarm" in (params.get("AlarmTypes") or ()):
        lists["LogAlarms"] = []
    for alarm in page:
        lists[_LISTS[_kind(alarm)]].append(alarm)
    result = _render(lists)
    for name in lists:
        result.setdefault(name, [])
    if more:
        result["NextToken"] = _token(page[-1].name)
    return result


# -- PutCompositeAlarm -------------------------------------------------------------------------------


def put_composite_alarm(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Create or replace a composite alarm in moto's store (moto 5.2.5 has no PutCompositeAlarm).

    Its AlarmRule is kept and answered (DescribeAlarms, ChildrenOfAlarmName / ParentsOfAlarmName) but not
    evaluated: the alarm stays in its state (INSUFFICIENT_DATA at creation) until SetAlarmState changes it.
    """
    backend = cloudwatch_backends[ctx.account_id][ctx.region]
    existing: Any = backend.alarms.get(params["AlarmName"])
    alarm: Any = backend.put_metric_alarm(
        name=params["AlarmName"],
        namespace="",
        metric_name="",
        comparison_operator="",
        evaluation_periods=0,
        period=0,
        threshold=0.0,
        statistic="",
        description=params.get("AlarmDescription", ""),
        dimensions=[],
        alarm_actions=list(params.get("AlarmActions", ())),
        ok_actions=list(params.get("OKActions", ())),
        insufficient_data_actions=list(params.get("InsufficientDataActions", ())),
        actions_enabled=params.get("ActionsEnabled", True),
        rule=params["AlarmRule"],
        tags=params.get("Tags"),
    )
    now = world.now()
    alarm.configuration_updated_timestamp = now
    if existing is not None and existing.rule is not None:  # an update keeps the state
        alarm.state_value, alarm.state_reason = existing.state_value, existing.state_reason
        alarm.state_reason_data = existing.state_reason_data
        alarm.state_updated_timestamp = existing.state_updated_timestamp
        alarm.state_transitioned_timestamp = getattr(existing, "state_transitioned_timestamp", now)
    else:
        alarm.state_value, alarm.state_reason = "INSUFFICIENT_DATA", "Unchecked: Initial alarm creation"
        alarm.state_updated_timestamp = alarm.state_transitioned_timestamp = now
    for member, attribute in (
        ("ActionsSuppressor", "actions_suppressor"),
        ("ActionsSuppressorWaitPeriod", "actions_suppressor_wait_period"),
        ("ActionsSuppressorExtensionPeriod", "actions_suppressor_extension_period"),
    ):
        setattr(alarm, attribute, params.get(member))
    return {}


# -- SetAlarmState -----------------------------------------------------------------------------------


def set_alarm_state(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    evaluate(world, ctx.account_id, ctx.region)  # a firing due before now happened before this change
    alarm: Any = cloudwatch_backends[ctx.account_id][ctx.region].alarms.get(params["AlarmName"])
    if alarm is None:
        raise AwsApiError("ResourceNotFound", f"Alarm {params['AlarmName']} not found.", 404)
    data = params.get("StateReasonData")
    if data is not None:
        try:
            json.loads(data)
        except ValueError as exc:
            raise AwsApiError("InvalidFormat", "StateReasonData is not valid JSON.") from exc
    changed = alarm.state_value != params["StateValue"]
    alarm.update_state(params["StateReason"], data, params["StateValue"])
    now = world.now()
    alarm.state_updated_timestamp = now
    if changed or getattr(alarm, "state_transitioned_timestamp", None) is None:
        alarm.state_transitioned_timestamp = now
    return {}


HANDLERS: dict[tuple[str, str], Handler] = {
    ("cloudwatch", "DescribeAlarms"): describe_alarms,
    ("cloudwatch", "SetAlarmState"): set_alarm_state,
    ("cloudwatch", "PutCompositeAlarm"): put_composite_alarm,
}
