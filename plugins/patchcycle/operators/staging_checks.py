"""Staging: the staging instances install the pinned patches, are verified, then run the health checks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import InstallSettings
from patchcycle.core.staging import staging_results, staging_summary
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.operators.base import PatchCycleOperator
from patchcycle.operators.match_tables import read_frame, read_json
from patchcycle.operators.run_command import HEALTHCHECKS, invocations, late_commands, plugin_output, send_health_checks
from patchcycle.triggers.command_completion import CommandCompletionTrigger

STAGE = "staging"
# DescribeInstancePatches states that show whether a pinned patch went in.
REPORTED_STATES = ["Installed", "InstalledOther", "InstalledPendingReboot", "Missing", "Failed"]


class StagingOperator(PatchCycleOperator):
    """What the staging steps share: the run's settings, the staged instances, and command waiting."""

    template_fields: Sequence[str] = (
        *PatchCycleOperator.template_fields,
        "settings",
        "max_concurrency",
        "max_errors",
        "poll_seconds",
        "command_timeout_minutes",
    )

    def __init__(
        self,
        *,
        settings: Any,
        max_concurrency: str = "50",
        max_errors: str = "10%",
        poll_seconds: float | str = 30,
        command_timeout_minutes: float | str = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.max_concurrency = max_concurrency
        self.max_errors = max_errors
        self.poll_seconds = poll_seconds
        self.command_timeout_minutes = command_timeout_minutes

    def hook(self) -> PatchManagerHook:
        return PatchManagerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    def staged(self, store: ArtifactStore) -> pd.DataFrame:
        """The staged profiles of this target with their instance id (none when no stack was needed)."""
        stack = read_json(store, STAGE, f"{self.target.key}.stack.json")
        if stack is None:
            raise AirflowFailException(f"no staging stack record for {self.target.key}: create_staging did not finish")
        profiles = read_frame(store, "install", "profiles.parquet")
        assert profiles is not None  # create_staging read it
        instances: dict[str, str] = stack.get("instances", {})
        mine = profiles[profiles["profile_id"].isin(instances)]
        return mine.assign(instance_id=[instances[p] for p in mine["profile_id"]]).reset_index(drop=True)

    def wait_for(self, command_ids: list[str]) -> None:
        wait = timedelta(minutes=float(self.command_timeout_minutes))
        self.defer(
            trigger=CommandCompletionTrigger.for_commands(
                command_ids,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                poll_interval=float(self.poll_seconds),
                timeout=wait.total_seconds(),
            ),
            method_name="execute_complete",
            timeout=wait + timedelta(minutes=10),
        )

    def invocations(
        self, command_ids: Sequence[str], event: dict[str, Any], *, details: bool
    ) -> dict[str, dict[str, Any]]:
        """Each instance's invocation, flattened; commands still running at the bound are cancelled first."""
        found = invocations(
            self.hook(), command_ids, late_commands(event), self.account_id, self.region_name, details=details
        )
        flat = {}
        for instance_id, invocation in found.items():
            code, output = plugin_output(invocation)
            flat[instance_id] = {
                "Status": invocation["Status"],
                "StatusDetails": invocation.get("StatusDetails", ""),
                "ResponseCode": code,
                "Output": output,
                "CommandId": invocation["CommandId"],
            }
        return flat


class StagingPatchOperator(StagingOperator):
    """Waits until the staging instances are Online in SSM, installs each profile's pinned list, verifies it."""

    def execute(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any] | None:
        store = self.store(context)
        with self.recording_failure(store, "staging_patch"):
            staged = self.staged(store)
            if staged.empty:
                store.write_json(STAGE, f"{self.target.key}.install.json", {"install": {}, "patches": {}})
                return {"staging_instances": 0}
            settings = InstallSettings.from_dict(self.settings)
            ids = sorted(staged["instance_id"])
            hook = self.hook()
            with aws_call("ssm:DescribeInstanceInformation", self.account_id, self.region_name):
                online = {i["InstanceId"] for i in hook.instance_information(ids) if i.get("PingStatus") == "Online"}
            waiting = read_json(store, STAGE, f"{self.target.key}.online_wait.json") or {"since": _now()}
            store.write_json(STAGE, f"{self.target.key}.online_wait.json", waiting)
            waited = datetime.now(UTC) - datetime.fromisoformat(waiting["since"])
            if set(ids) - online and waited < timedelta(minutes=settings.staging_timeout_minutes):
                self.log.info("%d of %d staging instances Online in SSM; waiting", len(online), len(ids))
                self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=float(self.poll_seconds))), method_name="execute")
            overrides: dict[str, str] = read_json(store, "install", "overrides.json")
            sent: dict[str, str] = read_json(store, STAGE, f"{self.target.key}.install_commands.json") or {}
            for profile in staged[staged["instance_id"].isin(online)].to_dict("records"):
                if profile["profile_id"] in sent:
                    continue  # a retried task does not install twice
                with aws_call("ssm:SendCommand", str(profile["account_id"]), self.region_name):
                    sent[profile["profile_id"]] = hook.send_patch_baseline(
                        [profile["instance_id"]],
                        operation="Install",
                        max_concurrency=str(self.max_concurrency),
                        max_errors=str(self.max_errors),
                        reboot_option=settings.reboot_option,
                        install_override_list=overrides[profile["profile_id"]],
                        comment=f"patchcycle staging {context['run_id']}",
                    )
                store.write_json(STAGE, f"{self.target.key}.install_commands.json", sent)
            never_online = sorted(set(ids) - online)
            store.write_json(
                STAGE,
                f"{self.target.key}.not_online.json",
                {
                    iid: f"not Online in Systems Manager within {settings.staging_timeout_minutes:g} minutes"
                    for iid in never_online
                },
            )
            if not sent:
                return self.execute_complete(context, {"status": "done", "commands": {}})
        self.wait_for(sorted(sent.values()))
        return None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        store = self.store(context)
        with self.recording_failure(store, "staging_patch"):
            sent: dict[str, str] = read_json(store, STAGE, f"{self.target.key}.install_commands.json") or {}
            install = self.invocations(sorted(sent.values()), event, details=True)
            for instance_id, reason in (read_json(store, STAGE, f"{self.target.key}.not_online.json") or {}).items():
                install[instance_id] = {"Status": "Undeliverable", "StatusDetails": reason}
            hook = self.hook()
            patches: dict[str, list[dict[str, Any]]] = {}
            with aws_call("ssm:DescribeInstancePatches", self.account_id, self.region_name):
                for instance_id, invocation in install.items():
                    if invocation["Status"] != "Undeliverable":
                        patches[instance_id] = hook.instance_patches(instance_id, REPORTED_STATES)
            store.write_json(STAGE, f"{self.target.key}.install.json", {"install": install, "patches": patches})
            ok = sum(1 for invocation in install.values() if invocation["Status"] == "Success")
            return {"staging_instances": len(install), "install_succeeded": ok}


