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
envelope): ec2_protocol subclasses ``FormDecoder`` and ``XmlWriter`` for what
differs, as botocore's EC2Serializer and EC2QueryParser subclass the query ones.
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

__all__ = ["ABSENT", "FormDecoder", "XmlWriter", "decode_request", "escaped", "serialize_response", "speaks_query"]

# Form keys that are not operation parameters: the action itself, and SigV4 query signing.
_RESERVED = frozenset({"Action", "Version"})
_INDEX = re.compile(r"[1-9][0-9]*")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class _Absent:
    """A member the form does not mention (None would be ambiguous)."""


ABSENT = _Absent()


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
    params = FormDecoder(form).params(operation_model(service, operation))
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
        XmlWriter().members(ET.SubElement(root, wrapper) if wrapper else root, shape, result)
    metadata = ET.SubElement(root, "ResponseMetadata")
    ET.SubElement(metadata, "RequestId").text = request_id
    return bytes(ET.tostring(root, encoding="utf-8"))


def escaped(error: AwsApiError) -> AwsApiError:
    """The error with its message escaped for the XML error envelope (messages echo request values)."""
    return AwsApiError(error.code, escape(error.message), error.status)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class FormDecoder:
    """Walks an input shape over the form's keys, as botocore's QuerySerializer wrote them.

    ec2_protocol overrides the keys (member_key), the lists (sequence), timestamps and the errors.
    """

    def __init__(self, form: bytes | str) -> None:
        text = form.decode("utf-8", "replace") if isinstance(form, bytes) else form
        self.values: dict[str, str] = {}
        for key, value in parse_qsl(text, keep_blank_values=True):
            self.values.setdefault(key, value)  # AWS reads the first of repeated keys
        self.used: set[str] = set()

    def params(self, op: Any) -> dict[str, Any]:
        """The operation's parameters; a form key the input shape has no place for is refused."""
        params: dict[str, Any] = self.structure(op.input_shape, "") if op.input_shape is not None else {}
        unknown = [key for key in self.values if key not in self.used and not _reserved(key)]
        if unknown:
            raise self.unknown(unknown[0], op.name)
        return params

    def unknown(self, key: str, operation: str) -> AwsApiError:
        return AwsApiError("InvalidQueryParameter", f"The parameter {key} is not recognized by {operation}.")

    def member_key(self, member: Any, name: str) -> str:
        return query_member_key(member, name)

    def decode(self, shape: Any, key: str) -> Any:
        kind = shape.type_name
        if kind == "structure":
            return self.structure(shape, key)
        if kind == "list":
            return self.sequence(shape, key)
        if kind == "map":
            return self.mapping(shape, key)
        if key not in self.values:
            return ABSENT
        self.used.add(key)
        return self.scalar(shape, key, self.values[key])

    def structure(self, shape: Any, prefix: str) -> Any:
        if prefix and not self.has_children(prefix):
            if prefix in self.values:
                self.valued_structure(prefix)
            return ABSENT
        decoded: dict[str, Any] = {}
        for name, member in shape.members.items():
            value = self.decode(member, _join(prefix, self.member_key(member, name)))
            if value is not ABSENT:
                decoded[name] = value
        return decoded

    def valued_structure(self, key: str) -> None:
        """A structure's own key given a value."""
        self.malformed(key, "is a structure")

    def sequence(self, shape: Any, prefix: str) -> Any:
        if prefix in self.values:
            # botocore sends an empty list as the bare key with an empty value.
            self.used.add(prefix)
            if self.values[prefix] != "":
                self.malformed(prefix, "is a list")
            if not self.has_children(prefix):
                return []
        if shape.serialization.get("flattened"):
            items = prefix
        else:
            items = _join(prefix, shape.member.serialization.get("name", "member"))
        return [self.decode(shape.member, _join(items, str(i))) for i in self.indices(items)] or ABSENT

    def mapping(self, shape: Any, prefix: str) -> Any:
        entries = prefix if shape.serialization.get("flattened") else _join(prefix, "entry")
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        decoded: dict[str, Any] = {}
        for i in self.indices(entries):
            entry = _join(entries, str(i))
            key = self.decode(shape.key, _join(entry, key_name))
            if key is ABSENT:
                raise AwsApiError("MissingParameter", f"The request must contain the parameter {entry}.{key_name}")
            value = self.decode(shape.value, _join(entry, value_name))
            decoded[key] = None if value is ABSENT else value
        return decoded or ABSENT

    def has_children(self, prefix: str) -> bool:
        start = prefix + "."
        return any(key.startswith(start) for key in self.values)

    def indices(self, prefix: str) -> list[int]:
        start = prefix + "."
        found: set[int] = set()
        for key in self.values:
            if key.startswith(start):
                index = key[len(start) :].split(".", 1)[0]
                if not _INDEX.fullmatch(index):
                    self.malformed(key, f"has {index!r} where a 1-based index belongs")
                found.add(int(index))
        return sorted(found)

    def malformed(self, key: str, problem: str) -> None:
        raise AwsApiError("MalformedQueryString", f"Parameter {key} {problem}.")

    def scalar(self, shape: Any, key: str, text: str) -> Any:
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
            parsed = self.timestamp(text)
            if parsed is not None:
                return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
        raise self.invalid(key, text, kind)

    def timestamp(self, text: str) -> dt.datetime | None:
        """ISO 8601 (botocore's default for query), epoch seconds or RFC 822; naive means UTC."""
        try:
            return dt.datetime.fromtimestamp(float(text), dt.UTC)
        except (ValueError, OverflowError):
            pass
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        try:
            return email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None

    def invalid(self, key: str, text: str, kind: str) -> AwsApiError:
        return AwsApiError("InvalidParameterValue", f"Value ({text}) for parameter {key} is invalid. Expected {kind}.")


