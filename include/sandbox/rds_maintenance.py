"""RDS pending maintenance: DescribePendingMaintenanceActions and ApplyPendingMaintenanceAction.

moto has RDS instances but no maintenance: these are the scenario's
``pending_maintenance`` per DB instance, served in the query protocol (see
query_protocol) like the rest of RDS. As on AWS ("Maintaining a DB instance"):

* each DB instance with pending actions is one ResourcePendingMaintenanceActions,
  identified by its ARN, listing every action with its dates and opt-in status;
* CurrentApplyDate is the earliest of AutoAppliedAfterDate, ForcedApplyDate and,
  after a next-maintenance opt-in, the start of the instance's next maintenance
  window; it is absent when none applies. An immediate opt-in applies now;
* an action starts at once for ``immediate`` (once the instance is available), at the next
  window for ``next-maintenance``, at the first window after AutoAppliedAfterDate, or on
  ForcedApplyDate; the instance is then ``upgrading`` / ``maintenance`` / ``modifying`` for
  ``rds.maintenance_seconds`` (a Multi-AZ one fails over to its standby meanwhile), and the action
  leaves the list when it ends. A db-upgrade sets the moto instance's EngineVersion to the version its
  description names ("Upgrade to MySQL 8.0.40"). One the scenario's ``rds.fail_maintenance`` selects
  ends with the instance available and the action still pending.

Aurora DB clusters (the scenario's ``rds_clusters``) have cluster-level actions, listed on the cluster's ARN
(``arn:aws:rds:REGION:ACCOUNT:cluster:ID``) and selected by the ``db-cluster-id`` filter. Applying one takes the
same opt-ins and dates; meanwhile the cluster and every member instance are ``upgrading`` (Aurora applies a
cluster-level update to all members at once: a brief outage for every client), and all are available again
when it ends. ``rds.fail_maintenance`` entries with ``db_cluster`` make a cluster's action fail.

Snapshots (``creating``, the instance ``backing-up``), restores (``creating``) and deletions
(``deleting``) take their time too: moto makes them at once, so hooks run before and after moto's
answer (BEFORE_MOTO, AFTER_MOTO, REWRITE_MOTO in server.py). A restored instance inherits the pending
actions its snapshot's source had.

Time is the World's simulated clock, and transitions are applied lazily and in time order by
``settle``, which the server calls before every request. State lives in
``world.extra["rds_maintenance"]``, built from the scenario on first use.
"""

from __future__ import annotations

import base64
import binascii
import functools
import heapq
import itertools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from moto.cloudformation.models import cloudformation_backends
from moto.rds.models import Event, rds_backends

from include.sandbox import rds_endpoints
from include.sandbox.api import Handler, RequestContext
from include.sandbox.protocol import AwsApiError

if TYPE_CHECKING:
    from include.sandbox.scenario import RdsMaintenanceFailure
    from include.sandbox.world import World

# The operations moto 5.2.5 answers with a 500 (NotImplementedError).
MOTO_MISSING: list[str] = ["DescribePendingMaintenanceActions", "ApplyPendingMaintenanceAction"]

AVAILABLE = "available"
# Statuses in which ApplyPendingMaintenanceAction is refused (InvalidDBInstanceState).
REFUSING_STATUSES = frozenset(
    {"creating", "deleting", "failed", "incompatible-restore", "inaccessible-encryption-credentials"}
)
# The DB instance status while an action is applied (the status table of "Viewing instance status").
APPLYING_STATUS = {
    "db-upgrade": "upgrading",
    "os-upgrade": "upgrading",
    "system-update": "upgrading",
    "hardware-maintenance": "maintenance",
    "ca-certificate-rotation": "modifying",
}
# The ApplyAction values RDS knows (any other is InvalidParameterValue, before looking for it).
KNOWN_ACTIONS = frozenset(APPLYING_STATUS)
# DB cluster statuses in which ApplyPendingMaintenanceAction is refused (InvalidDBClusterStateFault).
REFUSING_CLUSTER_STATUSES = frozenset({"creating", "deleting", "failed", "inaccessible-encryption-credentials"})
CLUSTER_PREFIX = "cluster:"  # state keys of DB clusters: an identifier never holds a colon
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
    failed_at: datetime | None = None  # when applying it last failed (the scenario's rds.fail_maintenance)

    def fresh(self) -> PendingAction:
        """The same action without its opt-in or failures (a restored instance's copy)."""
        return PendingAction(self.action, self.description, self.auto_applied_after, self.forced_apply)


