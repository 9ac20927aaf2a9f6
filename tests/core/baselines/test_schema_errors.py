"""core.baselines.schema_errors: each kind of jsonschema error as a field path and a sentence."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from patchcycle.core.baselines.schema_errors import describe, field_path

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z]+$", "errorMessage": "must be lowercase letters"},
        "size": {"type": "integer", "minimum": 1, "maximum": 9},
        "kind": {"enum": ["a", "b"]},
        "items": {"type": "array", "maxItems": 2, "uniqueItems": True, "items": {"type": "string", "maxLength": 3}},
        "labels": {"type": "object", "propertyNames": {"not": {"const": "x"}, "errorMessage": "is reserved"}},
        "flag": {"type": "boolean"},
    },
}


def problem(instance: Any) -> tuple[str, str]:
    error = next(Draft202012Validator(SCHEMA).iter_errors(instance))
    return describe(error)


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        ({}, ("id", "is required")),
        ({"id": "a", "colour": 1}, ("colour", "unknown field (allowed: id, size, kind, items, labels, flag)")),
        ({"id": "A1"}, ("id", "must be lowercase letters, got 'A1'")),
        ({"id": "a", "size": 10}, ("size", "must be an integer 1..9, got 10")),
        ({"id": "a", "size": "big"}, ("size", "must be an integer 1..9, got 'big'")),
        ({"id": "a", "kind": "c"}, ("kind", "must be one of ['a', 'b'], got 'c'")),
        ({"id": "a", "items": ["x", "y", "z"]}, ("items", "must be a list of at most 2 items, got 3")),
        ({"id": "a", "items": ["x", "x"]}, ("items", "lists 'x' twice")),
        ({"id": "a", "items": ["long"]}, ("items[0]", "must be text of at most 3 characters, got 4 characters")),
        ({"id": "a", "labels": {"x": 1}}, ("labels.x", "is reserved")),
        ({"id": "a", "flag": "yes"}, ("flag", "must be true or false, got 'yes'")),
        ({"id": "a", "flag": {"nested": True}}, ("flag", "must be true or false, got a mapping")),
        ("text", ("", "must be a mapping of id, size, kind, items, labels, flag, got 'text'")),
    ],
)
def test_an_error_reads_as_its_field_and_a_sentence(instance: Any, expected: tuple[str, str]) -> None:
    assert problem(instance) == expected


def test_a_long_value_is_shortened_in_the_sentence() -> None:
    where, sentence = problem({"id": "A" * 200})
    assert where == "id" and sentence.endswith("...") and len(sentence) < 100


def test_field_paths_index_lists_and_dot_mappings() -> None:
    assert field_path(["approval_rules", 1, "approve_after_days"]) == "approval_rules[1].approve_after_days"
    assert field_path(["tags", "aws:x"]) == "tags.aws:x"
    assert field_path([]) == ""
