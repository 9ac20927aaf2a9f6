"""EC2 Auto Scaling instance refresh in the sandbox, over simulated time, and the scenario's Auto Scaling groups.

moto 5.2.5 answers StartInstanceRefresh, DescribeInstanceRefreshes, CancelInstanceRefresh and
RollbackInstanceRefresh with a 500. Here, over moto's Auto Scaling groups, launch templates and instances (so
DescribeAutoScalingGroups, DescribeAutoScalingInstances and EC2's DescribeInstances show every replacement):

- ``StartInstanceRefresh`` (Strategy ``Rolling``): the desired configuration is a launch template (by id or name)
  and version; without one the group's own launch template is used. Preferences as AWS defaults them
  (MinHealthyPercentage 90, MaxHealthyPercentage 100, CheckpointDelay 3600 with CheckpointPercentages,
  SkipMatching and AutoRollback false, ScaleInProtectedInstances and StandbyInstances ``Wait``, BakeTime 0;
  InstanceWarmup defaults to the group's health check grace period) and checked as AWS checks them
  (ValidationError); InstanceRefreshInProgress while one is active. AutoRollback on a group whose launch
  template version takes its ImageId from a Systems Manager parameter (``resolve:ssm:...``) is
  IrreversibleInstanceRefresh (AWS cannot roll back onto an AMI alias; the fault's own description names the case).
- Progress: the instances to replace are the group's InService instances (all of them, or with SkipMatching those
  not launched from the desired launch template version). They are replaced in batches of
  ``max(1, floor(desired * MaxHealthy / 100) - ceil(desired * MinHealthy / 100))``, no batch going past the next
  checkpoint: each replacement terminates the old instance and launches a new one from the desired version (its
  ImageId, InstanceType and tags, the group's propagated tags, aws:autoscaling:groupName) through moto; a batch
  is done once its instances have warmed up (InstanceWarmup). PercentageComplete is the share of the instances to
  replace that are done, InstancesToUpdate how many are not. At each checkpoint it waits CheckpointDelay; after the
  last batch it is ``Baking`` for BakeTime, then ``Successful``, and the group uses the desired configuration.
- Alarms: while a refresh with an AlarmSpecification runs, an alarm in ALARM fails it, or with AutoRollback rolls it
  back: ``RollbackInProgress`` replaces the instances the refresh launched with instances of the group's own launch
  template version (same batches and warm-up), then ``RollbackSuccessful``; RollbackDetails report it (the
  *OnRollback values are those when the rollback started, as AWS documents them).
- Scenario knobs: a group's ``new_instances_unhealthy`` fails the refresh (or rolls it back) when its first batch's
  warm-up ends, without an alarm; ``rollback_fails`` ends a rollback ``RollbackFailed`` after its first batch.
  ``RollbackInstanceRefresh`` does the same on request (IrreversibleInstanceRefresh without a desired configuration,
  when the group uses ``$Latest`` / ``$Default`` or an SSM-parameter ImageId); ``CancelInstanceRefresh`` stops it
  (``Cancelling`` until the instances being launched have warmed up, unless WaitForTransitioningInstances is false,
  then ``Cancelled``).
- The scenario's groups (``auto_scaling_groups``): launch template ``<group>`` version 1 and the group on it, with
  ``desired`` InService instances managed by SSM with the group's patch state. An instance a refresh launches from
  the group's AMI gets that patch state too; one launched from another AMI is left to ``World._launched_later``.
  A group's ``alarm`` goes to ALARM when a refresh of it reaches ``at_percent`` complete and back to OK when that
  refresh ends.

Nothing runs in the background: ``settle`` applies every refresh's events due by now in time order before the
server serves a request. State lives in ``world.extra["autoscaling"]``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from moto.autoscaling.models import autoscaling_backends
from moto.cloudwatch.models import cloudwatch_backends
from moto.ec2.models import ec2_backends

from include.sandbox import alarms, fleet
from include.sandbox.api import Handler, RequestContext
from include.sandbox.protocol import AwsApiError

if TYPE_CHECKING:
    from include.sandbox.scenario import AutoScalingGroupSpec
    from include.sandbox.world import ManagedInstance, World

STATE_KEY = "autoscaling"
MOTO_MISSING: list[str] = [
    "StartInstanceRefresh",
    "DescribeInstanceRefreshes",
    "CancelInstanceRefresh",
    "RollbackInstanceRefresh",
]

PENDING, IN_PROGRESS, SUCCESSFUL, FAILED = "Pending", "InProgress", "Successful", "Failed"
CANCELLING, CANCELLED, BAKING = "Cancelling", "Cancelled", "Baking"
ROLLBACK_IN_PROGRESS, ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED = (
    "RollbackInProgress",
    "RollbackSuccessful",
    "RollbackFailed",
)
ACTIVE = frozenset({PENDING, IN_PROGRESS, CANCELLING, BAKING, ROLLBACK_IN_PROGRESS})
# Statuses RollbackInstanceRefresh accepts: a refresh still rolling forward.
REVERSIBLE = frozenset({PENDING, IN_PROGRESS, BAKING})

PENDING_SECONDS = 5  # a refresh is Pending this long before its first batch is launched
DEFAULT_MIN_HEALTHY, DEFAULT_MAX_HEALTHY, DEFAULT_CHECKPOINT_DELAY = 90, 100, 3600
DEFAULT_PAGE, MAX_PAGE = 50, 100
SYMBOLIC_VERSIONS = frozenset({"$latest", "$default"})
SSM_ALIAS_PREFIX = "resolve:ssm:"  # an ImageId that names a Systems Manager parameter instead of an AMI


# -- state -------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Instances launched together: the new instance ids, healthy (warmed up) at `ready`."""

    new_ids: list[str]
    ready: datetime


