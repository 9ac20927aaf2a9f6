"""The run's last task: the run fails when its report says the run did not run its course."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import RunConfig
from patchcycle.core.notifications import run_ended
from patchcycle.notifications.cycle_events import notify, page_of_run
from patchcycle.operators.base import FleetOperator
from patchcycle.run_artifacts import REPORT_HTML, REPORT_JSON, Document, Text


class CycleOutcomeOperator(FleetOperator[RunConfig]):
    """Reads a report's `outcome` ({ok, problems}), tells the run's SNS topic, and fails with its problems, after
    findings and metrics are out.

    report: the run's report document (patch_cycle's report.json, the watch's drift.json); readable: the
    file people should open.
    """

    config_class = RunConfig

    def __init__(
        self,
        *,
        report: Document = REPORT_JSON,
        readable: Text = REPORT_HTML,
        title: str = "Patch cycle",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.report = report
        self.readable = readable
        self.title = title  # how the run is named to people (the SNS message)

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        outcome = artifacts.read(self.report)["outcome"]
        readable = artifacts.uri(self.readable)
        message = run_ended(
            self.title, str(context["run_id"]), outcome["ok"], outcome["problems"], readable, page_of_run(context)
        )
        notify(context, self.settings().notifications, message, self.log)
        if not outcome["ok"]:
            raise AirflowFailException(f"report written to {readable}; " + "; ".join(outcome["problems"]))
        self.log.info("The run ran its course; report: %s", readable)
        return {"ok": True, "report": readable}
