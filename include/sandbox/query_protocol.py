"""The AWS query protocol (RDS, CloudFormation, IAM, ...) for the sandbox's own handlers.

A query request is a form (``Action=...&Version=...&Filters.Filter.1.Name=...``)
whose keys follow the operation's input shape; the response is XML following
the output shape, wrapped in ``<{Operation}Response>`` and the shape's
``resultWrapper``. Both directions are driven by botocore's models, the way
botocore's QuerySerializer writes requests and its QueryParser reads responses,
so any query operation can be served by a handler written like the JSON ones:
``decode_request`` gives the handler boto3-style parameters (member names,
ints, bools, datetimes) and ``serialize_response`` writes what it returns.

EC2 speaks a variant of its own ("ec2": no ``member`` wrappers, other error
envelope) that is not covered here.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import math
import re
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from include.sandbox.protocol import (
    AwsApiError,
    operation_model,
    query_member_key,
    validate_query_request,
)

__all__ = ["decode_request", "escaped", "serialize_response", "speaks_query"]

# Form keys that are not operation parameters: the action itself, and SigV4 query signing.
_RESERVED = frozenset({"Action", "Version"})
_INDEX = re.compile(r"[1-9][0-9]*")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class _Absent:
    """A member the form does not mention (None would be ambiguous)."""


_ABSENT = _Absent()


def speaks_query(service: str, operation: str) -> bool:
    """Whether botocore talks to ``service`` in the (non-EC2) query protocol."""
    return bool(operation_model(service, operation).service_model.resolved_protocol == "query")


def decode_request(service: str, operation: str, form: bytes | str) -> dict[str, Any]:
    """Decode a form-encoded query request into validated boto3-style parameters.

    Raises the AwsApiError AWS would: MalformedQueryString for keys that cannot
    follow the input shape, InvalidParameterValue for a value of the wrong type,
    MissingParameter / ValidationError for a violated constraint (see
    ``validate_query_request``). A parameter the operation does not have is
    refused too (InvalidQueryParameter) so that a caller's typo is not silently
    ignored.
    """
    text = form.decode("utf-8", "replace") if isinstance(form, bytes) else form
    values: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        values.setdefault(key, value)  # AWS reads the first of repeated keys
    op = operation_model(service, operation)
    decoder = _Decoder(values)
    params: dict[str, Any] = {}
    if op.input_shape is not None:
        decoded = decoder.structure(op.input_shape, "")
        params = decoded if isinstance(decoded, dict) else {}
    unknown = [key for key in values if key not in decoder.used and not _reserved(key)]
    if unknown:
        raise AwsApiError("InvalidQueryParameter", f"The parameter {unknown[0]} is not recognized by {operation}.")
    validate_query_request(service, operation, params)
    return params


def serialize_response(service: str, operation: str, result: dict[str, Any], request_id: str) -> bytes:
    """Write a handler's result as the XML response AWS sends for ``operation``."""
    op = operation_model(service, operation)
    namespace = op.service_model.metadata.get("xmlNamespace")
    root = ET.Element(f"{operation}Response", {"xmlns": namespace} if namespace else {})
    shape = op.output_shape
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper")
        parent = ET.SubElement(root, wrapper) if wrapper else root
        _write_members(parent, shape, result)
    metadata = ET.SubElement(root, "ResponseMetadata")
    ET.SubElement(metadata, "RequestId").text = request_id
    return bytes(ET.tostring(root, encoding="utf-8"))


def escaped(error: AwsApiError) -> AwsApiError:
    """The error with its message escaped for the XML error envelope (messages echo request values)."""
    return AwsApiError(error.code, escape(error.message), error.status)


