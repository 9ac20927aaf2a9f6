"""The EC2 protocol for the sandbox's own EC2 handlers: EC2's form-encoded requests in, its XML out.

EC2 speaks a variant of the query protocol (see query_protocol for the plain one), driven here by
botocore's model the way botocore's EC2Serializer writes requests and its EC2QueryParser reads
responses:

* a request member is keyed by its ``queryName``, else its ``locationName`` capitalised, else its
  member name; list items are ``Name.N`` (1-based, never wrapped in ``member``);
* a response is ``<{Operation}Response xmlns=...>`` holding ``requestId`` and the output members
  under their ``locationName`` (no result wrapper); a list is one element with an ``item`` per
  entry; timestamps are ISO 8601 with milliseconds, booleans ``true`` / ``false``.

Requests are checked against the input shape as EC2 does: a parameter the operation does not have
is UnknownParameter, a missing required one MissingParameter, a wrong type or a broken constraint
(enum, range) InvalidParameterValue. Errors use the EC2 envelope (server._error).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET

from include.sandbox.protocol import AwsApiError, operation_model, validate_query_request

__all__ = ["decode_request", "serialize_response", "speaks_ec2"]

# Form keys that are not operation parameters: the action itself, and SigV4 query signing.
_RESERVED = frozenset({"Action", "Version"})
_INDEX = re.compile(r"[1-9][0-9]*")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class _Absent:
    """A member the form does not mention."""


_ABSENT = _Absent()


def speaks_ec2(service: str, operation: str) -> bool:
    """Whether botocore talks to ``service`` in the EC2 protocol."""
    return bool(operation_model(service, operation).service_model.resolved_protocol == "ec2")


def request_key(member: Any, name: str) -> str:
    """The form key a structure member goes by in an EC2 request (botocore's EC2Serializer)."""
    if "queryName" in member.serialization:
        return str(member.serialization["queryName"])
    location = member.serialization.get("name")
    if location:
        return str(location[0].upper() + location[1:])
    return name


def decode_request(service: str, operation: str, form: bytes | str) -> dict[str, Any]:
    """Decode an EC2 request into validated boto3-style parameters, or raise the error EC2 would."""
    text = form.decode("utf-8", "replace") if isinstance(form, bytes) else form
    values: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        values.setdefault(key, value)  # the first of repeated keys
    op = operation_model(service, operation)
    decoder = _Decoder(values)
    params: dict[str, Any] = {}
    if op.input_shape is not None:
        decoded = decoder.structure(op.input_shape, "")
        params = decoded if isinstance(decoded, dict) else {}
    unknown = [key for key in values if key not in decoder.used and not _reserved(key)]
    if unknown:
        raise AwsApiError("UnknownParameter", f"The parameter {unknown[0]} is not recognized")
    try:
        validate_query_request(service, operation, params)
    except AwsApiError as exc:
        if exc.code == "ValidationError":  # EC2 has no ValidationError: a broken constraint is a bad value
            raise AwsApiError("InvalidParameterValue", exc.message) from exc
        raise
    return params


def serialize_response(service: str, operation: str, result: dict[str, Any], request_id: str) -> bytes:
    """Write a handler's result as the XML EC2 sends for ``operation``."""
    op = operation_model(service, operation)
    namespace = op.service_model.metadata.get("xmlNamespace", "")
    root = ET.Element(f"{operation}Response", {"xmlns": f"{namespace.rstrip('/')}/"} if namespace else {})
    ET.SubElement(root, "requestId").text = request_id
    if op.output_shape is not None:
        _write_members(root, op.output_shape, result)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _reserved(key: str) -> bool:
    return key in _RESERVED or key.startswith("X-Amz-")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class _Decoder:
    """Walks an input shape over the form's keys, as botocore's EC2Serializer wrote them."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.used: set[str] = set()

    def decode(self, shape: Any, key: str) -> Any:
        kind = shape.type_name
        if kind == "structure":
            return self.structure(shape, key)
        if kind == "list":
            return self.sequence(shape, key)
        if kind == "map":
            raise AwsApiError("InvalidParameterValue", f"Parameter {key}: maps are not supported by the sandbox")
        if key not in self.values:
            return _ABSENT
        self.used.add(key)
        return _scalar(shape, key, self.values[key])

    def structure(self, shape: Any, prefix: str) -> Any:
        if prefix and not self._has_children(prefix):
            return _ABSENT
        decoded: dict[str, Any] = {}
        for name, member in shape.members.items():
            value = self.decode(member, _join(prefix, request_key(member, name)))
            if value is not _ABSENT:
                decoded[name] = value
        return decoded

    def sequence(self, shape: Any, prefix: str) -> Any:
        return [self.decode(shape.member, f"{prefix}.{i}") for i in self._indices(prefix)] or _ABSENT

    def _has_children(self, prefix: str) -> bool:
        start = prefix + "."
        return any(key.startswith(start) for key in self.values)

    def _indices(self, prefix: str) -> list[int]:
        start = prefix + "."
        found: set[int] = set()
        for key in self.values:
            if key.startswith(start):
                index = key[len(start) :].split(".", 1)[0]
                if not _INDEX.fullmatch(index):
                    raise AwsApiError("InvalidParameterValue", f"Parameter {key} has {index!r} where an index belongs")
                found.add(int(index))
        return sorted(found)


def _scalar(shape: Any, key: str, text: str) -> Any:
    kind = shape.type_name
    if kind in ("string", "blob"):
        return text
    if kind in ("integer", "long") and _INTEGER.fullmatch(text.strip()):
        return int(text)
    if kind in ("float", "double"):
        try:
            return float(text)
        except ValueError:
            pass
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kind == "timestamp":
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
    raise AwsApiError("InvalidParameterValue", f"Value ({text}) for parameter {key} is invalid. Expected: '{kind}'.")


def _write_members(parent: ET.Element, shape: Any, value: dict[str, Any]) -> None:
    for name, member in shape.members.items():
        item = value.get(name)
        if item is not None:
            _write(parent, str(member.serialization.get("name", name)), member, item)


def _write(parent: ET.Element, tag: str, shape: Any, value: Any) -> None:
    kind = shape.type_name
    if kind == "structure":
        _write_members(ET.SubElement(parent, tag), shape, value)
    elif kind == "list":
        element = ET.SubElement(parent, tag)
        item_tag = str(shape.member.serialization.get("name", "item"))
        for item in value:
            _write(element, item_tag, shape.member, item)
    elif kind == "map":
        element = ET.SubElement(parent, tag)
        for key, item in value.items():
            entry = ET.SubElement(element, "item")
            _write(entry, str(shape.key.serialization.get("name", "key")), shape.key, key)
            _write(entry, str(shape.value.serialization.get("name", "value")), shape.value, item)
    else:
        ET.SubElement(parent, tag).text = _text(kind, value)


def _text(kind: str, value: Any) -> str:
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        return timestamp_text(value)
    return str(value)


def timestamp_text(value: dt.datetime) -> str:
    """A timestamp as EC2 writes it: UTC, milliseconds, ``Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}Z"
