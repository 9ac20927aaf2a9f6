"""Security Hub calls: findings imported in batches within the API's limits, read back paged, updated in batches."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

# Documented limits: BatchImportFindings takes at most 100 findings and 6 MB a request (240 KB a finding);
# BatchUpdateFindings at most 100 finding identifiers; GetFindings at most 100 findings a page.
MAX_FINDINGS_PER_IMPORT = 100
MAX_IMPORT_BYTES = 6 * 1024 * 1024
MAX_FINDING_BYTES = 240 * 1024
MAX_IDENTIFIERS_PER_UPDATE = 100
MAX_RESULTS_PER_PAGE = 100
# Room for the request envelope ({"Findings": [...]}) and separators.
_ENVELOPE_BYTES = 1024


def import_batches(
    findings: Sequence[Mapping[str, Any]],
    max_count: int = MAX_FINDINGS_PER_IMPORT,
    max_bytes: int = MAX_IMPORT_BYTES,
) -> Iterator[list[Mapping[str, Any]]]:
    """Consecutive batches of at most `max_count` findings and `max_bytes` of JSON each.

    A finding over 240 KB raises ValueError: Security Hub would refuse it whatever the batch.
    """
    batch: list[Mapping[str, Any]] = []
    size = _ENVELOPE_BYTES
    for finding in findings:
        finding_bytes = len(json.dumps(finding).encode()) + 1
        if finding_bytes > MAX_FINDING_BYTES:
            raise ValueError(f"finding {finding.get('Id')} is {finding_bytes} bytes, over {MAX_FINDING_BYTES}")
        if batch and (len(batch) == max_count or size + finding_bytes > max_bytes):
            yield batch
            batch, size = [], _ENVELOPE_BYTES
        batch.append(finding)
        size += finding_bytes
    if batch:
        yield batch


@dataclass
class ImportResult:
    """What BatchImportFindings did across every batch."""

    success_count: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)  # {Id, ErrorCode, ErrorMessage}
    calls: int = 0


@dataclass
class UpdateResult:
    """What BatchUpdateFindings did across every batch."""

    processed: list[dict[str, str]] = field(default_factory=list)
    unprocessed: list[dict[str, Any]] = field(default_factory=list)  # {FindingIdentifier, ErrorCode, ErrorMessage}
    calls: int = 0


class SecurityHubHook(AwsBaseHook):
    """The securityhub client's finding import, search and workflow update."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "securityhub"
        super().__init__(*args, **kwargs)

    def import_findings(self, findings: Sequence[Mapping[str, Any]]) -> ImportResult:
        """BatchImportFindings in batches; every batch is sent, failures are collected, not raised."""
        result = ImportResult()
        for batch in import_batches(findings):
            response = self.conn.batch_import_findings(Findings=list(batch))
            result.calls += 1
            result.success_count += int(response.get("SuccessCount", 0))
            result.failed.extend(dict(f) for f in response.get("FailedFindings") or [])
        return result

    def findings(self, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every finding matching the filters (GetFindings, all pages, 100 a page)."""
        pages = self.conn.get_paginator("get_findings").paginate(
            Filters=dict(filters), PaginationConfig={"PageSize": MAX_RESULTS_PER_PAGE}
        )
        return [finding for page in pages for finding in page["Findings"]]

    def update_workflow(
        self, identifiers: Sequence[Mapping[str, str]], status: str, note: str, updated_by: str
    ) -> UpdateResult:
        """Set Workflow.Status and a Note on findings (BatchUpdateFindings, 100 identifiers a call)."""
        result = UpdateResult()
        for start in range(0, len(identifiers), MAX_IDENTIFIERS_PER_UPDATE):
            batch = [dict(i) for i in identifiers[start : start + MAX_IDENTIFIERS_PER_UPDATE]]
            response = self.conn.batch_update_findings(
                FindingIdentifiers=batch,
                Workflow={"Status": status},
                Note={"Text": note, "UpdatedBy": updated_by},
            )
            result.calls += 1
            result.processed.extend(dict(i) for i in response.get("ProcessedFindings") or [])
            result.unprocessed.extend(dict(u) for u in response.get("UnprocessedFindings") or [])
        return result
