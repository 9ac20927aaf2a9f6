"""A baseline file's YAML document to a BaselineSpec: the JSON Schema first, then the checks it leaves.

include/baselines/baseline.schema.json holds the document's shape: its fields, types, limits and enums.
The checks here are those a JSON Schema cannot express cleanly: what depends on the operating system (the
classifications and severities it filters on, whether its rules take an approval delay, the Linux-only
fields), a patch both approved and rejected, and, across files, unique names and patch-group claims.

The first problem of a file fails it, as a BaselineConfigError naming the file and the field path
(`web.yaml: approval_rules[1].approve_after_days: must be an integer 0..360, got 400`). No I/O here:
patchcycle.baseline_files reads the files and the schema, and passes the validator `baseline_validator`
builds from the decoded schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from functools import partial
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from jsonschema.validators import create

from patchcycle.core.baselines.model import ApprovalRule, BaselineConfigError, BaselineSpec, PatchFilters
from patchcycle.core.baselines.schema_errors import describe
from patchcycle.core.baselines.vocabulary import OS_VOCABULARY, WILDCARD

_DELAY_KEYS = ("approve_after_days", "approve_until_date")
_FILTER_KEYS = ("products", "classification", "severity")

# Builds the error for a field path of the file being parsed.
Fail = Callable[[str, str], BaselineConfigError]


def _is_integer(_checker: object, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


# Draft 2020-12's validator (create's other defaults are 2020-12's) with one change: JSON Schema's "integer"
# takes 7.0, which YAML reads as a float and SSM's ApproveAfterDays refuses.
_BaselineValidator = create(
    meta_schema=Draft202012Validator.META_SCHEMA,
    validators=Draft202012Validator.VALIDATORS,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
    format_checker=Draft202012Validator.FORMAT_CHECKER,
)


def baseline_validator(schema: Mapping[str, Any]) -> Validator:
    """A validator of baseline documents over the decoded schema (SchemaError if it is no 2020-12 schema)."""
    _BaselineValidator.check_schema(schema)
    # Formats are annotations unless checked: approve_until_date's "date" must be checked.
    return _BaselineValidator(schema, format_checker=_BaselineValidator.FORMAT_CHECKER)


def parse_baselines(documents: Mapping[str, Any], validator: Validator) -> list[BaselineSpec]:
    """Validate each {source: YAML document}, then the set: names and (patch group, OS) claims are unique."""
    specs = [parse_baseline(document, source, validator) for source, document in documents.items()]
    names: dict[str, BaselineSpec] = {}
    claims: dict[tuple[str, str], BaselineSpec] = {}
    for spec in specs:
        if spec.name in names:
            first = names[spec.name].source
            raise BaselineConfigError(spec.source, "name", f"{spec.name!r} is also the name of the baseline in {first}")
        names[spec.name] = spec
        for index, group in enumerate(spec.patch_groups):
            # SSM registers one baseline per operating system in a patch group.
            key = (group, spec.operating_system)
            if key in claims:
                other = claims[key]
                raise BaselineConfigError(
                    spec.source,
                    f"patch_groups[{index}]",
                    f"patch group {group!r} is already claimed for {spec.operating_system} by "
                    f"{other.name!r} ({other.source})",
                )
            claims[key] = spec
    return specs


def parse_baseline(document: Any, source: str, validator: Validator) -> BaselineSpec:
    """One baseline file's document, validated (BaselineConfigError names the field)."""
    document = _as_json(document)
    error = next(validator.iter_errors(document), None)
    if error is not None:
        raise BaselineConfigError(source, *describe(error))
    fail: Fail = partial(BaselineConfigError, source)
    os = document["operating_system"]
    rules = tuple(
        _rule(raw, os, f"approval_rules[{index}]", fail) for index, raw in enumerate(_list(document, "approval_rules"))
    )
    approved, rejected = _list(document, "approved_patches"), _list(document, "rejected_patches")
    both = sorted(set(approved) & set(rejected))
    if both:
        raise fail("rejected_patches", f"{both} are also in approved_patches")
    _check_linux_only(document, "approved_patches_enable_non_security", os, "", fail)
    return BaselineSpec(
        source=source,
        name=document["name"],
        operating_system=os,
        description=document["description"],
        patch_groups=_list(document, "patch_groups"),
        approval_rules=rules,
        approved_patches=approved,
        rejected_patches=rejected,
        global_filters=_filters(document.get("global_filters", {}), os, "global_filters", fail),
        tags=dict(document.get("tags", {})),
        **_given(
            document,
            "approved_patches_compliance_level",
            "approved_patches_enable_non_security",
            "rejected_patches_action",
        ),
    )


