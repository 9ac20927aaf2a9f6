"""CloudWatch: one dashboard, by name."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class CloudWatchDashboardLink(BaseAwsLink):
    """CloudWatch > Dashboards > one dashboard. Dashboards belong to the account, not a region: the region only
    sets the console's default for the widgets that name none."""

    name = "CloudWatch dashboard"
    key = "_patchcycle_cloudwatch_dashboard"
    format_str = BASE_AWS_CONSOLE_LINK + "/cloudwatch/home?region={region_name}#dashboards:name={dashboard_name}"

    def format_link(self, *, dashboard_name: str | None = None, **kwargs: Any) -> str:
        if not dashboard_name:
            return ""
        return super().format_link(dashboard_name=quote(dashboard_name, safe=""), **kwargs)
