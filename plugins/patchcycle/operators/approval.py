"""The approval gate between staging and production, on Airflow's human-in-the-loop ApprovalOperator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowSkipException

from patchcycle.config import CycleConfig
from patchcycle.core.frames import concat_frames
from patchcycle.core.notifications import approval_waiting
from patchcycle.core.outcomes import APPROVE, REJECT, ApprovalRecord
from patchcycle.core.staging import STAGING_RESULT_COLUMNS, approval_body, staging_summary
from patchcycle.notifications.cycle_events import notify, page_of_run
from patchcycle.operators.base import RunTask
from patchcycle.readback.immutable import approval_part
from patchcycle.run_artifacts import (
    APPROVAL_DECISION,
    APPROVAL_REQUEST,
    REPORT_HTML,
    STACK,
    STAGING_RESULTS,
    WAVE_PLAN,
    RunArtifacts,
)
from patchcycle.run_records import ApprovalRequest, StackRecord

POLICY_USER = {"id": "patchcycle-policy", "name": "approval policy: auto"}


class PatchApprovalOperator(ApprovalOperator, RunTask[CycleConfig]):
    """Asks a person to approve production (approval_mode manual) or applies the auto policy.

    The body summarises staging: instances, patches, pass/fail and each failure's reason. The auto
    policy approves only when every staging instance passed and every staging stack was created.
    No answer within approval_timeout_hours rejects (the default option). The decision, by whom and
    when, is written to the run's artifacts for the report.
    """

    config_class = CycleConfig
    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "config")

    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "Patch cycle {{ run_id }}: roll the staged patches out to production?")
        super().__init__(defaults=[REJECT], **kwargs)
        self.config = config

    def execute(self, context: Context) -> Any:
        artifacts, config = self.artifacts(context), self.settings()
        summary, stacks = self._staging(artifacts, config)
        waves = artifacts.find(WAVE_PLAN)
        sizes = (
            [{"wave": int(w), "instances": int(n)} for w, n in waves.groupby("wave").size().items()]
            if waves is not None
            else []
        )
        if waves is not None and waves.empty and summary["instances"] == 0:
            # Nothing needs patching: no one should be asked to approve an empty rollout.
            raise AirflowSkipException("nothing to roll out: no in-scope instance needs patches")
        self.body = approval_body(
            summary,
            [asdict(stack) for stack in stacks],
            sizes,
            str(config.install.halt_threshold),
            artifacts.uri(REPORT_HTML),
            artifacts.stage_uri(STAGING_RESULTS),
        )
        passed = summary["failed"] == 0 and all(s.created or s.status == "NOT_NEEDED" for s in stacks)
        # The Auto Scaling groups: every AMI baked, staged and proven, or the auto policy rejects.
        groups_section, image_problems = approval_part(artifacts, config.targets)
        self.body += f"\n{groups_section}" if groups_section else ""
        passed = passed and not image_problems
        mode = config.install.approval_mode
        artifacts.write(APPROVAL_REQUEST, ApprovalRequest(mode=mode, staging_passed=passed, body=self.body))
        if mode == "auto":
            decision = APPROVE if passed else REJECT
            self.log.info("approval_mode auto: %s (staging %s)", decision, "passed" if passed else "failed")
            event = {
                "chosen_options": [decision],
                "params_input": {},
                "responded_at": datetime.now(UTC),
                "responded_by_user": POLICY_USER,
                "timedout": False,
            }
            return self.execute_complete(context, event)
        self.response_timeout = config.install.approval_timeout
        page = page_of_run(context)
        staging = f"{summary['passed']} of {summary['instances']} staging instance(s) passed"
        message = approval_waiting(
            str(context["run_id"]),
            f"{page}/tasks/{self.task_id}/required_actions" if page else "",
            config.install.approval_timeout_hours,
            staging,
        )
        notify(context, config.notifications, message, self.log)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        artifacts = self.artifacts(context)
        request = artifacts.find(APPROVAL_REQUEST)
        user = event.get("responded_by_user") or {}
        responded_at = event.get("responded_at")
        timed_out = bool(event.get("timedout")) or not user
        artifacts.write(
            APPROVAL_DECISION,
            ApprovalRecord(
                decision=(event.get("chosen_options") or [REJECT])[0],
                mode=request.mode if request else "",
                by="" if timed_out else str(user.get("name") or user.get("id") or ""),
                at=responded_at.isoformat() if isinstance(responded_at, datetime) else str(responded_at or ""),
                timed_out=timed_out,
                staging_passed=bool(request and request.staging_passed),
            ),
        )
        return super().execute_complete(context, event)

    def _staging(self, artifacts: RunArtifacts, config: CycleConfig) -> tuple[dict[str, Any], list[StackRecord]]:
        frames, stacks = [], []
        for target in config.targets:
            stack = artifacts.find(STACK, target=target)
            stacks.append(
                stack or StackRecord(stack_name="", account_id="", region=target.region_name, error="not created")
            )
            results = artifacts.find(STAGING_RESULTS, target=target)
            if results is not None:
                frames.append(results)
        return staging_summary(concat_frames(frames, STAGING_RESULT_COLUMNS)), stacks
