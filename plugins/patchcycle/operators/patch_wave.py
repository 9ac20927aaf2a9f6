"""One production wave, with its gates and its way back, across every target:

1. gates: the change calendar must be OPEN (a CLOSED one is waited for in the triggerer, up to
   change_calendar_wait_minutes, then the rollout halts) and no health alarm may be in ALARM;
2. snapshot: PatchCycle-PrePatchSnapshot on the wave's instances (param `snapshot`); an instance whose snapshot
   failed is not patched;
3. install: AWS-RunPatchBaseline Install, pinned to the staged patch lists;
4. validate: PatchCycle-ValidateInstance (the health checks, then Patch Manager) on every installed instance;
5. rollback: PatchCycle-RestoreRootVolume on the instances whose install or validation failed (param
   `rollback: failed`);
6. the halt gate: failures (no snapshot, install or validation failed, rolled back) against halt_threshold; a
   failed rollback always halts. A halt fails the task, so the later waves never start.

Every phase waits in the triggerer. Each command and Automation execution is recorded as soon as it is sent
(Automation starts also carry a client token derived from the run), so a retried wave sends nothing twice. A
worker that dies between a SendCommand and its record leaves a command no record knows: a retried attempt looks
for the wave's commands (ListCommands by instance, matched on the wave's comment) before it sends.

The wave links to the console while it waits and after: "Run Command" opens its first install command and
"Automation execution" the first execution of the latest runbook phase it started (the snapshot, then the
validation, then a rollback when there is one), both in the first target that has one. A wave of one target and
one profile, up to 50 instances, has exactly one of each per phase; a larger wave's other commands and
executions are beside them in the console's history (commands carry the comment `patchcycle wave <n> <run id>`,
executions the tags patchcycle:run-id and patchcycle:wave).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from patchcycle.config import REPO_ROOT, CycleConfig, Target
from patchcycle.core.frames import typed_frame
from patchcycle.core.runbooks import (
    RESTORE_RUNBOOK,
    SNAPSHOT_RUNBOOK,
    VALIDATE_RUNBOOK,
    RunbookError,
    runbook_parameters,
    script_lines,
)
from patchcycle.core.timestamps import now_iso, parse_utc
from patchcycle.core.verdicts import ReasonCode
from patchcycle.core.wave_results import (
    AUTOMATION_SUCCESS,
    FAILED_STEP,
    ROLLBACK_FAILED,
    ROLLED_BACK,
    SNAPSHOT_FAILED,
    WAVE_RESULT_COLUMNS,
    WaveRecord,
    by_instance,
    install_result,
    installed_for_validation,
    needs_rollback,
    new_result,
    rollback_result,
    snapshot_result,
    to_install,
    to_snapshot,
    validation_result,
)
from patchcycle.core.waves import halt_decision
from patchcycle.hooks.automation import AutomationHook
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_manager import PatchManagerHook, batches
from patchcycle.links.base import persist_link
from patchcycle.links.ssm import AutomationExecutionLink, RunCommandLink
from patchcycle.operators.base import DEFER_MARGIN, FleetOperator, defer_for_commands, recorded_failure
from patchcycle.operators.run_command import SCRIPT_DOCUMENTS, invocations, late_commands
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
    OVERRIDES,
    WAVE,
    WAVE_AUTOMATIONS,
    WAVE_GATE,
    WAVE_PLAN,
    WAVE_RESULTS,
    WAVE_SENT,
    RunArtifacts,
    Step,
)
from patchcycle.run_records import SentCommand, StartedAutomation, WaveGate
from patchcycle.triggers.automation_completion import FINAL_STATUSES, AutomationCompletionTrigger

HEALTHCHECKS = REPO_ROOT / "include" / "healthchecks"
# The runbooks bound their own steps (an hour for snapshots and restores); the wait leaves them room.
AUTOMATION_WAIT = timedelta(hours=2)
AUTOMATION_WAIT_TEXT = "2 hours"
# Which runbook each Automation phase runs, and what its answer means for an instance's row.
PHASES: dict[str, tuple[str, Callable[[Mapping[str, Any], Mapping[str, Any] | None], dict[str, Any]]]] = {
    "snapshot": (SNAPSHOT_RUNBOOK, snapshot_result),
    "validate": (VALIDATE_RUNBOOK, validation_result),
    "rollback": (RESTORE_RUNBOOK, rollback_result),
}
# A runbook phase gives every instance its answer (one instance's failure must not leave the others unanswered);
# the halt threshold, not MaxErrors, decides what the failures mean.
EVERY_INSTANCE = "100%"
Placed = list[tuple[Target, str, pd.DataFrame]]  # (target, its account, the wave's rows in it)


def _try_number(context: Context) -> int:
    """The task's attempt (1 when the context has no task instance, as in a direct call)."""
    ti = context.get("ti")
    return int(getattr(ti, "try_number", None) or 1)


