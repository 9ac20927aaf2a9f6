"""Staging: the staging instances install the pinned patches, are verified, then run the health checks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import Context

from patchcycle.config import CycleConfig
from patchcycle.core.invocations import plugin_output
from patchcycle.core.staging import staging_results, staging_summary
from patchcycle.core.timestamps import parse_utc
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.links.ssm import RunCommandLink
from patchcycle.operators.base import TargetOperator
from patchcycle.operators.run_command import HEALTHCHECKS, invocations, late_commands, send_health_checks
from patchcycle.readback.immutable import bake_ids, with_image_profiles
from patchcycle.run_artifacts import (
    NOT_ONLINE,
    ONLINE_WAIT,
    OVERRIDES,
    PROFILES,
    STACK,
    STAGING_HEALTH_COMMANDS,
    STAGING_INSTALL,
    STAGING_INSTALL_COMMANDS,
    STAGING_RESULTS,
    RunArtifacts,
    Step,
)
from patchcycle.run_records import CommandInvocation, OnlineWait, StagingInstall

# DescribeInstancePatches states that show whether a pinned patch went in.
REPORTED_STATES = ["Installed", "InstalledOther", "InstalledPendingReboot", "Missing", "Failed"]


class StagingOperator(TargetOperator[PatchManagerHook, CycleConfig]):
    """What the staging steps share: the staged instances, and reading their commands' invocations.

    Their "Run Command" link opens the command of the first profile (the install: one command a profile) or of the
    first platform (the health checks: one command a platform, Linux or Windows); the others carry the same comment
    in Run Command's history."""

    aws_hook_class = PatchManagerHook
    operator_extra_links = (RunCommandLink(),)
    config_class = CycleConfig

    def staged(self, artifacts: RunArtifacts) -> pd.DataFrame:
        """The staged profiles of this target with their instance id (none when no stack was needed)."""
        instances = artifacts.read(STACK, target=self.target).instances
        profiles = with_image_profiles(artifacts, artifacts.read(PROFILES), self.target)
        mine = profiles[profiles["profile_id"].isin(instances)]
        return mine.assign(instance_id=[instances[p] for p in mine["profile_id"]]).reset_index(drop=True)

    def invocations(
        self, artifacts: RunArtifacts, command_ids: Sequence[str], event: dict[str, Any]
    ) -> dict[str, CommandInvocation]:
        """Each instance's invocation, flattened; commands still running at the bound are cancelled first."""
        found = invocations(
            self.hook,
            command_ids,
            late_commands(event),
            self.account_id(artifacts),
            str(self.region_name),
            details=True,
        )
        flat: dict[str, CommandInvocation] = {}
        for instance_id, invocation in found.items():
            code, output = plugin_output(invocation)
            flat[instance_id] = {
                "Status": str(invocation["Status"]),
                "StatusDetails": str(invocation.get("StatusDetails", "")),
                "ResponseCode": code,
                "Output": output,
                "CommandId": str(invocation["CommandId"]),
            }
        return flat


