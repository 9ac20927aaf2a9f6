"""RDS pending maintenance: DescribePendingMaintenanceActions and ApplyPendingMaintenanceAction.

moto has RDS instances but no maintenance: these are the scenario's
``pending_maintenance`` per DB instance, served in the query protocol (see
query_protocol) like the rest of RDS. As on AWS ("Maintaining a DB instance"):

* each DB instance with pending actions is one ResourcePendingMaintenanceActions,
  identified by its ARN, listing every action with its dates and opt-in status;
* CurrentApplyDate is the earliest of AutoAppliedAfterDate, ForcedApplyDate and,
  after a next-maintenance opt-in, the start of the instance's next maintenance
  window; it is absent when none applies. An immediate opt-in applies now;
* an action is applied, and leaves the list, APPLY_SECONDS of simulated time after
  it starts: at once for ``immediate``, at the next window for ``next-maintenance``,
  at the first window after AutoAppliedAfterDate, or on ForcedApplyDate. A
  db-upgrade sets the moto instance's EngineVersion to the version its description
  names ("Upgrade to MySQL 8.0.40").

Time is the World's simulated clock, and actions are applied lazily: the state
(and moto's EngineVersion) catches up when one of these two APIs is next called.
State lives in ``world.extra["rds_maintenance"]``, built from the scenario on first use.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from moto.rds.models import rds_backends

from include.sandbox.api import Handler, RequestContext
from include.sandbox.protocol import AwsApiError

if TYPE_CHECKING:
    from collections.abc import Callable

    from include.sandbox.world import World

# The operations moto 5.2.5 answers with a 500 (NotImplementedError).
MOTO_MISSING: list[str] = ["DescribePendingMaintenanceActions", "ApplyPendingMaintenanceAction"]

APPLY_SECONDS = 60.0  # how long applying an action takes, in simulated seconds
STATE_KEY = "rds_maintenance"
FILTERS = {"db-instance-id": "db", "db-cluster-id": "cluster"}  # filter name -> resource kind it selects
OPT_IN_TYPES = ("immediate", "next-maintenance", "undo-opt-in")
MIN_RECORDS, MAX_RECORDS = 20, 100

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"([a-z]{3}):(\d{2}):(\d{2})-[a-z]{3}:\d{2}:\d{2}")
# RDS identifiers: a letter first, then letters, digits and single hyphens, not ending in one.
_IDENTIFIER = re.compile(r"[A-Za-z](?:-?[A-Za-z0-9])*")
_VERSION = re.compile(r"\d+(?:\.\d+)+")
_BAD_IDENTIFIER = (
    "The parameter Filter: {name} is not a valid identifier. Identifiers must begin with a letter; "
    "must contain only ASCII letters, digits, and hyphens; and must not end with a hyphen or contain "
    "two consecutive hyphens."
)


@dataclass
class PendingAction:
    """One pending maintenance action of one resource, and the opt-in received for it."""

    action: str
    description: str
    auto_applied_after: datetime | None = None
    forced_apply: datetime | None = None
    opt_in: str | None = None  # "immediate" or "next-maintenance"; None until an opt-in arrives
    opted_at: datetime | None = None


@dataclass
class _Resource:
    arn: str
    kind: str  # "db" or "cluster"
    identifier: str
    window: str  # the preferred maintenance window, ddd:hh24:mi-ddd:hh24:mi
    model: Any  # moto's DBInstance or DBCluster
    actions: list[PendingAction] = field(default_factory=list)


# --- state -------------------------------------------------------------------------------


def state(world: World) -> dict[tuple[str, str, str], list[PendingAction]]:
    """(account, region, DB instance id) -> its pending actions, built from the scenario on first use."""
    with world.lock:
        built: dict[tuple[str, str, str], list[PendingAction]] | None = world.extra.get(STATE_KEY)
        if built is None:
            built = world.extra[STATE_KEY] = {
                (account.id, region.name, db.id.lower()): [
                    PendingAction(
                        action=m.action,
                        description=m.description,
                        auto_applied_after=_midnight(m.auto_applied_after),
                        forced_apply=_midnight(m.forced_apply),
                    )
                    for m in db.pending_maintenance
                ]
                for account in world.scenario.accounts
                for region in account.regions
                for db in region.rds_instances
            }
        return built


def _midnight(day: date | None) -> datetime | None:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None


def _resources(world: World, ctx: RequestContext) -> list[_Resource]:
    """The caller's DB instances and clusters moto holds in the region, by ARN, actions brought up to date."""
    backend = rds_backends[ctx.account_id][ctx.region]
    pending = state(world)
    now = world.now()
    found: list[_Resource] = []
    for db in list(backend.databases.values()):
        actions = pending.setdefault((ctx.account_id, ctx.region, db.db_instance_identifier.lower()), [])
        resource = _Resource(db.arn, "db", db.db_instance_identifier, db.preferred_maintenance_window, db, actions)
        _settle(resource, now)
        found.append(resource)
    for cluster in list(backend.clusters.values()):
        # Clusters exist (their ARNs can be asked about), but a scenario gives them no actions.
        window = cluster.preferred_maintenance_window
        found.append(_Resource(cluster.arn, "cluster", cluster.db_cluster_identifier, window, cluster))
    return sorted(found, key=lambda r: r.arn)


