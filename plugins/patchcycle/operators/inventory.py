"""Inventory: every EC2 instance, RDS database and S3 bucket of one (connection, region), classified."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from patchcycle.core import inventory as inv
from patchcycle.core.plan import rds_plan
from patchcycle.core.scope import Scope, apply_scope
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.inventory import Ec2InventoryHook, RdsInventoryHook, S3InventoryHook
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.operators.base import PatchCycleOperator

STAGE = "inventory"


class InventoryOperator(PatchCycleOperator):
    """Reads EC2 (+ SSM managed-instance data), RDS (+ pending maintenance) and S3, applies the scope,
    and writes the inventory table; returns counts only."""

    template_fields: Sequence[str] = (*PatchCycleOperator.template_fields, "scope")

    def __init__(self, *, scope: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scope = scope or {}

    def execute(self, context: Context) -> dict[str, Any]:
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            scope = Scope.from_params(self.scope)
            hook_args: dict[str, Any] = {"aws_conn_id": self.aws_conn_id, "region_name": self.region_name}
            region = self.region_name
            ssm = PatchManagerHook(**hook_args)
            with aws_call("sts:GetCallerIdentity", "(this connection)", region):
                account = ssm.account_id
            with aws_call("ec2:DescribeInstances", account, region):
                instances = Ec2InventoryHook(**hook_args).instances()
            with aws_call("ssm:DescribeInstanceInformation", account, region):
                managed = ssm.managed_instances()
            rds = RdsInventoryHook(**hook_args)
            with aws_call("rds:DescribeDBInstances", account, region):
                databases = rds.db_instances()
            with aws_call("rds:DescribePendingMaintenanceActions", account, region):
                pending = rds.pending_maintenance_actions()
            with aws_call("s3:ListBuckets", account, region):
                buckets = S3InventoryHook(**hook_args).buckets_in_region(region)

            table = inv.combine(
                [
                    inv.ec2_rows(account, region, instances, managed),
                    inv.rds_rows(account, region, databases, pending),
                    inv.s3_rows(account, region, buckets),
                ]
            )
            table = apply_scope(table, scope)
            key = self.target.key
            store.write_frame(STAGE, key, table)
            store.write_frame(STAGE, f"{key}.rds_plan", rds_plan(pending))
            summary = {
                **self.target.as_kwargs(),
                "account_id": account,
                "resources": len(table),
                "in_scope": int(table["in_scope"].sum()),
                "by_type": {str(k): int(v) for k, v in table["resource_type"].value_counts().items()},
                "patchable_in_scope": int((table["in_scope"] & table["patchable"]).sum()),
            }
            store.write_json(STAGE, f"{key}.summary.json", summary)
            self.log.info("Inventory of %s: %s", key, summary)
            return summary
