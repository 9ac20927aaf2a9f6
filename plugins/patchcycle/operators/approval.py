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
from patchcycle.core.approval_request import ApprovalInputs, approval_body, staging_passed
from patchcycle.core.frames import concat_frames
from patchcycle.core.notifications import approval_waiting
from patchcycle.core.outcomes import APPROVE, REJECT, ApprovalRecord
from patchcycle.core.plan import PLAN_COLUMNS
from patchcycle.core.staging import (
    PLANNED_PRODUCTION_COLUMNS,
    PROFILE_COLUMNS,
    STAGING_RESULT_COLUMNS,
    staging_summary,
)
from patchcycle.core.waves import WAVE_PLAN_COLUMNS
from patchcycle.notifications.cycle_events import api_base_url, notify, page_of_run
from patchcycle.operators.base import RunTask
from patchcycle.operators.rds_approval import rds_approval_inputs
from patchcycle.readback.immutable import approval_part
from patchcycle.run_artifacts import (
    APPROVAL_DECISION,
    APPROVAL_REQUEST,
    MATCH_PLAN,
    PRODUCTION,
    PROFILES,
    STACK,
    STAGING_RESULTS,
    WAVE_PLAN,
    RunArtifacts,
)
from patchcycle.run_records import ApprovalRequest, StackRecord
from patchcycle.ui.urls import absolute, run_artifact_path, run_page_path

POLICY_USER = {"id": "patchcycle-policy", "name": "approval policy: auto"}


class PatchApprovalOperator(ApprovalOperator, RunTask[CycleConfig]):
    """Asks a person to approve production (approval_mode manual) or applies the auto policy.

    The body (core.approval_request) says whether staging passed, what will be installed where, the staging
    results per profile and the waves, with links to the run's page and artifacts in the UI. The auto
    policy approves only when every staging instance passed, every staging stack was created and every RDS
    rehearsal passed.
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
        inputs = self._inputs(artifacts, config)
        if inputs.waves.empty and inputs.staging.empty and artifacts.exists(WAVE_PLAN) and not inputs.rds_planned:
            # Nothing needs patching: no one should be asked to approve an empty rollout.
            raise AirflowSkipException("nothing to roll out: no in-scope instance needs patches")
        self.body = approval_body(inputs)
        summary = staging_summary(inputs.staging)
        passed = staging_passed(inputs)
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

    def _inputs(self, artifacts: RunArtifacts, config: CycleConfig) -> ApprovalInputs:
        """The plan and staging as the run's artifacts hold them, and the links to them in the UI."""
        plans, results, stacks, links = [], [], [], [("Run page", self._link(artifacts, None))]
        for target in config.targets:
            stack = artifacts.find(STACK, target=target)
            stacks.append(
                stack or StackRecord(stack_name="", account_id="", region=target.region_name, error="not created")
            )
            plans.append(artifacts.find(MATCH_PLAN, target=target))
            result = artifacts.find(STAGING_RESULTS, target=target)
            results.append(result)
            if result is not None:
                where = f"{target.aws_conn_id}, {target.region_name}"
                links.append((f"Staging results ({where})", self._link(artifacts, STAGING_RESULTS.file(target=target))))
        links += [
            ("Pinned patches per production instance", self._link(artifacts, PRODUCTION.file())),
            ("Staging profiles", self._link(artifacts, PROFILES.file())),
        ]
        return ApprovalInputs(
            plan=concat_frames(plans, PLAN_COLUMNS),
            production=concat_frames([artifacts.find(PRODUCTION)], PLANNED_PRODUCTION_COLUMNS),
            profiles=concat_frames([artifacts.find(PROFILES)], PROFILE_COLUMNS),
            waves=concat_frames([artifacts.find(WAVE_PLAN)], WAVE_PLAN_COLUMNS),
            staging=concat_frames(results, STAGING_RESULT_COLUMNS),
            stacks=[asdict(stack) for stack in stacks],
            halt_threshold=str(config.install.halt_threshold),
            staging_cap=config.install.staging_max_instances,
            links=links,
            **rds_approval_inputs(artifacts, config),
        )

    @staticmethod
    def _link(artifacts: RunArtifacts, artifact_file: str | None) -> str:
        """The run page, or one of the run's artifact files through it, as a browser opens it."""
        page = run_page_path(artifacts.dag_id, artifacts.run_id)
        if artifact_file is not None:
            page = run_artifact_path(artifacts.dag_id, artifacts.run_id, artifact_file)
        return absolute(api_base_url(), page)
