"""The run's last task: the run fails when its report says the run did not run its course."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.artifacts import ArtifactStore
from patchcycle.operators.cycle_report import STAGE as REPORT_STAGE


class CycleOutcomeOperator(BaseOperator):
    """Reads a report's `outcome` ({ok, problems}) and fails with its problems, after findings and metrics are out.

    report: (stage, file name) of the report JSON; `readable` names the file people should open.
    """

    template_fields: Sequence[str] = ("artifact_root", "artifact_conn_id")

    def __init__(
        self,
        *,
        artifact_root: str,
        artifact_conn_id: str = "aws_default",
        report: tuple[str, str] = (REPORT_STAGE, "report.json"),
        readable: str = "report.html",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.artifact_root = artifact_root
        self.artifact_conn_id = artifact_conn_id
        self.report = report
        self.readable = readable

    def execute(self, context: Context) -> dict[str, Any]:
        store = ArtifactStore(self.artifact_root, context["dag"].dag_id, context["run_id"], self.artifact_conn_id)
        stage, name = self.report
        outcome = store.read_json(store.uri(stage, name))["outcome"]
        readable = store.uri(stage, self.readable)
        if not outcome["ok"]:
            raise AirflowFailException(f"report written to {readable}; " + "; ".join(outcome["problems"]))
        self.log.info("The run ran its course; report: %s", readable)
        return {"ok": True, "report": readable}
