"""The approval gate between staging and production, on Airflow's human-in-the-loop ApprovalOperator."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowSkipException

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import InstallSettings
from patchcycle.core.inventory import typed_frame
from patchcycle.core.staging import STAGING_RESULT_COLUMNS, approval_body, staging_summary
from patchcycle.operators.match_tables import read_frame, read_json, targets_of

STAGE = "approval"
POLICY_USER = {"id": "patchcycle-policy", "name": "approval policy: auto"}


class PatchApprovalOperator(ApprovalOperator):
    """Asks a person to approve production (approval_mode manual) or applies the auto policy.

    The body summarises staging: instances, patches, pass/fail and each failure's reason. The auto
    policy approves only when every staging instance passed and every staging stack was created.
    No answer within approval_timeout_hours rejects (the default option). The decision, by whom and
    when, is written to the run's artifacts for the report.
    """

    template_fields: Sequence[str] = (
        *ApprovalOperator.template_fields,
        "targets",
        "settings",
        "artifact_root",
        "artifact_conn_id",
    )

    def __init__(
        self,
        *,
        targets: Any,
        settings: Any,
        artifact_root: str,
        artifact_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "Patch cycle {{ run_id }}: roll the staged patches out to production?")
        super().__init__(defaults=[ApprovalOperator.REJECT], **kwargs)
        self.targets = targets
        self.settings = settings
        self.artifact_root = artifact_root
        self.artifact_conn_id = artifact_conn_id

    def execute(self, context: Context) -> Any:
        settings = InstallSettings.from_dict(self.settings)
        store = ArtifactStore(self.artifact_root, context["dag"].dag_id, context["run_id"], self.artifact_conn_id)
        summary, stacks = self._staging(store)
        waves = read_frame(store, "install", "waves.parquet")
        wave_sizes = (
            [{"wave": int(w), "instances": int(n)} for w, n in waves.groupby("wave").size().items()]
            if waves is not None
            else []
        )
        if waves is not None and waves.empty and summary["instances"] == 0:
            # Nothing needs patching: no one should be asked to approve an empty rollout.
            raise AirflowSkipException("nothing to roll out: no in-scope instance needs patches")
        self.body = approval_body(
            summary,
            stacks,
            wave_sizes,
            settings.halt_threshold,
            store.uri("report", "report.html"),
            store.uri("staging", ""),
        )
        passed = summary["failed"] == 0 and all(s.get("created") or s.get("status") == "NOT_NEEDED" for s in stacks)
        store.write_json(
            STAGE, "request.json", {"mode": settings.approval_mode, "staging_passed": passed, "body": self.body}
        )
        if settings.approval_mode == "auto":
            decision = ApprovalOperator.APPROVE if passed else ApprovalOperator.REJECT
            self.log.info("approval_mode auto: %s (staging %s)", decision, "passed" if passed else "failed")
            event = {
                "chosen_options": [decision],
                "params_input": {},
                "responded_at": datetime.now(UTC),
                "responded_by_user": POLICY_USER,
                "timedout": False,
            }
            return self.execute_complete(context, event)
        self.response_timeout = timedelta(hours=settings.approval_timeout_hours)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        store = ArtifactStore(self.artifact_root, context["dag"].dag_id, context["run_id"], self.artifact_conn_id)
        request = read_json(store, STAGE, "request.json") or {}
        user = event.get("responded_by_user") or {}
        responded_at = event.get("responded_at")
        timed_out = bool(event.get("timedout")) or not user
        decision = (event.get("chosen_options") or [ApprovalOperator.REJECT])[0]
        store.write_json(
            STAGE,
            "decision.json",
            {
                "mode": request.get("mode", ""),
                "decision": decision,
                "by": "" if timed_out else str(user.get("name") or user.get("id") or ""),
                "at": responded_at.isoformat() if isinstance(responded_at, datetime) else str(responded_at or ""),
                "timed_out": timed_out,
                "staging_passed": bool(request.get("staging_passed")),
            },
        )
        return super().execute_complete(context, event)

    def _staging(self, store: ArtifactStore) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        frames, stacks = [], []
        for target in targets_of(self.targets):
            stack = read_json(store, "staging", f"{target.key}.stack.json")
            stacks.append(
                stack or {"stack_name": "", "region": target.region_name, "created": False, "error": "not created"}
            )
            results = read_frame(store, "staging", f"{target.key}.results.parquet")
            if results is not None:
                frames.append(results)
        results = pd.concat(frames, ignore_index=True) if frames else typed_frame([], STAGING_RESULT_COLUMNS)
        return staging_summary(results), stacks
