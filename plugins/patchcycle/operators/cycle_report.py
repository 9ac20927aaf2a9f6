"""The report: every in-scope resource's verdict, the totals, and which parts of the run are missing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.artifacts import ArtifactStore
from patchcycle.core.report import build_report, report_csv
from patchcycle.core.report_html import render_html
from patchcycle.core.verdicts import install_verdicts, scan_verdicts
from patchcycle.operators.install_record import read_install_record
from patchcycle.operators.match_tables import read_match_tables, targets_of

STAGE = "report"


class CycleReportOperator(BaseOperator):
    """Reads every target's artifacts (whatever their tasks' outcome) and writes report.json/.csv/.html."""

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
        report = build_report(
            context["run_id"],
            str(self.mode),
            tables.inventory,
            verdicts,
            tables.plan,
            compliance,
            tables.missing,
            datetime.now(UTC),
            install=install,
            waves_by_resource=waves_by_resource,
        )
        uris = {
            "json": store.write_json(STAGE, "report.json", report),
            "csv": store.write_bytes(STAGE, "report.csv", report_csv(report).encode()),
            "html": store.write_bytes(STAGE, "report.html", render_html(report).encode()),
        }
        self.log.info("Report: %s; totals: %s", uris["json"], report["totals"]["by_verdict"])
        if not report["accounting"]["ok"]:
            raise AirflowFailException(f"report accounting does not add up: {report['accounting']}")
        missing = tables.missing
        if install is not None and not install["staging"]["passed"]:
            # Nothing reached production because staging failed: an unattended run must not look successful.
            raise AirflowFailException(
                f"report written to {uris['html']}; production was not patched: staging did not pass "
                f"({install['approval']['reason']})"
            )
        if install is not None:
            unfinished = _unfinished_install(install)
            if unfinished:
                raise AirflowFailException(
                    f"report written to {uris['html']}; the install did not finish: {unfinished}"
                )
        if missing:
            # The report is written, but a partial picture must not pass for a successful cycle.
            parts = "; ".join(f"{m['aws_conn_id']}/{m['region']} {m['stage']}: {m['error']}" for m in missing)
            raise AirflowFailException(f"report written to {uris['html']}, but parts of the fleet are missing: {parts}")
        return {"report": uris, "in_scope": report["totals"]["resources_in_scope"], "incomplete": len(missing)}


def _unfinished_install(install: dict[str, Any]) -> str:
    """Why an install-mode run did not run its course ("" when it did: approved and every wave done, or rejected)."""
    if not install["waves"]:
        return ""  # nothing needed patching: there was nothing to approve or roll out
    if install["halted_after_wave"] is not None:
        return f"the rollout halted after wave {install['halted_after_wave']}"
    decision = install["approval"]["decision"]
    if not decision:
        return f"the approval gate did not decide ({install['approval']['reason']})"
    not_run = [str(wave["wave"]) for wave in install["waves"] if wave["status"] == "not_run"]
    if decision == "Approve" and not_run:
        return f"wave(s) {', '.join(not_run)} did not run"
    return ""
