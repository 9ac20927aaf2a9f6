"""expire_snapshots: the project's pre-patch snapshots of earlier runs, older than snapshot_retention_days,
deleted in one (connection, region); never a snapshot without the project's tag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Context

from patchcycle.config import CycleConfig
from patchcycle.core.runbooks import MANAGED_TAG
from patchcycle.core.snapshot_retention import expired_snapshots
from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.snapshots import SnapshotHook
from patchcycle.operators.base import TargetOperator
from patchcycle.run_artifacts import SNAPSHOT_RETENTION, Step
from patchcycle.run_records import SnapshotRetention


class ExpireSnapshotsOperator(TargetOperator[SnapshotHook, CycleConfig]):
    """Deletes the project's expired snapshots of the target and records which."""

    aws_hook_class = SnapshotHook
    config_class = CycleConfig

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.SNAPSHOT_RETENTION):
            account, region = self.account_or_caller(artifacts), str(self.region_name)
            cutoff = datetime.now(UTC) - timedelta(days=config.safety.snapshot_retention_days)
            with aws_call("ec2:DescribeSnapshots", account, region):
                snapshots = self.hook.project_snapshots(*MANAGED_TAG)
            expired, kept = expired_snapshots(snapshots, context["run_id"], cutoff)
            for snapshot_id in expired:
                with aws_call("ec2:DeleteSnapshot", account, region):
                    self.hook.delete_snapshot(snapshot_id)
            record = SnapshotRetention(account_id=account, cutoff=iso_utc(cutoff), deleted=expired, kept=kept)
            artifacts.write(SNAPSHOT_RETENTION, record, target=self.target)
            self.log.info("Deleted %d expired pre-patch snapshots in %s: %s", len(expired), self.target.key, expired)
            return {**self.target.as_kwargs(), "deleted": len(expired), "kept": kept}