@dataclass(frozen=True)
class _Kind:
    """What sets DB instances and DB clusters apart where the sandbox handles both alike."""

    prefix: str  # of its state keys
    refusing: frozenset[str]  # statuses in which ApplyPendingMaintenanceAction is refused
    state_error: str  # the error code of that refusal
    noun: str  # as that refusal's message names it


KINDS = {
    "db": _Kind("", REFUSING_STATUSES, "InvalidDBInstanceState", "Instance"),
    "cluster": _Kind(CLUSTER_PREFIX, REFUSING_CLUSTER_STATUSES, "InvalidDBClusterStateFault", "DB cluster"),
}

Key = tuple[str, str, str]  # (account, region, lower-case DB instance or snapshot identifier)


@dataclass
class _Resource:
    arn: str
    kind: str  # "db" or "cluster"
    identifier: str
    window: str  # the preferred maintenance window, ddd:hh24:mi-ddd:hh24:mi
    model: Any  # moto's DBInstance or DBCluster
    key: Key  # its state key
    actions: list[PendingAction] = field(default_factory=list)


# --- state -------------------------------------------------------------------------------


@dataclass
class _Applying:
    """An action being applied to a DB instance: its status until ``ends``, then available."""

    action: PendingAction
    ends: datetime
    failover_at: datetime | None
    failure: RdsMaintenanceFailure | None


@dataclass
class _State:
    actions: dict[Key, list[PendingAction]]
    applying: dict[Key, _Applying] = field(default_factory=dict)
    # (when, sequence, what): snapshot, restore and deletion transitions
    timers: list[tuple[datetime, int, Callable[[datetime], None]]] = field(default_factory=list)
    sequence: itertools.count[int] = field(default_factory=itertools.count)
    snapshot_actions: dict[Key, list[PendingAction]] = field(default_factory=dict)  # what a snapshot's restores get
    deleting: dict[Key, Any] = field(default_factory=dict)  # DB instances a DeleteDBInstance is about to remove
    # the time of the last transition applied
    cursor: datetime = field(default_factory=lambda: datetime.min.replace(tzinfo=UTC))

    def at(self, when: datetime, what: Callable[[datetime], None]) -> None:
        heapq.heappush(self.timers, (when, next(self.sequence), what))


def state(world: World) -> _State:
    """The RDS state the sandbox keeps beside moto, built from the scenario on first use."""
    with world.lock:
        built: _State | None = world.extra.get(STATE_KEY)
        if built is None:
            actions = {
                (account.id, region.name, db.id.lower()): _pending(db.pending_maintenance)
                for account in world.scenario.accounts
                for region in account.regions
                for db in region.rds_instances
            }
            actions.update(
                {
                    (account.id, region.name, CLUSTER_PREFIX + cluster.id.lower()): _pending(
                        cluster.pending_maintenance
                    )
                    for account in world.scenario.accounts
                    for region in account.regions
                    for cluster in region.rds_clusters
                }
            )
            built = world.extra[STATE_KEY] = _State(actions)
        return built


def _pending(actions: Any) -> list[PendingAction]:
    return [
        PendingAction(
            action=m.action,
            description=m.description,
            auto_applied_after=_midnight(m.auto_applied_after),
            forced_apply=_midnight(m.forced_apply),
        )
        for m in actions
    ]


def _midnight(day: date | None) -> datetime | None:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None


def _resources(world: World, ctx: RequestContext) -> list[_Resource]:
    """The caller's DB instances and clusters moto holds in the region, by ARN."""
    backend = rds_backends[ctx.account_id][ctx.region]
    pending = state(world).actions
    found: list[_Resource] = []
    tables: tuple[tuple[str, Mapping[str, Any]], ...] = (("db", backend.databases), ("cluster", backend.clusters))
    for kind, models in tables:
        for model in list(models.values()):
            identifier = model.resource_id  # moto's DBInstanceIdentifier or DBClusterIdentifier
            key = (ctx.account_id, ctx.region, KINDS[kind].prefix + identifier.lower())
            window = model.preferred_maintenance_window
            found.append(_Resource(model.arn, kind, identifier, window, model, key, pending.setdefault(key, [])))
    return sorted(found, key=lambda r: r.arn)


