"""refresh_groups: after approval, each Auto Scaling group in turn gets a launch template version on its baked AMI
and an instance refresh onto exactly that version, which rolls back on its own; a refresh that fails or rolls back
halts the groups after it.

Per group: CreateLaunchTemplateVersion (SourceVersion = the group's own version, only ImageId changed, its
VersionDescription naming the run), then StartInstanceRefresh naming that version only in DesiredConfiguration (the
group itself is not updated first), with MinHealthyPercentage and InstanceWarmup from the params,
CheckpointPercentages where the in-place waves would end (the canary first), AutoRollback, the health alarms as
AlarmSpecification and SkipMatching. The wait is in the triggerer. Once a refresh succeeded, the version becomes the
template's default (later scale-outs launch the baked AMI). A group on $Latest or $Default, or whose launch template
takes its AMI from a Systems Manager parameter, is refused, not refreshed: its refresh could not roll back.

Retry-safe: before it makes anything, a group's attempt reads what the attempts before it left on AWS, whatever
its own record says (a worker may die between a call and the record of it). DescribeLaunchTemplateVersions finds the
version this run made for the baked AMI (by its description), which is used again; DescribeInstanceRefreshes finds
the refresh onto that version: still running, it is waited for again; ended, it is read as the group's result.
A running refresh this run did not start halts the rollout at that group, naming it (StartInstanceRefresh would be
refused with InstanceRefreshInProgress, and someone else is replacing the group's instances).

Gates: before it starts a group's refresh, the rollout passes the same gates as the EC2 and RDS waves
(operators.wave_gates), in the group's account and Region: a CLOSED change calendar is waited for in the triggerer up
to change_calendar_wait_minutes, then the rollout halts; a health alarm in ALARM halts it. A halt leaves that group
and the later ones not refreshed (HALTED_BY_CALENDAR, HALTED_BY_ALARM: SKIPPED_HALTED), fails the task and tells the
run's SNS topic, as a halted wave does. A group whose refresh an earlier attempt started is resumed, not gated again:
the refresh is already replacing its instances.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from airflow.sdk import Context

from patchcycle.config import CycleConfig, Target
from patchcycle.core.immutable import (
    checkpoint_percentages,
    irreversible_reason,
    no_launch_template_reason,
    refresh_preferences,
)
from patchcycle.core.immutable_rollout import (
    ACTIVE_REFRESH_STATUSES,
    GroupRefresh,
    foreign_refresh,
    foreign_refresh_reason,
    halt_reason,
    refresh_key,
    refresh_order,
    rollout_halt,
    run_refresh,
    run_version,
    version_description,
)
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.timestamps import iso_utc, parse_utc
from patchcycle.core.verdicts import ReasonCode
from patchcycle.hooks.auto_scaling import AutoScalingHook
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.cloudwatch_alarms import CloudWatchAlarmsHook
from patchcycle.hooks.launch_templates import LaunchTemplateHook
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
from patchcycle.readback.immutable import ImmutableRecord, read_immutable_record, read_refreshes
from patchcycle.run_artifacts import INVENTORY_SUMMARY, REFRESHES, RunArtifacts, Step
from patchcycle.triggers.instance_refresh import InstanceRefreshTrigger, refresh_state

ROLLOUT = "Auto Scaling"  # how the SNS message of a halt names this rollout


class RefreshGroupsOperator(FleetOperator[CycleConfig]):
    """Refreshes the run's Auto Scaling groups one at a time, in account, region and name order (each refresh's own
    checkpoints pace it, as the waves pace the in-place rollout)."""

    config_class = CycleConfig

    @telling_halts
    def execute(
        self, context: Context, event: dict[str, Any] | None = None, calendar_since: str = ""
    ) -> dict[str, Any]:
        return self._run(context, event, calendar_since)

    def _run(self, context: Context, event: dict[str, Any] | None, calendar_since: str) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.REFRESH_GROUPS):
            record = read_immutable_record(artifacts, config.targets)
            refreshes = read_refreshes(artifacts)
            if event is not None:
                refreshes = self._ended(artifacts, config, record, refreshes, event)
            return self._next(context, artifacts, config, record, refreshes, calendar_since)

    @telling_halts
    def calendar_done(self, context: Context, event: dict[str, Any], group: str, since: str) -> dict[str, Any]:
        """The change calendar opened (the group's gates are passed again from the start), or stayed CLOSED until the
        deadline: the rollout halts before `group` (its refresh_key)."""
        if event.get("status") == "open":
            return self._run(context, None, since)
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.REFRESH_GROUPS):
            record = read_immutable_record(artifacts, config.targets)
            name = group.rsplit("/", 1)[-1]
            reason = calendar_halt_reason(f"the refresh of {name}", config.safety, since)
            self._halt(artifacts, record, read_refreshes(artifacts), ReasonCode.HALTED_BY_CALENDAR, reason)

    def _next(
        self,
        context: Context,
        artifacts: RunArtifacts,
        config: CycleConfig,
        record: ImmutableRecord,
        refreshes: dict[str, GroupRefresh],
        calendar_since: str = "",
    ) -> dict[str, Any]:
        """Start the next group's refresh and defer, or, when none is left, return the summary."""
        halted = rollout_halt(refreshes)
        for refresh, bake in self._to_refresh(record, refreshes):
            account_id, region, name = refresh.account_id, refresh.region, refresh.group
            key = refresh_key(account_id, region, name)
            if halted:
                refreshes[key] = replace(refresh, state="halted", reason=halted)
                continue
            target = self._target(artifacts, config, account_id, region)
            if target is None:
                refreshes[key] = replace(refresh, state="refused", reason=f"no target covers {account_id} {region}")
                continue
            wanted = replace(refresh, image_id=str(bake["image_id"]))
            started, ended = self._start(context, config, target, wanted, refreshes.get(key), calendar_since)
            refreshes[key] = started
            artifacts.write(REFRESHES, refreshes)
            if started.halt_code:
                self._halt(artifacts, record, refreshes, ReasonCode(started.halt_code), started.reason)
            if ended is not None:
                # This run's refresh ended while no attempt waited for it: its result, as the trigger would give it.
                event = {"status": "done", "group": name, "refresh": refresh_state(ended), "polls": 0}
                refreshes = self._ended(artifacts, config, record, refreshes, event)
            halted = rollout_halt(refreshes)
            if started.state != "refreshing" or ended is not None:
                continue
            self.defer(
                trigger=InstanceRefreshTrigger(
                    aws_conn_id=target.aws_conn_id,
                    region_name=target.region_name,
                    group=name,
                    refresh_id=started.refresh_id,
                    poll_interval=config.poll_seconds,
                    timeout=config.auto_scaling.refresh_timeout.total_seconds(),
                ),
                method_name="execute",
                timeout=config.auto_scaling.refresh_timeout + DEFER_MARGIN + timedelta(seconds=config.poll_seconds),
            )
        artifacts.write(REFRESHES, refreshes)
        states = [r.state if r.state != "done" else (r.status or "done") for r in refreshes.values()]
        summary = {state: states.count(state) for state in sorted(set(states))}
        self.log.info("Instance refreshes: %s", summary)
        return {"groups": len(refreshes), "by_state": summary}

    def _to_refresh(
        self, record: ImmutableRecord, refreshes: dict[str, GroupRefresh]
    ) -> list[tuple[GroupRefresh, dict[str, Any]]]:
        """The groups not done yet, in refresh order, each with its bake (a group whose AMI did not bake is not
        refreshed, and its verdicts say why: BAKE_FAILED)."""
        baked = {str(r["bake_id"]): r for r in record.results.to_dict("records") if r["baked"]}
        plan = record.groups[record.groups["refused"] == ""]  # a refused group gets its verdicts from the plan
        todo = []
        for account_id, region, name in refresh_order(plan):
            key = refresh_key(account_id, region, name)
            if key in refreshes and refreshes[key].state in ("done", "refused", "halted"):
                continue
            rows = plan[
                (plan["account_id"] == account_id) & (plan["region"] == region) & (plan["auto_scaling_group"] == name)
            ]
            main = rows.sort_values("instances", ascending=False).iloc[0]
            old = sorted({i for joined in rows["instance_ids"] for i in split_cve_ids(str(joined))})
            refresh = GroupRefresh(
                account_id=account_id,
                region=region,
                group=name,
                launch_template=str(main["launch_template"]),
                # The group's one bake patches the AMI it launches now, whatever AMIs its older members run.
                source_image_id=str(main["launch_image_id"] or main["image_id"]),
                old_instances=old,
            )
            bake = baked.get(str(main["bake_id"]))
            if bake is not None:
                todo.append((refresh, bake))
        return todo

    def _halt(
        self,
        artifacts: RunArtifacts,
        record: ImmutableRecord,
        refreshes: dict[str, GroupRefresh],
        code: ReasonCode,
        reason: str,
    ) -> NoReturn:
        """A gate halted the rollout: the groups not refreshed yet are halted with `code`, the task fails."""
        done = len([r for r in refreshes.values() if r.state in ("done", "refused", "halted") and not r.halt_code])
        for refresh, _ in self._to_refresh(record, refreshes):
            refreshes[refresh_key(refresh.account_id, refresh.region, refresh.group)] = replace(
                refresh, state="halted", halt_code=code, reason=reason
            )
        artifacts.write(REFRESHES, refreshes)
        raise WaveHalted(f"{reason}; later groups will not be refreshed", reason, done + 1, ROLLOUT, step="group")

    def _gates(
        self, config: CycleConfig, target: Target, refresh: GroupRefresh, calendar_since: str
    ) -> tuple[ReasonCode, str] | None:
        """The waves' gates before the group's refresh, in its account and Region: None when they pass, the halt's
        code and reason when an alarm is in ALARM. A CLOSED calendar defers to its trigger (calendar_done)."""
        placed, safety, name = [(target, refresh.account_id)], config.safety, refresh.group
        if safety.change_calendar:
            closed, state = calendar_look(placed, safety.change_calendar)
            if closed is not None:
                since = calendar_since or iso_utc(datetime.now(UTC))
                self.log.info(
                    "Change calendar %s is %s in %s: %s waits", safety.change_calendar, state, closed.key, name
                )
                self.defer(
                    trigger=calendar_wait(closed, safety, parse_utc(since) or datetime.now(UTC), config.poll_seconds),
                    method_name="calendar_done",
                    kwargs={"group": refresh_key(refresh.account_id, refresh.region, name), "since": since},
                    timeout=safety.change_calendar_wait + DEFER_MARGIN,
                )
        firing = alarms_in_alarm(placed, safety.health_alarms)
        if firing:
            return ReasonCode.HALTED_BY_ALARM, alarm_halt_reason(f"the refresh of {name}", firing)
        return None

    def _start(
        self,
        context: Context,
        config: CycleConfig,
        target: Target,
        refresh: GroupRefresh,
        previous: GroupRefresh | None,
        calendar_since: str = "",
    ) -> tuple[GroupRefresh, dict[str, Any] | None]:
        """The group's refresh onto its new launch template version: started, or this run's refresh found running
        (state refreshing) or ended (returned beside it, to be read as the result); or why it is refused or halted.
        previous: the group's record from an attempt before this one, if it got to write one."""
        account, region, name = refresh.account_id, refresh.region, refresh.group
        kwargs = target.as_kwargs()
        scaling, templates = AutoScalingHook(**kwargs), LaunchTemplateHook(**kwargs)
        calls = previous.api_calls if previous is not None else 0
        with aws_call("autoscaling:DescribeAutoScalingGroups", account, region):
            found = next((g for g in scaling.groups() if g["AutoScalingGroupName"] == name), None)
            calls += 1
        template = (found or {}).get("LaunchTemplate") or {}
        if found is None:
            return replace(
                refresh, state="refused", api_calls=calls, reason=f"{name} no longer exists: not refreshed"
            ), None
        if not template:
            # The plan refuses such a group (core.immutable.group_members); this one lost its launch template since.
            return replace(refresh, state="refused", api_calls=calls, reason=no_launch_template_reason(name)), None
        # After a successful refresh the group is on the run's version: the record of the attempt before knows the
        # version it started from.
        source_version = (previous.source_version if previous else "") or str(template.get("Version", "$Default"))
        irreversible = irreversible_reason(name, source_version)
        if irreversible:
            refused = replace(
                refresh, state="refused", source_version=source_version, api_calls=calls, reason=irreversible
            )
            return refused, None
        template_name = str(template.get("LaunchTemplateName") or refresh.launch_template)
        template_id = str(template.get("LaunchTemplateId") or "")
        with aws_call("ec2:DescribeLaunchTemplateVersions", account, region):
            versions = templates.versions(template_name, source_version)
            calls += 1
        source = next((v for v in versions if str(v.get("VersionNumber")) == source_version), {})
        irreversible = irreversible_reason(
            name, source_version, str(source.get("LaunchTemplateData", {}).get("ImageId", ""))
        )
        if irreversible:
            refused = replace(
                refresh, state="refused", source_version=source_version, api_calls=calls, reason=irreversible
            )
            return refused, None
        run_id = str(context["run_id"])
        version = run_version(versions, run_id, refresh.image_id)
        with aws_call("autoscaling:DescribeInstanceRefreshes", account, region):
            existing = scaling.refreshes(name)
            calls += 1
        install = config.install
        # The refresh replaces the whole group: its checkpoints fall on the group's size now.
        size = len(found.get("Instances", [])) or len(refresh.old_instances)
        checkpoints = checkpoint_percentages(size, install.canary, install.wave_percentages)
        mine = replace(
            refresh,
            launch_template=template_name,
            source_version=source_version,
            version=version,
            checkpoints=checkpoints,
        )
        own = run_refresh(existing, template_id, template_name, version)
        if own is not None:
            status, refresh_id = str(own["Status"]), str(own["InstanceRefreshId"])
            self.log.info(
                "%s: the refresh this run started onto version %s (%s) is %s", name, version, refresh_id, status
            )
            resumed = replace(mine, state="refreshing", refresh_id=refresh_id, api_calls=calls)
            return resumed, (own if status not in ACTIVE_REFRESH_STATUSES else None)
        other = foreign_refresh(existing)
        if other is not None:
            reason = foreign_refresh_reason(name, other)
            self.log.warning("%s", reason)
            halted = replace(
                mine, state="halted", reason=reason, foreign_refresh_id=str(other["InstanceRefreshId"]), api_calls=calls
            )
            return halted, None
        # Nothing of this run replaces the group yet: the waves' gates first (a resumed refresh skipped them above).
        gated = self._gates(config, target, refresh, calendar_since)
        if gated is not None:
            code, reason = gated
            self.log.warning("%s", reason)
            return replace(mine, state="halted", halt_code=code, reason=reason, api_calls=calls), None
        if version:
            self.log.info("%s: using version %s of %s, made by an earlier attempt", name, version, template_name)
        else:
            with aws_call("ec2:CreateLaunchTemplateVersion", account, region):
                version = templates.image_version(
                    template_name,
                    source_version,
                    refresh.image_id,
                    version_description(run_id, refresh.source_image_id, refresh.image_id),
                    f"patchcycle-{name}-{run_id}",
                )
                calls += 1
        alarms = [a for a in config.safety.health_alarms if not a.endswith("*")]
        prefixes = [a[:-1] for a in config.safety.health_alarms if a.endswith("*")]
        if prefixes:
            with aws_call("cloudwatch:DescribeAlarms", account, region):
                alarms += CloudWatchAlarmsHook(**kwargs).metric_alarm_names(prefixes)
                calls += len(prefixes)
        settings = config.auto_scaling
        preferences = refresh_preferences(
            min_healthy_percentage=settings.refresh_min_healthy_percentage,
            instance_warmup_seconds=settings.refresh_instance_warmup_seconds,
            checkpoints=checkpoints,
            checkpoint_delay_seconds=settings.refresh_checkpoint_delay_seconds,
            alarms=sorted(set(alarms)),
            bake_time_seconds=settings.refresh_bake_time_seconds,
        )
        with aws_call("autoscaling:StartInstanceRefresh", account, region):
            refresh_id = scaling.start_refresh(name, template_name, version, preferences)
            calls += 1
        self.log.info(
            "Refreshing %s onto %s version %s (%s): %s", name, template_name, version, refresh.image_id, refresh_id
        )
        return replace(mine, state="refreshing", version=version, refresh_id=refresh_id, api_calls=calls), None

    def _ended(
        self,
        artifacts: RunArtifacts,
        config: CycleConfig,
        record: ImmutableRecord,
        refreshes: dict[str, GroupRefresh],
        event: dict[str, Any],
    ) -> dict[str, GroupRefresh]:
        """The group the trigger waited on, as its refresh ended: the default version set after a success, the
        instances it launched, or why it stopped."""
        state = dict(event["refresh"])
        # Refresh ids are unique: the record the event belongs to, whichever account and region its group is in.
        key = next(k for k, r in refreshes.items() if r.refresh_id == state["refresh_id"])
        refresh = refreshes[key]
        name = refresh.group
        target = self._target(artifacts, config, refresh.account_id, refresh.region)
        assert target is not None  # the refresh was started through it
        kwargs, calls = target.as_kwargs(), refresh.api_calls + int(event.get("polls", 0))
        refresh = replace(
            refresh,
            state="done",
            status=state["status"] if event.get("status") == "done" else "",
            status_reason=state["status_reason"],
            rollback_reason=state["rollback_reason"],
            started_at=state["started_at"],
            ended_at=state["ended_at"],
        )
        if event.get("status") != "done":
            with aws_call("autoscaling:CancelInstanceRefresh", refresh.account_id, refresh.region):
                AutoScalingHook(**kwargs).cancel_refresh(name)
                calls += 1
            limit = f"{config.auto_scaling.refresh_timeout_minutes:g}"
            refresh = replace(refresh, status="Cancelled", reason=f"not done within {limit} minutes: cancelled")
        with aws_call("autoscaling:DescribeAutoScalingGroups", refresh.account_id, refresh.region):
            found = next((g for g in AutoScalingHook(**kwargs).groups() if g["AutoScalingGroupName"] == name), {})
            calls += 1
        now = sorted(str(i["InstanceId"]) for i in found.get("Instances", []))
        if refresh.status == "Successful":
            with aws_call("ec2:ModifyLaunchTemplate", refresh.account_id, refresh.region):
                LaunchTemplateHook(**kwargs).make_default(refresh.launch_template, refresh.version)
                calls += 1
            refresh = replace(refresh, default_version_set=True)
        # The instances a successful refresh launched (a rollback's replacements run the old AMI: not listed).
        launched = [i for i in now if i not in refresh.old_instances] if refresh.status == "Successful" else []
        refresh = replace(refresh, new_instances=launched, api_calls=calls)
        self.log.info("Instance refresh of %s: %s %s", name, refresh.status, halt_reason(refresh))
        refreshes[key] = refresh
        artifacts.write(REFRESHES, refreshes)
        return refreshes

    def _target(self, artifacts: RunArtifacts, config: CycleConfig, account_id: str, region: str) -> Target | None:
        """The run's target of this account and region (as its inventory found the account)."""
        for target in config.targets:
            summary = artifacts.find(INVENTORY_SUMMARY, target=target)
            if target.region_name == region and summary is not None and summary.account_id == account_id:
                return target
        return None