def _reserved(key: str) -> bool:
    return key in _RESERVED or key.startswith("X-Amz-")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class _Decoder:
    """Walks an input shape over the form's keys, as botocore's QuerySerializer wrote them."""

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
            return self.mapping(shape, key)
        if key not in self.values:
            return _ABSENT
        self.used.add(key)
        return _scalar(shape, key, self.values[key])

    def structure(self, shape: Any, prefix: str) -> Any:
        if prefix and not self._has_children(prefix):
            if prefix in self.values:
                self._malformed(prefix, "is a structure")
            return _ABSENT
        decoded: dict[str, Any] = {}
        for name, member in shape.members.items():
            value = self.decode(member, _join(prefix, query_member_key(member, name)))
            if value is not _ABSENT:
                decoded[name] = value
        return decoded

    def sequence(self, shape: Any, prefix: str) -> Any:
        if prefix in self.values:
            # botocore sends an empty list as the bare key with an empty value.
            self.used.add(prefix)
            if self.values[prefix] != "":
                self._malformed(prefix, "is a list")
            if not self._has_children(prefix):
                return []
        if shape.serialization.get("flattened"):
            items = prefix
        else:
            items = _join(prefix, shape.member.serialization.get("name", "member"))
        return [self.decode(shape.member, _join(items, str(i))) for i in self._indices(items)] or _ABSENT

    def mapping(self, shape: Any, prefix: str) -> Any:
        entries = prefix if shape.serialization.get("flattened") else _join(prefix, "entry")
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        decoded: dict[str, Any] = {}
        for i in self._indices(entries):
            entry = _join(entries, str(i))
            key = self.decode(shape.key, _join(entry, key_name))
            if key is _ABSENT:
                raise AwsApiError("MissingParameter", f"The request must contain the parameter {entry}.{key_name}")
            value = self.decode(shape.value, _join(entry, value_name))
            decoded[key] = None if value is _ABSENT else value
        return decoded or _ABSENT

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
                    self._malformed(key, f"has {index!r} where a 1-based index belongs")
                found.add(int(index))
        return sorted(found)

    def _malformed(self, key: str, problem: str) -> None:
        raise AwsApiError("MalformedQueryString", f"Parameter {key} {problem}.")


def _scalar(shape: Any, key: str, text: str) -> Any:
    kind = shape.type_name
    if kind in ("string", "blob"):
        return text  # blobs stay base64 text; the validator checks them
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
        parsed = _timestamp(text)
        if parsed is not None:
            return parsed
    raise AwsApiError("InvalidParameterValue", f"Value ({text}) for parameter {key} is invalid. Expected {kind}.")


def _timestamp(text: str) -> dt.datetime | None:
    """ISO 8601 (botocore's default for query), epoch seconds or RFC 822; naive means UTC."""
    value: dt.datetime | None = None
    try:
        value = dt.datetime.fromtimestamp(float(text), dt.UTC)
    except (ValueError, OverflowError):
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            try:
                value = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _write_members(parent: ET.Element, shape: Any, value: dict[str, Any]) -> None:
    for name, member in shape.members.items():
        item = value.get(name)
        if item is None:
            continue
        key = query_member_key(member, name)
        if member.serialization.get("xmlAttribute"):
            parent.set(key, _text(member, item))
        else:
            _write(parent, key, member, item)


def _write(parent: ET.Element, tag: str, shape: Any, value: Any) -> None:
    kind = shape.type_name
    if kind == "structure":
        _write_members(ET.SubElement(parent, tag), shape, value)
    elif kind == "list":
        if shape.serialization.get("flattened"):
            for item in value:
                _write(parent, tag, shape.member, item)
        else:
            element = ET.SubElement(parent, tag)
            item_tag = shape.member.serialization.get("name", "member")
            for item in value:
                _write(element, item_tag, shape.member, item)
    elif kind == "map":
        flattened = shape.serialization.get("flattened")
        container = parent if flattened else ET.SubElement(parent, tag)
        key_tag = shape.key.serialization.get("name", "key")
        value_tag = shape.value.serialization.get("name", "value")
        for key, item in value.items():
            entry = ET.SubElement(container, tag if flattened else "entry")
            _write(entry, key_tag, shape.key, key)
            _write(entry, value_tag, shape.value, item)
    else:
        ET.SubElement(parent, tag).text = _text(shape, value)


def _text(shape: Any, value: Any) -> str:
    kind = shape.type_name
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        return _timestamp_text(value, shape.serialization.get("timestampFormat", "iso8601"))
    if kind in ("float", "double"):
        number = float(value)
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return repr(number)
    if kind == "blob" and isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return str(value)


def _timestamp_text(value: dt.datetime, fmt: str) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    if fmt == "unixTimestamp":
        return repr(value.timestamp())
    if fmt == "rfc822":
        return email.utils.format_datetime(value, usegmt=True)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    return text + "Z"
