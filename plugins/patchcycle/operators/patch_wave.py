"""One production wave: AWS-RunPatchBaseline Install, pinned to the staged patch lists, across every target.

The canary's instances then run the staging health checks too: a broken service counts as a failure.
After the wave, its failures against halt_threshold decide: go on, or halt (the task fails, so the
later waves never start and their instances are reported "halted after wave N"). The commands sent
are recorded as they go, so a retried wave sends nothing twice.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from patchcycle.config import CycleConfig, Target
from patchcycle.core.frames import typed_frame
from patchcycle.core.timestamps import now_iso
from patchcycle.core.waves import CANARY, WAVE_RESULT_COLUMNS, WaveRecord, halt_decision, health_failure, wave_result
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_manager import PatchManagerHook, batches
from patchcycle.operators.base import FleetOperator, defer_for_commands, recorded_failure
from patchcycle.operators.run_command import HEALTHCHECKS, invocations, late_commands, send_health_checks
from patchcycle.run_artifacts import (
    INVENTORY_SUMMARY,
    OVERRIDES,
    PRODUCTION,
    WAVE,
    WAVE_HEALTH_COMMANDS,
    WAVE_INSTALLED,
    WAVE_PLAN,
    WAVE_RESULTS,
    WAVE_SENT,
    RunArtifacts,
    Step,
)
from patchcycle.run_records import SentCommand


class PatchWaveOperator(FleetOperator[CycleConfig]):
    """Installs wave `wave` of the plan (1 = the canary) and applies the halt gate to its outcome."""

    config_class = CycleConfig

    def __init__(self, *, wave: int, healthchecks: str | Path = HEALTHCHECKS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if wave < 1:
            raise ValueError(f"wave: waves are numbered from 1 (the canary), got {wave}")
        self.wave = wave
        self.healthchecks = Path(healthchecks)

    def execute(self, context: Context) -> None:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.wave(self.wave)):
            waiting = self._send(context, artifacts, config)
        defer_for_commands(self, config, waiting, "execute_complete")

    def _send(self, context: Context, artifacts: RunArtifacts, config: CycleConfig) -> list[dict[str, Any]]:
        members = self._members(artifacts)
        if members.empty:
            raise AirflowSkipException(f"wave {self.wave} has no instances")
        overrides = artifacts.read(OVERRIDES)
        record = artifacts.find(WAVE, wave=self.wave) or WaveRecord(
            wave=self.wave, instances=len(members), started_at=now_iso()
        )
        artifacts.write(WAVE, replace(record, instances=len(members)), wave=self.wave)
        waiting = []
        for target, account, rows in self._by_target(artifacts, config, members):
            sent = artifacts.find(WAVE_SENT, wave=self.wave, target=target) or []
            already = {instance for command in sent for instance in command.instance_ids}
            hook = PatchManagerHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name)
            for profile_id, group in rows.groupby("profile_id"):
                todo = sorted(set(group["resource_id"]) - already)  # a retried wave sends nothing twice
                for batch in batches(todo):
                    with aws_call("ssm:SendCommand", account, target.region_name):
                        command_id = hook.send_patch_baseline(
                            batch,
                            operation="Install",
                            max_concurrency=str(config.max_concurrency),
                            max_errors=str(config.max_errors),
                            reboot_option=config.install.reboot_option,
                            install_override_list=overrides[str(profile_id)],
                            comment=f"patchcycle wave {self.wave} {context['run_id']}",
                        )
                    sent.append(SentCommand(command_id=command_id, instance_ids=batch))
                    artifacts.write(WAVE_SENT, sent, wave=self.wave, target=target)
            if sent:
                waiting.append({**target.as_kwargs(), "command_ids": [c.command_id for c in sent]})
        self.log.info("Wave %d: %d instances, commands in %d targets", self.wave, len(members), len(waiting))
        return waiting

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.wave(self.wave)):
            members = self._members(artifacts)
            results = self._results(artifacts, config, members, late_commands(event))
            if self.wave != CANARY or not results["ok"].any():
                return self._decide(artifacts, config, members, results)
            artifacts.write(WAVE_INSTALLED, results, wave=self.wave)
            waiting = self._send_health_checks(context, artifacts, config, results)
        defer_for_commands(self, config, waiting, "health_complete")

    def health_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.wave(self.wave)):
            results = artifacts.read(WAVE_INSTALLED, wave=self.wave)
            members = self._members(artifacts)
            failures: dict[str, str] = {}
            for target, account, _ in self._by_target(artifacts, config, members):
                hook = PatchManagerHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name)
                sent = artifacts.find(WAVE_HEALTH_COMMANDS, wave=self.wave, target=target) or {}
                found = invocations(
                    hook, sent.values(), late_commands(event), account, target.region_name, details=True
                )
                for instance_id, invocation in found.items():
                    if invocation["Status"] != "Success":
                        failures[instance_id] = health_failure(invocation)
            failed = results["resource_id"].isin(failures)
            results.loc[failed, "health_failure"] = results.loc[failed, "resource_id"].map(failures)
            results.loc[failed, "ok"] = False
            return self._decide(artifacts, config, members, results)

    def _results(
        self, artifacts: RunArtifacts, config: CycleConfig, members: pd.DataFrame, late: set[str]
    ) -> pd.DataFrame:
        """How the install went on every instance the wave sent it to (WAVE_RESULT_COLUMNS)."""
        rows: list[dict[str, Any]] = []
        for target, account, _ in self._by_target(artifacts, config, members):
            hook = PatchManagerHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name)
            sent = artifacts.find(WAVE_SENT, wave=self.wave, target=target) or []
            found = invocations(hook, [c.command_id for c in sent], late, account, target.region_name, details=True)
            for command in sent:
                for instance_id in command.instance_ids:
                    rows.append(
                        wave_result(
                            (account, target.region_name),
                            instance_id,
                            self.wave,
                            command.command_id,
                            found.get(instance_id),
                            cancelled=command.command_id in late,
                            timeout_minutes=config.command_timeout_minutes,
                        )
                    )
        return typed_frame(rows, WAVE_RESULT_COLUMNS)

    def _send_health_checks(
        self, context: Context, artifacts: RunArtifacts, config: CycleConfig, results: pd.DataFrame
    ) -> list[dict[str, Any]]:
        """The health checks on the canary's well-installed instances, per platform; recorded, never sent twice."""
        production = artifacts.read(PRODUCTION)
        platform = dict(zip(production["resource_id"], production["platform_type"], strict=True))
        waiting = []
        for target, account, _ in self._by_target(artifacts, config, self._members(artifacts)):
            mine = results[
                results["ok"] & (results["region"] == target.region_name) & (results["account_id"] == account)
            ]
            by_platform = mine["resource_id"].groupby(mine["resource_id"].map(platform))
            sent = send_health_checks(
                PatchManagerHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name),
                {str(p): list(ids) for p, ids in by_platform},
                sent=artifacts.find(WAVE_HEALTH_COMMANDS, wave=self.wave, target=target) or {},
                save=partial(artifacts.write, WAVE_HEALTH_COMMANDS, wave=self.wave, target=target),
                account=account,
                region=target.region_name,
                healthchecks=self.healthchecks,
                timeout_minutes=config.command_timeout_minutes,
                max_concurrency=config.max_concurrency,
                comment=f"patchcycle canary health check {context['run_id']}",
            )
            if sent:
                waiting.append({**target.as_kwargs(), "command_ids": sorted(sent.values())})
        return waiting

    def _decide(
        self, artifacts: RunArtifacts, config: CycleConfig, members: pd.DataFrame, results: pd.DataFrame
    ) -> dict[str, Any]:
        """The halt gate on the wave's outcome: its failures against halt_threshold."""
        threshold = config.install.halt_threshold
        artifacts.write(WAVE_RESULTS, results, wave=self.wave)
        failures = int((~results["ok"]).sum()) + len(members) - len(results)  # never sent counts as failed
        halt, allowed = halt_decision(len(members), failures, threshold)
        started = artifacts.find(WAVE, wave=self.wave)
        record = WaveRecord(
            wave=self.wave,
            instances=len(members),
            started_at=started.started_at if started else "",
            status="halted" if halt else "done",
            sent=len(results),
            succeeded=int(results["ok"].sum()),
            failed=failures,
            threshold=str(threshold),
            allowed_failures=allowed,
            halted=halt,
            finished_at=now_iso(),
        )
        artifacts.write(WAVE, record, wave=self.wave)
        if halt:
            raise AirflowFailException(
                f"wave {self.wave} halted the rollout: {failures} of {len(members)} instances failed, more than "
                f"the {allowed} that halt_threshold {threshold} allows; later waves will not run"
            )
        self.log.info("Wave %d: %s", self.wave, record)
        return {
            "wave": self.wave,
            "instances": len(members),
            "succeeded": record.succeeded,
            "failed": failures,
            "halted": halt,
        }

    def _members(self, artifacts: RunArtifacts) -> pd.DataFrame:
        plan = artifacts.read(WAVE_PLAN)
        return plan[plan["wave"] == self.wave].reset_index(drop=True)

    def _by_target(
        self, artifacts: RunArtifacts, config: CycleConfig, members: pd.DataFrame
    ) -> list[tuple[Target, str, pd.DataFrame]]:
        """The wave's instances per target (matched on the account and region its inventory found)."""
        found = []
        for target in config.targets:
            summary = artifacts.find(INVENTORY_SUMMARY, target=target)
            if summary is None or not summary.account_id:
                continue
            rows = members[(members["account_id"] == summary.account_id) & (members["region"] == target.region_name)]
            if not rows.empty:
                found.append((target, summary.account_id, rows))
        return found