@dataclass
class Refresh:
    refresh_id: str
    account_id: str
    region: str
    group: str
    start: datetime
    preferences: dict[str, Any]  # as DescribeInstanceRefreshes reports them (defaults filled in)
    desired: dict[str, Any] | None  # the request's DesiredConfiguration, as given
    template_id: str  # what the refresh launches: this template's version ...
    version: int  # ... number
    original_template_id: str  # what a rollback launches: the group's launch template and version at the start
    original_version: int
    reversible: bool  # a desired configuration, and the group on a numbered version
    warmup: int
    to_replace: int  # how many instances the refresh replaces
    queue: list[str]  # instance ids still to replace, in order
    checkpoints: list[int]  # checkpoint percentages not reached yet
    status: str = PENDING
    status_reason: str | None = None
    end: datetime | None = None
    phase: str = "pending"  # pending, forward, checkpoint, bake, rollback, cancelling, done
    next_at: datetime | None = None
    inflight: Batch | None = None
    launched: list[str] = field(default_factory=list)  # every instance id the refresh launched, in order
    warm: set[str] = field(default_factory=set)  # those that warmed up and still count as updated
    rollback_reason: str | None = None
    rollback_start: datetime | None = None
    rollback_queue: list[str] = field(default_factory=list)
    alarm_fired: bool = False
    # PercentageComplete and InstancesToUpdate when the rollback started: RollbackDetails reports them (AWS documents
    # the *OnRollback values as those at the start), and InstancesToUpdate stays so.
    percentage_at_rollback: int = 0
    to_update_at_rollback: int = 0

    @property
    def percentage(self) -> int:
        if self.to_replace == 0:
            return 100 if self.status in (BAKING, SUCCESSFUL) else 0
        return math.floor(100 * len(self.warm) / self.to_replace)

    @property
    def instances_to_update(self) -> int:
        if self.rollback_start is not None:
            return self.to_update_at_rollback
        return max(0, self.to_replace - len(self.warm))


@dataclass
class _State:
    refreshes: list[Refresh] = field(default_factory=list)  # oldest first


def _state(world: World) -> _State:
    with world.lock:
        state: _State = world.extra.setdefault(STATE_KEY, _State())
    return state


# -- seeding the scenario's groups -------------------------------------------------------------------


def seed_group(world: World, account_id: str, region: str, spec: AutoScalingGroupSpec) -> list[ManagedInstance]:
    """Create the group's launch template (version 1) and the group in moto; SSM's view of its instances."""
    tags = dict(spec.tags)
    data = {
        "ImageId": spec.ami,
        "InstanceType": spec.instance_type,
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    }
    ec2_backends[account_id][region].create_launch_template(spec.name, "Sandbox scenario launch template", data, {})
    group_tags: list[Any] = [
        {"ResourceId": spec.name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v, "PropagateAtLaunch": True}
        for k, v in tags.items()
    ]
    group = autoscaling_backends[account_id][region].create_auto_scaling_group(
        name=spec.name,
        availability_zones=list(spec.availability_zones),
        desired_capacity=spec.desired,
        max_size=spec.max,
        min_size=spec.min,
        launch_config_name="",
        launch_template={"LaunchTemplateName": spec.name, "Version": "1"},
        vpc_zone_identifier=None,
        default_cooldown=None,
        health_check_period=None,
        health_check_type=None,
        load_balancers=[],
        target_group_arns=[],
        placement_group=None,
        termination_policies=[],
        tags=group_tags,
    )
    return [
        fleet.managed_instance(world, account_id, region, state.instance, spec.name, spec.patched_through)
        for state in group.instance_states
    ]