def _settle(resource: _Resource, now: datetime) -> None:
    """Apply every action whose application has finished by ``now``."""
    for action in list(resource.actions):
        start = _apply_start(action, resource.window)
        if start is not None and now >= start + timedelta(seconds=APPLY_SECONDS):
            resource.actions.remove(action)
            if action.action == "db-upgrade" and resource.kind == "db":
                versions = _VERSION.findall(action.description)
                if versions:
                    resource.model.engine_version = versions[-1]


def _apply_start(action: PendingAction, window: str) -> datetime | None:
    """When applying the action starts (it may be later than CurrentApplyDate: that is a day, not a window)."""
    starts: list[datetime] = []
    if action.opt_in == "immediate" and action.opted_at is not None:
        starts.append(action.opted_at)
    if action.opt_in == "next-maintenance" and action.opted_at is not None:
        starts.append(next_window(window, action.opted_at))
    if action.auto_applied_after is not None:
        starts.append(next_window(window, action.auto_applied_after))
    if action.forced_apply is not None:
        starts.append(action.forced_apply)
    return min(starts, default=None)


def current_apply_date(action: PendingAction, window: str) -> datetime | None:
    """CurrentApplyDate as AWS reports it: the opt-in and the two dates taken into account."""
    if action.opt_in == "immediate" and action.opted_at is not None:
        return action.opted_at
    dates = [d for d in (action.auto_applied_after, action.forced_apply) if d is not None]
    if action.opt_in == "next-maintenance" and action.opted_at is not None:
        dates.append(next_window(window, action.opted_at))
    return min(dates, default=None)


def next_window(window: str, after: datetime) -> datetime:
    """The start of the first maintenance window (e.g. "wed:06:38-wed:07:08", UTC) after ``after``."""
    match = _WINDOW.fullmatch(window.lower())
    if match is None or match.group(1) not in _DAYS:
        return after  # moto validates windows; an odd one should not break describing
    day, hour, minute = _DAYS.index(match.group(1)), int(match.group(2)), int(match.group(3))
    start = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
    start += timedelta(days=(day - start.weekday()) % 7)
    return start if start > after else start + timedelta(days=7)


# --- rendering, filters, paging ----------------------------------------------------------


def _render(resource: _Resource) -> dict[str, Any]:
    details = []
    for action in resource.actions:
        detail: dict[str, Any] = {"Action": action.action}
        if action.auto_applied_after is not None:
            detail["AutoAppliedAfterDate"] = action.auto_applied_after
        if action.forced_apply is not None:
            detail["ForcedApplyDate"] = action.forced_apply
        if action.opt_in is not None:
            detail["OptInStatus"] = action.opt_in
        applies = current_apply_date(action, resource.window)
        if applies is not None:
            detail["CurrentApplyDate"] = applies
        detail["Description"] = action.description
        details.append(detail)
    return {"ResourceIdentifier": resource.arn, "PendingMaintenanceActionDetails": details}


