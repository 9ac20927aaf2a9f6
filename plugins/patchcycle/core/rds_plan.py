"""RDS in install mode: which DB instances get which pending maintenance action, their rehearsals and waves.

A DB instance is planned when it is in scope and has a pending action whose type the run applies
(`rds_actions`). Each planned instance is rehearsed by the staging copy of its (account, region, engine,
engine version, instance class family): the copy restored from a DB instance of that kind gets the same
actions first. The waves take read replicas before their sources, and never a replica and its source in
the same wave.

An Aurora DB cluster whose cluster-level actions DescribePendingMaintenanceActions lists (on its ARN) is one
planned item (kind db-cluster, its member instances noted): Aurora applies them to every member at once. It is
rehearsed on a cluster restored from its cluster snapshot, per (engine, engine version, its members' class
family). An Aurora member's own action is not (rehearsal_id ""): an Aurora instance has no snapshot of its own,
and the restored cluster's new instance has none of those actions pending (docs/rds.md). A cluster goes in a
later wave than any of its members that is planned on its own, so a member and its cluster are never applied
together.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import UTC_TIMESTAMP, typed_frame
from patchcycle.core.inventory import is_cluster_arn
from patchcycle.core.quantities import CountOrPercent
from patchcycle.core.waves import wave_sizes

# What applying an action means for the database's clients (docs/rds.md).
FAILOVER: Final = "failover"  # Multi-AZ: the standby is maintained first and promoted: a brief failover
DOWNTIME: Final = "downtime"  # single-AZ: the instance is unavailable while the action is applied
CLUSTER: Final = "cluster"  # Aurora: applied to every member at once: brief downtime, or a failover, for all
# A db-upgrade upgrades both copies of a Multi-AZ pair at once: downtime either way.
ALWAYS_DOWNTIME: Final = frozenset({"db-upgrade"})
DB_INSTANCE, DB_CLUSTER = "db-instance", "db-cluster"  # RDS_PLAN_COLUMNS' kind

RDS_PLAN_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",  # the DB instance (or Aurora DB cluster) identifier
    "resource_arn": "str",
    "kind": "str",  # db-instance | db-cluster (DB_INSTANCE, DB_CLUSTER)
    "members": "str",  # a DB cluster's member DB instances, ";"-joined; "" for a DB instance
    "action": "str",  # the pending maintenance action, e.g. system-update
    "description": "str",  # the action's Description
    "auto_applied_after": UTC_TIMESTAMP,  # AutoAppliedAfterDate (NaT when none)
    "forced_apply_date": UTC_TIMESTAMP,  # ForcedApplyDate (NaT when none)
    "multi_az": "bool",
    "impact": "str",  # failover | downtime | cluster (FAILOVER, DOWNTIME, CLUSTER)
    "replica_of": "str",  # the source DB instance of a read replica; "" when none
    "engine": "str",
    "engine_version": "str",
    "instance_class": "str",
    "rehearsal_id": "str",  # the staging rehearsal that proves the action first; "" for an Aurora member's own
    # action (not rehearsed: a new instance of a restored cluster has none of them pending)
    "wave": "int64",  # 1 = the first wave
}

REHEARSAL_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "rehearsal_id": "str",
    "engine": "str",
    "engine_version": "str",
    "instance_family": "str",  # e.g. db.r6g
    "instance_class": "str",  # the source's DB instance class, which the staging copy gets
    "source_db": "str",  # the DB instance whose snapshot the staging copy is restored from
    "actions": "str",  # the actions rehearsed, sorted, ";"-joined
    "databases": "int64",  # planned DB instances it rehearses for
    "staging_db": "str",  # the staging copy's DB instance (DB cluster) identifier
    "kind": "str",  # db-instance | db-cluster: what the copy is restored from (a DB snapshot, a DB cluster snapshot)
}

RDS_STACK_PREFIX: Final = "patchcycle-staging-rds-"
_FAMILY = re.compile(r"^(db\.[a-z0-9-]+)\.")
_SAFE = re.compile(r"[^a-z0-9]+")
STAGING_DB_PREFIX: Final = "patchcycle-stg-"


def instance_family(instance_class: str) -> str:
    """db.r6g.large -> db.r6g (the class without its size)."""
    match = _FAMILY.match(instance_class)
    return match.group(1) if match else instance_class


def impact(action: str, multi_az: bool) -> str:
    """FAILOVER for a Multi-AZ instance (except a db-upgrade), else DOWNTIME."""
    return FAILOVER if multi_az and action not in ALWAYS_DOWNTIME else DOWNTIME


def rehearsal_id(engine: str, engine_version: str, family: str) -> str:
    """e.g. postgres-16-3-db-r6g: unique per (engine, version, family) within a target."""
    return _SAFE.sub("-", f"{engine}-{engine_version}-{family}".lower()).strip("-")


def staging_db_identifier(run_id: str, rehearsal: str) -> str:
    """The staging copy's DB instance identifier: a letter first, at most 63 characters, unique per run."""
    digest = hashlib.sha256(f"{run_id}/{rehearsal}".encode()).hexdigest()[:10]
    return f"{STAGING_DB_PREFIX}{digest}"


