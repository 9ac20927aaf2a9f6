"""Systems Manager: a Run Command command, and an Automation execution."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class RunCommandLink(BaseAwsLink):
    """Systems Manager > Run Command > one command: its status, targets and each instance's output."""

    name = "Run Command"
    key = "_patchcycle_run_command"
    format_str = BASE_AWS_CONSOLE_LINK + "/systems-manager/run-command/{command_id}?region={region_name}"

    def format_link(self, *, command_id: str | None = None, **kwargs: Any) -> str:
        if not command_id:
            return ""
        return super().format_link(command_id=quote(command_id, safe=""), **kwargs)


class AutomationExecutionLink(BaseAwsLink):
    """Systems Manager > Automation > one execution: its steps, and (for a rate-controlled execution on many
    instances) the child execution of each instance."""

    name = "Automation execution"
    key = "_patchcycle_automation_execution"
    format_str = BASE_AWS_CONSOLE_LINK + "/systems-manager/automation/execution/{execution_id}?region={region_name}"

    def format_link(self, *, execution_id: str | None = None, **kwargs: Any) -> str:
        if not execution_id:
            return ""
        return super().format_link(execution_id=quote(execution_id, safe=""), **kwargs)
