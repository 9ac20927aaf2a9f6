"""core.baselines.validation: a document's first problem fails it, naming the file and the field path.

The shape comes from the schema file (messages built by schema_errors); what depends on the operating
system, and what spans fields or files, from validation's own checks. Both are exercised here.
"""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from patchcycle.baseline_files import baseline_validator
from patchcycle.core.baselines.model import BaselineConfigError
from patchcycle.core.baselines.validation import parse_baselines
from patchcycle.core.baselines.vocabulary import MANAGED_TAG_KEY
from tests.core.baselines.samples import APP, DELETE, WEB, WIN, spec, with_field

SOURCE = "/repo/include/baselines/tier.yaml"

INVALID = [
    # (base document, field to set, value, field path in the message, words of the message)
    (WEB, "colour", "blue", "colour", "unknown field (allowed: name, operating_system, description, patch_groups"),
    (WEB, "name", DELETE, "name", "is required"),
    (WEB, "operating_system", DELETE, "operating_system", "is required"),
    (WEB, "description", DELETE, "description", "is required"),
    (WEB, "name", "a b", "name", "must be 3..128 letters, digits, '_', '-' or '.', got 'a b'"),
    (WEB, "operating_system", "AMAZON_LINUX_2025", "operating_system", "must be one of ['WINDOWS', 'AMAZON_LINUX'"),
    (WEB, "description", "x" * 1025, "description", "must be text of 1..1024 characters, got 1025 characters"),
    (
        WEB,
        "approval_rules[1].approve_after_days",
        400,
        "approval_rules[1].approve_after_days",
        "integer 0..360, got 400",
    ),
    (WEB, "approval_rules[1].approve_after_days", -1, "approval_rules[1].approve_after_days", "integer 0..360"),
    (WEB, "approval_rules[1].approve_after_days", True, "approval_rules[1].approve_after_days", "integer 0..360"),
    (WEB, "approval_rules[1].approve_after_days", "7", "approval_rules[1].approve_after_days", "integer 0..360"),
    # YAML reads 7.0 as a float; JSON Schema's integer would take it, SSM's ApproveAfterDays would not.
    (WEB, "approval_rules[1].approve_after_days", 7.0, "approval_rules[1].approve_after_days", "got 7.0"),
    (WEB, "approval_rules[0].approve_until_date", "2026-12-31", "approval_rules[0]", "not both"),
    (WEB, "approval_rules[0].approve_after_days", DELETE, "approval_rules[0]", "approve_after_days or"),
    (WIN, "approval_rules[0].approve_until_date", "2026-13-01", "approval_rules[0].approve_until_date", "YYYY-MM-DD"),
    (WIN, "approval_rules[0].approve_until_date", "31/12/2026", "approval_rules[0].approve_until_date", "YYYY-MM-DD"),
    (
        APP,
        "approval_rules[0].approve_after_days",
        5,
        "approval_rules[0].approve_after_days",
        "not supported for UBUNTU",
    ),
    (APP, "approval_rules[0].approve_until_date", "2026-12-01", "approval_rules[0].approve_until_date", "UBUNTU"),
    (APP, "approval_rules[0].classification", ["Security"], "approval_rules[0].classification", "no classification"),
    (WEB, "approval_rules[0].classification", ["SecurityUpdates"], "approval_rules[0].classification[0]", "one of"),
    (WIN, "approval_rules[0].severity", ["Medium"], "approval_rules[0].severity[0]", "one of"),
    (APP, "approval_rules[0].severity", ["Critical"], "approval_rules[0].severity[0]", "one of"),
    (WEB, "approval_rules[0].severity", [], "approval_rules[0].severity", "must be a list of 1..20 items, got 0"),
    (WEB, "approval_rules[0].products", [f"p{n}" for n in range(21)], "approval_rules[0].products", "1..20"),
    (WEB, "approval_rules[0].products", ["x" * 65], "approval_rules[0].products[0]", "1..64"),
    (
        WEB,
        "approval_rules[0].severity",
        ["Critical", "Critical"],
        "approval_rules[0].severity",
        "lists 'Critical' twice",
    ),
    (WEB, "approval_rules[0].compliance_level", "SEVERE", "approval_rules[0].compliance_level", "must be one of"),
    (WEB, "approval_rules[0].enable_non_security", "yes", "approval_rules[0].enable_non_security", "true or false"),
    (WIN, "approval_rules[0].enable_non_security", True, "approval_rules[0].enable_non_security", "Linux only"),
    (WEB, "approval_rules[0].approve_days", 3, "approval_rules[0].approve_days", "unknown field"),
    (WEB, "approval_rules[0]", "Security", "approval_rules[0]", "must be a mapping of products, classification"),
    (WEB, "approval_rules", [WEB["approval_rules"][1]] * 11, "approval_rules", "at most 10"),
    (WEB, "approved_patches", [f"ALAS-{n}" for n in range(51)], "approved_patches", "at most 50"),
    (WEB, "approved_patches", ["ALAS-1", "ALAS-1"], "approved_patches", "twice"),
    (WEB, "approved_patches", [""], "approved_patches[0]", "1..100"),
    (WEB, "rejected_patches", ["ALAS2023-2026-1001"], "rejected_patches", "also in approved_patches"),
    (WEB, "approved_patches_compliance_level", "high", "approved_patches_compliance_level", "must be one of"),
    (WIN, "approved_patches_enable_non_security", True, "approved_patches_enable_non_security", "Linux only"),
    (WEB, "rejected_patches_action", "DENY", "rejected_patches_action", "['ALLOW_AS_DEPENDENCY', 'BLOCK'], got 'DENY'"),
    (WEB, "global_filters", {"product": ["*"]}, "global_filters.product", "unknown field"),
    (APP, "global_filters", {"classification": ["Security"]}, "global_filters.classification", "no classification"),
    (WEB, "patch_groups", ["web", "web"], "patch_groups", "twice"),
    (WEB, "patch_groups", ["web;prod"], "patch_groups[0]", "letters, digits"),
    (WEB, "patch_groups", "web", "patch_groups", "must be a list, got 'web'"),
    (WEB, "tags", {MANAGED_TAG_KEY: "false"}, f"tags.{MANAGED_TAG_KEY}", "reserved"),
    (WEB, "tags", {"aws:cloudformation:stack-name": "x"}, "tags.aws:cloudformation:stack-name", "reserved"),
    (WEB, "tags", {"AWS:x": "x"}, "tags.AWS:x", "reserved"),
    (WEB, "tags", {"Cost;Centre": "x"}, "tags.Cost;Centre", "tag key of 1..128 letters"),
    (WEB, "tags", {"CostCentre": 42}, "tags.CostCentre", "quote numbers"),
]


