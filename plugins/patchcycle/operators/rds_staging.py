"""The RDS staging rehearsal: a CloudFormation stack of DB instances (and Aurora DB clusters) restored from
production snapshots (setup), the planned maintenance applied to them and checked, and the stack deleted (teardown,
always).

One stack per (connection, region), one staging copy per (engine, engine version, instance class family) planned
(core.rds_plan.rehearsals). A DB instance's copy is restored from its source's latest automated snapshot; an Aurora
DB cluster's copy from its source cluster's latest automated DB cluster snapshot, with one DB instance in it (the
cluster-level actions are applied to the copy cluster). A source without one gets a manual snapshot first (deleted
by the teardown).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any, NoReturn

import pandas as pd
import yaml
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import REPO_ROOT
from patchcycle.core.rds_plan import (
    DB_CLUSTER,
    rds_stack_name,
    rds_staging_template,
    staging_member_identifier,
    upgrade_targets,
)
from patchcycle.core.rds_rollout import (
    WAIT_AVAILABLE,
    WAIT_IMMEDIATE,
    WaitState,
    cluster_as_copy,
    rehearsal_check,
    rehearsal_rows,
)
from patchcycle.core.timestamps import now_iso
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.db_endpoint import tcp_connect_problem
from patchcycle.hooks.rds_maintenance import RdsMaintenanceHook
from patchcycle.links.cloudformation import CloudFormationStackLink
from patchcycle.operators.base import DEFER_MARGIN
from patchcycle.operators.staging_stack import IN_PROGRESS, StackOperator
from patchcycle.run_artifacts import (
    RDS_INSTALL_PLAN,
    RDS_REHEARSAL_RESULTS,
    RDS_REHEARSALS,
    RDS_STAGING_STACK,
    RunArtifacts,
    Step,
)
from patchcycle.run_records import StackRecord
from patchcycle.triggers.rds_maintenance import CLUSTER_PREFIX, RdsMaintenanceTrigger, parse_wait_id, wait_id

TEMPLATE = REPO_ROOT / "include" / "cloudformation" / "rds_staging.yaml"
MANUAL_SNAPSHOT_PREFIX = "patchcycle-"  # + the staging copy's identifier: a snapshot this run took


def _is_cluster(row: dict[str, Any]) -> bool:
    return str(row.get("kind", "")) == DB_CLUSTER


def _copy_key(row: dict[str, Any]) -> str:
    """The copy's key in a wait's event (parse_wait_id's identifier): CLUSTER_PREFIX + a DB cluster's identifier."""
    return (CLUSTER_PREFIX if _is_cluster(row) else "") + str(row["staging_db"])


def _applied_before(row: dict[str, Any]) -> bool:
    """Whether an earlier try of this run applied the copy's actions: it records "apply" (with no failure) before
    applying, so a retry does not take an action no longer pending for one that never was."""
    return str(row["step"]) in ("check", "done") or (str(row["step"]) == "apply" and not str(row["detail"] or ""))


def _copy_waits(row: dict[str, Any]) -> list[str]:
    """The waits for a staging copy to be available: the DB instance; a DB cluster and its one DB instance."""
    db = str(row["staging_db"])
    if _is_cluster(row):
        return [wait_id(db, cluster=True), wait_id(staging_member_identifier(db))]
    return [wait_id(db)]


class RdsStackOperator(StackOperator):
    """What the RDS staging tasks share: the RDS stack's record and name, the RDS hook, the RDS waits."""

    label = "RDS staging stack"

    def stack_name(self, context: Context) -> str:
        return rds_stack_name(str(context["run_id"]))

    def stack_record(self, artifacts: RunArtifacts, name: str) -> StackRecord:
        found = artifacts.find(RDS_STAGING_STACK, target=self.target)
        return found or StackRecord(
            stack_name=name, account_id=self.account_id(artifacts), region=self.target.region_name
        )

    def save(self, artifacts: RunArtifacts, record: StackRecord) -> dict[str, Any]:
        artifacts.write(RDS_STAGING_STACK, record, target=self.target)
        return asdict(record)

    @property
    def rds(self) -> RdsMaintenanceHook:
        return self.hook_for(RdsMaintenanceHook)

    def my_rehearsals(self, artifacts: RunArtifacts) -> pd.DataFrame:
        rehearsals = artifacts.read(RDS_REHEARSALS)
        mine = (rehearsals["account_id"] == self.account_id(artifacts)) & (rehearsals["region"] == self.region_name)
        return rehearsals[mine].reset_index(drop=True)

    def delete_taken_snapshots(self, account: str, rows: list[dict[str, Any]]) -> int:
        """Delete the manual snapshots this run took (an automated snapshot is RDS's own: left); how many."""
        region = str(self.region_name)
        taken = [row for row in rows if str(row["snapshot_id"]).startswith(MANUAL_SNAPSHOT_PREFIX)]
        for row in taken:
            snapshot_id = str(row["snapshot_id"])
            if _is_cluster(row):
                with aws_call("rds:DeleteDBClusterSnapshot", account, region):
                    self.rds.delete_cluster_snapshot(snapshot_id)
            else:
                with aws_call("rds:DeleteDBSnapshot", account, region):
                    self.rds.delete_snapshot(snapshot_id)
        return len(taken)

    def wait_for_databases(self, waits: list[str], kind: str, method_name: str) -> NoReturn:
        config = self.settings()
        limit = config.rds.rds_timeout
        self.defer(
            trigger=RdsMaintenanceTrigger(
                [{**self.target.as_kwargs(), "databases": waits}],
                kind,
                poll_interval=config.poll_seconds,
                timeout=limit.total_seconds(),
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name=method_name,
            timeout=limit + DEFER_MARGIN,
        )


class RdsStagingOperator(RdsStackOperator):
    """Restores this target's staging copies in a CloudFormation stack and waits for the stack in the triggerer.

    A failure leaves nothing behind: Airflow runs the teardown only after a successful setup, so this task itself
    deletes the stack (and waits) and the snapshots it took before it fails."""

    @contextmanager
    def undone_on_failure(
        self, context: Context, artifacts: RunArtifacts, rows: list[dict[str, Any]] | None = None
    ) -> Iterator[None]:
        """On a failure that is not retried: delete what this run made in AWS, record it, and fail saying so.
        `rows`: the rehearsal rows so far (default: the recorded results)."""
        try:
            yield
        except AirflowFailException as error:
            if rows is None:
                found = artifacts.find(RDS_REHEARSAL_RESULTS, target=self.target)
                rows = [] if found is None else found.to_dict("records")
            raise AirflowFailException(f"{error}; {self._undo(context, artifacts, rows)}") from error

    def _undo(self, context: Context, artifacts: RunArtifacts, rows: list[dict[str, Any]]) -> str:
        """Delete this run's stack (waiting) and manual snapshots; what was done, in words."""
        name, region, account = self.stack_name(context), str(self.region_name), self.account_id(artifacts)
        said = []
        try:
            if taken := self.delete_taken_snapshots(account, rows):
                said.append(f"this run's {taken} manual snapshot(s) were deleted")
        except AirflowFailException as failed:
            said.append(f"DELETING THIS RUN'S SNAPSHOTS FAILED ({failed}): delete them by hand")
        with aws_call("cloudformation:DescribeStacks", account, region):
            existing = self.hook.status(name)
        if existing is not None:
            deleted = self.delete_and_wait(name)
            record = self.stack_record(artifacts, name)
            self.save(artifacts, replace(record, deleted=deleted, deleted_at=now_iso() if deleted else ""))
            said.append("the stack was deleted" if deleted else "DELETING THE STACK FAILED: delete it by hand")
        return "; ".join(said) or "nothing was left to delete"

    def execute(self, context: Context) -> Any:
        artifacts = self.artifacts(context)
        name, account = self.stack_name(context), self.account_id(artifacts)
        with self.recording_failure(artifacts, Step.RDS_STAGING):
            record = self.stack_record(artifacts, name)
            rehearsals = self.my_rehearsals(artifacts)
            if rehearsals.empty:
                self.log.info("No RDS rehearsal in %s: no stack", self.target.key)
                return self.save(artifacts, replace(record, status="NOT_NEEDED"))
            rows: list[dict[str, Any]] = []
            taken: list[str] = []
            tags = {"patchcycle:run-id": context["run_id"][:255]}
            with self.undone_on_failure(context, artifacts, rows):
                self._take_snapshots(account, rehearsals, rows, taken, tags)
            artifacts.write(RDS_REHEARSAL_RESULTS, rehearsal_rows(rows), target=self.target)
            self.save(artifacts, replace(record, status="SNAPSHOTS", error="", deleted=False, deleted_at=""))
        if taken:
            # A source is backing-up while its snapshot is taken, and available again once it is done.
            self.wait_for_databases(sorted(set(taken)), WAIT_AVAILABLE, "create_stack")
        return self.create_stack(context, {"status": "done", "databases": {}})

    def _take_snapshots(
        self,
        account: str,
        rehearsals: pd.DataFrame,
        rows: list[dict[str, Any]],
        taken: list[str],
        tags: dict[str, str],
    ) -> None:
        """Each rehearsal's snapshot (the latest automated one, else a manual one taken now) into `rows`; the sources
        whose snapshot is being taken into `taken` (wait ids)."""
        region = str(self.region_name)
        for rehearsal in rehearsals.to_dict("records"):
            source, cluster = str(rehearsal["source_db"]), _is_cluster(rehearsal)
            manual = MANUAL_SNAPSHOT_PREFIX + str(rehearsal["staging_db"])
            rds, kind = self.rds, "DBCluster" if cluster else "DB"
            latest, status, create = (
                (rds.latest_automated_cluster_snapshot, rds.cluster_snapshot_status, rds.create_cluster_snapshot)
                if cluster
                else (rds.latest_automated_snapshot, rds.snapshot_status, rds.create_snapshot)
            )
            with aws_call(f"rds:Describe{kind}Snapshots", account, region):
                found = latest(source)
                # An earlier try of this run may have taken it already: taken once, waited for again.
                earlier = None if found else status(manual)
            snapshot_id = str(found[f"{kind}SnapshotIdentifier"]) if found else manual
            if found is None and earlier is None:
                with aws_call(f"rds:Create{kind}Snapshot", account, region):
                    create(source, manual, tags)
            if found is None and earlier != "available":
                taken.append(wait_id(source, cluster=cluster))
            rows.append(
                {
                    **{
                        k: rehearsal[k]
                        for k in ("account_id", "region", "rehearsal_id", "staging_db", "source_db", "kind")
                    },
                    "snapshot_id": snapshot_id,
                    "actions": rehearsal["actions"],
                    "passed": False,
                    "step": "restore",
                }
            )

    def create_stack(self, context: Context, event: dict[str, Any]) -> Any:
        artifacts = self.artifacts(context)
        name = self.stack_name(context)
        account, region = self.account_id(artifacts), str(self.region_name)
        with self.recording_failure(artifacts, Step.RDS_STAGING), self.undone_on_failure(context, artifacts):
            results = artifacts.read(RDS_REHEARSAL_RESULTS, target=self.target)
            for row in results.to_dict("records"):
                snapshot_id = str(row["snapshot_id"])
                if _is_cluster(row):
                    with aws_call("rds:DescribeDBClusterSnapshots", account, region):
                        status = self.rds.cluster_snapshot_status(snapshot_id)
                else:
                    with aws_call("rds:DescribeDBSnapshots", account, region):
                        status = self.rds.snapshot_status(snapshot_id)
                if status != "available":
                    raise AirflowFailException(f"RDS snapshot {snapshot_id} in {region} is {status or 'missing'}")
            planned = self.my_rehearsals(artifacts).set_index("rehearsal_id")
            copies = [
                {
                    "rehearsal_id": str(row["rehearsal_id"]),
                    "staging_db": str(row["staging_db"]),
                    "snapshot_id": str(row["snapshot_id"]),
                    "instance_class": str(planned.loc[row["rehearsal_id"], "instance_class"]),
                    "kind": str(row["kind"]),
                    "engine": str(planned.loc[row["rehearsal_id"], "engine"]),
                }
                for row in results.to_dict("records")
            ]
            template = rds_staging_template(yaml.safe_load(TEMPLATE.read_text()), copies, str(context["run_id"]))
            tags = {"patchcycle:run-id": context["run_id"][:255], "patchcycle:role": "rds-staging"}
            with aws_call("cloudformation:DescribeStacks", account, region):
                existing = self.hook.status(name)
            if existing is not None and existing["status"] in IN_PROGRESS:
                stack_id = existing["stack_id"]  # this run's stack, from an earlier try: waited for again
            else:
                if existing is not None:  # a failed earlier try of this run: start clean
                    self.delete_and_wait(name)
                with aws_call("cloudformation:CreateStack", account, region):
                    stack_id = self.hook.create(name, json.dumps(template), {}, tags)
                self.log.info("Creating stack %s with %d RDS staging copies", name, len(copies))
            self.persist_link(context, CloudFormationStackLink, stack_id=stack_id)
            self.save(artifacts, replace(self.stack_record(artifacts, name), status="CREATE_IN_PROGRESS"))
        self.wait_for_stack(name, "stack_create_complete")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        name = self.stack_name(context)
        region = str(self.region_name)
        with self.recording_failure(artifacts, Step.RDS_STAGING), self.undone_on_failure(context, artifacts):
            record = self.stack_record(artifacts, name)
            if event.get("status") != "success":
                with aws_call("cloudformation:DescribeStackEvents", record.account_id, region):
                    reasons = self.hook.failure_reasons(name)
                status = self.hook.status(name) or {}
                error = "; ".join(reasons) or str(status.get("reason") or event.get("message", "unknown error"))
                self.save(artifacts, replace(record, status=str(status.get("status", "")), error=error))
                raise AirflowFailException(
                    f"RDS staging stack {name} in {region} failed to create "
                    f"({status.get('status', 'unknown status')}): {error}"
                )
            results = artifacts.read(RDS_REHEARSAL_RESULTS, target=self.target)
            copies = dict(zip(results["rehearsal_id"], results["staging_db"], strict=True))
            return self.save(
                artifacts,
                replace(record, created=True, created_at=now_iso(), status="CREATE_COMPLETE", instances=copies),
            )


class RdsRehearsalOperator(RdsStackOperator):
    """Waits for the staging copies to be available, applies the planned actions to them (immediately), waits,
    and checks each copy: available, an endpoint, the actions gone, the upgraded engine version, and (param
    rds_connect_check) a TCP connection to its endpoint from the worker."""

    operator_extra_links = ()  # type: ignore[assignment]  # no link: the stack is create_rds_staging's

    def execute(self, context: Context) -> Any:
        artifacts = self.artifacts(context)
        results = artifacts.find(RDS_REHEARSAL_RESULTS, target=self.target)
        if results is None or results.empty:
            self.log.info("No RDS rehearsal in %s", self.target.key)
            return {"rehearsals": 0}
        waits = [w for row in results.to_dict("records") for w in _copy_waits(row)]
        self.wait_for_databases(waits, WAIT_AVAILABLE, "apply")

    def apply(self, context: Context, event: dict[str, Any]) -> Any:
        artifacts = self.artifacts(context)
        account, region = self.account_id(artifacts), str(self.region_name)
        with self.recording_failure(artifacts, Step.RDS_STAGING):
            results = artifacts.read(RDS_REHEARSAL_RESULTS, target=self.target)
            states = {parse_wait_id(k)[0]: v for k, v in event.get("databases", {}).items()}
            records = results.to_dict("records")
            ready = [
                r
                for r in records
                if all(states.get(parse_wait_id(w)[0], {}).get("state") == WaitState.READY for w in _copy_waits(r))
            ]
            dbs, pending = self._copies(account, region, ready)
            rows, applying = [], []
            for row in records:
                actions = [a for a in str(row["actions"]).split(";") if a]
                if row not in ready:
                    busy = [states.get(parse_wait_id(w)[0], {}) for w in _copy_waits(row)]
                    status = next((b.get("status") for b in busy if b.get("state") != WaitState.READY), None)
                    rows.append({**row, "detail": f"the restored copy is {status or 'unknown'}, not available"})
                    continue
                missing = [a for a in actions if a not in pending.get(_copy_key(row), {})]
                if missing and not _applied_before(row):
                    rows.append(
                        {**row, "step": "apply", "detail": f"not pending on the restored copy: {', '.join(missing)}"}
                    )
                    continue
                rows.append({**row, "step": "apply", "detail": ""})
                applying.append((row, [a for a in actions if a not in missing]))
            # Recorded first, so that a retry after a lost try knows these copies' actions were applied.
            artifacts.write(RDS_REHEARSAL_RESULTS, rehearsal_rows(rows), target=self.target)
            waits = []
            for row, actions in applying:
                found = dbs[_copy_key(row)]
                arn = str(found["DBClusterArn"] if _is_cluster(row) else found["DBInstanceArn"])
                for action in actions:
                    with aws_call("rds:ApplyPendingMaintenanceAction", account, region):
                        self.rds.apply(arn, action, WAIT_IMMEDIATE)
                all_actions = [a for a in str(row["actions"]).split(";") if a]
                waits.append(wait_id(str(row["staging_db"]), all_actions, _is_cluster(row)))
        if waits:
            self.wait_for_databases(waits, WAIT_IMMEDIATE, "check")
        return self.check(context, {"status": "done", "databases": {}})

    def check(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        account, region = self.account_id(artifacts), str(self.region_name)
        with self.recording_failure(artifacts, Step.RDS_STAGING):
            results = artifacts.read(RDS_REHEARSAL_RESULTS, target=self.target)
            states = {parse_wait_id(k)[0]: v for k, v in event.get("databases", {}).items()}
            applied = [r for r in results.to_dict("records") if _copy_key(r) in states]
            dbs, pending = self._copies(account, region, applied)
            connect = self.settings().rds.rds_connect_check
            by_rehearsal = upgrade_targets(artifacts.read(RDS_INSTALL_PLAN))
            plan_versions = {
                str(db): by_rehearsal[str(rid)]
                for db, rid in zip(results["staging_db"], results["rehearsal_id"], strict=True)
                if str(rid) in by_rehearsal
            }
            rows = []
            for row in results.to_dict("records"):
                db, key = str(row["staging_db"]), _copy_key(row)
                if key not in states:
                    rows.append(row)  # failed before the apply: as recorded
                    continue
                actions = [a for a in str(row["actions"]).split(";") if a]
                state = states[key]
                if state["state"] == WaitState.APPLIED:
                    copy = (
                        cluster_as_copy(dbs.get(key), dbs.get(staging_member_identifier(db)))
                        if _is_cluster(row)
                        else dbs.get(key)
                    )
                    problem = rehearsal_check(copy, actions, pending.get(key, {}), plan_versions.get(db))
                    found = copy or {}
                    endpoint = found.get("Endpoint") or {}
                    where = f"{endpoint.get('Address', '')}:{endpoint.get('Port', '')}"
                    if not problem and connect:
                        problem = tcp_connect_problem(str(endpoint["Address"]), int(endpoint["Port"]))
                        if problem:  # the copy, or the route from the worker: the param says what to do
                            problem += " (set rds_connect_check to false where the workers have no route to it)"
                    rows.append(
                        {
                            **row,
                            "step": "check" if problem else "done",
                            "passed": not problem,
                            "detail": problem
                            or (f"available at {where}, accepting connections" if connect else f"available at {where}"),
                            "engine_version_after": str(found.get("EngineVersion", "")),
                        }
                    )
                elif state["state"] == WaitState.TIMEOUT:
                    rows.append({**row, "detail": f"still {state['status']} at the RDS wait limit"})
                else:
                    source = "db-cluster" if _is_cluster(row) else "db-instance"
                    with aws_call("rds:DescribeEvents", account, region):
                        events = [m for a in actions for m in self.rds.failure_events(db, a, source)]
                    rows.append({**row, "detail": events[-1] if events else f"the copy is {state['status']}"})
            frame = rehearsal_rows(rows)
            artifacts.write(RDS_REHEARSAL_RESULTS, frame, target=self.target)
            summary = {"rehearsals": len(frame), "passed": int(frame["passed"].sum())}
            self.log.info("RDS rehearsals in %s: %s", self.target.key, summary)
            return summary

    def _copies(
        self, account: str, region: str, rows: list[dict[str, Any]]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
        """The copies as RDS describes them and their pending actions, keyed by _copy_key (a DB cluster's one DB
        instance by its identifier too)."""
        instances = [str(r["staging_db"]) for r in rows if not _is_cluster(r)]
        clusters = [str(r["staging_db"]) for r in rows if _is_cluster(r)]
        members = [staging_member_identifier(c) for c in clusters]
        found: dict[str, dict[str, Any]] = {}
        pending: dict[str, dict[str, dict[str, Any]]] = {}
        if instances or members:
            with aws_call("rds:DescribeDBInstances", account, region):
                found |= self.rds.db_instances(instances + members)
        if instances:
            with aws_call("rds:DescribePendingMaintenanceActions", account, region):
                pending |= self.rds.pending_actions(instances)
        if clusters:
            with aws_call("rds:DescribeDBClusters", account, region):
                found |= {CLUSTER_PREFIX + k: v for k, v in self.rds.db_clusters(clusters).items()}
            with aws_call("rds:DescribePendingMaintenanceActions", account, region):
                pending |= {CLUSTER_PREFIX + k: v for k, v in self.rds.pending_actions(clusters, clusters=True).items()}
        return found, pending


class RdsStagingTeardownOperator(RdsStackOperator):
    """Deletes this target's RDS staging stack (and the snapshots this run took), whatever happened upstream."""

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        results = artifacts.find(RDS_REHEARSAL_RESULTS, target=self.target)
        self.delete_taken_snapshots(self.account_id(artifacts), [] if results is None else results.to_dict("records"))
        return self.delete_stack(context, artifacts)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return self.deletion_complete(context, event)
