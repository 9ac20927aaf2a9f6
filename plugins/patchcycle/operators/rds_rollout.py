"""rds_rollout: after approval, the planned RDS maintenance applied wave by wave, behind the wave gates and the
halt threshold.

Each wave first passes the EC2 waves' gates (operators.wave_gates) in the targets it touches: a CLOSED change
calendar is waited for in the triggerer up to change_calendar_wait_minutes, then the rollout halts; a health alarm
in ALARM halts it. A halt leaves this wave's and every later wave's databases not applied (halted_by_calendar,
halted_by_alarm: SKIPPED_HALTED). Then the wave calls ApplyPendingMaintenanceAction (OptInType from `rds_apply`) for
every planned action of its DB instances and Aurora DB clusters (on the cluster's ARN), across targets, and waits in
the triggerer: `immediate` until each is available with the actions gone from DescribePendingMaintenanceActions;
`next-maintenance` until each shows the opt-in. Failures (an action that failed or was refused, a wait past
`rds_timeout_minutes`) count toward the halt threshold like an EC2 wave's. A halt (gate or threshold) fails the task
and tells the run's SNS topic, as a halted EC2 wave does (operators.wave_gates.WaveHalted); the report runs all the
same (trigger rule all_done). The plan puts read replicas in earlier
waves than their sources, planned members before their cluster. DB instances whose rehearsal failed are not
touched; nor are Aurora members' own actions (never rehearsed) under approval_mode auto.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

import pandas as pd
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError

from patchcycle.config import CycleConfig, Target
from patchcycle.core.frames import concat_frames
from patchcycle.core.rds_plan import DB_CLUSTER
from patchcycle.core.rds_rollout import (
    FAILURE_OUTCOMES,
    REHEARSAL_RESULT_COLUMNS,
    ROLLOUT_COLUMNS,
    RolloutOutcome,
    WaitState,
    rollout_rows,
)
from patchcycle.core.timestamps import iso_utc, parse_utc
from patchcycle.core.waves import halt_decision
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.rds_maintenance import RdsMaintenanceHook
from patchcycle.operators.base import DEFER_MARGIN, FleetOperator, recorded_failure
from patchcycle.operators.wave_gates import (
    WaveHalted,
    alarm_halt_reason,
    alarms_in_alarm,
    calendar_halt_reason,
    calendar_look,
    calendar_wait,
    telling_halts,
)
from patchcycle.run_artifacts import (
    INVENTORY_SUMMARY,
    RDS_INSTALL_PLAN,
    RDS_REHEARSAL_RESULTS,
    RDS_ROLLOUT,
    RunArtifacts,
    Step,
)
from patchcycle.triggers.rds_maintenance import (
    RdsMaintenanceTrigger,
    cluster_identifier,
    parse_wait_id,
    wait_id,
    wait_place,
)

_STATE_OUTCOMES: Mapping[str, RolloutOutcome] = {
    WaitState.APPLIED: RolloutOutcome.APPLIED,
    WaitState.SCHEDULED: RolloutOutcome.SCHEDULED,
    WaitState.FAILED: RolloutOutcome.FAILED,
    WaitState.TIMEOUT: RolloutOutcome.TIMEOUT,
}


class RdsRolloutOperator(FleetOperator[CycleConfig]):
    """Applies the approved RDS maintenance in waves (one task for every target; each wave waits in the triggerer)."""

    config_class = CycleConfig

    @telling_halts
    def execute(self, context: Context) -> Any:
        artifacts = self.artifacts(context)
        with recorded_failure(artifacts, Step.RDS_ROLLOUT):
            plan = artifacts.find(RDS_INSTALL_PLAN)
            if plan is None or plan.empty:
                self.log.info("No RDS maintenance planned")
                return {"databases": 0}
            rows = self._staging_failed(artifacts, plan) + self._not_rehearsed(plan)
            artifacts.write(RDS_ROLLOUT, rollout_rows(rows))
        return self._wave(context, 1)

    @telling_halts
    def calendar_done(self, context: Context, event: dict[str, Any], wave: int, since: str) -> Any:
        """The change calendar opened (look again, in every target), or stayed CLOSED until the deadline: halt."""
        if event.get("status") == "open":
            return self._wave(context, wave, since)
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.RDS_ROLLOUT):
            reason = calendar_halt_reason(f"RDS wave {wave}", config.safety, since)
            self._halt_before(artifacts, wave, RolloutOutcome.HALTED_BY_CALENDAR, reason)

    def _wave(self, context: Context, wave: int, calendar_since: str = "") -> Any:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.RDS_ROLLOUT):
            plan, done = artifacts.read(RDS_INSTALL_PLAN), artifacts.read(RDS_ROLLOUT)
            todo = _not_reached(plan, done)
            if todo.empty:
                return self._summary(done)
            wave = max(wave, int(todo["wave"].min()))
            members = todo[todo["wave"] == wave]
            placed = [(target, account) for target, (account, _) in self._by_target(artifacts, members).items()]
            safety = config.safety
            if safety.change_calendar:
                closed, state = calendar_look(placed, safety.change_calendar)
                if closed is not None:
                    since = calendar_since or iso_utc(datetime.now(UTC))
                    self.log.info(
                        "Change calendar %s is %s in %s: RDS wave %d waits",
                        safety.change_calendar,
                        state,
                        closed.key,
                        wave,
                    )
                    self.defer(
                        trigger=calendar_wait(
                            closed, safety, parse_utc(since) or datetime.now(UTC), config.poll_seconds
                        ),
                        method_name="calendar_done",
                        kwargs={"wave": wave, "since": since},
                        timeout=safety.change_calendar_wait + DEFER_MARGIN,
                    )
            firing = alarms_in_alarm(placed, safety.health_alarms)
            if firing:
                reason = alarm_halt_reason(f"RDS wave {wave}", firing)
                self._halt_before(artifacts, wave, RolloutOutcome.HALTED_BY_ALARM, reason)
            opt_in = config.rds.rds_apply
            rows, waits = [], []
            for target, (_, group) in self._by_target(artifacts, members).items():
                hook = self._hook(target)
                for (account_id, region, db), actions in group.groupby(["account_id", "region", "resource_id"]):
                    cluster = bool((actions["kind"] == DB_CLUSTER).any())
                    names = sorted(actions["action"])
                    refused = ""
                    for arn, action in zip(actions["resource_arn"], actions["action"], strict=True):
                        try:
                            with aws_call("rds:ApplyPendingMaintenanceAction", str(account_id), str(region)):
                                if not self._apply(hook, str(arn), str(action), opt_in):
                                    continue  # not pending (any more, e.g. a retried task): the wait tells
                        except AirflowFailException as error:
                            refused = f"ApplyPendingMaintenanceAction {action} refused: {error}"
                            break
                    base = {"account_id": account_id, "region": region, "resource_id": db, "wave": wave}
                    if refused:
                        rows.append(
                            {**base, "actions": ";".join(names), "outcome": RolloutOutcome.FAILED, "detail": refused}
                        )
                    else:  # keyed by its place: one identifier may be in several of the wave's targets
                        waits.append((target, wait_id(str(db), names, cluster, (str(account_id), str(region)))))
            self.log.info("RDS wave %d: %d database(s), opt-in %s", wave, len(waits) + len(rows), opt_in)
            artifacts.write(RDS_ROLLOUT, concat_frames([done, rollout_rows(rows)], ROLLOUT_COLUMNS))
        if not waits:
            return self._judge(context, wave, {"databases": {}})
        by_target: dict[Target, list[str]] = {}
        for target, wid in waits:
            by_target.setdefault(target, []).append(wid)
        limit = config.rds.rds_timeout
        self.defer(
            trigger=RdsMaintenanceTrigger(
                [{**target.as_kwargs(), "databases": ids} for target, ids in by_target.items()],
                opt_in,
                poll_interval=config.poll_seconds,
                timeout=limit.total_seconds(),
            ),
            method_name="wave_done",
            timeout=limit + DEFER_MARGIN,
        )

    @telling_halts
    def wave_done(self, context: Context, event: dict[str, Any]) -> Any:
        """The wave in flight is the earliest one with DB instances not in the rollout's table yet."""
        artifacts = self.artifacts(context)
        plan, done = artifacts.read(RDS_INSTALL_PLAN), artifacts.read(RDS_ROLLOUT)
        reached = set(zip(done["account_id"], done["region"], done["resource_id"], strict=True))
        waves = [
            int(w)
            for a, r, d, w in zip(plan["account_id"], plan["region"], plan["resource_id"], plan["wave"], strict=True)
            if (a, r, d) not in reached
        ]
        return self._judge(context, min(waves), event)

    def _judge(self, context: Context, wave: int, event: dict[str, Any]) -> Any:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.RDS_ROLLOUT):
            plan, done = artifacts.read(RDS_INSTALL_PLAN), artifacts.read(RDS_ROLLOUT)
            rows = []
            for wid, state in event.get("databases", {}).items():
                waited, actions = parse_wait_id(wid)
                cluster = cluster_identifier(waited)
                db = cluster if cluster is not None else waited
                kind = (plan["kind"] == DB_CLUSTER) if cluster is not None else (plan["kind"] != DB_CLUSTER)
                target = Target(str(state["aws_conn_id"]), str(state["region_name"]))
                # An id without its place (deferred before waits had one): the target's account and region.
                account, region = wait_place(wid) or (self._account(artifacts, target), target.region_name)
                mine = (plan["account_id"] == account) & (plan["region"] == region) & (plan["resource_id"] == db)
                row = plan[mine & kind].iloc[0]
                outcome = _STATE_OUTCOMES[state["state"]]
                detail = ""
                if outcome == RolloutOutcome.FAILED:
                    hook = self._hook(target)
                    source = "db-cluster" if cluster is not None else "db-instance"
                    with aws_call("rds:DescribeEvents", account, region):
                        events = [m for a in actions for m in hook.failure_events(db, a, source)]
                    noun = "DB cluster" if cluster is not None else "DB instance"
                    detail = events[-1] if events else f"the {noun} is {state['status']}"
                elif outcome == RolloutOutcome.TIMEOUT:
                    detail = f"still {state['status']} after {config.rds.rds_timeout_minutes:g} minutes"
                elif outcome == RolloutOutcome.APPLIED and state.get("engine_version"):
                    detail = f"engine {state['engine_version']}"
                rows.append(
                    {
                        "account_id": row["account_id"],
                        "region": row["region"],
                        "resource_id": db,
                        "wave": wave,
                        "actions": ";".join(actions),
                        "outcome": outcome,
                        "detail": detail,
                        "status_after": state.get("status", ""),
                        "engine_version_after": state.get("engine_version", ""),
                    }
                )
            done = concat_frames([done, rollout_rows(rows)], ROLLOUT_COLUMNS)
            unreported = _unreported(plan, done, wave)
            if unreported:
                names = [f"{r['account_id']}/{r['region']}/{r['resource_id']}" for r in unreported]
                self.log.warning("RDS wave %d: the wait reported nothing for %s: failed", wave, names)
                done = concat_frames([done, rollout_rows(unreported)], ROLLOUT_COLUMNS)
            untouched = [RolloutOutcome.STAGING_FAILED, RolloutOutcome.NOT_REHEARSED]
            mine = done[(done["wave"] == wave) & ~done["outcome"].isin(untouched)]
            failures = int(mine["outcome"].isin(list(FAILURE_OUTCOMES)).sum())
            halt, allowed = halt_decision(len(mine), failures, config.install.halt_threshold)
            self.log.info("RDS wave %d: %d of %d failed (%d allowed)", wave, failures, len(mine), allowed)
            if halt:
                why = f"RDS wave {wave} had {failures} failure(s), more than the {allowed} allowed"
                done = _with_halted(plan, done, RolloutOutcome.HALTED, why)
            artifacts.write(RDS_ROLLOUT, done)
            if halt:
                self._summary(done)
                raise WaveHalted(
                    f"RDS wave {wave} halted the rollout: {why}; later RDS waves will not run", why, wave, "RDS"
                )
        return self._wave(context, wave + 1)

    def _halt_before(self, artifacts: RunArtifacts, wave: int, outcome: RolloutOutcome, reason: str) -> NoReturn:
        """A gate stopped RDS wave `wave` before it applied anything: it and every later wave are not applied, and
        the task fails (telling the run's topic), as a halted EC2 wave does."""
        done = _with_halted(artifacts.read(RDS_INSTALL_PLAN), artifacts.read(RDS_ROLLOUT), outcome, reason)
        artifacts.write(RDS_ROLLOUT, done)
        self._summary(done)
        raise WaveHalted(f"{reason}; later RDS waves will not run", reason, wave, "RDS")

    def _not_rehearsed(self, plan: pd.DataFrame) -> list[dict[str, Any]]:
        """Under approval_mode auto, Aurora members' own actions: staging does not rehearse them (a restored
        cluster's new DB instance has none of them pending), so the auto policy does not apply them (a person
        approving does, knowingly: the approval body says so). Aurora DB clusters are rehearsed like DB instances."""
        if self.settings().install.approval_mode != "auto":
            return []
        clusters = plan[plan["rehearsal_id"] == ""]
        return [
            {
                "account_id": a,
                "region": r,
                "resource_id": d,
                "wave": int(group["wave"].iloc[0]),
                "actions": ";".join(sorted(group["action"])),
                "outcome": RolloutOutcome.NOT_REHEARSED,
                "detail": "an Aurora DB instance's own action: not rehearsed in staging, so approval_mode auto does "
                "not apply it",
            }
            for (a, r, d), group in clusters.groupby(["account_id", "region", "resource_id"])
        ]

    def _staging_failed(self, artifacts: RunArtifacts, plan: pd.DataFrame) -> list[dict[str, Any]]:
        """The planned DB instances whose rehearsal did not pass (or never ran): not touched."""
        config = self.settings()
        results = concat_frames(
            [artifacts.find(RDS_REHEARSAL_RESULTS, target=t) for t in config.targets], REHEARSAL_RESULT_COLUMNS
        )
        passed = {
            (str(a), str(r), str(i))
            for a, r, i, ok in zip(
                results["account_id"], results["region"], results["rehearsal_id"], results["passed"], strict=True
            )
            if ok
        }
        rows = []
        for (a, r, d), group in plan.groupby(["account_id", "region", "resource_id"]):
            first = group.iloc[0]
            if first["rehearsal_id"] and (str(a), str(r), str(first["rehearsal_id"])) not in passed:
                rows.append(
                    {
                        "account_id": a,
                        "region": r,
                        "resource_id": d,
                        "wave": int(first["wave"]),
                        "actions": ";".join(sorted(group["action"])),
                        "outcome": RolloutOutcome.STAGING_FAILED,
                        "detail": f"its staging rehearsal ({first['rehearsal_id']}) did not pass",
                    }
                )
        return rows

    def _by_target(self, artifacts: RunArtifacts, members: pd.DataFrame) -> dict[Target, tuple[str, pd.DataFrame]]:
        """The wave's plan rows by the target (connection, region) whose account and region they are in, with
        that account."""
        found: dict[Target, tuple[str, pd.DataFrame]] = {}
        for target in self.settings().targets:
            account = self._account(artifacts, target)
            mine = members[(members["account_id"] == account) & (members["region"] == target.region_name)]
            if not mine.empty:
                found[target] = (account, mine)
        return found

    @staticmethod
    def _apply(hook: RdsMaintenanceHook, arn: str, action: str, opt_in: str) -> bool:
        """ApplyPendingMaintenanceAction; False when the action is not pending (InvalidParameterCombination)."""
        try:
            hook.apply(arn, action, opt_in)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidParameterCombination":
                return False
            raise
        return True

    def _account(self, artifacts: RunArtifacts, target: Target) -> str:
        summary = artifacts.find(INVENTORY_SUMMARY, target=target)
        return summary.account_id if summary else ""

    def _hook(self, target: Target) -> RdsMaintenanceHook:
        return RdsMaintenanceHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name)

    def _summary(self, done: pd.DataFrame) -> dict[str, Any]:
        counts = {str(k): int(v) for k, v in done["outcome"].value_counts().items()}
        self.log.info("RDS rollout: %s", counts)
        return {"databases": len(done), "outcomes": counts}


