"""One production wave: AWS-RunPatchBaseline Install, pinned to the staged patch lists, across every target.

The canary's instances then run the staging health checks too: a broken service counts as a failure.
After the wave, its failures against halt_threshold decide: go on, or halt (the task fails, so the
later waves never start and their instances are reported "halted after wave N"). The commands sent
are recorded as they go, so a retried wave sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final

import pandas as pd
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import InstallSettings, Target
from patchcycle.core.inventory import typed_frame
from patchcycle.core.outcomes import invocation_error
from patchcycle.core.waves import halt_decision
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_manager import PatchManagerHook, batches
from patchcycle.operators.base import recorded_failure
from patchcycle.operators.match_tables import read_frame, read_json, targets_of
from patchcycle.operators.run_command import HEALTHCHECKS, invocations, late_commands, plugin_output, send_health_checks
from patchcycle.triggers.command_completion import CommandCompletionTrigger

STAGE = "waves"
WAVE_RESULT_COLUMNS: Final = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "wave": "int64",
    "command_id": "str",
    "status": "str",  # the SSM invocation status: Success, Failed, TimedOut, Cancelled, ...
    "detail": "str",  # StatusDetails and the output's tail, for a failure
    "health_failure": "str",  # the canary's health check, when it failed after a good install ("" otherwise)
    "ok": "bool",
}
CANARY = 1  # the wave whose instances also run the health checks (include/healthchecks), as staging did


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class PatchWaveOperator(BaseOperator):
    """Installs wave `wave` of the plan (1 = the canary) and applies the halt gate to its outcome."""

    template_fields: Sequence[str] = (
        "targets",
        "settings",
        "artifact_root",
        "artifact_conn_id",
        "max_concurrency",
        "max_errors",
        "poll_seconds",
        "command_timeout_minutes",
    )

    def __init__(
        self,
        *,
        wave: int,
        healthchecks: str | Path = HEALTHCHECKS,
        targets: Any,
        settings: Any,
        artifact_root: str,
        artifact_conn_id: str = "aws_default",
        max_concurrency: str = "50",
        max_errors: str = "10%",
        poll_seconds: float | str = 30,
        command_timeout_minutes: float | str = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if wave < 1:
            raise ValueError(f"wave: waves are numbered from 1 (the canary), got {wave}")
        self.wave = wave
        self.healthchecks = Path(healthchecks)
        self.targets = targets
        self.settings = settings
        self.artifact_root = artifact_root
        self.artifact_conn_id = artifact_conn_id
        self.max_concurrency = max_concurrency
        self.max_errors = max_errors
        self.poll_seconds = poll_seconds
        self.command_timeout_minutes = command_timeout_minutes

    def execute(self, context: Context) -> None:
        store = self.store(context)
        with recorded_failure(store, f"wave_{self.wave}", stage=f"wave_{self.wave}"):
            self._send(context, store)

    def _send(self, context: Context, store: ArtifactStore) -> None:
        members = self._members(store)
        if members.empty:
            raise AirflowSkipException(f"wave {self.wave} has no instances")
        settings = InstallSettings.from_dict(self.settings)
        overrides: dict[str, str] = read_json(store, "install", "overrides.json")
        record = read_json(store, STAGE, f"wave_{self.wave}.json") or {"started_at": now_iso()}
        store.write_json(STAGE, f"wave_{self.wave}.json", {**record, "wave": self.wave, "instances": len(members)})
        waiting = []
        for target, account, rows in self._by_target(store, members):
            sent = self._sent(store, target)
            already = {instance for command in sent for instance in command["instance_ids"]}
            hook = PatchManagerHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name)
            for profile_id, group in rows.groupby("profile_id"):
                todo = sorted(set(group["resource_id"]) - already)  # a retried wave sends nothing twice
                for batch in batches(todo):
                    with aws_call("ssm:SendCommand", account, target.region_name):
                        command_id = hook.send_patch_baseline(
                            batch,
                            operation="Install",
                            max_concurrency=str(self.max_concurrency),
                            max_errors=str(self.max_errors),
                            reboot_option=settings.reboot_option,
                            install_override_list=overrides[str(profile_id)],
                            comment=f"patchcycle wave {self.wave} {context['run_id']}",
                        )
                    sent.append({"command_id": command_id, "instance_ids": batch})
                    store.write_json(STAGE, f"wave_{self.wave}.{target.key}.sent.json", sent)
            if sent:
                waiting.append({**target.as_kwargs(), "command_ids": [c["command_id"] for c in sent]})
        self.log.info("Wave %d: %d instances, commands in %d targets", self.wave, len(members), len(waiting))
        wait = timedelta(minutes=float(self.command_timeout_minutes))
        self.defer(
            trigger=CommandCompletionTrigger(
                waiting, poll_interval=float(self.poll_seconds), timeout=wait.total_seconds()
            ),
            method_name="execute_complete",
            timeout=wait + timedelta(minutes=10),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        store = self.store(context)
        with recorded_failure(store, f"wave_{self.wave}", stage=f"wave_{self.wave}"):
            return self._complete(context, store, event)

    def _complete(self, context: Context, store: ArtifactStore, event: dict[str, Any]) -> dict[str, Any]:
        members = self._members(store)
        late = late_commands(event)
        rows: list[dict[str, Any]] = []
        for target, account, _ in self._by_target(store, members):
            hook = PatchManagerHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name)
            sent = self._sent(store, target)
            found = invocations(hook, [c["command_id"] for c in sent], late, account, target.region_name, details=True)
            for command in sent:
                for instance_id in command["instance_ids"]:
                    invocation = found.get(instance_id)
                    cancelled = command["command_id"] in late
                    rows.append(
                        _result(
                            account,
                            target.region_name,
                            instance_id,
                            self.wave,
                            command["command_id"],
                            invocation,
                            cancelled,
                            self.command_timeout_minutes,
                        )
                    )
        results = typed_frame(rows, WAVE_RESULT_COLUMNS)
        if self.wave == CANARY and results["ok"].any():
            store.write_frame(STAGE, f"wave_{self.wave}.installed", results)
            waiting = self._send_health_checks(context, store, results)
            wait = timedelta(minutes=float(self.command_timeout_minutes))
            self.defer(
                trigger=CommandCompletionTrigger(
                    waiting, poll_interval=float(self.poll_seconds), timeout=wait.total_seconds()
                ),
                method_name="health_complete",
                timeout=wait + timedelta(minutes=10),
            )
        return self._decide(store, members, results)

    def health_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        store = self.store(context)
        with recorded_failure(store, f"wave_{self.wave}", stage=f"wave_{self.wave}"):
            results = store.read_frame(store.uri(STAGE, f"wave_{self.wave}.installed.parquet"))
            failures: dict[str, str] = {}
            for target, account, _ in self._by_target(store, self._members(store)):
                hook = PatchManagerHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name)
                checked = invocations(
                    hook,
                    self._health_sent(store, target).values(),
                    late_commands(event),
                    account,
                    target.region_name,
                    details=True,
                )
                for instance_id, invocation in checked.items():
                    if invocation["Status"] != "Success":
                        failures[instance_id] = _health_failure(invocation)
            failed = results["resource_id"].isin(failures)
            results.loc[failed, "health_failure"] = results.loc[failed, "resource_id"].map(failures)
            results.loc[failed, "ok"] = False
            return self._decide(store, self._members(store), results)

    def _send_health_checks(
        self, context: Context, store: ArtifactStore, results: pd.DataFrame
    ) -> list[dict[str, Any]]:
        """The health checks on the canary's well-installed instances, per platform; recorded, never sent twice."""
        production = read_frame(store, "install", "production.parquet")
        assert production is not None  # plan_install wrote the wave plan from it
        platform = dict(zip(production["resource_id"], production["platform_type"], strict=True))
        waiting = []
        for target, account, _ in self._by_target(store, self._members(store)):
            mine = results[
                results["ok"] & (results["region"] == target.region_name) & (results["account_id"] == account)
            ]
            by_platform = mine["resource_id"].groupby(mine["resource_id"].map(platform))
            sent = send_health_checks(
                PatchManagerHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name),
                {str(p): list(ids) for p, ids in by_platform},
                sent=self._health_sent(store, target),
                save=partial(store.write_json, STAGE, f"wave_{self.wave}.{target.key}.health.json"),
                account=account,
                region=target.region_name,
                healthchecks=self.healthchecks,
                timeout_minutes=float(self.command_timeout_minutes),
                max_concurrency=str(self.max_concurrency),
                comment=f"patchcycle canary health check {context['run_id']}",
            )
            if sent:
                waiting.append({**target.as_kwargs(), "command_ids": sorted(sent.values())})
        return waiting

    def _health_sent(self, store: ArtifactStore, target: Target) -> dict[str, str]:
        sent: dict[str, str] = read_json(store, STAGE, f"wave_{self.wave}.{target.key}.health.json") or {}
        return sent

    def _decide(self, store: ArtifactStore, members: pd.DataFrame, results: pd.DataFrame) -> dict[str, Any]:
        """The halt gate on the wave's outcome: its failures against halt_threshold."""
        settings = InstallSettings.from_dict(self.settings)
        store.write_frame(STAGE, f"wave_{self.wave}.results", results)
        failures = int((~results["ok"]).sum()) + len(members) - len(results)  # never sent counts as failed
        halt, allowed = halt_decision(len(members), failures, settings.halt_threshold)
        record = read_json(store, STAGE, f"wave_{self.wave}.json") or {}
        summary = {
            **record,
            "wave": self.wave,
            "instances": len(members),
            "sent": len(results),
            "succeeded": int(results["ok"].sum()),
            "failed": failures,
            "threshold": settings.halt_threshold,
            "allowed_failures": allowed,
            "halted": halt,
            "status": "halted" if halt else "done",
            "finished_at": now_iso(),
        }
        store.write_json(STAGE, f"wave_{self.wave}.json", summary)
        if halt:
            raise AirflowFailException(
                f"wave {self.wave} halted the rollout: {failures} of {len(members)} instances failed, more than "
                f"the {allowed} that halt_threshold {settings.halt_threshold} allows; later waves will not run"
            )
        self.log.info("Wave %d: %s", self.wave, summary)
        return {key: summary[key] for key in ("wave", "instances", "succeeded", "failed", "halted")}

    def store(self, context: Context) -> ArtifactStore:
        return ArtifactStore(self.artifact_root, context["dag"].dag_id, context["run_id"], self.artifact_conn_id)

    def _members(self, store: ArtifactStore) -> pd.DataFrame:
        plan = read_frame(store, "install", "waves.parquet")
        if plan is None:
            raise AirflowFailException("no wave plan: plan_install did not finish")
        return plan[plan["wave"] == self.wave].reset_index(drop=True)

    def _by_target(self, store: ArtifactStore, members: pd.DataFrame) -> list[tuple[Target, str, pd.DataFrame]]:
        """The wave's instances per target (matched on the account and region its inventory found)."""
        found = []
        for target in targets_of(self.targets):
            inventory = read_frame(store, "inventory", f"{target.key}.parquet")
            if inventory is None or inventory.empty:
                continue
            account = str(inventory["account_id"].iloc[0])
            rows = members[(members["account_id"] == account) & (members["region"] == target.region_name)]
            if not rows.empty:
                found.append((target, account, rows))
        return found

    def _sent(self, store: ArtifactStore, target: Target) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = read_json(store, STAGE, f"wave_{self.wave}.{target.key}.sent.json") or []
        return sent


def _result(
    account: str,
    region: str,
    instance_id: str,
    wave: int,
    command_id: str,
    invocation: dict[str, Any] | None,
    cancelled: bool,
    timeout_minutes: float | str,
) -> dict[str, Any]:
    if invocation is None:
        status, detail = "NoInvocation", "Systems Manager reported no invocation for this instance"
    else:
        status = str(invocation["Status"])
        _, output = plugin_output(invocation)
        detail = str(invocation.get("StatusDetails", ""))
        if status != "Success" and invocation_error(output):
            detail += f": {invocation_error(output)}"
    if cancelled and status in ("Pending", "InProgress", "Delayed", "Cancelling", "Cancelled"):
        detail = f"did not finish within {timeout_minutes} minutes (cancelled)"
    return {
        "account_id": account,
        "region": region,
        "resource_id": instance_id,
        "wave": wave,
        "command_id": command_id,
        "status": status,
        "detail": detail,
        "health_failure": "",
        "ok": status == "Success",
    }


def _health_failure(invocation: dict[str, Any]) -> str:
    code, output = plugin_output(invocation)
    return f"health check {invocation['Status']} (exit {code}) after the install: {invocation_error(output)}".strip(
        ": "
    )
