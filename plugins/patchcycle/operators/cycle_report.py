"""The report: every in-scope resource's verdict, the totals, and which parts of the run are missing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.artifacts import ArtifactStore
from patchcycle.assets import PATCH_CYCLE_REPORT
from patchcycle.core.report import build_report, report_csv
from patchcycle.core.report_html import render_html
from patchcycle.core.verdicts import install_verdicts, scan_verdicts
from patchcycle.operators.evidence_tables import read_evidence
from patchcycle.operators.install_record import read_install_record
from patchcycle.operators.match_tables import read_match_tables, targets_of

STAGE = "report"


class CycleReportOperator(BaseOperator):
    """Reads every target's artifacts (whatever their tasks' outcome) and writes report.json/.csv/.html.

    It fails only when the report cannot be trusted (accounting); whether the cycle ran its course is the
    report's `outcome`, which the run's last task (CycleOutcomeOperator) turns into the run's state, so the
    findings and metrics of a halted or partial cycle are still published. Each report written updates the
    PATCH_CYCLE_REPORT asset.
    """

    template_fields: Sequence[str] = ("targets", "artifact_root", "artifact_conn_id", "mode", "settings")

    def __init__(
        self,
        *,
        targets: list[dict[str, str]] | Any,
        artifact_root: str,
        artifact_conn_id: str = "aws_default",
        mode: str | Any = "scan",
        settings: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.artifact_root = artifact_root
        self.artifact_conn_id = artifact_conn_id
        self.mode = mode
        self.settings = settings

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.targets:
            raise AirflowFailException("no targets to report on: validate_params failed (see its log)")
        store = ArtifactStore(self.artifact_root, context["dag"].dag_id, context["run_id"], self.artifact_conn_id)
        targets = targets_of(self.targets)
        tables = read_match_tables(store, targets)
        install, waves_by_resource = None, None
        compliance = tables.compliance
        if self.mode == "install":
            record = read_install_record(store, targets, tables, self.settings)
            verdicts = install_verdicts(
                tables.inventory, tables.compliance, tables.plan, tables.scan_failures, record.outcomes
            )
            install, waves_by_resource, compliance = record.section, record.waves_by_resource, record.compliance
        else:
            verdicts = scan_verdicts(tables.inventory, tables.compliance, tables.plan, tables.scan_failures)
        evidence = read_evidence(store, targets, str(self.mode))
        report = build_report(
            context["run_id"],
            str(self.mode),
            tables.inventory,
            verdicts,
            tables.plan,
            compliance,
            [*tables.missing, *evidence.missing],
            datetime.now(UTC),
            install=install,
            waves_by_resource=waves_by_resource,
            inspection=evidence.inspection,
            config=evidence.config,
            started_at=getattr(context.get("dag_run"), "start_date", None),
        )
        uris = {
            "json": store.write_json(STAGE, "report.json", report),
            "csv": store.write_bytes(STAGE, "report.csv", report_csv(report).encode()),
            "html": store.write_bytes(STAGE, "report.html", render_html(report).encode()),
        }
        self.log.info("Report: %s; totals: %s", uris["json"], report["totals"]["by_verdict"])
        if not report["accounting"]["ok"]:
            raise AirflowFailException(f"report accounting does not add up: {report['accounting']}")
        context["outlet_events"][PATCH_CYCLE_REPORT].extra = {
            "report": uris["json"],
            "run_id": context["run_id"],
            "mode": str(self.mode),
            "artifact_root": self.artifact_root,
            "artifact_conn_id": self.artifact_conn_id,
            "generated_at": report["generated_at"],
        }
        return {
            "report": uris,
            "in_scope": report["totals"]["resources_in_scope"],
            "incomplete": len(report["incomplete"]),
            "ok": report["outcome"]["ok"],
        }