@pytest.mark.parametrize(
    ("document", "path", "value", "where", "words"),
    INVALID,
    # Ids must not depend on the process (xdist workers compare them): the sentinel has no stable repr.
    ids=[f"{case[1]}={'<deleted>' if case[2] is DELETE else repr(case[2])}"[:60] for case in INVALID],
)
def test_an_invalid_field_fails_naming_the_file_and_the_field(
    document: dict[str, Any], path: str, value: Any, where: str, words: str
) -> None:
    with pytest.raises(BaselineConfigError) as raised:
        spec(with_field(document, path, value), SOURCE)
    message = str(raised.value)
    assert message.startswith(f"{SOURCE}: {where}: "), message
    assert words in message, message
    assert (raised.value.source, raised.value.where) == (SOURCE, where)


def test_the_base_documents_of_the_invalid_cases_are_valid() -> None:
    """So each case above fails for the field it changes, not for something else."""
    for document in (WEB, APP, WIN):
        assert spec(document).name == document["name"]


def test_a_document_that_is_not_a_mapping_is_refused_naming_the_fields() -> None:
    with pytest.raises(BaselineConfigError) as raised:
        spec([WEB], SOURCE)  # type: ignore[arg-type]
    assert str(raised.value).startswith(f"{SOURCE}: must be a mapping of name, operating_system, description")
    assert str(raised.value).endswith("got a list") and raised.value.where == ""


def test_every_unknown_field_is_named() -> None:
    with pytest.raises(BaselineConfigError) as raised:
        spec({**WEB, "colour": "blue", "size": 3}, SOURCE)
    assert raised.value.where == "colour" and "also unknown: size" in str(raised.value)


