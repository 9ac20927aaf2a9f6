"""Amazon Inspector (inspector2) reads: EC2 coverage and findings, batched to the filter limit and paged."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from patchcycle.hooks.patch_manager import batches

# inspector2's filter lists (resourceId, severity, ...) take at most 10 entries (botocore's model).
MAX_FILTER_VALUES: Final = 10
MAX_FINDINGS_PER_PAGE: Final = 100  # ListFindings maxResults: 1-100
MAX_COVERAGE_PER_PAGE: Final = 200  # ListCoverage maxResults: 1-200
# Past this many instances, one listing of the region's EC2 package coverage (200 per page) costs fewer
# calls than one call per 10 ids; the listing is then narrowed to the instances asked for.
REGION_LISTING_THRESHOLD: Final = 100
EC2_INSTANCE: Final = "AWS_EC2_INSTANCE"
PACKAGE_VULNERABILITY: Final = "PACKAGE_VULNERABILITY"
FINDING_STATUSES: Final = ("ACTIVE", "SUPPRESSED", "CLOSED")


def _equals(values: Sequence[str]) -> list[dict[str, str]]:
    return [{"comparison": "EQUALS", "value": value} for value in values]


def coverage_criteria(instance_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The ListCoverage filterCriteria that together cover `instance_ids` (EC2 package scanning).

    Up to REGION_LISTING_THRESHOLD ids: one filter per 10 ids. More: one filter for the whole region's
    EC2 package coverage; the caller keeps the instances it asked for (see `select_coverage`).
    """
    base: dict[str, Any] = {"resourceType": _equals([EC2_INSTANCE]), "scanType": _equals(["PACKAGE"])}
    ids = list(dict.fromkeys(instance_ids))
    if not ids:
        return []
    if len(ids) > REGION_LISTING_THRESHOLD:
        return [base]
    return [{**base, "resourceId": _equals(batch)} for batch in batches(ids, MAX_FILTER_VALUES)]


def select_coverage(covered: Sequence[dict[str, Any]], instance_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Instance id -> its CoveredResource, for the instances asked for (the last one listed wins)."""
    wanted = set(instance_ids)
    return {str(item["resourceId"]): item for item in covered if item.get("resourceId") in wanted}


def findings_criteria(
    instance_ids: Sequence[str], statuses: Sequence[str], severities: Sequence[str] | None
) -> Iterator[dict[str, Any]]:
    """ListFindings filterCriteria for EC2 package vulnerabilities of `instance_ids`, 10 ids per filter."""
    if len(statuses) > MAX_FILTER_VALUES or (severities is not None and len(severities) > MAX_FILTER_VALUES):
        raise ValueError(f"at most {MAX_FILTER_VALUES} statuses and severities per call")
    for batch in batches(list(dict.fromkeys(instance_ids)), MAX_FILTER_VALUES):
        criteria: dict[str, Any] = {
            "resourceType": _equals([EC2_INSTANCE]),
            "findingType": _equals([PACKAGE_VULNERABILITY]),
            "resourceId": _equals(batch),
            "findingStatus": _equals(statuses),
        }
        if severities:
            criteria["severity"] = _equals(severities)
        yield criteria


class InspectorHook(AwsBaseHook):
    """AwsBaseHook on the inspector2 client: what Inspector knows of a set of EC2 instances."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "inspector2"
        super().__init__(*args, **kwargs)

    def coverage(self, instance_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Instance id -> its package-scan CoveredResource (scanStatus, lastScannedAt); unknown ids are absent."""
        paginator = self.conn.get_paginator("list_coverage")
        covered: list[dict[str, Any]] = []
        for criteria in coverage_criteria(instance_ids):
            pages = paginator.paginate(filterCriteria=criteria, PaginationConfig={"PageSize": MAX_COVERAGE_PER_PAGE})
            covered.extend(item for page in pages for item in page["coveredResources"])
        return select_coverage(covered, instance_ids)

    def findings(
        self,
        instance_ids: Sequence[str],
        statuses: Sequence[str] = FINDING_STATUSES,
        severities: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Package-vulnerability findings on these instances in `statuses` (and `severities`, when given), all pages."""
        paginator = self.conn.get_paginator("list_findings")
        found: list[dict[str, Any]] = []
        for criteria in findings_criteria(instance_ids, statuses, severities):
            pages = paginator.paginate(filterCriteria=criteria, PaginationConfig={"PageSize": MAX_FINDINGS_PER_PAGE})
            found.extend(finding for page in pages for finding in page["findings"])
        return found
