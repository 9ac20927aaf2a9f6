"""Scope parsing (errors name the field) and applying it to an inventory."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from patchcycle.core.scope import Scope, apply_scope


def test_from_params_parses_every_field() -> None:
    scope = Scope.from_params(
        {
            "include_tags": {"Environment": ["production", "staging"]},
            "exclude_ids": ["i-1", "i-2"],
            "exclude_tags": {"App": ["legacy"]},
        }
    )
    assert scope.include_tags == {"Environment": ["production", "staging"]}
    assert scope.exclude_ids == frozenset({"i-1", "i-2"})
    assert scope.exclude_tags == {"App": ["legacy"]}


@pytest.mark.parametrize("params", [None, {}, {"include_tags": None, "exclude_ids": None, "exclude_tags": None}])
def test_from_params_without_filters_is_everything(params: dict[str, Any] | None) -> None:
    assert Scope.from_params(params) == Scope()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"include_tags": {"Environment": "production"}}, "scope.include_tags.Environment: must be a list of strings"),
        (
            {"include_tags": {"Environment": ["production", 3]}},
            "scope.include_tags.Environment: must be a list of strings",
        ),
        ({"include_tags": {"Environment": []}}, "scope.include_tags.Environment: must list at least one value"),
        ({"include_tags": ["Environment"]}, "scope.include_tags: must be an object"),
        ({"exclude_tags": {"App": "legacy"}}, "scope.exclude_tags.App: must be a list of strings"),
        ({"exclude_tags": {"": ["x"]}}, "scope.exclude_tags: tag keys must be non-empty strings"),
        ({"exclude_ids": "i-1"}, "scope.exclude_ids: must be a list of non-empty strings"),
        ({"exclude_ids": ["i-1", ""]}, "scope.exclude_ids: must be a list of non-empty strings"),
        ({"exclude_tag": {"App": ["legacy"]}}, "scope.exclude_tag: unknown field"),
        (["include_tags"], "scope: must be an object"),
    ],
)
def test_from_params_errors_name_the_field(params: Any, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.")):
        Scope.from_params(params)


def _inventory(rows: list[tuple[str, dict[str, str]]]) -> pd.DataFrame:
    return pd.DataFrame({"resource_id": [rid for rid, _ in rows], "tags": [json.dumps(tags) for _, tags in rows]})


def test_apply_scope_excludes_by_id_and_tag_and_explains_include_misses() -> None:
    inventory = _inventory(
        [
            ("i-prod", {"Environment": "production", "App": "web"}),
            ("i-excluded", {"Environment": "production", "App": "web"}),
            ("i-legacy", {"Environment": "production", "App": "legacy"}),
            ("i-staging", {"Environment": "staging"}),
            ("i-untagged", {}),
        ]
    )
    scope = Scope(
        include_tags={"Environment": ["production"]},
        exclude_ids=frozenset({"i-excluded"}),
        exclude_tags={"App": ["legacy"]},
    )
    scoped = apply_scope(inventory, scope).set_index("resource_id")
    assert scoped["in_scope"].dtype == bool
    assert scoped["in_scope"].to_dict() == {
        "i-prod": True,
        "i-excluded": False,
        "i-legacy": False,
        "i-staging": False,
        "i-untagged": False,
    }
    assert scoped["scope_reason"].to_dict() == {
        "i-prod": "",
        "i-excluded": "excluded by id",
        "i-legacy": "excluded by tag App=legacy",
        "i-staging": "tag Environment is 'staging', not one of ['production']",
        "i-untagged": "tag Environment is missing, not one of ['production']",
    }
    assert "in_scope" not in inventory.columns  # the input is not modified


def test_include_tags_need_every_key_but_any_value() -> None:
    inventory = _inventory(
        [
            ("i-a", {"Environment": "staging", "PatchGroup": "web"}),
            ("i-b", {"Environment": "production", "PatchGroup": "db"}),
        ]
    )
    scope = Scope(include_tags={"Environment": ["production", "staging"], "PatchGroup": ["web"]})
    scoped = apply_scope(inventory, scope).set_index("resource_id")
    assert scoped["in_scope"].to_dict() == {"i-a": True, "i-b": False}
    assert scoped.loc["i-b", "scope_reason"] == "tag PatchGroup is 'db', not one of ['web']"


def test_empty_scope_keeps_everything() -> None:
    scoped = apply_scope(_inventory([("i-a", {}), ("b", {"x": "y"})]), Scope())
    assert scoped["in_scope"].all()
    assert (scoped["scope_reason"] == "").all()