def test_the_first_problem_in_the_files_order_of_fields_is_reported() -> None:
    document = with_field(with_field(WEB, "description", ""), "approval_rules[1].approve_after_days", 400)
    with pytest.raises(BaselineConfigError) as raised:
        spec(document, SOURCE)
    assert raised.value.where == "description"


def test_a_yaml_date_and_an_empty_approval_delay_read_as_before() -> None:
    """An unquoted 2026-12-31 is that date's text; `approve_after_days:` with no value is no delay."""
    rule = {"classification": ["SecurityUpdates"], "approve_until_date": date(2026, 12, 31), "approve_after_days": None}
    document = with_field(WIN, "approval_rules", [rule])
    (parsed,) = spec(document).approval_rules
    assert (parsed.approve_until_date, parsed.approve_after_days) == ("2026-12-31", None)
    assert document["approval_rules"][0] == rule  # the caller's document is left as it was


def test_an_os_without_approval_delays_refuses_both_as_the_schema_does() -> None:
    both = {"severity": ["Required"], "approve_after_days": 1, "approve_until_date": "2026-12-31"}
    with pytest.raises(BaselineConfigError) as raised:
        spec(with_field(APP, "approval_rules", [both]), SOURCE)
    assert str(raised.value) == f"{SOURCE}: approval_rules[0]: takes approve_after_days or approve_until_date, not both"


def test_filter_wildcards_and_macos_classifications_are_any_value() -> None:
    mac = {"name": "mac", "operating_system": "MACOS", "description": "Mac", "global_filters": {"products": ["*"]}}
    rule = {"classification": ["AnyThing", "*"], "approve_after_days": 1}
    parsed = spec({**mac, "approval_rules": [rule]})
    assert parsed.approval_rules[0].filters.classification == ("AnyThing", "*")
    wildcard = spec(with_field(WEB, "approval_rules[0].severity", ["*"]))
    assert wildcard.approval_rules[0].filters.severity == ("*",)


def test_defaults_fill_what_a_document_leaves_out() -> None:
    minimal = {"name": "min", "operating_system": "AMAZON_LINUX_2", "description": "Minimal"}
    parsed = spec(minimal)
    assert (parsed.approved_patches_compliance_level, parsed.rejected_patches_action) == (
        "UNSPECIFIED",
        "ALLOW_AS_DEPENDENCY",
    )
    assert (parsed.patch_groups, parsed.approval_rules, parsed.tags) == ((), (), {})


# -- across the files ------------------------------------------------------------------------------


def _documents(**documents: dict[str, Any]) -> dict[str, Any]:
    return {f"/repo/{name}.yaml": copy.deepcopy(document) for name, document in documents.items()}


def test_two_documents_with_one_name_are_refused_naming_both() -> None:
    with pytest.raises(BaselineConfigError) as raised:
        parse_baselines(_documents(a=WEB, b={**WEB, "patch_groups": ["other"]}), baseline_validator())
    assert str(raised.value) == f"/repo/b.yaml: name: {WEB['name']!r} is also the name of the baseline in /repo/a.yaml"


def test_a_patch_group_claimed_twice_for_one_os_is_refused() -> None:
    second = {**WEB, "name": "web-two", "patch_groups": ["blue", "web-canary"]}
    with pytest.raises(BaselineConfigError) as raised:
        parse_baselines(_documents(a=WEB, b=second), baseline_validator())
    assert str(raised.value) == (
        "/repo/b.yaml: patch_groups[1]: patch group 'web-canary' is already claimed for AMAZON_LINUX_2023 by "
        f"{WEB['name']!r} (/repo/a.yaml)"
    )


def test_one_patch_group_may_hold_a_baseline_per_operating_system() -> None:
    specs = parse_baselines(_documents(web=WEB, win=WIN), baseline_validator())
    assert {(s.name, "web" in s.patch_groups) for s in specs} == {("web-al2023", True), ("windows", True)}


def test_parse_baselines_keeps_the_order_of_the_documents() -> None:
    specs = parse_baselines(_documents(b=WIN, a=WEB), baseline_validator())
    assert [s.source for s in specs] == ["/repo/b.yaml", "/repo/a.yaml"]
