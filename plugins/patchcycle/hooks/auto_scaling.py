"""Amazon EC2 Auto Scaling: which instances belong to a group and the launch template each runs, and the instance
refreshes that replace them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

# The largest pages of DescribeAutoScalingGroups and DescribeInstanceRefreshes.
GROUPS_PER_PAGE = 100
REFRESHES_PER_PAGE = 100


class AutoScalingHook(AwsBaseHook):
    """Auto Scaling (client_type autoscaling)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "autoscaling"
        super().__init__(*args, **kwargs)

    def groups(self) -> list[dict[str, Any]]:
        """Every Auto Scaling group of the region with its instances: one call per 100 groups, whatever the
        number of instances (DescribeAutoScalingInstances would take one per 50 instances)."""
        pages = self.conn.get_paginator("describe_auto_scaling_groups").paginate(
            PaginationConfig={"PageSize": GROUPS_PER_PAGE}
        )
        return [group for page in pages for group in page["AutoScalingGroups"]]

    def start_refresh(self, group: str, template: str, version: str, preferences: Mapping[str, Any]) -> str:
        """StartInstanceRefresh onto `template` (by name) at the pinned `version`, named only in the desired
        configuration: the group itself is not updated first, so a rollback has a version to go back to."""
        response = self.conn.start_instance_refresh(
            AutoScalingGroupName=group,
            Strategy="Rolling",
            DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateName": template, "Version": version}},
            Preferences=dict(preferences),
        )
        return str(response["InstanceRefreshId"])

    def refresh(self, group: str, refresh_id: str) -> dict[str, Any]:
        """One instance refresh of `group`, as DescribeInstanceRefreshes reports it."""
        found = self.conn.describe_instance_refreshes(AutoScalingGroupName=group, InstanceRefreshIds=[refresh_id])
        refreshes = found["InstanceRefreshes"]
        if not refreshes:
            raise LookupError(f"Auto Scaling group {group} has no instance refresh {refresh_id}")
        return dict(refreshes[0])

    def refreshes(self, group: str) -> list[dict[str, Any]]:
        """Every instance refresh of `group` AWS still reports, newest first (a retried task looks for its own)."""
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"AutoScalingGroupName": group, "MaxRecords": REFRESHES_PER_PAGE}
        while True:  # botocore has no paginator for this API
            page = self.conn.describe_instance_refreshes(**kwargs)
            found += [dict(refresh) for refresh in page["InstanceRefreshes"]]
            if not page.get("NextToken"):
                return found
            kwargs["NextToken"] = page["NextToken"]

    def cancel_refresh(self, group: str) -> None:
        """CancelInstanceRefresh of the group's active refresh (one that ran past the run's time limit)."""
        self.conn.cancel_instance_refresh(AutoScalingGroupName=group)
