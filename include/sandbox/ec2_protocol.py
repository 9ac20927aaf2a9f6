"""The EC2 protocol for the sandbox's own EC2 handlers: EC2's form-encoded requests in, its XML out.

EC2 speaks a variant of the query protocol, so this module holds only what differs from
query_protocol, the way botocore's EC2Serializer and EC2QueryParser subclass the query ones:

* a request member is keyed by its ``queryName``, else its ``locationName`` capitalised, else its
  member name; list items are ``Name.N`` (1-based, never wrapped in ``member``, and an empty list
  is not sent at all);
* a response is ``<{Operation}Response xmlns=...>`` holding ``requestId`` and the output members
  under their ``locationName`` (no result wrapper); a list is one element with an ``item`` per
  entry; timestamps are ISO 8601 with milliseconds, booleans ``true`` / ``false``.

Requests are checked against the input shape as EC2 does: a parameter the operation does not have
is UnknownParameter, a missing required one MissingParameter, a wrong type or a broken constraint
(enum, range) InvalidParameterValue. Errors use the EC2 envelope (server._error).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from xml.etree import ElementTree as ET

from include.sandbox.protocol import AwsApiError, operation_model, validate_query_request
from include.sandbox.query_protocol import ABSENT, FormDecoder, XmlWriter

__all__ = ["decode_request", "serialize_response", "speaks_ec2"]


def speaks_ec2(service: str, operation: str) -> bool:
    """Whether botocore talks to ``service`` in the EC2 protocol."""
    return bool(operation_model(service, operation).service_model.resolved_protocol == "ec2")


def decode_request(service: str, operation: str, form: bytes | str) -> dict[str, Any]:
    """Decode an EC2 request into validated boto3-style parameters, or raise the error EC2 would."""
    params = _Ec2Decoder(form).params(operation_model(service, operation))
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
        _Ec2Writer().members(root, op.output_shape, result)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


class _Ec2Decoder(FormDecoder):
    """Reads the form as botocore's EC2Serializer writes it."""

    def unknown(self, key: str, operation: str) -> AwsApiError:
        return AwsApiError("UnknownParameter", f"The parameter {key} is not recognized")

    def member_key(self, member: Any, name: str) -> str:
        if "queryName" in member.serialization:
            return str(member.serialization["queryName"])
        location = member.serialization.get("name")
        if location:
            return str(location[0].upper() + location[1:])
        return name

    def valued_structure(self, key: str) -> None:
        """Left unused, so refused as an unknown parameter."""

    def sequence(self, shape: Any, prefix: str) -> Any:
        return [self.decode(shape.member, f"{prefix}.{i}") for i in self.indices(prefix)] or ABSENT

    def malformed(self, key: str, problem: str) -> None:
        raise AwsApiError("InvalidParameterValue", f"Parameter {key} {problem}")

    def timestamp(self, text: str) -> dt.datetime | None:
        """ISO 8601 only (EC2's members have no other timestampFormat)."""
        try:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None

    def invalid(self, key: str, text: str, kind: str) -> AwsApiError:
        message = f"Value ({text}) for parameter {key} is invalid. Expected: '{kind}'."
        return AwsApiError("InvalidParameterValue", message)


class _Ec2Writer(XmlWriter):
    """Writes what botocore's EC2QueryParser reads: ``item`` list elements, timestamps always with milliseconds."""

    list_item = "item"

    def timestamp_text(self, value: dt.datetime, fmt: str) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}Z"
