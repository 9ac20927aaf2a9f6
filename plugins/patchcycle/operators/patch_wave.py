"""One production wave: AWS-RunPatchBaseline Install, pinned to the staged patch lists, across every target.

After the wave, its failures against halt_threshold decide: go on, or halt (the task fails, so the
later waves never start and their instances are reported "halted after wave N"). The commands sent
are recorded as they go, so a retried wave sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
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
    "ok": "bool",
}


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
            return self._complete(store, event)

    def _complete(self, store: ArtifactStore, event: dict[str, Any]) -> dict[str, Any]:
        settings = InstallSettings.from_dict(self.settings)
        members = self._members(store)
        late = set(event.get("pending", [])) if event.get("status") == "timeout" else set()
        rows: list[dict[str, Any]] = []
        for target, account, _ in self._by_target(store, members):
            hook = PatchManagerHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name)
            for command in self._sent(store, target):
                command_id = command["command_id"]
                if command_id in late:
                    with aws_call("ssm:CancelCommand", account, target.region_name):
                        hook.cancel_command(command_id)
                with aws_call("ssm:ListCommandInvocations", account, target.region_name):
                    invocations = {i["InstanceId"]: i for i in hook.command_invocations(command_id, details=True)}
                for instance_id in command["instance_ids"]:
                    rows.append(
                        _result(
                            account,
                            target.region_name,
                            instance_id,
                            self.wave,
                            command_id,
                            invocations.get(instance_id),
                            command_id in late,
                            self.command_timeout_minutes,
                        )
                    )
        results = typed_frame(rows, WAVE_RESULT_COLUMNS)
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
        output = "\n".join(str(p.get("Output", "")) for p in invocation.get("CommandPlugins") or []).strip()
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
        "ok": status == "Success",
    }
