"""Amazon EC2 Auto Scaling reads: which instances belong to a group, and the launch template each runs."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

# DescribeAutoScalingGroups' largest page.
GROUPS_PER_PAGE = 100


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
