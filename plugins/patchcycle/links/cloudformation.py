"""CloudFormation: one stack, by its id (the stack ARN), which also finds a deleted stack."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class CloudFormationStackLink(BaseAwsLink):
    """CloudFormation > Stacks > one stack: its events, resources and status."""

    name = "CloudFormation stack"
    key = "_patchcycle_cloudformation_stack"
    format_str = (
        BASE_AWS_CONSOLE_LINK + "/cloudformation/home?region={region_name}#/stacks/stackinfo?stackId={stack_id}"
    )

    def format_link(self, *, stack_id: str | None = None, **kwargs: Any) -> str:
        if not stack_id:
            return ""
        return super().format_link(stack_id=quote(stack_id, safe=""), **kwargs)
