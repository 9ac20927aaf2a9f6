"""include/baselines/baseline.schema.json: a documented 2020-12 schema that agrees with the code and with SSM.

The schema holds the shape and limits, validation and the model the rest; these tests fail when the two
drift apart, or when the schema's limits or enums drift from SSM's API model (botocore's).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from jsonschema import Draft202012Validator

from patchcycle.baseline_files import BASELINE_SCHEMA
from patchcycle.core.baselines.model import ApprovalRule, BaselineSpec
from patchcycle.core.baselines.vocabulary import MANAGED_TAG_KEY, OS_VOCABULARY

SCHEMA: dict[str, Any] = json.loads(BASELINE_SCHEMA.read_text())
SSM = botocore.session.get_session().get_service_model("ssm")


def node(pointer: str) -> dict[str, Any]:
    """The schema node at a JSON pointer ("/properties/name")."""
    found: Any = SCHEMA
    for part in pointer.strip("/").split("/"):
        found = found[int(part)] if isinstance(found, list) else found[part]
    assert isinstance(found, dict)
    return found


def nodes(schema: Any, pointer: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its pointer."""
    if isinstance(schema, dict):
        yield pointer, schema
        for key, value in schema.items():
            yield from nodes(value, f"{pointer}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from nodes(value, f"{pointer}/{index}")


def test_the_schema_is_a_valid_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_every_field_has_a_title_and_a_description() -> None:
    """The schema documents the format: every field of a file, and every definition, says what it is."""
    fields = [(f"/properties/{name}", value) for name, value in SCHEMA["properties"].items()]
    fields += [(f"/$defs/{name}", value) for name, value in SCHEMA["$defs"].items()]
    fields += [
        (f"/$defs/approval_rule/properties/{n}", v) for n, v in SCHEMA["$defs"]["approval_rule"]["properties"].items()
    ]
    # A bare $ref is documented where it points.
    undocumented = [p for p, f in fields if set(f) != {"$ref"} and not (f.get("title") and f.get("description"))]
    assert undocumented == []


def test_patterns_and_negations_carry_a_sentence() -> None:
    """A regex or a `not` is no message for a person: such nodes say what they accept in errorMessage."""
    bare = [p for p, n in nodes(SCHEMA) if ("pattern" in n or "not" in n) and "errorMessage" not in n]
    # The pattern and const inside the reserved-key `not` are its operands, not nodes of the document.
    assert [p for p in bare if "/not/" not in p] == []


def test_the_operating_systems_are_the_vocabularys() -> None:
    assert set(node("/properties/operating_system")["enum"]) == set(OS_VOCABULARY)


def test_the_reserved_tag_is_the_managed_tag() -> None:
    reserved = node("/properties/tags/propertyNames/allOf/1/not")["anyOf"]
    assert {"const": MANAGED_TAG_KEY} in reserved


@pytest.mark.parametrize(
    ("pointer", "model", "field"),
    [
        ("/properties/patch_groups", BaselineSpec, "patch_groups"),
        ("/properties/approval_rules", BaselineSpec, "approval_rules"),
        ("/properties/approved_patches", BaselineSpec, "approved_patches"),
        ("/properties/approved_patches_compliance_level", BaselineSpec, "approved_patches_compliance_level"),
        ("/properties/approved_patches_enable_non_security", BaselineSpec, "approved_patches_enable_non_security"),
        ("/properties/rejected_patches", BaselineSpec, "rejected_patches"),
        ("/properties/rejected_patches_action", BaselineSpec, "rejected_patches_action"),
        ("/properties/tags", BaselineSpec, "tags"),
        ("/$defs/approval_rule/properties/compliance_level", ApprovalRule, "compliance_level"),
        ("/$defs/approval_rule/properties/enable_non_security", ApprovalRule, "enable_non_security"),
    ],
)
def test_the_documented_defaults_are_the_models(pointer: str, model: type, field: str) -> None:
    declared = next(f for f in dataclasses.fields(model) if f.name == field)
    default = declared.default_factory() if declared.default_factory is not dataclasses.MISSING else declared.default
    assert node(pointer)["default"] == (list(default) if isinstance(default, tuple) else default)


# (schema pointer, schema keyword, botocore shape, its metadata key): SSM's limits and enums.
SSM_LIMITS = [
    ("/properties/name", "pattern", "BaselineName", "pattern"),
    ("/properties/operating_system", "enum", "OperatingSystem", "enum"),
    ("/properties/description", "minLength", "BaselineDescription", "min"),
    ("/properties/description", "maxLength", "BaselineDescription", "max"),
    ("/properties/patch_groups/items", "minLength", "PatchGroup", "min"),
    ("/properties/patch_groups/items", "maxLength", "PatchGroup", "max"),
    ("/properties/approval_rules", "maxItems", "PatchRuleList", "max"),
    ("/$defs/approval_rule/properties/approve_after_days", "minimum", "ApproveAfterDays", "min"),
    ("/$defs/approval_rule/properties/approve_after_days", "maximum", "ApproveAfterDays", "max"),
    ("/$defs/compliance_level", "enum", "PatchComplianceLevel", "enum"),
    ("/properties/rejected_patches_action", "enum", "PatchAction", "enum"),
    ("/$defs/filter_values", "minItems", "PatchFilterValueList", "min"),
    ("/$defs/filter_values", "maxItems", "PatchFilterValueList", "max"),
    ("/$defs/filter_values/items", "minLength", "PatchFilterValue", "min"),
    ("/$defs/filter_values/items", "maxLength", "PatchFilterValue", "max"),
    ("/$defs/patch_ids", "maxItems", "PatchIdList", "max"),
    ("/$defs/patch_ids/items", "minLength", "PatchId", "min"),
    ("/$defs/patch_ids/items", "maxLength", "PatchId", "max"),
    ("/properties/tags/propertyNames/allOf/0", "minLength", "TagKey", "min"),
    ("/properties/tags/propertyNames/allOf/0", "maxLength", "TagKey", "max"),
    ("/properties/tags/additionalProperties", "maxLength", "TagValue", "max"),
]


@pytest.mark.parametrize(("pointer", "keyword", "shape", "key"), SSM_LIMITS, ids=[f"{c[0]}:{c[1]}" for c in SSM_LIMITS])
def test_the_limits_and_enums_are_ssms(pointer: str, keyword: str, shape: str, key: str) -> None:
    ours = node(pointer)[keyword]
    theirs = SSM.shape_for(shape).metadata[key]
    assert (sorted(ours) if key == "enum" else ours) == (sorted(theirs) if key == "enum" else theirs)


def test_the_tags_leave_room_for_the_managed_tag() -> None:
    assert node("/properties/tags")["maxProperties"] == SSM.shape_for("TagList").metadata["max"] - 1