class StagingHealthCheckOperator(StagingOperator):
    """Runs include/healthchecks on every staging instance; the exit code decides; writes the staging results."""

    def __init__(self, *, healthchecks: str | Path = HEALTHCHECKS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.healthchecks = Path(healthchecks)

    def execute(self, context: Context) -> dict[str, Any] | None:
        store = self.store(context)
        with self.recording_failure(store, "staging_checks"):
            staged = self.staged(store)
            if staged.empty:
                return self.execute_complete(context, {"status": "done", "commands": {}})
            record = read_json(store, STAGE, f"{self.target.key}.install.json") or {"install": {}}
            reachable = staged[
                staged["instance_id"].map(lambda i: record["install"].get(i, {}).get("Status") != "Undeliverable")
            ]
            sent = send_health_checks(
                self.hook(),
                {str(p): list(group["instance_id"]) for p, group in reachable.groupby("platform_type")},
                sent=read_json(store, STAGE, f"{self.target.key}.health_commands.json") or {},
                save=partial(store.write_json, STAGE, f"{self.target.key}.health_commands.json"),
                account=self.account_id,
                region=self.region_name,
                healthchecks=self.healthchecks,
                timeout_minutes=float(self.command_timeout_minutes),
                max_concurrency=str(self.max_concurrency),
                comment=f"patchcycle health check {context['run_id']}",
            )
            if not sent:
                return self.execute_complete(context, {"status": "done", "commands": {}})
        self.wait_for(sorted(sent.values()))
        return None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        store = self.store(context)
        with self.recording_failure(store, "staging_checks"):
            sent: dict[str, str] = read_json(store, STAGE, f"{self.target.key}.health_commands.json") or {}
            health = self.invocations(sorted(sent.values()), event, details=True)
            record = read_json(store, STAGE, f"{self.target.key}.install.json") or {"install": {}, "patches": {}}
            results = staging_results(self.staged(store), record["install"], record["patches"], health)
            store.write_frame(STAGE, f"{self.target.key}.results", results)
            summary = staging_summary(results)
            self.log.info("Staging in %s: %s", self.target.key, summary)
            return {"instances": summary["instances"], "passed": summary["passed"], "failed": summary["failed"]}


def _now() -> str:
    return datetime.now(UTC).isoformat()