def rds_install_plan(inventory: pd.DataFrame, plan: pd.DataFrame, actions: Collection[str]) -> pd.DataFrame:
    """RDS_PLAN_COLUMNS rows (wave 0 until `assign_waves`): one per (in-scope DB instance, applied action).

    inventory: the scoped inventory (`in_scope`, `multi_az`, `replica_of`); plan: the match plan's rds rows
    (patch_id = the action, its dates). Actions not in `actions` stay pending (reported, not applied).
    """
    rds = inventory[(inventory["resource_type"] == "rds") & inventory["in_scope"]]
    by_key = {(str(r["account_id"]), str(r["region"]), str(r["resource_id"])): r for r in rds.to_dict("records")}
    members: dict[tuple[str, str, str], list[str]] = {}
    member_classes: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in inventory[inventory["resource_type"] == "rds"].to_dict("records"):
        if r["db_cluster"] and not is_cluster_arn(str(r["resource_arn"])):
            cluster_key = (str(r["account_id"]), str(r["region"]), str(r["db_cluster"]))
            members.setdefault(cluster_key, []).append(str(r["resource_id"]))
            member_classes.setdefault(cluster_key, {})[str(r["resource_id"])] = str(r["instance_type"])
    rows = []
    for item in plan[plan["resource_type"] == "rds"].to_dict("records"):
        db = by_key.get((str(item["account_id"]), str(item["region"]), str(item["resource_id"])))
        action = str(item["patch_id"])
        if db is None or action not in actions:
            continue
        cluster = is_cluster_arn(str(db["resource_arn"]))
        key = (str(db["account_id"]), str(db["region"]), str(db["resource_id"]))
        # A DB cluster has no class of its own: its members' (the first by identifier), which its staging copy's
        # one instance gets.
        classes = member_classes.get(key, {})
        instance_class = classes[min(classes)] if cluster and classes else str(db["instance_type"])
        family = instance_family(instance_class)
        rows.append(
            {
                "account_id": db["account_id"],
                "region": db["region"],
                "resource_id": db["resource_id"],
                "resource_arn": db["resource_arn"],
                "kind": DB_CLUSTER if cluster else DB_INSTANCE,
                "members": ";".join(sorted(members.get(key, []))) if cluster else "",
                "action": action,
                "description": str(item["title"]),
                "auto_applied_after": item["auto_applied_after"],
                "forced_apply_date": item["forced_apply_date"],
                "multi_az": bool(db["multi_az"]),
                "impact": CLUSTER if cluster else impact(action, bool(db["multi_az"])),
                "replica_of": str(db["replica_of"]),
                "engine": db["engine"],
                "engine_version": db["engine_version"],
                "instance_class": instance_class,
                # An Aurora member's own action is not rehearsed: a new instance of a restored cluster (the staging
                # copy) starts on current software, with none of them pending. A cluster is, on a restored cluster.
                "rehearsal_id": ""
                if db["db_cluster"] and not cluster
                else rehearsal_id(str(db["engine"]), str(db["engine_version"]), family),
                "wave": 0,
            }
        )
    frame = typed_frame(rows, RDS_PLAN_COLUMNS)
    return frame.sort_values(["account_id", "region", "resource_id", "action"], ignore_index=True)