def _db(key: Key) -> Any:
    """The moto DB instance, or the DB cluster of a CLUSTER_PREFIX key (None when gone)."""
    account, region, identifier = key
    backend = rds_backends[account][region]
    if identifier.startswith(CLUSTER_PREFIX):
        wanted = identifier.removeprefix(CLUSTER_PREFIX)
        return next((c for c in backend.clusters.values() if c.db_cluster_identifier.lower() == wanted), None)
    return backend.databases.get(identifier)


def _members(key: Key) -> list[Any]:
    """A DB cluster's member DB instances ([] for a DB instance's key)."""
    if not key[2].startswith(CLUSTER_PREFIX):
        return []
    cluster = _db(key)
    backend = rds_backends[key[0]][key[1]]
    return [
        db
        for db in backend.databases.values()
        if cluster is not None and getattr(db, "db_cluster_identifier", None) == cluster.db_cluster_identifier
    ]


# --- the simulated clock -------------------------------------------------------------------


def settle(world: World, now: datetime | None = None) -> None:
    """Apply every transition due by ``now`` in time order: actions starting and ending, snapshots,
    restores and deletions completing; then each database's endpoint port listens if it is available and refuses
    otherwise (rds_endpoints). The server calls it before every request."""
    with world.lock:
        try:
            _apply_due(world, now or world.now())
        finally:
            rds_endpoints.sync()


def _apply_due(world: World, now: datetime) -> None:
    if STATE_KEY not in world.extra and not any(r.rds_instances or r.rds_clusters for _, r in _regions(world)):
        return
    st = state(world)
    while True:
        due = _next_transition(world, st)
        if due is None or due[0] > now:
            return
        when, apply = due
        st.cursor = max(st.cursor, when)
        apply(when)


def _regions(world: World) -> list[tuple[str, Any]]:
    return [(account.id, region) for account in world.scenario.accounts for region in account.regions]


def _next_transition(world: World, st: _State) -> tuple[datetime, Callable[[datetime], None]] | None:
    """The earliest transition to come (it may be due already)."""
    candidates: list[tuple[datetime, int, Callable[[datetime], None]]] = []
    if st.timers:
        when, order, _ = st.timers[0]
        candidates.append((when, order, lambda at: heapq.heappop(st.timers)[2](at)))
    for key, applying in st.applying.items():
        if applying.failover_at is not None:
            candidates.append((applying.failover_at, -1, functools.partial(_failover, world, st, key)))
        else:
            candidates.append((applying.ends, -1, functools.partial(_finish, world, st, key)))
    for key, actions in st.actions.items():
        if not actions or key in st.applying:
            continue
        db = _db(key)
        if db is None or db.status != AVAILABLE:
            continue  # an action starts once the instance (cluster) is available (after a backup, a restore, ...)
        window = db.preferred_maintenance_window
        starts = [(start, action) for action in actions if (start := _apply_start(action, window))]
        if starts:
            start, action = min(starts, key=lambda pair: pair[0])
            candidates.append((max(start, st.cursor), -1, functools.partial(_start, world, st, key, action)))
    if not candidates:
        return None
    when, _, apply = min(candidates, key=lambda c: (c[0], c[1]))
    return when, apply


def _start(world: World, st: _State, key: Key, action: PendingAction, when: datetime) -> None:
    db = _db(key)
    settings = world.scenario.rds
    cluster = key[2].startswith(CLUSTER_PREFIX)
    db.status = APPLYING_STATUS.get(action.action, "modifying")
    for member in _members(key):  # Aurora applies a cluster-level update to every member at once
        member.status = db.status
    # both copies of a Multi-AZ pair upgrade together; an Aurora cluster's members all at once (no failover)
    failover = not cluster and db.multi_az and action.action != "db-upgrade"
    st.applying[key] = _Applying(
        action,
        ends=when + timedelta(seconds=settings.maintenance_seconds),
        failover_at=when + timedelta(seconds=min(settings.failover_seconds, settings.maintenance_seconds))
        if failover
        else None,
        failure=settings.maintenance_failure(key[2].removeprefix(CLUSTER_PREFIX), action.action, key[1], cluster),
    )
    _event(db, when, f"Applying {action.action}: {action.description}", "maintenance")


