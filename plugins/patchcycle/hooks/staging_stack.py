"""The CloudFormation stack a staging rehearsal patches: create, status, instances, failure reasons, delete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook
from botocore.exceptions import ClientError

INSTANCE_TYPE = "AWS::EC2::Instance"


def _missing(error: ClientError) -> bool:
    """CloudFormation's answer for a stack it does not know: ValidationError "Stack with id ... does not exist"."""
    err = error.response.get("Error", {})
    return err.get("Code") == "ValidationError" and "does not exist" in err.get("Message", "")


class StagingStackHook(CloudFormationHook):
    """CloudFormationHook plus the reads and writes of one staging stack."""

    def create(
        self,
        stack_name: str,
        template_body: str,
        parameters: Mapping[str, str],
        tags: Mapping[str, str],
        *,
        timeout_minutes: int | None = None,
        capabilities: Sequence[str] = (),
    ) -> str:
        """CreateStack (a failed creation rolls back, CloudFormation's default); returns the stack id.

        `capabilities` (e.g. CAPABILITY_IAM) acknowledges IAM resources in the template, such as
        the instance profile that lets the agent register with Systems Manager.
        """
        kwargs: dict[str, Any] = {
            "StackName": stack_name,
            "TemplateBody": template_body,
            "Parameters": [{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
            "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
        }
        if timeout_minutes is not None:
            kwargs["TimeoutInMinutes"] = timeout_minutes
        if capabilities:
            kwargs["Capabilities"] = list(capabilities)
        return str(self.conn.create_stack(**kwargs)["StackId"])

    def status(self, stack_name: str) -> dict[str, str] | None:
        """{"status", "reason", "stack_id"} from DescribeStacks; None when there is no such stack.

        By name, a deleted stack does not exist; by stack id it reads DELETE_COMPLETE.
        """
        try:
            stacks = self.conn.describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as error:
            if _missing(error):
                return None
            raise
        if not stacks:
            return None
        stack = stacks[0]
        return {
            "status": str(stack["StackStatus"]),
            "reason": str(stack.get("StackStatusReason", "")),
            "stack_id": str(stack["StackId"]),
        }

    def instances(self, stack_name: str) -> dict[str, str]:
        """Logical id -> EC2 instance id of the stack's AWS::EC2::Instance resources (DescribeStackResources).

        A resource CloudFormation has not created yet has no instance id and is left out.
        """
        resources = self.conn.describe_stack_resources(StackName=stack_name)["StackResources"]
        return {
            str(resource["LogicalResourceId"]): str(resource["PhysicalResourceId"])
            for resource in resources
            if resource["ResourceType"] == INSTANCE_TYPE and resource.get("PhysicalResourceId")
        }

    def failure_reasons(self, stack_name: str) -> list[str]:
        """Every *_FAILED event as "<LogicalResourceId>: <ResourceStatusReason>", oldest first (DescribeStackEvents)."""
        pages = self.conn.get_paginator("describe_stack_events").paginate(StackName=stack_name)
        events = [event for page in pages for event in page["StackEvents"]]  # newest first
        return [
            f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason', '')}"
            for event in reversed(events)
            if str(event.get("ResourceStatus", "")).endswith("_FAILED")
        ]

    def delete(self, stack_name: str) -> None:
        """DeleteStack; a stack that does not exist (any more) is already deleted."""
        try:
            self.conn.delete_stack(StackName=stack_name)
        except ClientError as error:
            if not _missing(error):
                raise
