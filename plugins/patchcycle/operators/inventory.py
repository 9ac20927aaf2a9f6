"""Inventory: every EC2 instance, RDS database and S3 bucket of one (connection, region), classified."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from airflow.sdk import Context

from patchcycle.config import CycleConfig
from patchcycle.core import inventory as inv
from patchcycle.core.plan import rds_plan
from patchcycle.core.scope import apply_scope
from patchcycle.hooks.auto_scaling import AutoScalingHook
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.inventory import Ec2InventoryHook, RdsInventoryHook, S3InventoryHook
from patchcycle.hooks.launch_templates import LaunchTemplateHook
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.operators.base import TargetOperator
from patchcycle.run_artifacts import INVENTORY, INVENTORY_SUMMARY, RDS_PLAN, Step
from patchcycle.run_records import InventorySummary


class InventoryOperator(TargetOperator[Ec2InventoryHook, CycleConfig]):
    """Reads EC2 (+ SSM managed-instance data, Auto Scaling membership), RDS (+ pending maintenance) and S3,
    applies the run's scope, and writes the inventory table; returns counts only."""

    aws_hook_class = Ec2InventoryHook
    config_class = CycleConfig

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        with self.recording_failure(artifacts, Step.INVENTORY):
            region = str(self.region_name)
            ssm = self.hook_for(PatchManagerHook)
            with aws_call("sts:GetCallerIdentity", "(this connection)", region):
                account = ssm.account_id
            with aws_call("ec2:DescribeInstances", account, region):
                instances = self.hook.instances()
            with aws_call("ssm:DescribeInstanceInformation", account, region):
                managed = ssm.managed_instances()
            with aws_call("autoscaling:DescribeAutoScalingGroups", account, region):
                groups = self.hook_for(AutoScalingHook).groups()
            group_images = self._group_images(account, region, groups)
            rds = self.hook_for(RdsInventoryHook)
            with aws_call("rds:DescribeDBInstances", account, region):
                databases = rds.db_instances()
            with aws_call("rds:DescribeDBClusters", account, region):
                clusters = rds.db_clusters()
            with aws_call("rds:DescribePendingMaintenanceActions", account, region):
                pending = rds.pending_maintenance_actions()
            with aws_call("s3:ListBuckets", account, region):
                buckets = self.hook_for(S3InventoryHook).buckets_in_region(region)

            table = inv.combine(
                [
                    inv.ec2_rows(account, region, instances, managed, groups, group_images),
                    inv.rds_rows(account, region, databases, pending),
                    inv.rds_cluster_rows(account, region, clusters, pending),
                    inv.s3_rows(account, region, buckets),
                ]
            )
            table = apply_scope(table, self.settings().scope)
            artifacts.write(INVENTORY, table, target=self.target)
            artifacts.write(RDS_PLAN, rds_plan(pending), target=self.target)
            summary = InventorySummary(
                **self.target.as_kwargs(),
                account_id=account,
                resources=len(table),
                in_scope=int(table["in_scope"].sum()),
                by_type={str(k): int(v) for k, v in table["resource_type"].value_counts().items()},
                patchable_in_scope=int((table["in_scope"] & table["patchable"]).sum()),
            )
            artifacts.write(INVENTORY_SUMMARY, summary, target=self.target)
            self.log.info("Inventory of %s: %s", self.target.key, summary)
            return asdict(summary)

    def _group_images(self, account: str, region: str, groups: list[dict[str, Any]]) -> dict[str, str]:
        """Group name -> the AMI of the launch template version it launches now: what its new instances run, and
        so what the immutable path bakes (one DescribeLaunchTemplateVersions per distinct template and version)."""
        images: dict[tuple[str, str, str], str] = {}
        found: dict[str, str] = {}
        templates = self.hook_for(LaunchTemplateHook)
        for group in groups:
            spec = inv.launch_template_spec(group)
            if not spec[2]:
                continue
            if spec not in images:
                with aws_call("ec2:DescribeLaunchTemplateVersions", account, region):
                    images[spec] = templates.image_of(*spec)
            found[str(group["AutoScalingGroupName"])] = images[spec]
        return found
