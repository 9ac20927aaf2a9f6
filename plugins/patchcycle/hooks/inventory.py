"""The inventory's AWS reads: EC2 instances, RDS databases and their pending maintenance, S3 buckets."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.rds import RdsHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from botocore.exceptions import ClientError


class Ec2InventoryHook(AwsBaseHook):
    """EC2 DescribeInstances, all pages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "ec2"
        super().__init__(*args, **kwargs)

    def instances(self) -> list[dict[str, Any]]:
        pages = self.conn.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 1000})
        return [instance for page in pages for res in page["Reservations"] for instance in res["Instances"]]


class RdsInventoryHook(RdsHook):
    """RDS DescribeDBInstances, DescribeDBClusters and DescribePendingMaintenanceActions, all pages."""

    def db_instances(self) -> list[dict[str, Any]]:
        pages = self.conn.get_paginator("describe_db_instances").paginate()
        return [db for page in pages for db in page["DBInstances"]]

    def db_clusters(self) -> list[dict[str, Any]]:
        pages = self.conn.get_paginator("describe_db_clusters").paginate()
        return [cluster for page in pages for cluster in page["DBClusters"]]

    def pending_maintenance_actions(self) -> list[dict[str, Any]]:
        pages = self.conn.get_paginator("describe_pending_maintenance_actions").paginate()
        return [item for page in pages for item in page["PendingMaintenanceActions"]]


class S3InventoryHook(S3Hook):
    """The buckets of one region with their tags (ListBuckets is global: filtered by BucketRegion)."""

    def buckets_in_region(self, region: str) -> list[dict[str, Any]]:
        pages = self.get_conn().get_paginator("list_buckets").paginate(BucketRegion=region)
        buckets = [dict(bucket) for page in pages for bucket in page.get("Buckets", [])]
        for bucket in buckets:
            bucket.setdefault("BucketRegion", region)
            bucket["Tags"] = self._tags(bucket["Name"])
        return buckets

    def _tags(self, bucket: str) -> dict[str, str]:
        try:
            tag_set = self.get_conn().get_bucket_tagging(Bucket=bucket)["TagSet"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchTagSet":
                return {}
            raise
        return {tag["Key"]: tag["Value"] for tag in tag_set}
