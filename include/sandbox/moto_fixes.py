"""Fixes to moto's internals the sandbox needs (moto is pinned exactly for this reason)."""

from __future__ import annotations

from typing import Any

from moto.cloudformation.models import Stack
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix


def _get_tags(self: Any) -> list[dict[str, str]]:
    """One resource's tags by dict lookup.

    moto 5.2.5 answers it with describe_tags filtered by resource id, which walks every tag
    of the region: DescribeInstances over 5,000 instances then takes about 80 s, longer than
    botocore's read timeout. Same result, in constant time.
    """
    resource_id = getattr(self, "id", None)
    if not resource_id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    tags = self.ec2_backend.tags.get(resource_id, {})
    return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]


_MOTO_STACK_DELETE = Stack.delete


def _stack_delete(self: Stack) -> None:
    """Delete a stack's resources, and keep the (deleted) resource objects for describing it.

    moto 5.2.5's ResourceMap creates a resource whenever it is looked up and not parsed, and
    its deletion un-parses every resource: DescribeStackResources (or DescribeStacks with
    outputs) on a deleted stack's id launched its instances again, running and SSM-managed.
    With the objects kept, a deleted stack lists its resources as DELETE_COMPLETE, as on AWS.
    """
    resource_map = self.resource_map
    created = {
        logical_id: resource
        for logical_id, resource in resource_map._parsed_resources.items()
        if logical_id in resource_map._resource_json_map
    }
    _MOTO_STACK_DELETE(self)
    resource_map._parsed_resources.update(created)


def apply() -> None:
    """Install the fixes (idempotent)."""
    TaggedEC2Resource.get_tags = _get_tags  # type: ignore[method-assign]
    Stack.delete = _stack_delete  # type: ignore[method-assign]
