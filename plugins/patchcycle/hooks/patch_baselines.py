"""Systems Manager patch baselines and patch groups: the reads (paged) and writes patch_baselines needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.ssm import SsmHook

# DescribePatchBaselines and DescribePatchGroups take MaxResults 1..100.
MAX_PAGE_SIZE = 100
PATCH_BASELINE = "PatchBaseline"  # ResourceType of the tagging APIs


class PatchBaselineHook(SsmHook):
    """SsmHook plus the patch baseline calls; each method is one API (all pages of a listing)."""

    def own_baselines(self) -> list[dict[str, Any]]:
        """The account's own baselines in the region (DescribePatchBaselines, OWNER Self): identities only."""
        pages = self.conn.get_paginator("describe_patch_baselines").paginate(
            Filters=[{"Key": "OWNER", "Values": ["Self"]}], PaginationConfig={"PageSize": MAX_PAGE_SIZE}
        )
        return [identity for page in pages for identity in page["BaselineIdentities"]]

    def baseline(self, baseline_id: str) -> dict[str, Any]:
        """One baseline's fields (GetPatchBaseline)."""
        response = self.conn.get_patch_baseline(BaselineId=baseline_id)
        response.pop("ResponseMetadata", None)
        return dict(response)

    def baseline_tags(self, baseline_id: str) -> dict[str, str]:
        """One baseline's tags (ListTagsForResource)."""
        tags = self.conn.list_tags_for_resource(ResourceType=PATCH_BASELINE, ResourceId=baseline_id)["TagList"]
        return {str(tag["Key"]): str(tag["Value"]) for tag in tags}

    def patch_groups(self) -> list[dict[str, Any]]:
        """Every (patch group, baseline) registration of the region (DescribePatchGroups), one per OS."""
        pages = self.conn.get_paginator("describe_patch_groups").paginate(PaginationConfig={"PageSize": MAX_PAGE_SIZE})
        return [mapping for page in pages for mapping in page["Mappings"]]

    def create_baseline(self, request: Mapping[str, Any]) -> str:
        """CreatePatchBaseline with these parameters; returns the new baseline's id."""
        return str(self.conn.create_patch_baseline(**request)["BaselineId"])

    def update_baseline(self, baseline_id: str, fields: Mapping[str, Any]) -> None:
        """UpdatePatchBaseline of the given fields only (the others keep their values)."""
        self.conn.update_patch_baseline(BaselineId=baseline_id, **fields)

    def delete_baseline(self, baseline_id: str) -> None:
        """DeletePatchBaseline (SSM refuses while a patch group uses it)."""
        self.conn.delete_patch_baseline(BaselineId=baseline_id)

    def add_tags(self, baseline_id: str, tags: Mapping[str, str]) -> None:
        """Set these tags (AddTagsToResource); other tags stay."""
        self.conn.add_tags_to_resource(
            ResourceType=PATCH_BASELINE,
            ResourceId=baseline_id,
            Tags=[{"Key": key, "Value": value} for key, value in sorted(tags.items())],
        )

    def remove_tags(self, baseline_id: str, keys: Sequence[str]) -> None:
        """Remove these tag keys (RemoveTagsFromResource)."""
        self.conn.remove_tags_from_resource(ResourceType=PATCH_BASELINE, ResourceId=baseline_id, TagKeys=list(keys))

    def register_patch_group(self, baseline_id: str, patch_group: str) -> None:
        """RegisterPatchBaselineForPatchGroup (AlreadyExistsException if the group has one for that OS)."""
        self.conn.register_patch_baseline_for_patch_group(BaselineId=baseline_id, PatchGroup=patch_group)

    def deregister_patch_group(self, baseline_id: str, patch_group: str) -> None:
        """DeregisterPatchBaselineForPatchGroup: the group's instances of that OS fall back to the OS default."""
        self.conn.deregister_patch_baseline_for_patch_group(BaselineId=baseline_id, PatchGroup=patch_group)