def _as_json(document: Any) -> Any:
    """The document as the schema (JSON) reads it, and as the files have always meant it.

    YAML reads an unquoted 2026-12-31 as a date: it is that text. An approval delay written with no value
    (`approve_after_days:`) is absent. The caller's document is not changed.
    """
    rules = document.get("approval_rules") if isinstance(document, dict) else None
    if not isinstance(rules, list):
        return document
    return {**document, "approval_rules": [_rule_as_json(rule) for rule in rules]}


def _rule_as_json(rule: Any) -> Any:
    if not isinstance(rule, dict):
        return rule
    rule = {key: value for key, value in rule.items() if not (key in _DELAY_KEYS and value is None)}
    until = rule.get("approve_until_date")
    return {**rule, "approve_until_date": until.isoformat()} if isinstance(until, date) else rule


def _list(document: Mapping[str, Any], key: str) -> tuple[Any, ...]:
    return tuple(document.get(key, ()))


def _given(document: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The keys the document sets; the others keep the model's defaults (the schema documents the same)."""
    return {key: document[key] for key in keys if key in document}


def _rule(raw: Mapping[str, Any], os: str, where: str, fail: Fail) -> ApprovalRule:
    _check_approval_delay(raw, os, where, fail)
    _check_linux_only(raw, "enable_non_security", os, where, fail)
    return ApprovalRule(
        filters=_filters(raw, os, where, fail),
        **_given(raw, "compliance_level", *_DELAY_KEYS, "enable_non_security"),
    )


def _check_approval_delay(rule: Mapping[str, Any], os: str, where: str, fail: Fail) -> None:
    """A rule needs one approval delay, except on the OSes whose patches Patch Manager approves at once.

    (Both at once is the schema's to refuse.)
    """
    given = [key for key in _DELAY_KEYS if key in rule]
    if not OS_VOCABULARY[os].approval_delay and given:
        raise fail(f"{where}.{given[0]}", f"is not supported for {os}: Patch Manager approves its patches at once")
    if OS_VOCABULARY[os].approval_delay and not given:
        raise fail(where, "needs approve_after_days or approve_until_date")


def _check_linux_only(raw: Mapping[str, Any], key: str, os: str, where: str, fail: Fail) -> None:
    if raw.get(key, False) and not OS_VOCABULARY[os].linux:
        raise fail(f"{where}.{key}" if where else key, f"applies to Linux only, not {os}")


def _filters(raw: Mapping[str, Any], os: str, where: str, fail: Fail) -> PatchFilters:
    """The filters of a rule or of global_filters, each key one the OS has, each value one of its values."""
    vocabulary = OS_VOCABULARY[os]
    known = {
        "products": (True, frozenset[str]()),
        "classification": (vocabulary.classification_key is not None, vocabulary.classifications),
        "severity": (vocabulary.severity_key is not None, vocabulary.severities),
    }
    values: dict[str, tuple[str, ...]] = {}
    for key in _FILTER_KEYS:
        if key not in raw:
            continue
        supported, allowed = known[key]
        if not supported:
            raise fail(f"{where}.{key}", f"{os} baselines have no {key} filter")
        values[key] = _filter_values(raw[key], allowed, f"{where}.{key}", fail)
    return PatchFilters(**values)


def _filter_values(raw: list[str], allowed: frozenset[str], where: str, fail: Fail) -> tuple[str, ...]:
    """The values, each one of the OS's (an empty `allowed`: any value, as for products)."""
    for index, value in enumerate(raw):
        if allowed and value != WILDCARD and value not in allowed:
            raise fail(f"{where}[{index}]", f"must be one of {sorted(allowed)} or '*', got {value!r}")
    return tuple(raw)