def rehearsals(plan: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """REHEARSAL_COLUMNS: one staging copy per (account, region, rehearsal_id), restored from a primary when the
    kind has one (a replica's snapshot is its source's data), the first by identifier."""
    rows = []
    rehearsed = plan[plan["rehearsal_id"] != ""]  # Aurora members' own actions are not rehearsed
    for (account_id, region, rid), group in rehearsed.groupby(["account_id", "region", "rehearsal_id"], sort=True):
        dbs = group.drop_duplicates("resource_id").sort_values(["replica_of", "resource_id"])
        # "" sorts first: a primary if there is one
        source = dbs.iloc[0]
        rows.append(
            {
                "account_id": account_id,
                "region": region,
                "rehearsal_id": rid,
                "engine": source["engine"],
                "engine_version": source["engine_version"],
                "instance_family": instance_family(str(source["instance_class"])),
                "instance_class": source["instance_class"],
                "source_db": source["resource_id"],
                "actions": ";".join(sorted(set(group["action"]))),
                "databases": len(dbs),
                "staging_db": staging_db_identifier(f"{run_id}/{account_id}/{region}", str(rid)),
                "kind": source["kind"],
            }
        )
    return typed_frame(rows, REHEARSAL_COLUMNS)


Key = tuple[str, str, str]  # (account, region, DB instance identifier)


def plan_rds_waves(
    databases: Sequence[tuple[Key, str]],
    canary: CountOrPercent,
    wave_percentages: Sequence[int],
    max_waves: int,
    clusters: Mapping[Key, Sequence[str]] | None = None,
) -> dict[Key, int]:
    """{DB: wave (1 = first)} for (DB, replica_of) pairs: the run's wave sizes, read replicas first, and a source
    always in a later wave than each of its replicas (so never both in one wave). The sizes are the EC2 waves'
    (canary, wave_percentages); a source pushed past its wave's end makes that wave later, or a new one.

    clusters: {Aurora DB cluster key: its member DB instance identifiers}; a cluster goes last in the order and
    always in a later wave than each of its members planned on its own (a member is never maintained while its
    cluster's update is applied to it)."""
    if not databases:
        return {}
    clusters = clusters or {}
    keys = {key for key, _ in databases}
    replicas = sorted(key for key, source in databases if source and key not in clusters)
    primaries = sorted(key for key, source in databases if not source and key not in clusters)
    replicas_of: dict[Key, list[Key]] = {}
    for key, source in databases:
        if source and (key[0], key[1], source) in keys:
            replicas_of.setdefault((key[0], key[1], source), []).append(key)
    for cluster, member_ids in clusters.items():
        planned = [(cluster[0], cluster[1], member) for member in member_ids]
        replicas_of.setdefault(cluster, []).extend(m for m in planned if m in keys and m not in clusters)
    sizes = wave_sizes(len(databases), canary, wave_percentages, max_waves)
    waves: dict[Key, int] = {}
    order = [*replicas, *primaries, *sorted(key for key in keys if key in clusters)]
    position = 0
    for wave, size in enumerate(sizes, start=1):
        for key in order[position : position + size]:
            waves[key] = wave
        position += size
    # A source (cluster) goes after each of its replicas (members). One pass in `order` is not enough for a cascade
    # (a replica of a replica): pushing a middle replica back can put it in its own source's wave, so pass again
    # until nothing moves (replication has no cycles: at most one pass per level of the deepest cascade).
    for _ in range(len(order)):
        moved = False
        for key in order:
            after = max((waves[replica] for replica in replicas_of.get(key, [])), default=0)
            if waves[key] <= after:
                waves[key], moved = after + 1, True
        if not moved:
            break
    return waves


def assign_waves(plan: pd.DataFrame, waves: Mapping[Key, int]) -> pd.DataFrame:
    """The plan with each row's `wave` from `waves` (keyed by account, region, DB instance)."""
    planned = plan.copy()
    planned["wave"] = [
        int(waves[(str(a), str(r), str(d))])
        for a, r, d in zip(planned["account_id"], planned["region"], planned["resource_id"], strict=True)
    ]
    return planned.astype({"wave": "int64"})


def databases_of(plan: pd.DataFrame) -> list[tuple[Key, str]]:
    """The plan's distinct DB instances as (key, replica_of)."""
    distinct = plan.drop_duplicates(["account_id", "region", "resource_id"])
    return [
        ((str(a), str(r), str(d)), str(s))
        for a, r, d, s in zip(
            distinct["account_id"], distinct["region"], distinct["resource_id"], distinct["replica_of"], strict=True
        )
    ]


def clusters_of(plan: pd.DataFrame) -> dict[Key, list[str]]:
    """The plan's Aurora DB clusters and their member DB instances."""
    distinct = plan[plan["kind"] == DB_CLUSTER].drop_duplicates(["account_id", "region", "resource_id"])
    return {
        (str(a), str(r), str(d)): [m for m in str(members).split(";") if m]
        for a, r, d, members in zip(
            distinct["account_id"], distinct["region"], distinct["resource_id"], distinct["members"], strict=True
        )
    }


def plan_summary(plan: pd.DataFrame) -> dict[str, Any]:
    """Counts for the task's XCom: databases (DB instances and clusters), clusters, actions, waves."""
    dbs = plan.drop_duplicates(["account_id", "region", "resource_id"])
    return {
        "databases": len(dbs),
        "clusters": int((dbs["kind"] == DB_CLUSTER).sum()),
        "actions": len(plan),
        "waves": {str(int(w)): int(n) for w, n in dbs.groupby("wave").size().items()},
    }


def rds_stack_name(run_id: str) -> str:
    """The RDS staging stack's name for a run (the staging stacks' prefix, so leftovers are found alike)."""
    if not run_id:
        raise ValueError("run_id: must not be empty")
    return RDS_STACK_PREFIX + hashlib.sha256(run_id.encode()).hexdigest()[:16]


def staging_logical_id(rehearsal: str, base: str = "StagingDb") -> str:
    """A staging copy's logical resource id: `base` (the template's resource) + the rehearsal id's letters and
    digits."""
    return base + "".join(part.capitalize() for part in _SAFE.split(rehearsal) if part)


def staging_member_identifier(staging_cluster: str) -> str:
    """The one DB instance of a staging DB cluster (its writer): the cluster's identifier + "-1"."""
    return f"{staging_cluster}-1"


BASE_RESOURCE: Final = "StagingDb"
# A DB cluster's copy: the cluster restored from a DB cluster snapshot, and one DB instance in it (a cluster
# without an instance has no endpoint to connect to).
CLUSTER_RESOURCE: Final = "StagingCluster"
CLUSTER_MEMBER_RESOURCE: Final = "StagingClusterDb"
COPY_PARAMETERS: Final = (
    "RunId",
    "RehearsalId",
    "DBInstanceIdentifier",
    "DBSnapshotIdentifier",
    "DBInstanceClass",
    "DBClusterIdentifier",
    "DBClusterSnapshotIdentifier",
    "Engine",
)


def _substitute(node: Any, values: Mapping[str, Any]) -> Any:
    """The node with every {"Ref": name} of `values` replaced by its value."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in values:
            return values[node["Ref"]]
        return {key: _substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    return node


def rds_staging_template(base: Mapping[str, Any], copies: Sequence[Mapping[str, str]], run_id: str) -> dict[str, Any]:
    """The RDS staging stack from the single-copy template (include/cloudformation/rds_staging.yaml), with the
    copy's values in place of the parameters (the stack has none left). Each copy is {rehearsal_id, staging_db,
    snapshot_id, instance_class, kind, engine}: a DB instance's is its StagingDb resource; a DB cluster's (kind
    db-cluster) its StagingCluster and StagingClusterDb resources, the instance in the cluster."""
    if not copies:
        raise ValueError("copies: an RDS staging stack needs at least one DB instance")
    missing = [name for name in COPY_PARAMETERS if name not in base.get("Parameters", {})]
    wanted = (BASE_RESOURCE, CLUSTER_RESOURCE, CLUSTER_MEMBER_RESOURCE)
    if any(name not in base.get("Resources", {}) for name in wanted) or missing:
        raise ValueError(f"the RDS staging template needs the resources {wanted} and the parameters {missing}")
    resources = {}
    for copy in copies:
        rid = copy["rehearsal_id"]
        values: dict[str, Any] = {
            "RunId": run_id[:255],
            "RehearsalId": rid,
            "DBInstanceClass": copy["instance_class"],
            "Engine": copy.get("engine", ""),
        }
        if copy.get("kind") == DB_CLUSTER:
            cluster_id = staging_logical_id(rid, CLUSTER_RESOURCE)
            values |= {
                "DBClusterIdentifier": copy["staging_db"],
                "DBClusterSnapshotIdentifier": copy["snapshot_id"],
                "DBInstanceIdentifier": staging_member_identifier(copy["staging_db"]),
                CLUSTER_RESOURCE: {"Ref": cluster_id},  # the member joins this copy's cluster
            }
            resources[cluster_id] = _substitute(base["Resources"][CLUSTER_RESOURCE], values)
            member = _substitute(base["Resources"][CLUSTER_MEMBER_RESOURCE], values)
            resources[staging_logical_id(rid, CLUSTER_MEMBER_RESOURCE)] = member
            continue
        values |= {"DBInstanceIdentifier": copy["staging_db"], "DBSnapshotIdentifier": copy["snapshot_id"]}
        resources[staging_logical_id(rid)] = _substitute(base["Resources"][BASE_RESOURCE], values)
    template = {key: value for key, value in base.items() if key not in ("Parameters", "Resources")}
    template["Resources"] = resources
    return template


_VERSION: Final = re.compile(r"\d+(?:\.\d+)+")


def upgrade_targets(plan: pd.DataFrame) -> dict[str, str]:
    """Rehearsal id -> the engine version its db-upgrade's description names ("Upgrade to MySQL 8.0.40")."""
    found = {}
    for row in plan[plan["action"] == "db-upgrade"].to_dict("records"):
        versions = _VERSION.findall(str(row["description"]))
        if versions:
            found[str(row["rehearsal_id"])] = versions[-1]
    return found
