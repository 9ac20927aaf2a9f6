"""Security Hub: publish the run's non-compliant instances and still-active CVEs, resolve what the run proved fixed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import CycleConfig
from patchcycle.core.asff import (
    CVE_GENERATOR,
    PATCH_GENERATOR,
    build_findings,
    created_at_of,
    own_findings_filter,
    reconcile,
)
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.security_hub import SecurityHubHook, UpdateResult
from patchcycle.links.security_hub import SecurityHubFindingsLink
from patchcycle.operators.base import TargetOperator
from patchcycle.run_artifacts import CVES, PUBLISHED_FINDINGS, REPORT_JSON, Step
from patchcycle.run_records import PublishedFindings

MAX_NOTE = 512
UPDATED_BY = "patchcycle"


class PublishFindingsOperator(TargetOperator[SecurityHubHook, CycleConfig]):
    """One target's findings from the report (and, in install mode, the target's CVE table): imported in
    batches, this project's earlier findings resolved when the run proves them fixed and reopened when they
    fail again. Any finding Security Hub refuses fails the task, after everything else is sent.

    Its link opens Security Hub's findings page filtered as the task reconciles them: the active patch-compliance
    and CVE findings (GeneratorId) of this target's account and region, whatever their workflow status."""

    aws_hook_class = SecurityHubHook
    config_class = CycleConfig
    operator_extra_links = (SecurityHubFindingsLink(),)

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.SECURITY_HUB):
            report = artifacts.read(REPORT_JSON)
            account, region, run_id = self.account_or_caller(artifacts), str(self.region_name), str(report["run_id"])
            self.persist_link(
                context, SecurityHubFindingsLink, account_id=account, generator_ids=[PATCH_GENERATOR, CVE_GENERATOR]
            )
            # The inspect stage runs in install mode only; without its table there is no CVE evidence either way.
            cves = artifacts.find(CVES, target=self.target) if config.installs else None
            with aws_call("securityhub:GetFindings", account, region):
                existing = self.hook.findings(own_findings_filter(account, region))
            findings = build_findings(report, cves, account, region, datetime.now(UTC), created_at_of(existing))
            plan = reconcile(existing, findings)
            with aws_call("securityhub:BatchImportFindings", account, region):
                imported = self.hook.import_findings(findings.findings)
            failed_ids = {f.get("Id", "") for f in imported.failed}
            reopen = [i for i in plan.reopen if i["Id"] not in failed_ids]
            with aws_call("securityhub:BatchUpdateFindings", account, region):
                resolved = set_workflow(self.hook, plan.resolve, "RESOLVED", f"Resolved by patch cycle run {run_id}")
                reopened = set_workflow(self.hook, reopen, "NEW", f"Failing again in patch cycle run {run_id}")
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
            record = PublishedFindings(
                **self.target.as_kwargs(),
                account_id=account,
                run_id=run_id,
                mode=str(report["mode"]),
                counts=counts,
                calls={"BatchImportFindings": imported.calls, "BatchUpdateFindings": resolved.calls + reopened.calls},
                failed_imports=imported.failed,
                failed_updates=unprocessed,
                resolved_ids=sorted(i["Id"] for i in resolved.processed),
                reopened_ids=sorted(i["Id"] for i in reopened.processed),
            )
            artifacts.write(PUBLISHED_FINDINGS, record, target=self.target)
            self.log.info("Security Hub %s/%s: %s", account, region, counts)
            refused_findings(imported.failed, unprocessed, f"account {account}, region {region}")
            return {**self.target.as_kwargs(), **counts}


def set_workflow(hook: SecurityHubHook, identifiers: list[dict[str, str]], status: str, note: str) -> UpdateResult:
    """Set these findings' workflow status (BatchUpdateFindings, 100 a call) with a note naming the run."""
    if not identifiers:
        return UpdateResult()
    return hook.update_workflow(identifiers, status, note[:MAX_NOTE], UPDATED_BY)


def refused_findings(failed: list[dict[str, Any]], unprocessed: list[dict[str, Any]], where: str) -> None:
    """Fail naming every finding Security Hub refused (imports and updates), if any."""
    problems = [f"{f.get('Id')}: {f.get('ErrorCode')} {f.get('ErrorMessage', '')}" for f in failed]
    problems += [
        f"{u['FindingIdentifier']['Id']}: {u.get('ErrorCode')} {u.get('ErrorMessage', '')}" for u in unprocessed
    ]
    if problems:
        raise AirflowFailException(
            f"Security Hub refused {len(problems)} finding(s) in {where} "
            "(securityhub:BatchImportFindings / BatchUpdateFindings): "
            + "; ".join(problems[:10])
            + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
        )