def _spec(world: World, account_id: str, region: str, name: str) -> AutoScalingGroupSpec | None:
    return next(
        (
            group
            for account, where, group in world.scenario.auto_scaling_groups()
            if account.id == account_id and where.name == region and group.name == name
        ),
        None,
    )


# -- moto's objects ----------------------------------------------------------------------------------


def _group(account_id: str, region: str, name: str) -> Any:
    group = autoscaling_backends[account_id][region].autoscaling_groups.get(name)
    if group is None:
        raise AwsApiError("ValidationError", f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
    return group


def _template(account_id: str, region: str, template_id: str | None, name: str | None) -> Any:
    backend = ec2_backends[account_id][region]
    if bool(template_id) == bool(name):
        raise AwsApiError(
            "ValidationError", "Valid requests must contain either launchTemplateId or LaunchTemplateName."
        )
    if template_id:
        template = backend.launch_templates.get(template_id)
        if template is None:
            raise AwsApiError(
                "ValidationError", f"The specified launch template, with template ID {template_id}, does not exist."
            )
        return template
    template_id = backend.launch_template_name_to_ids.get(name or "")
    if template_id is None:
        raise AwsApiError(
            "ValidationError", f"The specified launch template, with template name {name}, does not exist."
        )
    return backend.launch_templates[template_id]


def _version_number(template: Any, version: str) -> int:
    try:
        return int(template.get_version(version).number)
    except Exception as exc:  # moto's InvalidLaunchTemplateVersionNotFound
        raise AwsApiError(
            "ValidationError",
            f"The specified launch template version {version} does not exist for launch template {template.id}.",
        ) from exc


def _replace(world: World, refresh: Refresh, old_ids: list[str], template_id: str, version: int) -> list[str]:
    """Terminate `old_ids` (those still in the group) and launch as many from the template version: the new ids."""
    group = _group(refresh.account_id, refresh.region, refresh.group)
    ec2 = ec2_backends[refresh.account_id][refresh.region]
    leaving = [state for state in group.instance_states if state.instance.id in set(old_ids)]
    if not leaving:
        return []
    group.instance_states = [state for state in group.instance_states if state not in leaving]
    ec2.terminate_instances([state.instance.id for state in leaving])
    saved = (group.ec2_launch_template, group.launch_template_version)
    group.ec2_launch_template, group.launch_template_version = ec2.launch_templates[template_id], str(version)
    before = len(group.instance_states)
    try:
        group.replace_autoscaling_group_instances(len(leaving), group.get_propagated_tags())
    finally:
        group.ec2_launch_template, group.launch_template_version = saved
    launched = group.instance_states[before:]
    world.ec2_changed(refresh.account_id, refresh.region)
    spec = _spec(world, refresh.account_id, refresh.region, refresh.group)
    for state in launched:
        if spec is not None and state.instance.image_id == spec.ami:
            world.add_instance(
                fleet.managed_instance(
                    world, refresh.account_id, refresh.region, state.instance, spec.name, spec.patched_through
                )
            )
    return [state.instance.id for state in launched]


# -- progress ----------------------------------------------------------------------------------------


def settle(world: World, now: datetime | None = None) -> None:
    """Apply every refresh's events due by `now`, in time order; then let alarms in ALARM act on running ones."""
    state: _State | None = world.extra.get(STATE_KEY)
    if state is None:
        return
    with world.lock:
        now = now or world.now()
        while True:
            due = [r for r in state.refreshes if r.next_at is not None and r.next_at <= now]
            if not due:
                break
            refresh = min(due, key=lambda r: r.next_at or now)
            at = refresh.next_at or now
            refresh.next_at = None
            _step(world, refresh, at)
        for refresh in state.refreshes:
            if refresh.phase in ("pending", "forward", "checkpoint", "bake"):
                _check_alarms(world, refresh, now)


def _step(world: World, refresh: Refresh, at: datetime) -> None:
    phase = refresh.phase
    if phase == "pending":
        refresh.status = IN_PROGRESS
        refresh.phase = "forward"
        _fire_scenario_alarm(world, refresh, at)
        if not _check_alarms(world, refresh, at):
            _forward(world, refresh, at)
    elif phase == "forward":
        batch = refresh.inflight
        refresh.inflight = None
        if batch is not None and batch.new_ids and _knob(world, refresh, "new_instances_unhealthy"):
            _unhealthy(world, refresh, batch, at)
            return
        if batch is not None:
            refresh.warm.update(batch.new_ids)
        _fire_scenario_alarm(world, refresh, at)
        if not _check_alarms(world, refresh, at):
            _forward(world, refresh, at)
    elif phase == "checkpoint":
        refresh.status_reason = None
        refresh.phase = "forward"
        _forward(world, refresh, at)
    elif phase == "bake":
        # An alarm that went to ALARM by the end of BakeTime still stops the refresh (settle may not have run since).
        if not _check_alarms(world, refresh, at):
            _succeed(world, refresh, at)
    elif phase == "rollback":
        batch = refresh.inflight
        refresh.inflight = None
        if batch is not None and batch.new_ids and _knob(world, refresh, "rollback_fails"):
            _finish(
                world,
                refresh,
                ROLLBACK_FAILED,
                at,
                f"The rollback failed: the instances it launched from version {refresh.original_version} of launch "
                f"template {refresh.original_template_id} ({', '.join(batch.new_ids)}) did not pass the Auto Scaling "
                "health checks. The group may run instances of both configurations.",
            )
            return
        _rollback_next(world, refresh, at)
    elif phase == "cancelling":
        batch = refresh.inflight
        refresh.inflight = None
        if batch is not None and refresh.rollback_start is None:
            refresh.warm.update(batch.new_ids)
        _finish(world, refresh, CANCELLED, at)


def _batch_size(world: World, refresh: Refresh) -> int:
    group = _group(refresh.account_id, refresh.region, refresh.group)
    desired = int(group.desired_capacity or 0)
    prefs = refresh.preferences
    low = math.ceil(desired * prefs["MinHealthyPercentage"] / 100)
    high = math.floor(desired * prefs["MaxHealthyPercentage"] / 100)
    return max(1, int(high - low))


def _forward(world: World, refresh: Refresh, at: datetime) -> None:
    """After a batch (or a checkpoint): wait at a checkpoint reached, launch the next batch, or finish."""
    percent = refresh.percentage
    reached = [p for p in refresh.checkpoints if p <= percent]
    if reached and refresh.queue:
        refresh.checkpoints = [p for p in refresh.checkpoints if p > percent]
        delay = refresh.preferences["CheckpointDelay"]
        refresh.phase = "checkpoint"
        refresh.status_reason = (
            f"Waiting for checkpoint delay to elapse: {percent}% of the instances are updated (checkpoint "
            f"{max(reached)}%). The instance refresh continues in {delay} seconds."
        )
        refresh.next_at = at + timedelta(seconds=delay)
        return
    if not refresh.queue:
        refresh.checkpoints = []
        bake = refresh.preferences["BakeTime"]
        if bake:
            refresh.status, refresh.phase = BAKING, "bake"
            refresh.next_at = at + timedelta(seconds=bake)
        else:
            _succeed(world, refresh, at)
        return
    size = min(_batch_size(world, refresh), len(refresh.queue))
    if refresh.checkpoints:
        # Never past the next checkpoint: at most what brings the share done up to it.
        target = math.ceil(refresh.checkpoints[0] * refresh.to_replace / 100)
        size = max(1, min(size, target - len(refresh.warm)))
    old, refresh.queue = refresh.queue[:size], refresh.queue[size:]
    new_ids = _replace(world, refresh, old, refresh.template_id, refresh.version)
    refresh.launched.extend(new_ids)
    refresh.inflight = Batch(new_ids, at + timedelta(seconds=refresh.warmup))
    refresh.next_at = refresh.inflight.ready


def _succeed(world: World, refresh: Refresh, at: datetime) -> None:
    if refresh.desired is not None:
        group = _group(refresh.account_id, refresh.region, refresh.group)
        spec = refresh.desired["LaunchTemplate"]
        group.ec2_launch_template = ec2_backends[refresh.account_id][refresh.region].launch_templates[
            refresh.template_id
        ]
        group.launch_template_version = group.provided_launch_template_version = spec.get("Version", "$Default")
    _finish(world, refresh, SUCCESSFUL, at)


def _finish(world: World, refresh: Refresh, status: str, at: datetime, reason: str | None = None) -> None:
    refresh.status, refresh.phase, refresh.end, refresh.next_at = status, "done", at, None
    refresh.inflight = None
    if reason is not None:
        refresh.status_reason = reason
    elif status in (SUCCESSFUL, ROLLBACK_SUCCESSFUL):
        refresh.status_reason = None
    if refresh.alarm_fired:
        spec = _spec(world, refresh.account_id, refresh.region, refresh.group)
        if spec is not None and spec.alarm is not None:
            _set_alarm(
                refresh,
                spec.alarm.name,
                "OK",
                f"Sandbox scenario: instance refresh {refresh.refresh_id} of {refresh.group} ended ({status}).",
                at,
            )


def _set_alarm(refresh: Refresh, name: str, value: str, reason: str, at: datetime) -> None:
    alarm: Any = cloudwatch_backends[refresh.account_id][refresh.region].alarms.get(name)
    if alarm is None:
        return
    changed = alarm.state_value != value
    alarm.update_state(reason, json.dumps({"version": "1.0", "instanceRefreshId": refresh.refresh_id}), value)
    alarm.state_updated_timestamp = at
    if changed:
        alarm.state_transitioned_timestamp = at


def _fire_scenario_alarm(world: World, refresh: Refresh, at: datetime) -> None:
    """The group's scenario `alarm`: ALARM once this refresh is at_percent complete."""
    if refresh.alarm_fired:
        return
    spec = _spec(world, refresh.account_id, refresh.region, refresh.group)
    if spec is None or spec.alarm is None or refresh.percentage < spec.alarm.at_percent:
        return
    refresh.alarm_fired = True
    _set_alarm(
        refresh,
        spec.alarm.name,
        "ALARM",
        f"Sandbox scenario: instance refresh {refresh.refresh_id} of {refresh.group} reached "
        f"{refresh.percentage}% complete (alarm at {spec.alarm.at_percent}%).",
        at,
    )


def _alarm_in_alarm(world: World, refresh: Refresh) -> str | None:
    names = refresh.preferences.get("AlarmSpecification", {}).get("Alarms", [])
    if not names:
        return None
    alarms.evaluate(world, refresh.account_id, refresh.region)  # the scenario's fires_after_installs alarms
    backend = cloudwatch_backends[refresh.account_id][refresh.region]
    for name in names:
        alarm: Any = backend.alarms.get(name)
        if alarm is not None and alarm.state_value == "ALARM":
            return str(name)
    return None


def _check_alarms(world: World, refresh: Refresh, at: datetime) -> bool:
    """Fail or roll back a refresh rolling forward whose AlarmSpecification has an alarm in ALARM; True if so."""
    name = _alarm_in_alarm(world, refresh)
    if name is None:
        return False
    reason = f"The instance refresh was stopped because the CloudWatch alarm {name} is in the ALARM state."
    if refresh.preferences["AutoRollback"]:
        _start_rollback(world, refresh, at, f"{reason} Rolling back because AutoRollback is enabled.")
    else:
        _finish(world, refresh, FAILED, at, reason)
    return True


def _knob(world: World, refresh: Refresh, name: str) -> bool:
    """A scenario knob of the refresh's group (rollback_fails, new_instances_unhealthy)."""
    spec = _spec(world, refresh.account_id, refresh.region, refresh.group)
    return spec is not None and bool(getattr(spec, name))


def _unhealthy(world: World, refresh: Refresh, batch: Batch, at: datetime) -> None:
    """The batch's new instances never passed the health checks within the warm-up: AWS fails the refresh (rolls it
    back with AutoRollback); without a rollback the group replaces them from its own configuration."""
    reason = (
        f"The instance refresh failed: the new instances ({', '.join(batch.new_ids)}) did not pass the Auto Scaling "
        f"health checks within the instance warm-up of {refresh.warmup} seconds."
    )
    if refresh.preferences["AutoRollback"]:
        _start_rollback(world, refresh, at, f"{reason} Rolling back because AutoRollback is enabled.")
        return
    _replace(world, refresh, batch.new_ids, refresh.original_template_id, refresh.original_version)
    _finish(world, refresh, FAILED, at, reason)


def _start_rollback(world: World, refresh: Refresh, at: datetime, reason: str) -> None:
    refresh.percentage_at_rollback = refresh.percentage
    refresh.to_update_at_rollback = max(0, refresh.to_replace - len(refresh.warm))
    refresh.status, refresh.phase = ROLLBACK_IN_PROGRESS, "rollback"
    refresh.status_reason = reason
    refresh.rollback_reason, refresh.rollback_start = reason, at
    refresh.inflight, refresh.queue, refresh.checkpoints = None, [], []
    group = _group(refresh.account_id, refresh.region, refresh.group)
    present = {state.instance.id for state in group.instance_states}
    refresh.rollback_queue = [iid for iid in refresh.launched if iid in present]
    refresh.next_at = None
    _rollback_next(world, refresh, at)


def _rollback_next(world: World, refresh: Refresh, at: datetime) -> None:
    if not refresh.rollback_queue:
        _finish(world, refresh, ROLLBACK_SUCCESSFUL, at)
        return
    size = min(_batch_size(world, refresh), len(refresh.rollback_queue))
    old, refresh.rollback_queue = refresh.rollback_queue[:size], refresh.rollback_queue[size:]
    refresh.warm.difference_update(old)  # PercentageComplete goes back down as they are replaced
    new_ids = _replace(world, refresh, old, refresh.original_template_id, refresh.original_version)
    refresh.inflight = Batch(new_ids, at + timedelta(seconds=refresh.warmup))
    refresh.next_at = refresh.inflight.ready


# -- the API -----------------------------------------------------------------------------------------


def _active(state: _State, ctx: RequestContext, name: str) -> Refresh | None:
    return next(
        (
            r
            for r in reversed(state.refreshes)
            if (r.account_id, r.region, r.group) == (ctx.account_id, ctx.region, name) and r.status in ACTIVE
        ),
        None,
    )


def _preferences(world: World, ctx: RequestContext, group: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The refresh's preferences with AWS's defaults, checked as AWS checks them."""
    if "CheckpointDelay" in given and not given.get("CheckpointPercentages"):
        raise AwsApiError(
            "ValidationError", "CheckpointDelay can only be specified when CheckpointPercentages is also specified."
        )
    checkpoints = list(given.get("CheckpointPercentages") or [])
    if any(b <= a for a, b in itertools.pairwise(checkpoints)):
        raise AwsApiError("ValidationError", "CheckpointPercentages must be specified in ascending order.")
    if "MaxHealthyPercentage" in given and "MinHealthyPercentage" not in given:
        raise AwsApiError(
            "ValidationError", "MinHealthyPercentage must be specified when MaxHealthyPercentage is specified."
        )
    low = given.get("MinHealthyPercentage", DEFAULT_MIN_HEALTHY)
    high = given.get("MaxHealthyPercentage", DEFAULT_MAX_HEALTHY)
    if high - low > 100:
        raise AwsApiError(
            "ValidationError",
            "The difference between MaxHealthyPercentage and MinHealthyPercentage cannot be greater than 100.",
        )
    if low == 100 and high == 100:
        raise AwsApiError("ValidationError", "MinHealthyPercentage and MaxHealthyPercentage cannot both be 100.")
    names = list((given.get("AlarmSpecification") or {}).get("Alarms") or [])
    known = cloudwatch_backends[ctx.account_id][ctx.region].alarms
    for name in names:
        if name not in known:
            raise AwsApiError("ValidationError", f"The alarm {name} does not exist.")
    prefs: dict[str, Any] = {
        "MinHealthyPercentage": low,
        "MaxHealthyPercentage": high,
        "SkipMatching": given.get("SkipMatching", False),
        "AutoRollback": given.get("AutoRollback", False),
        "ScaleInProtectedInstances": given.get("ScaleInProtectedInstances", "Wait"),
        "StandbyInstances": given.get("StandbyInstances", "Wait"),
        "BakeTime": given.get("BakeTime", 0),
    }
    if "InstanceWarmup" in given:
        prefs["InstanceWarmup"] = given["InstanceWarmup"]
    if checkpoints:
        prefs["CheckpointPercentages"] = checkpoints
        prefs["CheckpointDelay"] = given.get("CheckpointDelay", DEFAULT_CHECKPOINT_DELAY)
    if names:
        prefs["AlarmSpecification"] = {"Alarms": names}
    return prefs


def _irreversible_group(group: Any) -> bool:
    version = group.provided_launch_template_version
    return version is None or str(version).lower() in SYMBOLIC_VERSIONS


def _ssm_alias(template: Any, version: int) -> str:
    """The Systems Manager parameter the template version's ImageId resolves at launch ("" for an AMI id): AWS
    cannot roll a refresh back onto it (its AMI is whatever the parameter holds by then)."""
    image = str(template.get_version(str(version)).data.get("ImageId") or "")
    return image[len(SSM_ALIAS_PREFIX) :] if image.startswith(SSM_ALIAS_PREFIX) else ""


def _irreversible_alias(template: Any, version: int, alias: str) -> AwsApiError:
    return AwsApiError(
        "IrreversibleInstanceRefresh",
        f"The instance refresh cannot be rolled back: version {version} of launch template {template.id}, which the "
        f"Auto Scaling group uses, takes its ImageId from the Systems Manager parameter {alias}. Use an AMI ID in the "
        "launch template or set AutoRollback to false and try again.",
    )


def start_instance_refresh(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    settle(world)
    state = _state(world)
    name = params["AutoScalingGroupName"]
    group = _group(ctx.account_id, ctx.region, name)
    if params.get("Strategy", "Rolling") != "Rolling":
        raise AwsApiError("ValidationError", "The sandbox simulates only the Rolling instance refresh strategy.")
    if _active(state, ctx, name) is not None:
        raise AwsApiError(
            "InstanceRefreshInProgress",
            "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.",
        )
    if group.ec2_launch_template is None:
        raise AwsApiError(
            "ValidationError", "The sandbox simulates instance refreshes of groups with a launch template only."
        )
    given = params.get("Preferences") or {}
    desired = params.get("DesiredConfiguration") or None
    if desired is not None and "MixedInstancesPolicy" in desired:
        raise AwsApiError(
            "ValidationError", "The sandbox does not simulate a MixedInstancesPolicy desired configuration."
        )
    if desired is not None and "LaunchTemplate" not in desired:
        desired = None
    auto_rollback = bool(given.get("AutoRollback", False))
    if auto_rollback and desired is None:
        raise AwsApiError(
            "ValidationError",
            "The request isn't valid. The AutoRollback parameter cannot be set to true when the DesiredConfiguration "
            "parameter is empty. Set AutoRollback to false or specify a desired configuration and try again.",
        )
    original = group.ec2_launch_template
    original_version = _version_number(original, group.launch_template_version)
    alias = _ssm_alias(original, original_version)
    if auto_rollback and desired is not None and alias:
        raise _irreversible_alias(original, original_version, alias)
    if desired is not None:
        spec = desired["LaunchTemplate"]
        template = _template(ctx.account_id, ctx.region, spec.get("LaunchTemplateId"), spec.get("LaunchTemplateName"))
        version_text = str(spec.get("Version", "$Default"))
        if auto_rollback and (version_text.lower() in SYMBOLIC_VERSIONS or _irreversible_group(group)):
            raise AwsApiError(
                "ValidationError",
                "The request isn't valid. The AutoRollback parameter cannot be set to true when the desired "
                "configuration or the Auto Scaling group uses the $Latest or $Default launch template version. "
                "Specify a launch template version number or set AutoRollback to false and try again.",
            )
        version = _version_number(template, version_text)
    else:
        template, version = original, original_version
    prefs = _preferences(world, ctx, group, given)
    now = world.now()
    queue = []
    for instance_state in group.instance_states:
        if instance_state.lifecycle_state == "Standby":
            if prefs["StandbyInstances"] != "Terminate":
                continue
        elif instance_state.lifecycle_state != "InService":
            continue
        if instance_state.protected_from_scale_in and prefs["ScaleInProtectedInstances"] != "Refresh":
            continue
        matches = instance_state.launch_template.get("LaunchTemplateId") == template.id and str(
            instance_state.launch_template.get("Version")
        ) == str(version)
        if prefs["SkipMatching"] and matches:
            continue
        queue.append(instance_state.instance.id)
    refresh = Refresh(
        refresh_id=str(uuid.uuid4()),
        account_id=ctx.account_id,
        region=ctx.region,
        group=name,
        start=now,
        preferences=prefs,
        desired=desired,
        template_id=template.id,
        version=version,
        original_template_id=original.id,
        original_version=original_version,
        reversible=desired is not None and not _irreversible_group(group) and not alias,
        warmup=int(prefs.get("InstanceWarmup", group.health_check_grace_period or 0)),
        to_replace=len(queue),
        queue=queue,
        checkpoints=list(prefs.get("CheckpointPercentages", [])),
        next_at=now + timedelta(seconds=PENDING_SECONDS),
    )
    state.refreshes.append(refresh)
    return {"InstanceRefreshId": refresh.refresh_id}


def _view(refresh: Refresh) -> dict[str, Any]:
    progress = {
        "LivePoolProgress": {"PercentageComplete": refresh.percentage, "InstancesToUpdate": refresh.instances_to_update}
    }
    view: dict[str, Any] = {
        "InstanceRefreshId": refresh.refresh_id,
        "AutoScalingGroupName": refresh.group,
        "Status": refresh.status,
        "StartTime": refresh.start,
        "PercentageComplete": refresh.percentage,
        "InstancesToUpdate": refresh.instances_to_update,
        "ProgressDetails": progress,
        "Preferences": refresh.preferences,
        "Strategy": "Rolling",
    }
    if refresh.status_reason:
        view["StatusReason"] = refresh.status_reason
    if refresh.end is not None:
        view["EndTime"] = refresh.end
    if refresh.desired is not None:
        view["DesiredConfiguration"] = refresh.desired
    if refresh.rollback_start is not None:
        # The values when the rollback started (AWS: "the value of PercentageComplete at the time the rollback
        # started"); the rollback's own progress shows in PercentageComplete going back down.
        percent, left = refresh.percentage_at_rollback, refresh.to_update_at_rollback
        view["RollbackDetails"] = {
            "RollbackReason": refresh.rollback_reason,
            "RollbackStartTime": refresh.rollback_start,
            "PercentageCompleteOnRollback": percent,
            "InstancesToUpdateOnRollback": left,
            "ProgressDetailsOnRollback": {
                "LivePoolProgress": {"PercentageComplete": percent, "InstancesToUpdate": left}
            },
        }
    return view


def _token(refresh_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": refresh_id}).encode()).decode()


def _after(token: str) -> str:
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise AwsApiError("InvalidNextToken", "The token provided is not valid.") from exc
    if not isinstance(after, str):
        raise AwsApiError("InvalidNextToken", "The token provided is not valid.")
    return after


def describe_instance_refreshes(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    settle(world)
    name = params["AutoScalingGroupName"]
    _group(ctx.account_id, ctx.region, name)
    size = params.get("MaxRecords", DEFAULT_PAGE)
    if not 1 <= size <= MAX_PAGE:
        raise AwsApiError("ValidationError", f"MaxRecords must be between 1 and {MAX_PAGE}.")
    wanted = set(params.get("InstanceRefreshIds") or ())
    chosen = [
        r
        for r in reversed(_state(world).refreshes)  # newest first
        if (r.account_id, r.region, r.group) == (ctx.account_id, ctx.region, name)
        and (not wanted or r.refresh_id in wanted)
    ]
    if params.get("NextToken"):
        after = _after(params["NextToken"])
        ids = [r.refresh_id for r in chosen]
        if after not in ids:
            raise AwsApiError("InvalidNextToken", "The token provided is not valid.")
        chosen = chosen[ids.index(after) + 1 :]
    page = chosen[:size]
    result: dict[str, Any] = {"InstanceRefreshes": [_view(r) for r in page]}
    if len(chosen) > size:
        result["NextToken"] = _token(page[-1].refresh_id)
    return result


def _not_found(name: str, what: str = "instance refresh") -> AwsApiError:
    return AwsApiError(
        "ActiveInstanceRefreshNotFound", f"No in progress or pending {what} found for Auto Scaling group {name}"
    )


def cancel_instance_refresh(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    settle(world)
    name = params["AutoScalingGroupName"]
    _group(ctx.account_id, ctx.region, name)
    refresh = _active(_state(world), ctx, name)
    if refresh is None or refresh.status == CANCELLING:
        raise _not_found(name)
    now = world.now()
    refresh.status, refresh.phase = CANCELLING, "cancelling"
    refresh.status_reason = "The instance refresh was cancelled by a user."
    wait = params.get("WaitForTransitioningInstances", True)
    if refresh.inflight is not None and wait:
        refresh.next_at = refresh.inflight.ready
    else:
        refresh.next_at = now
    return {"InstanceRefreshId": refresh.refresh_id}


def rollback_instance_refresh(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    settle(world)
    name = params["AutoScalingGroupName"]
    _group(ctx.account_id, ctx.region, name)
    refresh = _active(_state(world), ctx, name)
    if refresh is None or refresh.status not in REVERSIBLE:
        raise _not_found(name)
    if not refresh.reversible:
        raise AwsApiError(
            "IrreversibleInstanceRefresh",
            "The instance refresh cannot be rolled back: it has no desired configuration, or the Auto Scaling group "
            "uses the $Latest or $Default launch template version, or a launch template whose ImageId is a Systems "
            "Manager parameter.",
        )
    _start_rollback(world, refresh, world.now(), "Rollback started by user request.")
    return {"InstanceRefreshId": refresh.refresh_id}


HANDLERS: dict[tuple[str, str], Handler] = {
    ("autoscaling", "StartInstanceRefresh"): start_instance_refresh,
    ("autoscaling", "DescribeInstanceRefreshes"): describe_instance_refreshes,
    ("autoscaling", "CancelInstanceRefresh"): cancel_instance_refresh,
    ("autoscaling", "RollbackInstanceRefresh"): rollback_instance_refresh,
}
