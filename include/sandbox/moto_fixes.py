"""Fixes to moto's internals the sandbox needs at fleet scale (moto is pinned exactly for this reason)."""

from __future__ import annotations

from typing import Any

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


def apply() -> None:
    """Install the fixes (idempotent)."""
    TaggedEC2Resource.get_tags = _get_tags  # type: ignore[method-assign]