def _invalid(message: str) -> AwsApiError:
    return AwsApiError("InvalidParameterValue", message)


def _matcher(filters: list[dict[str, Any]]) -> Callable[[_Resource], bool]:
    """Filters AND together, a filter's values OR; values are identifiers or ARNs."""
    wanted: dict[str, set[str]] = {}
    for spec in filters:
        name, values = spec["Name"], spec["Values"]
        if name not in FILTERS:
            raise _invalid(f"Unrecognized filter name: {name}.")
        if not values:
            raise _invalid(f"The parameter Filter: {name} must have at least one value.")
        for value in values:
            if not value.startswith("arn:") and not (len(value) <= 63 and _IDENTIFIER.fullmatch(value)):
                raise _invalid(_BAD_IDENTIFIER.format(name=name))
        wanted.setdefault(name, set()).update(value.lower() for value in values)

    def match(resource: _Resource) -> bool:
        return all(
            resource.kind == FILTERS[name] and bool({resource.identifier.lower(), resource.arn.lower()} & values)
            for name, values in wanted.items()
        )

    return match


def _find(resources: list[_Resource], identifier: str) -> _Resource:
    for resource in resources:
        if resource.arn.lower() == identifier.lower():
            return resource
    raise AwsApiError("ResourceNotFoundFault", f"The specified resource ARN {identifier} was not found.", 404)


def _encode_marker(last_arn: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_arn}).encode()).decode()


def _decode_marker(marker: str) -> str:
    """The ARN the previous page ended with: pages stay right when actions are applied in between."""
    try:
        after = json.loads(base64.urlsafe_b64decode(marker.encode()))["after"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise _invalid(f"The marker {marker} is not valid.") from exc
    if not isinstance(after, str):
        raise _invalid(f"The marker {marker} is not valid.")
    return after


# --- handlers ----------------------------------------------------------------------------


def describe_pending_maintenance_actions(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    max_records = params.get("MaxRecords", MAX_RECORDS)
    if not MIN_RECORDS <= max_records <= MAX_RECORDS:
        raise _invalid(f"Invalid value {max_records} for MaxRecords. Must be between {MIN_RECORDS} and {MAX_RECORDS}")
    match = _matcher(params.get("Filters", []))
    resources = _resources(world, ctx)
    if "ResourceIdentifier" in params:
        resources = [_find(resources, params["ResourceIdentifier"])]
    listed = [r for r in resources if r.actions and match(r)]
    if "Marker" in params:
        after = _decode_marker(params["Marker"])
        listed = [r for r in listed if r.arn > after]
    page = listed[:max_records]
    result: dict[str, Any] = {"PendingMaintenanceActions": [_render(r) for r in page]}
    if len(listed) > max_records:
        result["Marker"] = _encode_marker(page[-1].arn)
    return result


def apply_pending_maintenance_action(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    opt_in = params["OptInType"]
    if opt_in not in OPT_IN_TYPES:
        raise _invalid(f"Invalid value {opt_in} for OptInType. Valid values are: {', '.join(OPT_IN_TYPES)}.")
    resource = _find(_resources(world, ctx), params["ResourceIdentifier"])
    wanted = params["ApplyAction"]
    action = next((a for a in resource.actions if a.action == wanted), None)
    if action is None:
        raise AwsApiError("InvalidParameterCombination", f"There is no pending {wanted} action for {resource.arn}")
    # Once applying has started (immediate) nothing can call it back.
    if opt_in == "immediate" and action.opt_in != "immediate":
        action.opt_in, action.opted_at = "immediate", world.now()
    elif opt_in == "next-maintenance" and action.opt_in is None:
        action.opt_in, action.opted_at = "next-maintenance", world.now()
    elif opt_in == "undo-opt-in" and action.opt_in == "next-maintenance":
        action.opt_in, action.opted_at = None, None
    return {"ResourcePendingMaintenanceActions": _render(resource)}


HANDLERS: dict[tuple[str, str], Handler] = {
    ("rds", "DescribePendingMaintenanceActions"): describe_pending_maintenance_actions,
    ("rds", "ApplyPendingMaintenanceAction"): apply_pending_maintenance_action,
}
