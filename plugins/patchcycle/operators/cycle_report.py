"""The report: every in-scope resource's verdict, the totals, and which parts of the run are missing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.assets import PATCH_CYCLE_REPORT
from patchcycle.config import CycleConfig
from patchcycle.core.report import build_report, new_instances_csv, report_csv
from patchcycle.core.report_html import render_html
from patchcycle.core.verdicts import install_verdicts, scan_verdicts
from patchcycle.operators.base import FleetOperator
from patchcycle.readback.evidence import read_evidence
from patchcycle.readback.install import read_install_record
from patchcycle.readback.match import read_match_tables
from patchcycle.readback.rds import read_rds_report
from patchcycle.run_artifacts import NEW_INSTANCES_CSV, REPORT_CSV, REPORT_HTML, REPORT_JSON


class CycleReportOperator(FleetOperator[CycleConfig]):
    """Reads every target's artifacts (whatever their tasks' outcome) and writes report.json/.csv/.html.

    It fails only when the report cannot be trusted (accounting); whether the cycle ran its course is the
    report's `outcome`, which the run's last task (CycleOutcomeOperator) turns into the run's state, so the
    findings and metrics of a halted or partial cycle are still published. Each report written updates the
    PATCH_CYCLE_REPORT asset.
    """

    config_class = CycleConfig

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        tables = read_match_tables(artifacts, config.targets)
        install, waves_by_resource, snapshots_by_resource = None, None, None
        compliance = tables.compliance
        if config.installs:
            record = read_install_record(artifacts, config.targets, tables, config.install, config.safety)
            rds_outcomes, rds = read_rds_report(artifacts, config)
            verdicts = install_verdicts(
                tables.inventory,
                tables.compliance,
                tables.plan,
                tables.scan_failures,
                record.outcomes,
                rds_outcomes=rds_outcomes,
            )
            install, waves_by_resource, compliance = record.section, record.waves_by_resource, record.compliance
            if rds is not None:
                install = {**install, "rds": rds}
            snapshots_by_resource = record.snapshots_by_resource
        else:
            verdicts = scan_verdicts(tables.inventory, tables.compliance, tables.plan, tables.scan_failures)
        evidence = read_evidence(artifacts, config.targets, config.installs)
        report = build_report(
            context["run_id"],
            config.mode,
            tables.inventory,
            verdicts,
            tables.plan,
            compliance,
            [*tables.missing, *evidence.missing],
            datetime.now(UTC),
            install=install,
            waves_by_resource=waves_by_resource,
            snapshots_by_resource=snapshots_by_resource,
            inspection=evidence.inspection,
            config=evidence.config,
            started_at=getattr(context.get("dag_run"), "start_date", None),
        )
        uris = {
            "json": artifacts.write(REPORT_JSON, report),
            "csv": artifacts.write(REPORT_CSV, report_csv(report)),
            "new_instances_csv": artifacts.write(NEW_INSTANCES_CSV, new_instances_csv(report)),
            "html": artifacts.write(REPORT_HTML, render_html(report)),
        }
        self.log.info("Report: %s; totals: %s", uris["json"], report["totals"]["by_verdict"])
        if not report["accounting"]["ok"]:
            raise AirflowFailException(f"report accounting does not add up: {report['accounting']}")
        context["outlet_events"][PATCH_CYCLE_REPORT].extra = {
            "report": uris["json"],
            "run_id": context["run_id"],
            "mode": config.mode,
            "artifact_root": config.artifact_root,
            "artifact_conn_id": config.artifact_conn_id,
            "generated_at": report["generated_at"],
        }
        return {
            "report": uris,
            "in_scope": report["totals"]["resources_in_scope"],
            "incomplete": len(report["incomplete"]),
            "ok": report["outcome"]["ok"],
        }
