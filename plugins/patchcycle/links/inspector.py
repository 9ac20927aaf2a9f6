"""Amazon Inspector: the findings of the region.

The Inspector console keeps its filters in the page, not in its URL (no documented URL form filters the
findings on an instance), so the link opens the region's list of all findings; the task's log and its CVE table
name the instances.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class InspectorFindingsLink(BaseAwsLink):
    """Amazon Inspector > Findings > All findings, in the task's region."""

    name = "Inspector findings"
    key = "_patchcycle_inspector_findings"
    format_str = BASE_AWS_CONSOLE_LINK + "/inspector/v2/home?region={region_name}#/findings/all"
