"""jsonschema's errors about a baseline document, as the field path and a sentence a person can act on.

`describe` gives ("approval_rules[1].approve_after_days", "must be an integer 0..360, got 400"): the path
from the error's absolute_path (plus the key at fault for required, unknown and badly named keys), and the
sentence from the failing node's `errorMessage` (a keyword of the schema file, as in ajv-errors) or, without
one, from the keyword that failed and the node's type, bounds or enum. jsonschema's own messages are reprs
of the instance and the schema, which name neither the field nor what to write instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jsonschema.exceptions import ValidationError

# Keywords judging a value: the sentence ends with the value found.
_VALUE_KEYWORDS = frozenset({"type", "enum", "const", "pattern", "format", "minimum", "maximum"})
_COUNT_KEYWORDS = frozenset({"minItems", "maxItems", "minProperties", "maxProperties"})
_LENGTH_KEYWORDS = frozenset({"minLength", "maxLength"})
_SHOWN_LENGTH = 60  # characters of a value repeated in a message


def field_path(parts: Iterable[str | int]) -> str:
    """`approval_rules[1].approve_after_days` for ["approval_rules", 1, "approve_after_days"]; "" for the top."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def describe(error: ValidationError) -> tuple[str, str]:
    """(field path, sentence) for one of jsonschema's errors about a baseline document."""
    path = list(error.absolute_path)
    keyword = str(error.validator)
    instance: Any = error.instance
    value: Any = error.validator_value  # the keyword's value in the schema
    if _about_a_key(error):  # propertyNames: the instance is the key itself, so the path ends with it
        return field_path([*path, str(instance)]), _sentence(error)
    if keyword == "required":
        # One error per missing key, in the schema's order: the first error is about the first one missing.
        missing = next(str(key) for key in value if key not in instance)
        return field_path([*path, missing]), "is required"
    if keyword == "additionalProperties" and value is False:
        return _unknown_fields(path, instance, _schema(error))
    if keyword == "uniqueItems":
        return field_path(path), f"lists {_shown(_first_repeat(instance))} twice"
    return field_path(path), _sentence(error) + _found(keyword, instance)


def _about_a_key(error: ValidationError) -> bool:
    return "propertyNames" in error.absolute_schema_path


def _schema(error: ValidationError) -> Mapping[str, Any]:
    return error.schema if isinstance(error.schema, Mapping) else {}


def _unknown_fields(path: list[str | int], instance: Mapping[Any, Any], schema: Mapping[str, Any]) -> tuple[str, str]:
    allowed = list(schema.get("properties", {}))
    unknown = [str(key) for key in instance if key not in allowed]
    others = f"; also unknown: {', '.join(unknown[1:])}" if len(unknown) > 1 else ""
    return field_path([*path, unknown[0]]), f"unknown field (allowed: {', '.join(allowed)}){others}"


def _first_repeat(values: Sequence[Any]) -> Any:
    # A list, not a set: the values of a failing list may be unhashable.
    seen: list[Any] = []
    for value in values:
        if value in seen:
            return value
        seen.append(value)
    return None


def _sentence(error: ValidationError) -> str:
    schema = _schema(error)
    message = schema.get("errorMessage")
    return str(message) if message else f"must be {_expected(schema)}"


def _expected(schema: Mapping[str, Any]) -> str:
    """What a node accepts, from its enum, or its type and bounds: "an integer 0..360", "a list of 1..20 items"."""
    if "enum" in schema:
        return f"one of {list(schema['enum'])}"
    kind = schema.get("type")
    if kind == "object":
        fields = ", ".join(schema.get("properties", {}))
        return "a mapping" + (
            f" of {fields}" if fields else _bounds(schema, "minProperties", "maxProperties", "entries")
        )
    if kind == "array":
        return "a list" + _bounds(schema, "minItems", "maxItems", "items")
    if kind == "string":
        return "text" + _bounds(schema, "minLength", "maxLength", "characters")
    if kind == "integer":
        return "an integer" + _range(schema)
    if kind == "boolean":
        return "true or false"
    return f"valid for {schema.get('title', 'this field')}"


def _bounds(schema: Mapping[str, Any], low_key: str, high_key: str, noun: str) -> str:
    low, high = schema.get(low_key), schema.get(high_key)
    if low is not None and high is not None:
        return f" of {low}..{high} {noun}"
    if high is not None:
        return f" of at most {high} {noun}"
    if low:
        return f" of at least {low} {noun}"
    return ""


def _range(schema: Mapping[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f" {low}..{high}"
    if high is not None:
        return f" of at most {high}"
    return f" of at least {low}" if low is not None else ""


def _found(keyword: str, instance: Any) -> str:
    """ ", got ..." naming what the file holds, for the keywords that judge a value or a size."""
    if keyword in _COUNT_KEYWORDS:
        return f", got {len(instance)}"
    if keyword in _LENGTH_KEYWORDS:
        return f", got {len(instance)} characters"
    return f", got {_shown(instance)}" if keyword in _VALUE_KEYWORDS else ""


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= _SHOWN_LENGTH else text[: _SHOWN_LENGTH - 3] + "..."