def _reserved(key: str) -> bool:
    return key in _RESERVED or key.startswith("X-Amz-")


class XmlWriter:
    """Writes an output shape's members as XML elements, as botocore's QueryParser reads them."""

    list_item = "member"  # the element of a list item whose member shape names none

    def members(self, parent: ET.Element, shape: Any, value: dict[str, Any]) -> None:
        for name, member in shape.members.items():
            item = value.get(name)
            if item is None:
                continue
            key = query_member_key(member, name)
            if member.serialization.get("xmlAttribute"):
                parent.set(key, self.text(member, item))
            else:
                self.write(parent, key, member, item)

    def write(self, parent: ET.Element, tag: str, shape: Any, value: Any) -> None:
        kind = shape.type_name
        if kind == "structure":
            self.members(ET.SubElement(parent, tag), shape, value)
        elif kind == "list":
            if shape.serialization.get("flattened"):
                for item in value:
                    self.write(parent, tag, shape.member, item)
            else:
                element = ET.SubElement(parent, tag)
                item_tag = shape.member.serialization.get("name", self.list_item)
                for item in value:
                    self.write(element, item_tag, shape.member, item)
        elif kind == "map":
            flattened = shape.serialization.get("flattened")
            container = parent if flattened else ET.SubElement(parent, tag)
            key_tag = shape.key.serialization.get("name", "key")
            value_tag = shape.value.serialization.get("name", "value")
            for key, item in value.items():
                entry = ET.SubElement(container, tag if flattened else "entry")
                self.write(entry, key_tag, shape.key, key)
                self.write(entry, value_tag, shape.value, item)
        else:
            ET.SubElement(parent, tag).text = self.text(shape, value)

    def text(self, shape: Any, value: Any) -> str:
        kind = shape.type_name
        if kind == "boolean":
            return "true" if value else "false"
        if kind == "timestamp":
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return self.timestamp_text(value.astimezone(dt.UTC), shape.serialization.get("timestampFormat", "iso8601"))
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

    def timestamp_text(self, value: dt.datetime, fmt: str) -> str:
        """A UTC timestamp in the member's format; ISO 8601 keeps milliseconds only where there are some."""
        if fmt == "unixTimestamp":
            return repr(value.timestamp())
        if fmt == "rfc822":
            return email.utils.format_datetime(value, usegmt=True)
        text = value.strftime("%Y-%m-%dT%H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond // 1000:03d}"
        return text + "Z"
