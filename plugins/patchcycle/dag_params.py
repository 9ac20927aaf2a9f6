"""Params the patch-cycle DAGs share, so each DAG file keeps only what is its own."""

from __future__ import annotations

from airflow.sdk import Param

DEFAULT_TARGETS = [{"aws_conn_id": "aws_default", "regions": ["us-east-1", "eu-west-1"]}]


def targets_param(purpose: str) -> Param:
    """`targets`: AWS connections (one per account) and the regions to `purpose` in each."""
    return Param(
        DEFAULT_TARGETS,
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
        description=f"AWS connections (one per account) and the regions to {purpose} in each.",
    )


def artifact_params() -> dict[str, Param]:
    """`artifact_root` and `artifact_conn_id`: where a run keeps its tables and reports."""
    return {
        "artifact_root": Param(
            "s3://patchcycle-artifacts",
            type="string",
            title="Artifact root",
            description="Where each stage writes its tables and the report: s3://bucket[/prefix] or file:///path.",
        ),
        "artifact_conn_id": Param("aws_default", type="string", title="Artifact store connection"),
    }
