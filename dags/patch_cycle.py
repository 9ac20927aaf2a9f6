"""patch_cycle: inventory -> match (Patch Manager scan) -> report, fanned out by (connection, region)."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from patchcycle.operators.cycle_params import CycleParamsOperator
from patchcycle.operators.cycle_report import CycleReportOperator
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.patch_scan import PatchScanOperator

with DAG(
    dag_id="patch_cycle",
    description="The AWS patch cycle: inventory, Patch Manager matching and a compliance report.",
    schedule="0 3 * * 2#2",  # the second Tuesday of the month, 03:00 UTC
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,  # params such as scope reach operators as objects, not strings
    tags=["patching", "aws", "compliance"],
    default_args={
        "owner": "cloud-operations",
        "retries": 3,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={
        "mode": Param(
            "scan",
            enum=["scan", "install"],
            title="Mode",
            description="scan: report what is missing without installing anything. install: not available yet.",
        ),
        "targets": Param(
            [{"aws_conn_id": "aws_default", "regions": ["us-east-1", "eu-west-1"]}],
            type="array",
            minItems=1,
            items={
                "type": "object",
                "required": ["aws_conn_id", "regions"],
                "additionalProperties": False,
                "properties": {
                    "aws_conn_id": {"type": "string", "minLength": 1},
                    "regions": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                },
            },
            title="Targets",
            description="AWS connections (one per account) and the regions to cover in each.",
        ),
        "scope": Param(
            {"include_tags": {}, "exclude_ids": [], "exclude_tags": {}},
            type="object",
            title="Scope",
            description=(
                "include_tags: {tag: [values]}, every tag must match; exclude_ids: [ids]; "
                "exclude_tags: {tag: [values]}."
            ),
        ),
        "artifact_root": Param(
            "s3://patchcycle-artifacts",
            type="string",
            title="Artifact root",
            description="Where each stage writes its tables and the report: s3://bucket[/prefix] or file:///path.",
        ),
        "artifact_conn_id": Param("aws_default", type="string", title="Artifact store connection"),
        "max_concurrency": Param("50", type="string", title="SSM MaxConcurrency", description="A count or a %."),
        "max_errors": Param("10%", type="string", title="SSM MaxErrors", description="A count or a %."),
        "poll_seconds": Param(30, type="number", minimum=1, title="Seconds between command status polls"),
        "command_timeout_minutes": Param(
            60,
            type="number",
            exclusiveMinimum=0,
            title="Command time limit (minutes)",
            description="Commands still running after this are cancelled; their instances are reported as failed.",
        ),
    },
) as dag:
    targets = CycleParamsOperator(task_id="validate_params", retries=0)

    artifacts = {"artifact_root": "{{ params.artifact_root }}", "artifact_conn_id": "{{ params.artifact_conn_id }}"}
    inventory = InventoryOperator.partial(task_id="inventory", scope="{{ params.scope }}", **artifacts).expand_kwargs(
        targets.output
    )
    match = PatchScanOperator.partial(
        task_id="match",
        trigger_rule="all_done",  # one failed region's inventory must not stop the others' match
        max_concurrency="{{ params.max_concurrency }}",
        max_errors="{{ params.max_errors }}",
        poll_seconds="{{ params.poll_seconds }}",
        command_timeout_minutes="{{ params.command_timeout_minutes }}",
        **artifacts,
    ).expand_kwargs(targets.output)
    report = CycleReportOperator(
        task_id="report", targets=targets.output, mode="{{ params.mode }}", trigger_rule="all_done", **artifacts
    )

    targets >> inventory >> match >> report