def _not_reached(plan: pd.DataFrame, done: pd.DataFrame) -> pd.DataFrame:
    """The plan rows of the databases the rollout's table has no row for yet."""
    reached = set(zip(done["account_id"], done["region"], done["resource_id"], strict=True))
    keys = zip(plan["account_id"], plan["region"], plan["resource_id"], strict=True)
    keep = [(a, r, d) not in reached for a, r, d in keys]
    return plan[keep]


def _unreported(plan: pd.DataFrame, done: pd.DataFrame, wave: int) -> list[dict[str, Any]]:
    """FAILED rows for the databases of `wave` that the rollout's table has no row for once its wait's event is in
    (never expected: each is applied and waited on, or refused): the wave counts them, and the rollout goes on to
    the next wave instead of taking this one up again and again."""
    left = _not_reached(plan, done)
    left = left[left["wave"] == wave]
    return [
        {
            "account_id": a,
            "region": r,
            "resource_id": d,
            "wave": wave,
            "actions": ";".join(sorted(g["action"])),
            "outcome": RolloutOutcome.FAILED,
            "detail": "its wait reported no state for it (its actions may have been applied)",
        }
        for (a, r, d), g in left.groupby(["account_id", "region", "resource_id"])
    ]


def _with_halted(plan: pd.DataFrame, done: pd.DataFrame, outcome: RolloutOutcome, why: str) -> pd.DataFrame:
    """The rollout's table with a row of `outcome` for every planned database it has none for."""
    halted = [
        {
            "account_id": a,
            "region": r,
            "resource_id": d,
            "wave": int(g["wave"].iloc[0]),
            "actions": ";".join(sorted(g["action"])),
            "outcome": outcome,
            "detail": why,
        }
        for (a, r, d), g in _not_reached(plan, done).groupby(["account_id", "region", "resource_id"])
    ]
    return concat_frames([done, rollout_rows(halted)], ROLLOUT_COLUMNS)
