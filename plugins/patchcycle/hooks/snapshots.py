"""EBS snapshots the cycle took: listing the project's own (by tag) and deleting expired ones."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

# DescribeSnapshots takes MaxResults 5..1000.
MAX_SNAPSHOTS_PER_PAGE = 1000


class SnapshotHook(AwsBaseHook):
    """The snapshot calls of the retention task."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "ec2"
        super().__init__(*args, **kwargs)

    def project_snapshots(self, tag_key: str, tag_value: str) -> list[dict[str, Any]]:
        """The account's own snapshots carrying the tag (DescribeSnapshots, OwnerIds self, every page)."""
        pages = self.conn.get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"],
            Filters=[{"Name": f"tag:{tag_key}", "Values": [tag_value]}],
            PaginationConfig={"PageSize": MAX_SNAPSHOTS_PER_PAGE},
        )
        return [dict(snapshot) for page in pages for snapshot in page["Snapshots"]]

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.conn.delete_snapshot(SnapshotId=snapshot_id)