class StagingPatchOperator(StagingOperator):
    """Waits until the staging instances are Online in SSM, installs each profile's pinned list, verifies it. The
    replica of a baked AMI is scanned instead (Operation=Scan): its pinned patches must be reported installed as the
    AMI came, proving the bake, not a second install."""

    def execute(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any] | None:
        artifacts, config = self.artifacts(context), self.settings()
        account, region = self.account_id(artifacts), str(self.region_name)
        with self.recording_failure(artifacts, Step.STAGING_PATCH):
            staged = self.staged(artifacts)
            if staged.empty:
                artifacts.write(STAGING_INSTALL, StagingInstall(install={}, patches={}), target=self.target)
                return {"staging_instances": 0}
            ids = sorted(staged["instance_id"])
            with aws_call("ssm:DescribeInstanceInformation", account, region):
                online = {
                    i["InstanceId"] for i in self.hook.instance_information(ids) if i.get("PingStatus") == "Online"
                }
            waiting = artifacts.find(ONLINE_WAIT, target=self.target) or OnlineWait(since=datetime.now(UTC).isoformat())
            artifacts.write(ONLINE_WAIT, waiting, target=self.target)
            waited = datetime.now(UTC) - (parse_utc(waiting.since) or datetime.now(UTC))
            if set(ids) - online and waited < config.install.staging_timeout:
                self.log.info("%d of %d staging instances Online in SSM; waiting", len(online), len(ids))
                self.defer(trigger=TimeDeltaTrigger(config.poll_interval), method_name="execute")
            overrides = artifacts.read(OVERRIDES)
            sent = artifacts.find(STAGING_INSTALL_COMMANDS, target=self.target) or {}
            bakes = bake_ids(artifacts)
            for profile in staged[staged["instance_id"].isin(online)].to_dict("records"):
                if profile["profile_id"] in sent:
                    continue  # a retried task does not install twice
                with aws_call("ssm:SendCommand", str(profile["account_id"]), region):
                    if profile["profile_id"] in bakes:
                        # A baked AMI's replica is only scanned: its pinned patches must already be in the image,
                        # so what Patch Manager and Inspector then report is the AMI as baked, not a fresh install.
                        sent[profile["profile_id"]] = self.hook.send_patch_baseline(
                            [profile["instance_id"]],
                            operation="Scan",
                            max_concurrency=str(config.max_concurrency),
                            max_errors=str(config.max_errors),
                            comment=f"patchcycle staging scan {context['run_id']}",
                        )
                    else:
                        sent[profile["profile_id"]] = self.hook.send_patch_baseline(
                            [profile["instance_id"]],
                            operation="Install",
                            max_concurrency=str(config.max_concurrency),
                            max_errors=str(config.max_errors),
                            reboot_option=config.install.reboot_option,
                            install_override_list=overrides[profile["profile_id"]],
                            comment=f"patchcycle staging {context['run_id']}",
                        )
                artifacts.write(STAGING_INSTALL_COMMANDS, sent, target=self.target)
            limit = f"{config.install.staging_timeout_minutes:g}"
            never_online = {
                i: f"not Online in Systems Manager within {limit} minutes" for i in sorted(set(ids) - online)
            }
            artifacts.write(NOT_ONLINE, never_online, target=self.target)
            if not sent:
                return self.execute_complete(context, {"status": "done", "commands": {}})
            self.persist_link(context, RunCommandLink, command_id=sent[min(sent)])
        self.wait_for_commands(config, sorted(sent.values()))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        with self.recording_failure(artifacts, Step.STAGING_PATCH):
            sent = artifacts.find(STAGING_INSTALL_COMMANDS, target=self.target) or {}
            install = self.invocations(artifacts, sorted(sent.values()), event)
            for instance_id, reason in (artifacts.find(NOT_ONLINE, target=self.target) or {}).items():
                install[instance_id] = {"Status": "Undeliverable", "StatusDetails": reason}
            patches: dict[str, list[dict[str, Any]]] = {}
            with aws_call("ssm:DescribeInstancePatches", self.account_id(artifacts), str(self.region_name)):
                for instance_id, invocation in install.items():
                    if invocation["Status"] != "Undeliverable":
                        patches[instance_id] = self.hook.instance_patches(instance_id, REPORTED_STATES)
            artifacts.write(STAGING_INSTALL, StagingInstall(install=install, patches=patches), target=self.target)
            ok = sum(1 for invocation in install.values() if invocation["Status"] == "Success")
            return {"staging_instances": len(install), "install_succeeded": ok}


class StagingHealthCheckOperator(StagingOperator):
    """Runs include/healthchecks on every staging instance; the exit code decides; writes the staging results."""

    def __init__(self, *, healthchecks: str | Path = HEALTHCHECKS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.healthchecks = Path(healthchecks)

    def execute(self, context: Context) -> dict[str, Any] | None:
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.STAGING_CHECKS):
            staged = self.staged(artifacts)
            if staged.empty:
                return self.execute_complete(context, {"status": "done", "commands": {}})
            install = artifacts.read(STAGING_INSTALL, target=self.target).install
            undeliverable = {i for i, invocation in install.items() if invocation["Status"] == "Undeliverable"}
            reachable = staged[~staged["instance_id"].isin(undeliverable)]
            sent = send_health_checks(
                self.hook,
                {str(p): list(group["instance_id"]) for p, group in reachable.groupby("platform_type")},
                sent=artifacts.find(STAGING_HEALTH_COMMANDS, target=self.target) or {},
                save=partial(artifacts.write, STAGING_HEALTH_COMMANDS, target=self.target),
                account=self.account_id(artifacts),
                region=str(self.region_name),
                healthchecks=self.healthchecks,
                timeout_minutes=config.command_timeout_minutes,
                max_concurrency=config.max_concurrency,
                comment=f"patchcycle health check {context['run_id']}",
            )
            if not sent:
                return self.execute_complete(context, {"status": "done", "commands": {}})
            self.persist_link(context, RunCommandLink, command_id=sent[min(sent)])
        self.wait_for_commands(config, sorted(sent.values()))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        with self.recording_failure(artifacts, Step.STAGING_CHECKS):
            sent = artifacts.find(STAGING_HEALTH_COMMANDS, target=self.target) or {}
            health = self.invocations(artifacts, sorted(sent.values()), event)
            record = artifacts.find(STAGING_INSTALL, target=self.target) or StagingInstall(install={}, patches={})
            results = staging_results(self.staged(artifacts), record.install, record.patches, health)
            artifacts.write(STAGING_RESULTS, results, target=self.target)
            summary = staging_summary(results)
            self.log.info("Staging in %s: %s", self.target.key, summary)
            return {"instances": summary["instances"], "passed": summary["passed"], "failed": summary["failed"]}
