"""The report: every in-scope resource's verdict, the totals, and which parts of the run are missing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import Target
from patchcycle.core.inventory import combine, empty_inventory
from patchcycle.core.plan import COMPLIANCE_COLUMNS, combine_plan, empty_plan
from patchcycle.core.report import build_report, report_csv
from patchcycle.core.report_html import render_html
from patchcycle.core.verdicts import scan_verdicts

STAGE = "report"


class CycleReportOperator(BaseOperator):
    """Reads every target's artifacts (whatever their tasks' outcome) and writes report.json/.csv/.html."""

    template_fields: Sequence[str] = ("targets", "artifact_root", "artifact_conn_id", "mode")

    def __init__(
        self,
        *,
        targets: list[dict[str, str]] | Any,
        artifact_root: str,
        artifact_conn_id: str = "aws_default",
        mode: str = "scan",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.artifact_root = artifact_root
        self.artifact_conn_id = artifact_conn_id
        self.mode = mode

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.targets:
            raise AirflowFailException("no targets to report on: validate_params failed (see its log)")
        store = ArtifactStore(self.artifact_root, context["dag"].dag_id, context["run_id"], self.artifact_conn_id)
        inventories, plans, compliances, failures, missing = [], [], [], {}, []
        for target in (Target(t["aws_conn_id"], t["region_name"]) for t in self.targets or []):
            inventory = _read_frame(store, "inventory", f"{target.key}.parquet")
            if inventory is None:
                missing.append(_missing_part(store, target, "inventory"))
                continue
            inventories.append(inventory)
            plan = _read_frame(store, "match", f"{target.key}.plan.parquet")
            if plan is None:
                missing.append(_missing_part(store, target, "match"))
                continue
            plans.append(plan)
            compliance = _read_frame(store, "match", f"{target.key}.compliance.parquet")
            if compliance is not None:
                compliances.append(compliance)
            failures.update(store.read_json(str(store.path("match", f"{target.key}.scan_failures.json"))))
        inventory = (
            combine(inventories)
            if inventories
            else empty_inventory().assign(in_scope=pd.Series(dtype=bool), scope_reason=pd.Series(dtype="str"))
        )
        plan = combine_plan(plans) if plans else empty_plan()
        compliance = (
            pd.concat(compliances, ignore_index=True)
            if compliances
            else pd.DataFrame({c: pd.Series(dtype=t) for c, t in COMPLIANCE_COLUMNS.items()})
        )
        verdicts = scan_verdicts(inventory, compliance, plan, failures)
        report = build_report(
            context["run_id"], self.mode, inventory, verdicts, plan, compliance, missing, datetime.now(UTC)
        )
        uris = {
            "json": store.write_json(STAGE, "report.json", report),
            "csv": store.write_bytes(STAGE, "report.csv", report_csv(report).encode()),
            "html": store.write_bytes(STAGE, "report.html", render_html(report).encode()),
        }
        self.log.info("Report: %s; totals: %s", uris["json"], report["totals"]["by_verdict"])
        if not report["accounting"]["ok"]:
            raise AirflowFailException(f"report accounting does not add up: {report['accounting']}")
        if missing:
            # The report is written, but a partial picture must not pass for a successful cycle.
            parts = "; ".join(f"{m['aws_conn_id']}/{m['region']} {m['stage']}: {m['error']}" for m in missing)
            raise AirflowFailException(f"report written to {uris['html']}, but parts of the fleet are missing: {parts}")
        return {"report": uris, "in_scope": report["totals"]["resources_in_scope"], "incomplete": len(missing)}


def _read_frame(store: ArtifactStore, stage: str, name: str) -> pd.DataFrame | None:
    path = store.path(stage, name)
    return store.read_frame(str(path)) if path.exists() else None


def _missing_part(store: ArtifactStore, target: Target, stage: str) -> dict[str, Any]:
    """Which part is missing and why: the failed task's recorded error, if it left one."""
    error_path = store.path("errors", f"{stage}.{target.key}.json")
    error = store.read_json(str(error_path))["error"] if error_path.exists() else "the task did not finish"
    return {"aws_conn_id": target.aws_conn_id, "region": target.region_name, "stage": stage, "error": error}
