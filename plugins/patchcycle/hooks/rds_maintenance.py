"""RDS pending maintenance: the DB instances' (and Aurora DB clusters') state, their pending actions, snapshots,
opt-ins and failure events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from airflow.providers.amazon.aws.hooks.rds import RdsHook
from botocore.exceptions import ClientError

FILTER_LIMIT = 100  # values per Filters entry (db-instance-id, db-cluster-id), RDS's documented limit


def _chunks(values: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


class RdsMaintenanceHook(RdsHook):
    """The amazon provider's RdsHook plus the reads and writes of applying pending maintenance."""

    def db_instances(self, identifiers: Sequence[str]) -> dict[str, dict[str, Any]]:
        """DB instance identifier -> DescribeDBInstances item; instances that do not exist are left out."""
        found: dict[str, dict[str, Any]] = {}
        paginator = self.conn.get_paginator("describe_db_instances")
        for chunk in _chunks(sorted(set(identifiers)), FILTER_LIMIT):
            pages = paginator.paginate(Filters=[{"Name": "db-instance-id", "Values": chunk}])
            for page in pages:
                for db in page["DBInstances"]:
                    found[str(db["DBInstanceIdentifier"])] = db
        return found

    def db_clusters(self, identifiers: Sequence[str]) -> dict[str, dict[str, Any]]:
        """DB cluster identifier -> DescribeDBClusters item; clusters that do not exist are left out."""
        found: dict[str, dict[str, Any]] = {}
        paginator = self.conn.get_paginator("describe_db_clusters")
        for chunk in _chunks(sorted(set(identifiers)), FILTER_LIMIT):
            for page in paginator.paginate(Filters=[{"Name": "db-cluster-id", "Values": chunk}]):
                for cluster in page["DBClusters"]:
                    found[str(cluster["DBClusterIdentifier"])] = cluster
        return found

    def pending_actions(
        self, identifiers: Sequence[str], clusters: bool = False
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """DB instance (DB cluster, when `clusters`) identifier -> {action: PendingMaintenanceActionDetails}; none
        pending: left out."""
        found: dict[str, dict[str, dict[str, Any]]] = {}
        paginator = self.conn.get_paginator("describe_pending_maintenance_actions")
        name = "db-cluster-id" if clusters else "db-instance-id"
        for chunk in _chunks(sorted(set(identifiers)), FILTER_LIMIT):
            pages = paginator.paginate(Filters=[{"Name": name, "Values": chunk}])
            for page in pages:
                for item in page["PendingMaintenanceActions"]:
                    identifier = str(item["ResourceIdentifier"]).rsplit(":", 1)[-1]
                    details = item.get("PendingMaintenanceActionDetails", [])
                    found.setdefault(identifier, {}).update({str(d["Action"]): d for d in details})
        return found

    def apply(self, resource_arn: str, action: str, opt_in: str) -> dict[str, Any]:
        """ApplyPendingMaintenanceAction; returns the resource's pending actions as RDS answers them."""
        response = self.conn.apply_pending_maintenance_action(
            ResourceIdentifier=resource_arn, ApplyAction=action, OptInType=opt_in
        )
        return dict(response["ResourcePendingMaintenanceActions"])

    def latest_automated_snapshot(self, identifier: str) -> dict[str, Any] | None:
        """The newest available automated snapshot of a DB instance (DescribeDBSnapshots), or None."""
        pages = self.conn.get_paginator("describe_db_snapshots").paginate(
            DBInstanceIdentifier=identifier, SnapshotType="automated"
        )
        snapshots = [s for page in pages for s in page["DBSnapshots"] if s.get("Status") == "available"]
        return max(snapshots, key=lambda s: s.get("SnapshotCreateTime") or datetime.min, default=None)

    def create_snapshot(self, identifier: str, snapshot_id: str, tags: dict[str, str]) -> dict[str, Any]:
        """CreateDBSnapshot (a manual snapshot, for a DB instance without an automated one)."""
        response = self.conn.create_db_snapshot(
            DBInstanceIdentifier=identifier,
            DBSnapshotIdentifier=snapshot_id,
            Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
        )
        return dict(response["DBSnapshot"])

    def snapshot_status(self, snapshot_id: str) -> str | None:
        """A snapshot's Status, or None when it does not exist."""
        try:
            snapshots = self.conn.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "DBSnapshotNotFound":
                return None
            raise
        return str(snapshots[0]["Status"]) if snapshots else None

    def delete_snapshot(self, snapshot_id: str) -> None:
        """DeleteDBSnapshot; a snapshot already gone is fine."""
        try:
            self.conn.delete_db_snapshot(DBSnapshotIdentifier=snapshot_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "DBSnapshotNotFound":
                raise

    def latest_automated_cluster_snapshot(self, identifier: str) -> dict[str, Any] | None:
        """The newest available automated snapshot of an Aurora DB cluster (DescribeDBClusterSnapshots), or None."""
        pages = self.conn.get_paginator("describe_db_cluster_snapshots").paginate(
            DBClusterIdentifier=identifier, SnapshotType="automated"
        )
        snapshots = [s for page in pages for s in page["DBClusterSnapshots"] if s.get("Status") == "available"]
        return max(snapshots, key=lambda s: s.get("SnapshotCreateTime") or datetime.min, default=None)

    def create_cluster_snapshot(self, identifier: str, snapshot_id: str, tags: dict[str, str]) -> dict[str, Any]:
        """CreateDBClusterSnapshot (a manual snapshot, for a DB cluster without an automated one)."""
        response = self.conn.create_db_cluster_snapshot(
            DBClusterIdentifier=identifier,
            DBClusterSnapshotIdentifier=snapshot_id,
            Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
        )
        return dict(response["DBClusterSnapshot"])

    def cluster_snapshot_status(self, snapshot_id: str) -> str | None:
        """A DB cluster snapshot's Status, or None when it does not exist."""
        try:
            found = self.conn.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=snapshot_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "DBClusterSnapshotNotFoundFault":
                return None
            raise
        snapshots = found["DBClusterSnapshots"]
        return str(snapshots[0]["Status"]) if snapshots else None

    def delete_cluster_snapshot(self, snapshot_id: str) -> None:
        """DeleteDBClusterSnapshot; a snapshot already gone is fine."""
        try:
            self.conn.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=snapshot_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "DBClusterSnapshotNotFoundFault":
                raise

    def failure_events(self, identifier: str, action: str, source_type: str = "db-instance") -> list[str]:
        """The messages of the DB instance's (source_type db-cluster: the DB cluster's) recent RDS events of category
        failure about `action` (DescribeEvents: the last hour, oldest first)."""
        pages = self.conn.get_paginator("describe_events").paginate(
            SourceIdentifier=identifier, SourceType=source_type, EventCategories=["failure"]
        )
        return [
            str(event.get("Message", ""))
            for page in pages
            for event in page["Events"]
            if "failure" in event.get("EventCategories", []) and action in str(event.get("Message", ""))
        ]