def _failover(world: World, st: _State, key: Key, when: datetime) -> None:
    """Multi-AZ: the standby, maintained first, is promoted; the old primary is maintained next."""
    applying = st.applying[key]
    applying.failover_at = None
    db = _db(key)
    if db is None:
        return
    standby = secondary_zone(db)
    db.secondary_availability_zone, db.availability_zone = db.availability_zone, standby
    _event(db, when, "Multi-AZ instance failover started.", "failover")
    _event(db, when, "Multi-AZ instance failover completed.", "failover")


def _finish(world: World, st: _State, key: Key, when: datetime) -> None:
    applying = st.applying.pop(key)
    action = applying.action
    db = _db(key)
    if db is None:
        return
    db.status = AVAILABLE
    for member in _members(key):
        member.status = AVAILABLE
    if applying.failure is not None:
        # Still pending, as it was before the opt-in; it is tried again at the next window its dates call for.
        action.opt_in, action.opted_at, action.failed_at = None, None, when
        _event(db, when, f"The {action.action} maintenance action failed: {applying.failure.reason}", "failure")
        return
    actions = st.actions.get(key, [])
    if action in actions:
        actions.remove(action)
    if action.action == "db-upgrade":
        target = upgrade_target(action)
        if target is not None:
            db.engine_version = target  # an Aurora cluster's members read the cluster's version
    _event(db, when, f"Finished applying {action.action}: {action.description}", "maintenance")


def secondary_zone(db: Any) -> str:
    """The standby's Availability Zone of a Multi-AZ instance (moto keeps none: the sandbox picks one)."""
    current = getattr(db, "secondary_availability_zone", None)
    if current:
        return str(current)
    primary = str(db.availability_zone)
    return primary[:-1] + ("b" if primary.endswith("a") else "a")


def upgrade_target(action: PendingAction) -> str | None:
    """The engine version a db-upgrade's description names ("Upgrade to MySQL 8.0.40")."""
    versions = _VERSION.findall(action.description)
    return versions[-1] if versions else None


def _event(resource: Any, when: datetime, message: str, category: str) -> None:
    """An RDS event (DescribeEvents, moto's) on the simulated clock."""
    event = Event.__new__(Event)
    event.source_identifier = resource.resource_id
    # moto gives DB clusters no event source type: RDS's is db-cluster
    event.source_type = getattr(resource, "event_source_type", "db-cluster")
    event.message = message
    event.event_categories = [category]
    event.source_arn = resource.arn
    event.date = when
    resource.backend.events.append(event)


def _apply_start(action: PendingAction, window: str) -> datetime | None:
    """When applying the action starts (it may be later than CurrentApplyDate: that is a day, not a window).

    After a failed application the dates only count from the failure on: it is tried again in a later window.
    """
    starts: list[datetime] = []
    failed = action.failed_at
    if action.opt_in == "immediate" and action.opted_at is not None:
        starts.append(action.opted_at)
    if action.opt_in == "next-maintenance" and action.opted_at is not None:
        starts.append(next_window(window, action.opted_at))
    if action.auto_applied_after is not None:
        after = max(action.auto_applied_after, failed) if failed else action.auto_applied_after
        starts.append(next_window(window, after))
    if action.forced_apply is not None:
        if failed is None or action.forced_apply > failed:
            starts.append(action.forced_apply)
        else:
            starts.append(next_window(window, failed))
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
    wanted = params["ApplyAction"]
    if wanted not in KNOWN_ACTIONS:
        raise _invalid(f"Invalid value {wanted} for ApplyAction. Valid values are: {', '.join(sorted(KNOWN_ACTIONS))}.")
    resource = _find(_resources(world, ctx), params["ResourceIdentifier"])
    action = next((a for a in resource.actions if a.action == wanted), None)
    if action is None:
        raise AwsApiError("InvalidParameterCombination", f"There is no pending {wanted} action for {resource.arn}")
    kind = KINDS[resource.kind]
    if resource.model.status in kind.refusing:
        raise AwsApiError(
            kind.state_error,
            f"{kind.noun} {resource.identifier} is not in a valid state ({resource.model.status}) for this operation.",
        )
    applying = state(world).applying.get(resource.key)
    # Once applying has started nothing can call it back (an immediate opt-in can't be undone).
    if applying is None or applying.action is not action:
        if opt_in == "immediate" and action.opt_in != "immediate":
            action.opt_in, action.opted_at = "immediate", world.now()
        elif opt_in == "next-maintenance" and action.opt_in is None:
            action.opt_in, action.opted_at = "next-maintenance", world.now()
        elif opt_in == "undo-opt-in" and action.opt_in == "next-maintenance":
            action.opt_in, action.opted_at = None, None
    settle(world)  # an immediate opt-in on an available instance starts now: the response already says so
    return {"ResourcePendingMaintenanceActions": _render(resource)}