class PatchWaveOperator(FleetOperator[CycleConfig]):
    """Runs wave `wave` of the plan (1 = the canary) through its gates, snapshot, install, validation and
    rollback, then applies the halt gate."""

    config_class = CycleConfig
    operator_extra_links = (RunCommandLink(), AutomationExecutionLink())

    def __init__(self, *, wave: int, healthchecks: str | Path = HEALTHCHECKS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if wave < 1:
            raise ValueError(f"wave: waves are numbered from 1 (the canary), got {wave}")
        self.wave = wave
        self.healthchecks = Path(healthchecks)

    # -- 1. gates -----------------------------------------------------------------------------------------
    @telling_halts
    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.wave(self.wave)):
            members = self._members(artifacts)
            if members.empty:
                raise AirflowSkipException(f"wave {self.wave} has no instances")
            record = artifacts.find(WAVE, wave=self.wave)
            if record is None or record.halted_before:  # a wave a gate halted starts afresh when cleared
                record = WaveRecord(wave=self.wave, instances=len(members), started_at=now_iso())
                artifacts.write(WAVE_GATE, WaveGate(calendar=config.safety.change_calendar), wave=self.wave)
            artifacts.write(WAVE, replace(record, instances=len(members)), wave=self.wave)
            if artifacts.find(WAVE_RESULTS, wave=self.wave) is None:
                rows = [new_result((r.account_id, r.region), r.resource_id, self.wave) for r in members.itertuples()]
                self._save(artifacts, typed_frame(rows, WAVE_RESULT_COLUMNS))
            return self._calendar_gate(context, artifacts, config)

    @telling_halts
    def calendar_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.wave(self.wave)):
            gate = artifacts.read(WAVE_GATE, wave=self.wave)
            if event.get("status") != "open":
                reason = calendar_halt_reason(f"wave {self.wave}", config.safety, gate.waiting_since)
                self._halt_before(
                    artifacts, replace(gate, calendar_state="CLOSED", reason=reason), ReasonCode.HALTED_BY_CALENDAR
                )
            return self._calendar_gate(context, artifacts, config)  # open now: look again, in every target

    def _calendar_gate(self, context: Context, artifacts: RunArtifacts, config: CycleConfig) -> dict[str, Any]:
        calendar = config.safety.change_calendar
        gate = artifacts.find(WAVE_GATE, wave=self.wave) or WaveGate(calendar=calendar)
        if gate.passed:  # a retried wave: the gates let it start once, and what it started goes on
            return self._after_gates(context, artifacts, config)
        if calendar:
            placed = [(target, account) for target, account, _ in self._placed(artifacts, config)]
            closed, state = calendar_look(placed, calendar)
            gate = replace(gate, calendar_state=state) if state else gate
            if closed is not None:
                gate = replace(gate, waiting_since=gate.waiting_since or now_iso())
                artifacts.write(WAVE_GATE, gate, wave=self.wave)
                since = parse_utc(gate.waiting_since) or datetime.now(UTC)
                self.log.info("Change calendar %s is %s in %s: wave %d waits", calendar, state, closed.key, self.wave)
                self.defer(
                    trigger=calendar_wait(closed, config.safety, since, config.poll_seconds),
                    method_name="calendar_complete",
                    timeout=config.safety.change_calendar_wait + DEFER_MARGIN,
                )
        artifacts.write(WAVE_GATE, gate, wave=self.wave)
        return self._alarm_gate(context, artifacts, config, gate)

    def _alarm_gate(
        self, context: Context, artifacts: RunArtifacts, config: CycleConfig, gate: WaveGate
    ) -> dict[str, Any]:
        watched = config.safety.health_alarms
        placed = [(target, account) for target, account, _ in self._placed(artifacts, config)] if watched else []
        firing = alarms_in_alarm(placed, watched)
        if firing:
            reason = alarm_halt_reason(f"wave {self.wave}", firing)
            self._halt_before(
                artifacts, replace(gate, alarms_in_alarm=firing, reason=reason), ReasonCode.HALTED_BY_ALARM
            )
        artifacts.write(WAVE_GATE, replace(gate, passed=True), wave=self.wave)
        return self._after_gates(context, artifacts, config)

    def _after_gates(self, context: Context, artifacts: RunArtifacts, config: CycleConfig) -> dict[str, Any]:
        if config.safety.snapshot:
            results = self._results(artifacts)
            self._start_phase(context, artifacts, config, "snapshot", set(to_snapshot(results)))
        return self._send_install(context, artifacts, config)

    # -- 2, 4, 5. Automation phases -----------------------------------------------------------------------
    @telling_halts
    def snapshot_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.wave(self.wave)):
            self._phase_results(artifacts, config, "snapshot", event)
            return self._send_install(context, artifacts, config)

    @telling_halts
    def validate_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.wave(self.wave)):
            self._phase_results(artifacts, config, "validate", event)
            return self._start_rollback(context, artifacts, config)

    @telling_halts
    def rollback_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.wave(self.wave)):
            self._phase_results(artifacts, config, "rollback", event)
            return self._decide(artifacts, config)

    def _start_phase(
        self, context: Context, artifacts: RunArtifacts, config: CycleConfig, phase: str, wanted: set[str]
    ) -> None:
        """Start the phase's runbook on `wanted` (at most 50 instances an execution), in each target, recording
        each execution as it starts; defer until they are final. Returns when there is nothing to start."""
        runbook, _ = PHASES[phase]
        parameters = runbook_parameters(
            runbook,
            run_id=context["run_id"],
            wave=self.wave,
            health_checks=self._health_checks() if phase != "snapshot" else {},
            assume_role=config.safety.automation_assume_role,
        )
        waiting: list[dict[str, Any]] = []
        for target, account, rows in self._placed(artifacts, config):
            started = artifacts.find(WAVE_AUTOMATIONS, wave=self.wave, target=target) or []
            covered = {i for run in started if run.phase == phase for i in run.instance_ids}
            todo = sorted(set(rows["resource_id"]) & wanted - covered)
            hook = self._hook(AutomationHook, target)
            for batch in batches(todo):
                token = uuid.uuid5(uuid.NAMESPACE_URL, f"patchcycle/{context['run_id']}/{self.wave}/{phase}/{batch[0]}")
                with aws_call("ssm:StartAutomationExecution", account, target.region_name):
                    execution_id = hook.start(
                        runbook,
                        batch,
                        parameters,
                        max_concurrency=str(config.max_concurrency),
                        max_errors=EVERY_INSTANCE,
                        client_token=str(token),
                        tags={"patchcycle:run-id": context["run_id"][:256], "patchcycle:wave": str(self.wave)},
                    )
                started.append(
                    StartedAutomation(phase=phase, runbook=runbook, execution_id=execution_id, instance_ids=batch)
                )
                artifacts.write(WAVE_AUTOMATIONS, started, wave=self.wave, target=target)
            ids = [run.execution_id for run in started if run.phase == phase]
            if ids:
                if not waiting:  # the phase's first execution, in the first target that has one
                    persist_link(AutomationExecutionLink, context, self, hook, execution_id=ids[0])
                waiting.append({**target.as_kwargs(), "execution_ids": ids})
        if not waiting:
            return
        self.log.info("Wave %d: %s on %d instances", self.wave, runbook, len(wanted))
        self.defer(
            trigger=AutomationCompletionTrigger(
                waiting, poll_interval=config.poll_seconds, timeout=AUTOMATION_WAIT.total_seconds()
            ),
            method_name=f"{phase}_complete",
            timeout=AUTOMATION_WAIT + DEFER_MARGIN,
        )

    def _phase_results(self, artifacts: RunArtifacts, config: CycleConfig, phase: str, event: dict[str, Any]) -> None:
        """Each instance's child execution of the phase, read into its row; executions still running at the
        wait's end are stopped (their instances count as failed)."""
        _, decide = PHASES[phase]
        late = set(event.get("pending", [])) if event.get("status") == "timeout" else set()
        results = self._results(artifacts)
        children: dict[str, Mapping[str, Any]] = {}
        covered: set[str] = set()
        for target, account, _ in self._placed(artifacts, config):
            hook = self._hook(AutomationHook, target)
            for run in artifacts.find(WAVE_AUTOMATIONS, wave=self.wave, target=target) or []:
                if run.phase != phase:
                    continue
                covered.update(run.instance_ids)
                if run.execution_id in late:  # still running at the wait's end: stopped, its unfinished children fail
                    with aws_call("ssm:StopAutomationExecution", account, target.region_name):
                        hook.stop(run.execution_id)
                with aws_call("ssm:DescribeAutomationExecutions", account, target.region_name):
                    found = by_instance(hook.children(run.execution_id))
                for instance_id in run.instance_ids:
                    child = found.get(instance_id)
                    status = child.get("AutomationExecutionStatus") if child else None
                    if run.execution_id in late and status not in FINAL_STATUSES:
                        why = f"{run.runbook} was still running after {AUTOMATION_WAIT_TEXT}: stopped"
                        child = {**(child or {}), "AutomationExecutionStatus": "Cancelled", "FailureMessage": why}
                    elif child is not None and status not in AUTOMATION_SUCCESS:
                        with aws_call("ssm:DescribeAutomationStepExecutions", account, target.region_name):
                            step = hook.failed_step(str(child["AutomationExecutionId"]))
                        child = {**child, FAILED_STEP: step}
                    if child is not None:
                        children[instance_id] = child
        rows = []
        for row in results.to_dict("records"):
            if row["resource_id"] in covered:
                row = decide(row, children.get(str(row["resource_id"])))
            rows.append(row)
        self._save(artifacts, typed_frame(rows, WAVE_RESULT_COLUMNS))

    def _start_rollback(self, context: Context, artifacts: RunArtifacts, config: CycleConfig) -> dict[str, Any]:
        if config.safety.rollback == "failed":
            results = self._results(artifacts)
            wanted = set(results.loc[needs_rollback(results), "resource_id"])
            self._start_phase(context, artifacts, config, "rollback", wanted)
        return self._decide(artifacts, config)

    # -- 3. install ---------------------------------------------------------------------------------------
    def _send_install(self, context: Context, artifacts: RunArtifacts, config: CycleConfig) -> dict[str, Any]:
        ready = to_install(self._results(artifacts), config.safety.snapshot)
        overrides = artifacts.read(OVERRIDES)
        members = self._members(artifacts)
        profile_of = dict(zip(members["resource_id"], members["profile_id"], strict=True))
        comment = f"patchcycle wave {self.wave} {context['run_id']}"
        retried = _try_number(context) > 1
        waiting: list[dict[str, Any]] = []
        for target, account, _ in self._placed(artifacts, config):
            sent = artifacts.find(WAVE_SENT, wave=self.wave, target=target) or []
            already = {instance for command in sent for instance in command.instance_ids}
            mine = ready[(ready["account_id"] == account) & (ready["region"] == target.region_name)]
            hook = self._hook(PatchManagerHook, target)
            by_profile = mine.groupby(mine["resource_id"].map(profile_of))
            for profile_id, group in by_profile:
                todo = sorted(set(group["resource_id"]) - already)  # a retried wave sends nothing twice
                if retried and todo:  # the attempt before may have died between a send and its record
                    for command in self._sent_unrecorded(hook, account, target, comment, todo):
                        sent.append(command)
                        artifacts.write(WAVE_SENT, sent, wave=self.wave, target=target)
                        todo = [i for i in todo if i not in command.instance_ids]
                for batch in batches(todo):
                    with aws_call("ssm:SendCommand", account, target.region_name):
                        command_id = hook.send_patch_baseline(
                            batch,
                            operation="Install",
                            max_concurrency=str(config.max_concurrency),
                            max_errors=str(config.max_errors),
                            reboot_option=config.install.reboot_option,
                            install_override_list=overrides[str(profile_id)],
                            comment=comment,
                        )
                    sent.append(SentCommand(command_id=command_id, instance_ids=batch))
                    artifacts.write(WAVE_SENT, sent, wave=self.wave, target=target)
            if sent:
                if not waiting:  # the wave's first install command, in the first target that has one
                    persist_link(RunCommandLink, context, self, hook, command_id=sent[0].command_id)
                waiting.append({**target.as_kwargs(), "command_ids": [c.command_id for c in sent]})
        if not waiting:
            return self._decide(artifacts, config)  # nothing could be sent: every snapshot failed
        self.log.info("Wave %d: install sent to %d instances", self.wave, len(ready))
        defer_for_commands(self, config, waiting, "execute_complete")

    def _sent_unrecorded(
        self, hook: PatchManagerHook, account: str, target: Target, comment: str, todo: list[str]
    ) -> list[SentCommand]:
        """This wave's install commands that reached AWS but not the record (the worker died in between).

        Batches go out in order and each is recorded before the next is sent, so only the batch that starts
        at todo[0] can be unrecorded: its first instance's AWS-RunPatchBaseline commands under the wave's
        comment find it.
        """
        with aws_call("ssm:ListCommands", account, target.region_name):
            found = hook.patch_commands_to(todo[0], comment)
        adopted = [
            SentCommand(command_id=str(c["CommandId"]), instance_ids=sorted(c["InstanceIds"]))
            for c in found
            if c.get("InstanceIds") and set(c["InstanceIds"]) <= set(todo)
        ]
        for command in adopted:
            self.log.warning(
                "Wave %d: command %s was sent to %d instance(s) in %s before the previous attempt ended, but not "
                "recorded; waiting for it instead of sending again",
                self.wave,
                command.command_id,
                len(command.instance_ids),
                target.key,
            )
        return adopted

    @telling_halts
    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """The install commands are final: each sent instance's row, then validation."""
        artifacts, config = self.artifacts(context), self.settings()
        with recorded_failure(artifacts, Step.wave(self.wave)):
            late = late_commands(event)
            sent_rows: dict[str, tuple[str, Mapping[str, Any] | None]] = {}
            for target, account, _ in self._placed(artifacts, config):
                sent = artifacts.find(WAVE_SENT, wave=self.wave, target=target) or []
                found = invocations(
                    self._hook(PatchManagerHook, target),
                    [c.command_id for c in sent],
                    late,
                    account,
                    target.region_name,
                    details=True,
                )
                for command in sent:
                    for instance_id in command.instance_ids:
                        sent_rows[instance_id] = (command.command_id, found.get(instance_id))
            rows = []
            for row in self._results(artifacts).to_dict("records"):
                if row["resource_id"] in sent_rows and not row["status"]:
                    command_id, invocation = sent_rows[str(row["resource_id"])]
                    row = install_result(
                        row, command_id, invocation, command_id in late, config.command_timeout_minutes
                    )
                rows.append(row)
            results = typed_frame(rows, WAVE_RESULT_COLUMNS)
            self._save(artifacts, results)
            self._start_phase(context, artifacts, config, "validate", set(installed_for_validation(results)))
            return self._start_rollback(context, artifacts, config)

    # -- 6. the halt gate ---------------------------------------------------------------------------------
    def _decide(self, artifacts: RunArtifacts, config: CycleConfig) -> dict[str, Any]:
        """The halt gate on the wave's outcome: its failures against halt_threshold; a failed rollback halts."""
        threshold = config.install.halt_threshold
        results = self._results(artifacts)
        members = self._members(artifacts)
        failures = int((~results["ok"]).sum()) + len(members) - len(results)  # never tried counts as failed
        halt, allowed = halt_decision(len(members), failures, threshold)
        rollback_failed = int((results["rollback"] == ROLLBACK_FAILED).sum())
        code, why = "", ""
        if rollback_failed:
            code = ReasonCode.HALTED_BY_ROLLBACK_FAILURE
            why = f"{rollback_failed} instance(s) could not be rolled back to their pre-patch snapshot"
        elif halt:
            code = ReasonCode.HALTED
            why = f"{failures} of {len(members)} failed, more than the {allowed} allowed by halt_threshold {threshold}"
        reason = f"halted after wave {self.wave}: {why}" if code else ""
        started = artifacts.find(WAVE, wave=self.wave)
        record = WaveRecord(
            wave=self.wave,
            instances=len(members),
            started_at=started.started_at if started else "",
            status="halted" if code else "done",
            sent=int((results["command_id"] != "").sum()),
            succeeded=int(results["ok"].sum()),
            failed=failures,
            threshold=str(threshold),
            allowed_failures=allowed,
            halted=bool(code),
            halt_code=str(code),
            halt_reason=reason,
            no_snapshot=int((results["snapshot"] == SNAPSHOT_FAILED).sum()),
            rolled_back=int((results["rollback"] == ROLLED_BACK).sum()),
            rollback_failed=rollback_failed,
            finished_at=now_iso(),
        )
        artifacts.write(WAVE, record, wave=self.wave)
        if code:
            raise WaveHalted(f"wave {self.wave} halted the rollout: {why}; later waves will not run", why, self.wave)
        self.log.info(
            "Wave %d done: %d of %d patched and validated, %d failed (%d allowed), %d without a snapshot, "
            "%d rolled back",
            self.wave,
            record.succeeded,
            record.instances,
            record.failed,
            record.allowed_failures,
            record.no_snapshot,
            record.rolled_back,
        )
        keys = ("instances", "succeeded", "failed", "no_snapshot", "rolled_back")
        return {"wave": self.wave, **{key: getattr(record, key) for key in keys}, "halted": False}

    def _halt_before(self, artifacts: RunArtifacts, gate: WaveGate, code: ReasonCode) -> NoReturn:
        """A gate stopped the wave before it did anything: record it and halt the rollout."""
        artifacts.write(WAVE_GATE, gate, wave=self.wave)
        started = artifacts.find(WAVE, wave=self.wave)
        members = self._members(artifacts)
        record = WaveRecord(
            wave=self.wave,
            instances=len(members),
            started_at=started.started_at if started else now_iso(),
            status="halted",
            threshold=str(self.settings().install.halt_threshold),
            halted=True,
            halted_before=True,
            halt_code=str(code),
            halt_reason=gate.reason,
            finished_at=now_iso(),
        )
        artifacts.write(WAVE, record, wave=self.wave)
        raise WaveHalted(f"{gate.reason}; later waves will not run", gate.reason, self.wave)

    # -- the wave's rows and targets ----------------------------------------------------------------------
    def _members(self, artifacts: RunArtifacts) -> pd.DataFrame:
        plan = artifacts.read(WAVE_PLAN)
        return plan[plan["wave"] == self.wave].reset_index(drop=True)

    def _results(self, artifacts: RunArtifacts) -> pd.DataFrame:
        return artifacts.read(WAVE_RESULTS, wave=self.wave)

    def _save(self, artifacts: RunArtifacts, results: pd.DataFrame) -> None:
        artifacts.write(WAVE_RESULTS, results, wave=self.wave)

    def _placed(self, artifacts: RunArtifacts, config: CycleConfig) -> Placed:
        """The wave's instances per target (matched on the account and region its inventory found)."""
        members = self._members(artifacts)
        found = []
        for target in config.targets:
            summary = artifacts.find(INVENTORY_SUMMARY, target=target)
            if summary is None or not summary.account_id:
                continue
            rows = members[(members["account_id"] == summary.account_id) & (members["region"] == target.region_name)]
            if not rows.empty:
                found.append((target, summary.account_id, rows))
        return found

    def _hook(self, hook_class: Any, target: Target) -> Any:
        return hook_class(aws_conn_id=target.aws_conn_id, region_name=target.region_name)

    def _health_checks(self) -> dict[str, list[str]]:
        """The health check scripts, per platform, as the runbooks' StringList parameters."""
        checks = {}
        for platform, (_, script) in SCRIPT_DOCUMENTS.items():
            path = self.healthchecks / script
            try:
                checks[platform] = script_lines(str(path), path.read_text())
            except RunbookError as error:
                raise AirflowFailException(str(error)) from error
        return checks
