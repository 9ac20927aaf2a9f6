"""What every patchcycle link shares: persisting its fields with the region and partition of a hook's client."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.sdk import BaseOperator, Context


def persist_link(
    link: type[BaseAwsLink],
    context: Context,
    operator: BaseOperator,
    hook: AwsGenericHook,  # type: ignore[type-arg]
    **fields: Any,
) -> None:
    """Store `link`'s fields in the task instance's XCom, in the region and partition of `hook`'s client (the
    connection and region the task acted in). Like the provider's own persist, never fails the task."""
    link.persist(
        context=context,
        operator=operator,
        region_name=hook.conn_region_name,
        aws_partition=hook.conn_partition,
        **fields,
    )
