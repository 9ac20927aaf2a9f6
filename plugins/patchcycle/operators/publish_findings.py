"""Security Hub: publish the run's non-compliant instances and still-active CVEs, resolve what the run proved fixed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.core.asff import build_findings, created_at_of, own_findings_filter, reconcile
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.security_hub import SecurityHubHook, UpdateResult
from patchcycle.operators.base import PatchCycleOperator
from patchcycle.operators.match_tables import read_frame, read_json

STAGE = "security_hub"
MAX_NOTE = 512


class PublishFindingsOperator(PatchCycleOperator):
    """One target's findings from report/report.json (and, in install mode, inspect/{target}.cves): imported in
    batches, this project's earlier findings resolved when the run proves them fixed and reopened when they
    fail again. Any finding Security Hub refuses fails the task, after everything else is sent."""

    template_fields: Sequence[str] = (*PatchCycleOperator.template_fields, "updated_by")

    def __init__(self, *, updated_by: str = "patchcycle", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.updated_by = updated_by

    def execute(self, context: Context) -> dict[str, Any]:
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            report = read_json(store, "report", "report.json")
            if report is None:
                raise AirflowFailException("report/report.json is missing: the report task did not write it")
            hook = SecurityHubHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
            if not self.account_id:
                with aws_call("sts:GetCallerIdentity", "(unknown)", self.region_name):
                    self.account_id = hook.account_id
            account, region, run_id = self.account_id, self.region_name, str(report["run_id"])
            # The inspect stage runs in install mode only; without its table there is no CVE evidence either way.
            cves = (
                read_frame(store, "inspect", f"{self.target.key}.cves.parquet") if report["mode"] == "install" else None
            )
            with aws_call("securityhub:GetFindings", account, region):
                existing = hook.findings(own_findings_filter(account, region))
            findings = build_findings(report, cves, account, region, datetime.now(UTC), created_at_of(existing))
            plan = reconcile(existing, findings)
            with aws_call("securityhub:BatchImportFindings", account, region):
                imported = hook.import_findings(findings.findings)
            failed_ids = {f.get("Id", "") for f in imported.failed}
            reopen = [i for i in plan.reopen if i["Id"] not in failed_ids]
            with aws_call("securityhub:BatchUpdateFindings", account, region):
                resolved = self._update(hook, plan.resolve, "RESOLVED", f"Resolved by patch cycle run {run_id}")
                reopened = self._update(hook, reopen, "NEW", f"Failing again in patch cycle run {run_id}")
            unprocessed = resolved.unprocessed + reopened.unprocessed
            counts = {
                "imported": imported.success_count,
                "new": len(plan.new_ids - failed_ids),
                "updated": len(plan.updated_ids - failed_ids),
                "resolved": len(resolved.processed),
                "reopened": len(reopened.processed),
                "failed": len(imported.failed) + len(unprocessed),
                "left_alone": plan.left_alone,
            }
            store.write_json(
                STAGE,
                f"{self.target.key}.json",
                {
                    **self.target.as_kwargs(),
                    "account_id": account,
                    "run_id": run_id,
                    "mode": report["mode"],
                    "counts": counts,
                    "calls": {
                        "BatchImportFindings": imported.calls,
                        "BatchUpdateFindings": resolved.calls + reopened.calls,
                    },
                    "failed_imports": imported.failed,
                    "failed_updates": unprocessed,
                    "resolved_ids": sorted(i["Id"] for i in resolved.processed),
                    "reopened_ids": sorted(i["Id"] for i in reopened.processed),
                },
            )
            self.log.info("Security Hub %s/%s: %s", account, region, counts)
            if imported.failed or unprocessed:
                problems = [f"{f.get('Id')}: {f.get('ErrorCode')} {f.get('ErrorMessage', '')}" for f in imported.failed]
                problems += [
                    f"{u['FindingIdentifier']['Id']}: {u.get('ErrorCode')} {u.get('ErrorMessage', '')}"
                    for u in unprocessed
                ]
                raise AirflowFailException(
                    f"Security Hub refused {len(problems)} finding(s) in account {account}, region {region}: "
                    + "; ".join(problems[:10])
                    + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
                )
            return {**self.target.as_kwargs(), **counts}

    def _update(self, hook: SecurityHubHook, identifiers: list[dict[str, str]], status: str, note: str) -> UpdateResult:
        if not identifiers:
            return UpdateResult()
        return hook.update_workflow(identifiers, status, note[:MAX_NOTE], str(self.updated_by))
