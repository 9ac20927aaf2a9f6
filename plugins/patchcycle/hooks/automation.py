"""Systems Manager Automation: the project's runbooks (documents) and their executions, batched and paged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from botocore.exceptions import ClientError

from patchcycle.hooks.patch_manager import MAX_IDS_PER_CALL

DOCUMENT = "Document"  # ResourceType of the tagging APIs
# DescribeAutomationExecutions takes MaxResults 1..50.
MAX_EXECUTIONS_PER_PAGE = 50


class AutomationHook(SsmHook):
    """SsmHook plus the Automation calls the cycle makes; each method is one API (all pages of a listing)."""

    # -- runbooks -----------------------------------------------------------------------------
    def document(self, name: str) -> dict[str, Any] | None:
        """DescribeDocument's description of a document, or None when the account has none of that name."""
        try:
            return dict(self.conn.describe_document(Name=name)["Document"])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidDocument":
                return None
            raise

    def document_content(self, name: str, version: str) -> str:
        """One version's content (GetDocument)."""
        return str(self.conn.get_document(Name=name, DocumentVersion=version)["Content"])

    def document_tags(self, name: str) -> dict[str, str]:
        tags = self.conn.list_tags_for_resource(ResourceType=DOCUMENT, ResourceId=name)["TagList"]
        return {str(tag["Key"]): str(tag["Value"]) for tag in tags}

    def create_runbook(self, name: str, content: str, tags: Mapping[str, str]) -> str:
        """CreateDocument of an Automation runbook (YAML); returns its version (1)."""
        response = self.conn.create_document(
            Name=name,
            Content=content,
            DocumentType="Automation",
            DocumentFormat="YAML",
            Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
        )
        return str(response["DocumentDescription"]["DocumentVersion"])

    def update_runbook(self, name: str, content: str) -> str:
        """UpdateDocument with new content; returns the new version (not yet the default)."""
        response = self.conn.update_document(
            Name=name, Content=content, DocumentFormat="YAML", DocumentVersion="$LATEST"
        )
        return str(response["DocumentDescription"]["DocumentVersion"])

    def set_default_version(self, name: str, version: str) -> None:
        self.conn.update_document_default_version(Name=name, DocumentVersion=version)

    # -- executions ---------------------------------------------------------------------------
    def start(
        self,
        document: str,
        instance_ids: Sequence[str],
        parameters: Mapping[str, Sequence[str]],
        *,
        max_concurrency: str,
        max_errors: str,
        client_token: str,
        tags: Mapping[str, str],
    ) -> str:
        """StartAutomationExecution with at most 50 instances as targets (TargetParameterName InstanceId): one
        parent execution, a child per instance; returns the parent's id. The client token makes a retried start
        return the execution the first one started."""
        if not 1 <= len(instance_ids) <= MAX_IDS_PER_CALL:
            raise ValueError(f"an execution targets 1 to {MAX_IDS_PER_CALL} instances, got {len(instance_ids)}")
        response = self.conn.start_automation_execution(
            DocumentName=document,
            Parameters={name: list(values) for name, values in parameters.items()},
            TargetParameterName="InstanceId",
            Targets=[{"Key": "ParameterValues", "Values": list(instance_ids)}],
            MaxConcurrency=max_concurrency,
            MaxErrors=max_errors,
            ClientToken=client_token,
            Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
        )
        return str(response["AutomationExecutionId"])

    def start_runbook(
        self, document: str, parameters: Mapping[str, Sequence[str]], *, client_token: str, tags: Mapping[str, str]
    ) -> str:
        """StartAutomationExecution of one execution with no targets (a runbook that makes its own resources, as
        PatchCycle-BakeAmi launches its builder); the client token makes a retried start return the first one."""
        response = self.conn.start_automation_execution(
            DocumentName=document,
            Parameters={name: list(values) for name, values in parameters.items()},
            ClientToken=client_token,
            Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
        )
        return str(response["AutomationExecutionId"])

    def execution(self, execution_id: str) -> dict[str, Any]:
        """GetAutomationExecution."""
        return dict(self.conn.get_automation_execution(AutomationExecutionId=execution_id)["AutomationExecution"])

    def children(self, parent_id: str) -> list[dict[str, Any]]:
        """The child executions of a parent (DescribeAutomationExecutions by ParentExecutionId, every page)."""
        pages = self.conn.get_paginator("describe_automation_executions").paginate(
            Filters=[{"Key": "ParentExecutionId", "Values": [parent_id]}],
            PaginationConfig={"PageSize": MAX_EXECUTIONS_PER_PAGE},
        )
        return [dict(metadata) for page in pages for metadata in page["AutomationExecutionMetadataList"]]

    def failed_step(self, execution_id: str) -> dict[str, Any] | None:
        """The step an execution failed at (DescribeAutomationStepExecutions, failed or timed-out steps, first one
        first): its StepName and FailureMessage; None when no step failed (a cancelled execution)."""
        pages = self.conn.get_paginator("describe_automation_step_executions").paginate(
            AutomationExecutionId=execution_id,
            Filters=[{"Key": "StepExecutionStatus", "Values": ["Failed", "TimedOut"]}],
        )
        steps = [step for page in pages for step in page["StepExecutions"]]
        return dict(steps[0]) if steps else None

    def stop(self, execution_id: str) -> None:
        """StopAutomationExecution (children stop with their parent)."""
        self.conn.stop_automation_execution(AutomationExecutionId=execution_id, Type="Cancel")

    # -- change calendars ---------------------------------------------------------------------
    def calendar_state(self, calendar: str) -> dict[str, Any]:
        """GetCalendarState now: State (OPEN or CLOSED), AtTime and, when known, NextTransitionTime."""
        response = dict(self.conn.get_calendar_state(CalendarNames=[calendar]))
        response.pop("ResponseMetadata", None)
        return response
