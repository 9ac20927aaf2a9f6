"""refresh_groups: after approval, each Auto Scaling group in turn gets a launch template version on its baked AMI
and an instance refresh onto exactly that version, which rolls back on its own; a refresh that fails or rolls back
halts the groups after it.

Per group: CreateLaunchTemplateVersion (SourceVersion = the group's own version, only ImageId changed; a ClientToken
makes a retry find it), then StartInstanceRefresh naming that version only in DesiredConfiguration (the group itself
is not updated first), with MinHealthyPercentage and InstanceWarmup from the params, CheckpointPercentages where the
in-place waves would end (the canary first), AutoRollback, the health alarms as AlarmSpecification and SkipMatching.
The wait is in the triggerer. Once a refresh succeeded, the version becomes the template's default (later scale-outs
launch the baked AMI). A group on $Latest or $Default is refused, not refreshed: its refresh could not roll back.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from airflow.sdk import Context

from patchcycle.config import CycleConfig, Target
from patchcycle.core.immutable import checkpoint_percentages, irreversible_reason, refresh_preferences
from patchcycle.core.immutable_rollout import GroupRefresh, halt_reason, refresh_order
from patchcycle.core.plan import split_cve_ids
from patchcycle.hooks.auto_scaling import AutoScalingHook
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.cloudwatch_alarms import CloudWatchAlarmsHook
from patchcycle.hooks.launch_templates import LaunchTemplateHook
from patchcycle.operators.base import DEFER_MARGIN, FleetOperator, recorded_failure
from patchcycle.readback.immutable import ImmutableRecord, read_immutable_record, read_refreshes
from patchcycle.run_artifacts import INVENTORY_SUMMARY, REFRESHES, RunArtifacts, Step
from patchcycle.triggers.instance_refresh import InstanceRefreshTrigger


class RefreshGroupsOperator(FleetOperator[CycleConfig]):
    """Refreshes the run's Auto Scaling groups one at a time, in account, region and name order (each refresh's own
    checkpoints pace it, as the waves pace the in-place rollout)."""

    config_class = CycleConfig

    def execute(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.REFRESH_GROUPS):
            record = read_immutable_record(artifacts, config.targets)
            refreshes = read_refreshes(artifacts)
            if event is not None:
                refreshes = self._ended(artifacts, config, record, refreshes, event)
            return self._next(context, artifacts, config, record, refreshes)

    def _next(
        self,
        context: Context,
        artifacts: RunArtifacts,
        config: CycleConfig,
        record: ImmutableRecord,
        refreshes: dict[str, GroupRefresh],
    ) -> dict[str, Any]:
        """Start the next group's refresh and defer, or, when none is left, return the summary."""
        halted = next((halt_reason(r) for r in refreshes.values() if r.state == "done" and halt_reason(r)), "")
        baked = {str(r["bake_id"]): r for r in record.results.to_dict("records") if r["baked"]}
        for account_id, region, name in refresh_order(record.groups):
            if name in refreshes and refreshes[name].state in ("done", "refused", "halted"):
                continue
            rows = record.groups[(record.groups["auto_scaling_group"] == name) & (record.groups["region"] == region)]
            main = rows.sort_values("instances", ascending=False).iloc[0]
            old = sorted({i for joined in rows["instance_ids"] for i in split_cve_ids(str(joined))})
            refresh = GroupRefresh(
                account_id=account_id,
                region=region,
                group=name,
                launch_template=str(main["launch_template"]),
                source_image_id=str(main["image_id"]),
                old_instances=old,
            )
            bake = baked.get(str(main["bake_id"]))
            if bake is None:
                continue  # no baked AMI: the group is not refreshed, and its verdicts say why (BAKE_FAILED)
            if halted:
                refreshes[name] = replace(refresh, state="halted", reason=halted)
                continue
            target = self._target(artifacts, config, account_id, region)
            if target is None:
                refreshes[name] = replace(refresh, state="refused", reason=f"no target covers {account_id} {region}")
                continue
            started = self._start(context, config, target, replace(refresh, image_id=str(bake["image_id"])))
            refreshes[name] = started
            artifacts.write(REFRESHES, refreshes)
            if started.state != "refreshing":
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

    def _start(self, context: Context, config: CycleConfig, target: Target, refresh: GroupRefresh) -> GroupRefresh:
        """The group's new launch template version and its refresh started (or why it is refused)."""
        account, region, name = refresh.account_id, refresh.region, refresh.group
        kwargs = target.as_kwargs()
        scaling = AutoScalingHook(**kwargs)
        calls = 0
        with aws_call("autoscaling:DescribeAutoScalingGroups", account, region):
            found = next((g for g in scaling.groups() if g["AutoScalingGroupName"] == name), None)
            calls += 1
        template = (found or {}).get("LaunchTemplate") or {}
        if found is None or not template:
            what = "no longer exists" if found is None else "has no launch template (a mixed instances policy)"
            return replace(refresh, state="refused", api_calls=calls, reason=f"{name} {what}: not refreshed")
        source_version = str(template.get("Version", "$Default"))
        irreversible = irreversible_reason(name, source_version)
        if irreversible:
            return replace(
                refresh, state="refused", source_version=source_version, api_calls=calls, reason=irreversible
            )
        template_name = str(template.get("LaunchTemplateName") or refresh.launch_template)
        run_id = str(context["run_id"])
        with aws_call("ec2:CreateLaunchTemplateVersion", account, region):
            version = LaunchTemplateHook(**kwargs).image_version(
                template_name,
                source_version,
                refresh.image_id,
                f"patchcycle {run_id}: {refresh.source_image_id} patched as {refresh.image_id}",
                f"patchcycle-{name}-{run_id}",
            )
            calls += 1
        alarms = [a for a in config.safety.health_alarms if not a.endswith("*")]
        prefixes = [a[:-1] for a in config.safety.health_alarms if a.endswith("*")]
        if prefixes:
            with aws_call("cloudwatch:DescribeAlarms", account, region):
                alarms += CloudWatchAlarmsHook(**kwargs).metric_alarm_names(prefixes)
                calls += len(prefixes)
        settings, install = config.auto_scaling, config.install
        checkpoints = checkpoint_percentages(len(refresh.old_instances), install.canary, install.wave_percentages)
        preferences = refresh_preferences(
            min_healthy_percentage=settings.refresh_min_healthy_percentage,
            instance_warmup_seconds=settings.refresh_instance_warmup_seconds,
            checkpoints=checkpoints,
            checkpoint_delay_seconds=settings.refresh_checkpoint_delay_seconds,
            alarms=sorted(set(alarms)),
        )
        with aws_call("autoscaling:StartInstanceRefresh", account, region):
            refresh_id = scaling.start_refresh(name, template_name, version, preferences)
            calls += 1
        self.log.info(
            "Refreshing %s onto %s version %s (%s): %s", name, template_name, version, refresh.image_id, refresh_id
        )
        return replace(
            refresh,
            state="refreshing",
            launch_template=template_name,
            source_version=source_version,
            version=version,
            refresh_id=refresh_id,
            checkpoints=checkpoints,
            api_calls=calls,
        )

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
        name, state = str(event["group"]), dict(event["refresh"])
        refresh = refreshes[name]
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
        refreshes[name] = refresh
        artifacts.write(REFRESHES, refreshes)
        return refreshes

    def _target(self, artifacts: RunArtifacts, config: CycleConfig, account_id: str, region: str) -> Target | None:
        """The run's target of this account and region (as its inventory found the account)."""
        for target in config.targets:
            summary = artifacts.find(INVENTORY_SUMMARY, target=target)
            if target.region_name == region and summary is not None and summary.account_id == account_id:
                return target
        return None
