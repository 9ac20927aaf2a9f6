"""Security Hub: the findings of this project's generators, in one account and region.

The findings page takes its filters in the `search` parameter of the URL fragment: `Field=\\operator\\:OP\\:value`
pairs joined by `&`, each value URL-encoded and the whole parameter URL-encoded again. Repeating a field ORs its
values, as GetFindings does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink

# How the findings page spells a filter's comparison, before the value.
OPERATOR = "\\operator\\:{operator}\\:"


def findings_search(filters: Sequence[tuple[str, str]], operator: str = "EQUALS") -> str:
    """The findings page's `search` parameter for (field, value) filters, every one compared with `operator`."""
    comparison = OPERATOR.format(operator=operator)
    pairs = [f"{field}={quote(comparison + value, safe='')}" for field, value in filters]
    return quote("&".join(pairs), safe="")


class SecurityHubFindingsLink(BaseAwsLink):
    """Security Hub > Findings: the active findings of the given generators, in the task's account and region."""

    name = "Security Hub findings"
    key = "_patchcycle_security_hub_findings"
    format_str = BASE_AWS_CONSOLE_LINK + "/securityhub/home?region={region_name}#/findings?search={search}"

    def format_link(
        self,
        *,
        account_id: str | None = None,
        generator_ids: Sequence[str] | None = None,
        region_name: str | None = None,
        **kwargs: Any,
    ) -> str:
        if not generator_ids or not region_name:
            return ""
        filters = [("GeneratorId", generator) for generator in generator_ids]
        if account_id:
            filters.append(("AwsAccountId", account_id))
        filters += [("Region", region_name), ("RecordState", "ACTIVE")]
        return super().format_link(search=findings_search(filters), region_name=region_name, **kwargs)