# --- snapshots, restores and deletions over the simulated clock ------------------------------
# moto makes them all at once: these run before / after moto's answer (server.BEFORE_MOTO, AFTER_MOTO).


def _instance_key(ctx: RequestContext, identifier: str) -> Key:
    return (ctx.account_id, ctx.region, identifier.rsplit(":", 1)[-1].lower())


def _state_error(message: str) -> AwsApiError:
    return AwsApiError("InvalidDBInstanceState", message)


def before_create_db_snapshot(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    db = _db(_instance_key(ctx, form.get("DBInstanceIdentifier", "")))
    if db is not None and db.status != AVAILABLE:
        raise _state_error(
            f"Cannot create a snapshot because the database instance {db.db_instance_identifier} "
            "is not currently in the available state."
        )


def after_create_db_snapshot(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    """The snapshot is creating (its instance backing-up) for rds.snapshot_seconds, then available."""
    st = state(world)
    backend = rds_backends[ctx.account_id][ctx.region]
    snapshot = backend.database_snapshots.get(form.get("DBSnapshotIdentifier", "").lower())
    key = _instance_key(ctx, form.get("DBInstanceIdentifier", ""))
    db = _db(key)
    if snapshot is not None and db is not None:
        _backing_up(world, st, key, db, snapshot, (ctx.account_id, ctx.region, snapshot.db_snapshot_identifier))


def _backing_up(world: World, st: _State, key: Key, resource: Any, snapshot: Any, snapshot_key: Key) -> None:
    """A new snapshot of a DB instance or cluster: creating, the resource backing-up, for rds.snapshot_seconds."""
    now = world.now()
    _record_actions(st, snapshot_key, key)
    _creating_snapshot(world, st, snapshot, now)
    _status_until(st, resource, "backing-up", now + timedelta(seconds=world.scenario.rds.snapshot_seconds))


def _status_until(st: _State, resource: Any, status: str, until: datetime) -> None:
    """The resource is ``status`` until then, and then available (unless its status changed meanwhile)."""
    resource.status = status

    def available(when: datetime) -> None:
        if resource.status == status:
            resource.status = AVAILABLE

    st.at(until, available)


def _record_actions(st: _State, snapshot_key: Key, key: Key) -> None:
    """What restores from the snapshot inherit: the pending actions its source has now."""
    st.snapshot_actions[snapshot_key] = [a.fresh() for a in st.actions.get(key, [])]


def _restoring(
    world: World, st: _State, key: Key, resource: Any, inherited: list[PendingAction], version: str
) -> datetime:
    """A restored DB instance or cluster: creating for rds.restore_seconds, with the snapshot's pending actions
    but a db-upgrade to ``version`` (the one it was restored at)."""
    now = world.now()
    st.actions[key] = [
        a.fresh() for a in inherited if a.action != "db-upgrade" or upgrade_target(a) not in (None, version)
    ]
    st.applying.pop(key, None)
    resource.created = now
    _status_until(st, resource, "creating", now + timedelta(seconds=world.scenario.rds.restore_seconds))
    return now


def _inherited(st: _State, snapshot_key: Key, source: Key) -> list[PendingAction]:
    """The actions recorded with the snapshot, else (a snapshot the sandbox did not see taken) its source's."""
    recorded = st.snapshot_actions.get(snapshot_key)
    return recorded if recorded is not None else st.actions.get(source, [])


def _creating_snapshot(world: World, st: _State, snapshot: Any, now: datetime) -> None:
    snapshot.status, snapshot.percent_progress = "creating", 0
    snapshot.created = snapshot.original_snapshot_create_time = now

    def available(when: datetime) -> None:
        snapshot.status, snapshot.percent_progress = AVAILABLE, 100

    st.at(now + timedelta(seconds=world.scenario.rds.snapshot_seconds), available)


def _snapshot_id(form: dict[str, str]) -> str:
    """An identifier or ARN (arn:aws:rds:REGION:ACCOUNT:snapshot:ID; an automated one's ID has a colon too)."""
    identifier = form.get("DBSnapshotIdentifier", "")
    if identifier.startswith("arn:"):
        identifier = identifier.split(":", 6)[-1]
    return identifier.lower()


def before_restore(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    snapshot = rds_backends[ctx.account_id][ctx.region].database_snapshots.get(_snapshot_id(form))
    if snapshot is not None and snapshot.status != AVAILABLE:
        raise AwsApiError(
            "InvalidDBSnapshotState",
            f"Snapshot {snapshot.db_snapshot_identifier} is not in the available state ({snapshot.status}).",
        )


def after_restore(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    """The new instance is creating for rds.restore_seconds, then available, with the snapshot's pending actions."""
    st = state(world)
    backend = rds_backends[ctx.account_id][ctx.region]
    key = _instance_key(ctx, form.get("DBInstanceIdentifier", ""))
    db = _db(key)
    snapshot = backend.database_snapshots.get(_snapshot_id(form))
    if db is None or snapshot is None:
        return
    inherited = _inherited(
        st,
        (ctx.account_id, ctx.region, snapshot.db_snapshot_identifier),
        (ctx.account_id, ctx.region, snapshot.db_instance_identifier.lower()),
    )
    now = _restoring(world, st, key, db, inherited, snapshot.engine_version)
    rename_automated_snapshots(backend, db.db_instance_identifier, now)


def after_stack_created(world: World, ctx: RequestContext, stack_name: str) -> None:
    """A stack's AWS::RDS::DBInstance resources with DBSnapshotIdentifier are restores (moto_fixes makes them):
    each is creating for rds.restore_seconds, with the pending actions a RestoreDBInstanceFromDBSnapshot gives."""
    backend = cloudformation_backends[ctx.account_id][ctx.region]
    stack = next((s for s in backend.stacks.values() if s.name == stack_name and s.status == "CREATE_COMPLETE"), None)
    if stack is None:
        return
    resources = stack.template_dict.get("Resources", {})
    for logical_id, resource in stack.resource_map._parsed_resources.items():
        spec = resources.get(logical_id)
        if not isinstance(spec, dict):
            continue
        properties = spec.get("Properties", {})
        if spec.get("Type") == "AWS::RDS::DBCluster" and properties.get("SnapshotIdentifier"):
            form = {
                "DBClusterIdentifier": resource.db_cluster_identifier,
                "SnapshotIdentifier": str(properties["SnapshotIdentifier"]),
            }
            after_cluster_restore(world, ctx, form)
        if spec.get("Type") != "AWS::RDS::DBInstance":
            continue
        snapshot = properties.get("DBSnapshotIdentifier")
        if snapshot:
            form = {"DBInstanceIdentifier": resource.db_instance_identifier, "DBSnapshotIdentifier": str(snapshot)}
            after_restore(world, ctx, form)
        elif properties.get("DBClusterIdentifier"):
            _creating_member(world, ctx, resource)


def _creating_member(world: World, ctx: RequestContext, db: Any) -> None:
    """A new Aurora member DB instance: creating for rds.restore_seconds, then available; nothing pending (a new
    instance starts on the current system software)."""
    st = state(world)
    key = _instance_key(ctx, db.db_instance_identifier)
    st.actions[key] = []
    now = world.now()
    db.created = now
    _status_until(st, db, "creating", now + timedelta(seconds=world.scenario.rds.restore_seconds))


# --- Aurora DB cluster snapshots and restores ------------------------------------------------------------------


def _cluster_key(ctx: RequestContext, identifier: str) -> Key:
    return (ctx.account_id, ctx.region, CLUSTER_PREFIX + identifier.rsplit(":", 1)[-1].lower())


def _cluster_snapshot_key(ctx: RequestContext, snapshot_id: str) -> Key:
    """snapshot_actions' key of a DB cluster snapshot (apart from DB snapshots of the same name)."""
    return (ctx.account_id, ctx.region, CLUSTER_PREFIX + snapshot_id)


def _cluster_snapshot(ctx: RequestContext, identifier: str) -> Any:
    from include.sandbox.moto_fixes import snapshot_identifier

    return rds_backends[ctx.account_id][ctx.region].cluster_snapshots.get(snapshot_identifier(identifier))


def before_create_db_cluster_snapshot(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    cluster = _db(_cluster_key(ctx, form.get("DBClusterIdentifier", "")))
    if cluster is not None and cluster.status != AVAILABLE:
        raise AwsApiError(
            "InvalidDBClusterStateFault",
            f"Cannot create a snapshot because the DB cluster {cluster.db_cluster_identifier} is not currently in "
            f"the available state ({cluster.status}).",
        )


def after_create_db_cluster_snapshot(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    """The cluster snapshot is creating (its cluster backing-up) for rds.snapshot_seconds, then available."""
    st = state(world)
    snapshot = _cluster_snapshot(ctx, form.get("DBClusterSnapshotIdentifier", ""))
    key = _cluster_key(ctx, form.get("DBClusterIdentifier", ""))
    cluster = _db(key)
    if snapshot is not None and cluster is not None:
        _backing_up(
            world, st, key, cluster, snapshot, _cluster_snapshot_key(ctx, snapshot.db_cluster_snapshot_identifier)
        )


def before_cluster_restore(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    snapshot = _cluster_snapshot(ctx, form.get("SnapshotIdentifier", ""))
    if snapshot is not None and snapshot.status != AVAILABLE:
        raise AwsApiError(
            "InvalidDBClusterSnapshotStateFault",
            f"DB cluster snapshot {snapshot.db_cluster_snapshot_identifier} is not in the available state "
            f"({snapshot.status}).",
        )


def after_cluster_restore(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    """The restored DB cluster is creating for rds.restore_seconds, then available, with the cluster-level actions
    its snapshot's source had (a db-upgrade to the version it was restored at is not pending)."""
    st = state(world)
    key = _cluster_key(ctx, form.get("DBClusterIdentifier", ""))
    cluster = _db(key)
    snapshot = _cluster_snapshot(ctx, form.get("SnapshotIdentifier", ""))
    if cluster is None or snapshot is None:
        return
    inherited = _inherited(
        st,
        _cluster_snapshot_key(ctx, snapshot.db_cluster_snapshot_identifier),
        (ctx.account_id, ctx.region, CLUSTER_PREFIX + snapshot.db_cluster_identifier.lower()),
    )
    cluster.sandbox_timed = True  # moto_fixes: the status stays creating until the clock says
    now = _restoring(world, st, key, cluster, inherited, cluster.engine_version)
    rename_automated_cluster_snapshots(rds_backends[ctx.account_id][ctx.region], cluster.db_cluster_identifier, now)


def rename_automated_cluster_snapshots(backend: Any, identifier: str, now: datetime) -> None:
    """moto names and dates the automated cluster snapshot it takes at creation with the wall clock: the simulated
    one (rds:ID-YYYY-MM-DD-HH-MM, as RDS names them)."""
    for key, snapshot in list(backend.cluster_snapshots.items()):
        if snapshot.snapshot_type == "automated" and snapshot.db_cluster_identifier.lower() == identifier.lower():
            del backend.cluster_snapshots[key]
            snapshot.db_cluster_snapshot_identifier = f"rds:{identifier.lower()}-{now:%Y-%m-%d-%H-%M}"
            snapshot.created = now
            backend.cluster_snapshots[snapshot.db_cluster_snapshot_identifier] = snapshot


def rename_automated_snapshots(backend: Any, identifier: str, now: datetime) -> None:
    """moto names and dates the automated snapshot it takes at creation with the wall clock: the simulated one."""
    for key, snapshot in list(backend.database_snapshots.items()):
        if snapshot.snapshot_type == "automated" and snapshot.db_instance_identifier == identifier.lower():
            del backend.database_snapshots[key]
            snapshot.db_snapshot_identifier = f"rds:{identifier.lower()}-{now:%Y-%m-%d-%H-%M}"
            snapshot.created = snapshot.original_snapshot_create_time = now
            backend.database_snapshots[snapshot.db_snapshot_identifier] = snapshot


def before_delete(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    key = _instance_key(ctx, form.get("DBInstanceIdentifier", ""))
    db = _db(key)
    if db is not None and db.status == "deleting":
        raise _state_error(f"Instance {db.db_instance_identifier} is already being deleted.")
    if db is not None:
        state(world).deleting[key] = db


def after_delete(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    """moto removes the instance at once: it stays deleting for rds.delete_seconds, then is gone."""
    st = state(world)
    key = _instance_key(ctx, form.get("DBInstanceIdentifier", ""))
    db = st.deleting.pop(key, None)
    backend = rds_backends[ctx.account_id][ctx.region]
    if db is None or key[2] in backend.databases:
        return
    now = world.now()
    st.applying.pop(key, None)
    db.status = "deleting"
    backend.databases[key[2]] = db
    final = backend.database_snapshots.get(form.get("FinalDBSnapshotIdentifier", "").lower())
    if final is not None and form.get("SkipFinalSnapshot", "").lower() != "true":
        _record_actions(st, (ctx.account_id, ctx.region, final.db_snapshot_identifier), key)
        _creating_snapshot(world, st, final, now)

    def gone(when: datetime) -> None:
        if backend.databases.get(key[2]) is db:
            del backend.databases[key[2]]
            st.actions.pop(key, None)

    st.at(now + timedelta(seconds=world.scenario.rds.delete_seconds), gone)


def _rewrite(status_tag: str, status: str, time_tag: str) -> Callable[[World, bytes], bytes]:
    """moto answers with the resource as it made it (available, dated on the wall clock): as AWS answers."""

    def rewrite(world: World, payload: bytes) -> bytes:
        text = payload.decode()
        text = re.sub(f"<{status_tag}>[^<]*</{status_tag}>", f"<{status_tag}>{status}</{status_tag}>", text, count=1)
        stamp = world.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        text = re.sub(f"<{time_tag}>[^<]*</{time_tag}>", f"<{time_tag}>{stamp}</{time_tag}>", text, count=1)
        return text.encode()

    return rewrite


REWRITE_MOTO: dict[tuple[str, str], Callable[[World, bytes], bytes]] = {
    ("rds", "CreateDBSnapshot"): _rewrite("Status", "creating", "SnapshotCreateTime"),
    ("rds", "RestoreDBInstanceFromDBSnapshot"): _rewrite("DBInstanceStatus", "creating", "InstanceCreateTime"),
    ("rds", "CreateDBClusterSnapshot"): _rewrite("Status", "creating", "SnapshotCreateTime"),
}
BEFORE_MOTO: dict[tuple[str, str], Callable[[World, RequestContext, dict[str, str]], None]] = {
    ("rds", "CreateDBSnapshot"): before_create_db_snapshot,
    ("rds", "RestoreDBInstanceFromDBSnapshot"): before_restore,
    ("rds", "DeleteDBInstance"): before_delete,
    ("rds", "CreateDBClusterSnapshot"): before_create_db_cluster_snapshot,
    ("rds", "RestoreDBClusterFromSnapshot"): before_cluster_restore,
}
AFTER_MOTO: dict[tuple[str, str], Callable[[World, RequestContext, dict[str, str]], None]] = {
    ("rds", "CreateDBSnapshot"): after_create_db_snapshot,
    ("rds", "RestoreDBInstanceFromDBSnapshot"): after_restore,
    ("rds", "DeleteDBInstance"): after_delete,
    ("rds", "CreateDBClusterSnapshot"): after_create_db_cluster_snapshot,
    ("rds", "RestoreDBClusterFromSnapshot"): after_cluster_restore,
}


HANDLERS: dict[tuple[str, str], Handler] = {
    ("rds", "DescribePendingMaintenanceActions"): describe_pending_maintenance_actions,
    ("rds", "ApplyPendingMaintenanceAction"): apply_pending_maintenance_action,
}
