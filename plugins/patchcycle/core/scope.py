"""Which resources a run covers: tag filters and exclusions, parsed from the DAG params.

Rules, applied in this order (the first that matches decides the reason):

1. `exclude_ids`: a resource whose id is listed is out of scope ("excluded by id").
2. `exclude_tags`: a resource carrying ANY listed key=value pair is out of scope
   ("excluded by tag Environment=staging").
3. `include_tags`: a resource must match ALL listed keys, each with ANY of its values
   ("tag Environment is 'staging', not one of ['production']"). No include_tags: everything is included.

Tag matching is exact and case-sensitive, as AWS tags are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

SCOPE_FIELDS = ("include_tags", "exclude_ids", "exclude_tags")
# The columns apply_scope adds to the inventory.
SCOPE_COLUMNS: Final[Mapping[str, str]] = {"in_scope": "bool", "scope_reason": "str"}


@dataclass(frozen=True)
class Scope:
    """The resources a run covers.

    include_tags: tag key -> allowed values; a resource must match every key (with any of its values).
    exclude_ids: resource ids that are always out of scope.
    exclude_tags: tag key -> values; a resource with any of these key=value pairs is out of scope.
    """

    include_tags: dict[str, list[str]] = field(default_factory=dict)
    exclude_ids: frozenset[str] = frozenset()
    exclude_tags: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> Scope:
        """Parse the `scope` DAG param; raises ValueError naming the offending field.

        A missing or null field means "no filter". Unknown fields are rejected so that a typo
        (e.g. "exclude_tag") does not silently widen the scope.
        """
        if params is None:
            return cls()
        if not isinstance(params, Mapping):
            raise ValueError(f"scope: must be an object with fields {list(SCOPE_FIELDS)}, got {type(params).__name__}")
        unknown = sorted(str(key) for key in params if key not in SCOPE_FIELDS)
        if unknown:
            raise ValueError(f"scope.{unknown[0]}: unknown field (expected one of {list(SCOPE_FIELDS)})")
        return cls(
            include_tags=_parse_tag_filter("scope.include_tags", params.get("include_tags")),
            exclude_ids=frozenset(_parse_ids("scope.exclude_ids", params.get("exclude_ids"))),
            exclude_tags=_parse_tag_filter("scope.exclude_tags", params.get("exclude_tags")),
        )

    def as_params(self) -> dict[str, Any]:
        """The scope in the param's form (from_params reads it back)."""
        return {
            "include_tags": {key: list(values) for key, values in self.include_tags.items()},
            "exclude_ids": sorted(self.exclude_ids),
            "exclude_tags": {key: list(values) for key, values in self.exclude_tags.items()},
        }

    def reason_out_of_scope(self, resource_id: str, tags: Mapping[str, str]) -> str:
        """ "" when the resource is in scope, else why it is not."""
        if resource_id in self.exclude_ids:
            return "excluded by id"
        for key, values in self.exclude_tags.items():
            if key in tags and tags[key] in values:
                return f"excluded by tag {key}={tags[key]}"
        for key, values in self.include_tags.items():
            if key not in tags:
                return f"tag {key} is missing, not one of {values!r}"
            if tags[key] not in values:
                return f"tag {key} is {tags[key]!r}, not one of {values!r}"
        return ""


def _parse_ids(name: str, value: Any) -> list[str]:
    """A list of non-empty strings (None: empty)."""
    if value is None:
        return []
    if not isinstance(value, list | tuple | set | frozenset) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name}: must be a list of non-empty strings")
    return list(value)


def _parse_tag_filter(name: str, value: Any) -> dict[str, list[str]]:
    """A mapping of tag key -> non-empty list of strings (None: empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: must be an object mapping tag keys to lists of values")
    parsed: dict[str, list[str]] = {}
    for key, values in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{name}: tag keys must be non-empty strings, got {key!r}")
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{name}.{key}: must be a list of strings")
        if not values:
            raise ValueError(f"{name}.{key}: must list at least one value")
        parsed[key] = list(values)
    return parsed


def apply_scope(inventory: pd.DataFrame, scope: Scope) -> pd.DataFrame:
    """A copy of the inventory with `in_scope` (bool) and `scope_reason` (str, "" when in scope) added.

    Reads `resource_id` and `tags` (a JSON object string, as inventory.INVENTORY_COLUMNS documents).
    """
    reasons = [
        scope.reason_out_of_scope(str(resource_id), _tags_of(tags))
        for resource_id, tags in zip(inventory["resource_id"], inventory["tags"], strict=True)
    ]
    scoped = inventory.copy()
    scoped["scope_reason"] = pd.Series(reasons, index=inventory.index, dtype="str")
    scoped["in_scope"] = pd.Series([reason == "" for reason in reasons], index=inventory.index, dtype="bool")
    return scoped


def _tags_of(tags_json: Any) -> dict[str, str]:
    """The tags of one inventory row, from its JSON string ("" or missing: no tags)."""
    if not isinstance(tags_json, str) or not tags_json:
        return {}
    decoded = json.loads(tags_json)
    if not isinstance(decoded, dict):
        raise ValueError(f"inventory tags must be a JSON object, got {tags_json!r}")
    return {str(key): str(value) for key, value in decoded.items()}
