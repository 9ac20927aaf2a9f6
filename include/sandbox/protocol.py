"""AWS JSON-protocol checks for the sandbox, driven by botocore's service models.

The sandbox serves JSON-protocol APIs that moto lacks. Clients only trust it if
it rejects bad requests the way AWS does and its responses parse exactly like
AWS's, so both directions are checked against the same models botocore uses.
The query-protocol services (RDS, ...) are checked the same way once
query_protocol has decoded their form-encoded requests (validate_query_*).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import botocore.model
import botocore.session

from include.sandbox import java_regex

__all__ = [
    "AwsApiError",
    "is_query_compatible_json",
    "is_rest_json",
    "json_error_body",
    "operation_model",
    "query_member_key",
    "rest_json_operation",
    "to_wire",
    "validate_query_request",
    "validate_query_response",
    "validate_request",
    "validate_response",
]

# Members bound to the URI, query string or headers (rest-json) never appear
# in the JSON body, so body checks must not expect or accept them.
_NON_BODY_LOCATIONS = frozenset({"uri", "querystring", "header", "headers", "statusCode"})
_JSON_PROTOCOLS = frozenset({"json", "rest-json"})
# Smithy's integer and long are 32- and 64-bit; a larger number is a
# deserialisation failure at AWS, not a constraint violation.
_INT_BOUNDS = {"integer": 2**31, "long": 2**63}
# botocore sends non-finite floats as these strings because JSON has no literal.
_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})
_SCALARS = frozenset({"string", "integer", "long", "float", "double", "boolean", "timestamp", "blob"})


class AwsApiError(Exception):
    """An error the sandbox returns to the client the way AWS would."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@functools.cache
def _session() -> Any:
    return botocore.session.get_session()


@functools.cache
def _service_model(service: str) -> botocore.model.ServiceModel:
    # Loading and decompressing a service-2.json is slow; every request needs it.
    return _session().get_service_model(service)


@functools.cache
def operation_model(service: str, operation: str) -> botocore.model.OperationModel:
    """Return botocore's model of ``operation`` (e.g. "DescribeInstancePatchStates")."""
    return _service_model(service).operation_model(operation)


def is_rest_json(service: str) -> bool:
    """Whether botocore talks to ``service`` in rest-json (responses are plain application/json)."""
    try:
        return bool(_service_model(service).resolved_protocol == "rest-json")
    except Exception:  # not a botocore service name
        return False


def is_query_compatible_json(service: str) -> bool:
    """Whether botocore talks JSON to a former query-protocol ``service`` (CloudWatch, SQS): its errors are JSON
    with the query error code in an ``x-amzn-query-error`` header."""
    try:
        model = _service_model(service)
    except Exception:  # not a botocore service name
        return False
    return model.resolved_protocol == "json" and "awsQueryCompatible" in model.metadata


def rest_json_operation(service: str, method: str, path: str) -> str:
    """The rest-json operation that a (method, path) calls, from botocore's model ("" when none matches).

    rest-json services (Inspector2, Security Hub, ...) name the operation only by method and request URI.
    """
    try:
        routes = _rest_json_routes(service)
    except Exception:  # an unknown or non-rest-json service: not ours to route
        return ""
    for route_method, pattern, name in routes:
        if route_method == method and pattern.fullmatch(path):
            return name
    return ""


@functools.cache
def _rest_json_routes(service: str) -> tuple[tuple[str, re.Pattern[str], str], ...]:
    model = _service_model(service)
    if model.resolved_protocol != "rest-json":
        return ()
    routes = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = str(http.get("requestUri", "/")).split("?", 1)[0]
        # {name} binds one path segment, {name+} the rest of the path.
        pattern = re.sub(r"\\\{[^}]+\\\+\\\}", ".+", re.escape(uri))
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
        routes.append((str(http.get("method", "POST")), re.compile(pattern), name))
    # Literal routes before templated ones, so "/findings/list" never reads as "/findings/{id}".
    routes.sort(key=lambda route: route[1].pattern.count("[^/]+") + route[1].pattern.count(".+"))
    return tuple(routes)


# Operations whose input AWS does not hold to the model's patterns. BatchImportFindings checks each
# finding against the ASFF schema instead and lists a finding with an empty or blank string (the
# model's NonEmptyString is ".*\S.*") in FailedFindings, InvalidInput "... data.Resources[0].Type
# should NOT be shorter than 1 characters.", importing the rest (securityhub.asff_problems).
_PATTERNS_NOT_ENFORCED = frozenset({("securityhub", "BatchImportFindings")})


def validate_request(service: str, operation: str, params: dict[str, Any]) -> None:
    """Raise the AwsApiError AWS would return for this decoded JSON request body.

    Type mismatches raise SerializationException (AWS fails to deserialise
    before it validates anything); otherwise every violated constraint
    (required, length, range, pattern, enum, unknown member) is reported in one
    ValidationException, like AWS's "N validation errors detected" message.
    A pattern Python cannot read with its Java meaning is not checked
    (java_regex.skipped()).
    """
    op = operation_model(service, operation)
    patterns = (service, operation) not in _PATTERNS_NOT_ENFORCED
    issues = _Checker(request=True, patterns=patterns).run(_body_shape(op, op.input_shape), params)
    for issue in issues:
        if issue.kind == "type":
            raise AwsApiError("SerializationException", _aws_type_message(issue))
    if issues:
        count = len(issues)
        noun = "error" if count == 1 else "errors"
        detail = "; ".join(_aws_constraint_message(i) for i in issues)
        raise AwsApiError("ValidationException", f"{count} validation {noun} detected: {detail}")


def validate_response(service: str, operation: str, body: dict[str, Any]) -> list[str]:
    """Return what is wrong with a JSON response body (empty list when it is valid).

    ``body`` is what will be json-dumped, so timestamps must already be epoch
    numbers (see ``to_wire``). Paths read like ``InstancePatchStates[3].OperationEndTime``.
    """
    op = operation_model(service, operation)
    issues = _Checker(request=False).run(_body_shape(op, op.output_shape), body)
    return [_response_message(issue) for issue in issues]


# Query-protocol services that answer a missing required parameter with MissingParameter
# (the older XML services, and EC2's variant); the rest (IAM, STS, SNS, ...) send a Coral ValidationError.
_MISSING_PARAMETER_SERVICES = frozenset({"rds", "ec2"})


def validate_query_request(service: str, operation: str, params: dict[str, Any]) -> None:
    """Raise the AwsApiError AWS would return for a decoded query-protocol request.

    ``params`` is keyed by member name (as boto3 takes them) and holds Python
    values (ints, bools, datetimes): what query_protocol.decode_request
    returns, so types are already right. A missing required member is
    MissingParameter for the older XML services (RDS) and a ValidationError
    otherwise; every other violated constraint is reported in one
    ValidationError, worded like the JSON services' ValidationException.
    """
    op = operation_model(service, operation)
    input_shape = _query_shape(op, op.input_shape)
    patterns = (service, operation) not in _PATTERNS_NOT_ENFORCED
    issues = _Checker(request=True, native=True, patterns=patterns).run(input_shape, params)
    for issue in issues:
        where = _query_path(input_shape, issue.path)
        if issue.kind == "type":
            # Only numbers out of their 32/64-bit range get here: decode_request converts the rest.
            message = f"Value ({_java(issue.value)}) for parameter {where} is invalid."
            raise AwsApiError("InvalidParameterValue", message)
        if issue.kind == "missing" and service in _MISSING_PARAMETER_SERVICES:
            raise AwsApiError("MissingParameter", f"The request must contain the parameter {where}")
    if issues:
        count = len(issues)
        noun = "error" if count == 1 else "errors"
        detail = "; ".join(_aws_constraint_message(i) for i in issues)
        raise AwsApiError("ValidationError", f"{count} validation {noun} detected: {detail}")


def validate_query_response(service: str, operation: str, result: dict[str, Any]) -> list[str]:
    """Return what is wrong with a query-protocol handler's result (empty list when it is valid).

    Unlike ``validate_response`` the result is checked before it is written
    as XML, so it holds Python values keyed by member name: timestamps are
    datetimes (naive ones are UTC), blobs base64 strings.
    """
    op = operation_model(service, operation)
    issues = _Checker(request=False, native=True).run(_query_shape(op, op.output_shape), result)
    return [_response_message(issue) for issue in issues]


def query_member_key(member: Any, name: str) -> str:
    """The element / parameter name a structure member goes by in the query protocol and its XML.

    A flattened list with a named member is repeated under the member's name;
    anything else uses its own locationName, or the member name.
    """
    if member.type_name == "list" and member.serialization.get("flattened"):
        item_name = member.member.serialization.get("name")
        if item_name is not None:
            return str(item_name)
    return str(member.serialization.get("name", name))


def to_wire(value: Any) -> Any:
    """Convert datetimes (recursively) to the epoch seconds AWS JSON protocols send."""
    if isinstance(value, dt.datetime):
        # A naive datetime.timestamp() would use the host's local zone; the
        # sandbox's naive datetimes are UTC.
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    if isinstance(value, dict):
        return {key: to_wire(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    return value


def json_error_body(error: AwsApiError) -> bytes:
    """Serialise ``error`` as an AWS JSON 1.1 error body."""
    return json.dumps({"__type": error.code, "message": error.message}).encode()


class _MapKey(NamedTuple):
    """A map key in an issue path, kept apart from member names and list indices."""

    key: str


_Segment = str | int | _MapKey


@dataclass(frozen=True)
class _Issue:
    # kind: "type", "constraint", "unknown", "missing", "null" or "union".
    kind: str
    path: tuple[_Segment, ...]
    value: Any
    detail: str
    sensitive: bool = False


def _body_shape(op: Any, shape: Any) -> Any:
    protocol = op.service_model.resolved_protocol
    if protocol not in _JSON_PROTOCOLS:
        raise ValueError(f"{op.service_model.service_name} speaks {protocol}, not JSON")
    # A rest-json operation with a structure payload sends just that member.
    payload = shape.serialization.get("payload") if shape is not None else None
    if payload is not None:
        shape = shape.members[payload]
        if shape.type_name != "structure":
            raise ValueError(f"{op.name} has a non-JSON {shape.type_name} payload")
    return shape


def _query_shape(op: Any, shape: Any) -> Any:
    protocol = op.service_model.resolved_protocol
    if protocol not in ("query", "ec2"):  # EC2's variant has the same shapes (ec2_protocol)
        raise ValueError(f"{op.service_model.service_name} speaks {protocol}, not query")
    return shape


def _query_path(shape: Any, path: tuple[_Segment, ...]) -> str:
    """A member path as the query protocol spells its parameter, e.g. Filters.Filter.1.Values."""
    parts: list[str] = []
    for segment in path:
        if shape.type_name == "structure" and isinstance(segment, str):
            member = shape.members[segment]
            parts.append(query_member_key(member, segment))
            shape = member
        elif shape.type_name == "list" and isinstance(segment, int):
            if not shape.serialization.get("flattened"):
                parts.append(shape.member.serialization.get("name", "member"))
            parts.append(str(segment + 1))
            shape = shape.member
        else:  # map entries: the key is all a reader needs
            parts.append(str(segment.key if isinstance(segment, _MapKey) else segment))
            shape = shape.value if shape.type_name == "map" else shape
    return ".".join(parts)


class _Checker:
    """Walk a value against a shape and collect every issue.

    Requests get AWS's full constraint set; responses get only what a client
    depends on (types, required members, enums), since AWS does not enforce
    input constraints on its own output. ``native`` values are Python values
    keyed by member name (the query protocols' handlers), not JSON bodies.
    ``patterns=False`` leaves string patterns unchecked (_PATTERNS_NOT_ENFORCED).
    """

    def __init__(self, *, request: bool, native: bool = False, patterns: bool = True) -> None:
        self.request = request
        self.native = native
        self.patterns = patterns
        self.issues: list[_Issue] = []

    def run(self, shape: Any, value: Any) -> list[_Issue]:
        if not isinstance(value, dict):
            self._add("type", (), value, "object")
        elif shape is None:
            # Operations without input/output still exchange "{}".
            for name, item in value.items():
                self._add("unknown", (name,), item, "no members are defined")
        else:
            self._check(shape, value, ())
        return self.issues

    def _add(
        self,
        kind: str,
        path: tuple[_Segment, ...],
        value: Any,
        detail: str,
        sensitive: bool = False,
    ) -> None:
        self.issues.append(_Issue(kind, path, value, detail, sensitive))

    def _check(self, shape: Any, value: Any, path: tuple[_Segment, ...]) -> None:
        expected = _type_problem(shape, value, native=self.native)
        if expected is not None:
            self._add("type", path, value, expected)
        elif shape.type_name == "structure":
            self._structure(shape, value, path)
        elif shape.type_name == "list":
            self._list(shape, value, path)
        elif shape.type_name == "map":
            self._map(shape, value, path)
        else:
            for failure in self._failures(shape, value):
                self._add("constraint", path, value, failure, _sensitive(shape))

    def _failures(self, shape: Any, value: Any) -> list[str]:
        if self.request:
            return _constraint_failures(shape, value, patterns=self.patterns)
        return [f for f in [_enum_failure(shape, value)] if f]

    def _structure(self, shape: Any, value: dict[str, Any], path: tuple[_Segment, ...]) -> None:
        if shape.is_document_type:
            return  # Free-form JSON by definition.
        members = _native_members(shape) if self.native else _body_members(shape)
        for key, item in value.items():
            if key not in members:
                self._add("unknown", (*path, key), item, f"not a member of {shape.name}")
        present = []
        for key, (name, member) in members.items():
            item = value.get(key)
            if item is None:
                # JSON null means "absent" to AWS, so a null required member
                # gets the same "must not be null" as a missing one.
                if name in shape.required_members:
                    self._add("missing", (*path, key), None, "Member must not be null")
                elif key in value and not self.request:
                    self._add("null", (*path, key), None, "null; omit the member instead")
                continue
            present.append(key)
            self._check(member, item, (*path, key))
        if not self.request and shape.is_tagged_union and len(present) != 1:
            self._add("union", path, value, f"union {shape.name} must set exactly one member, got {present}")

    def _list(self, shape: Any, value: list[Any], path: tuple[_Segment, ...]) -> None:
        for failure in self._failures(shape, value):
            self._add("constraint", path, value, failure, _sensitive(shape))
        for index, item in enumerate(value):
            if item is None:
                self._add(
                    "missing" if self.request else "null",
                    (*path, index),
                    None,
                    "Member must not be null" if self.request else "null list item",
                )
            else:
                self._check(shape.member, item, (*path, index))

    def _map(self, shape: Any, value: dict[str, Any], path: tuple[_Segment, ...]) -> None:
        for failure in self._failures(shape, value):
            self._add("constraint", path, value, failure, _sensitive(shape))
        # AWS reports bad keys and bad scalar values once per map, listing the
        # violated constraints, rather than once per entry.
        key_failures: dict[str, None] = {}
        value_failures: dict[str, None] = {}
        scalar_values = shape.value.type_name in _SCALARS
        for key, item in value.items():
            where = (*path, _MapKey(str(key)))
            expected = _type_problem(shape.key, key, native=self.native)
            if expected is not None:
                self._add("type", where, key, f"{expected} map key")
                continue
            key_failures.update(dict.fromkeys(self._failures(shape.key, key)))
            if item is None:
                if self.request:
                    value_failures["Member must not be null"] = None
                else:
                    self._add("null", where, None, "null map value")
            elif scalar_values and self.request:
                expected = _type_problem(shape.value, item, native=self.native)
                if expected is not None:
                    self._add("type", where, item, expected)
                else:
                    value_failures.update(dict.fromkeys(self._failures(shape.value, item)))
            else:
                self._check(shape.value, item, where)
        sensitive = _sensitive(shape)
        if key_failures:
            text = ", ".join(key_failures)
            self._add("constraint", path, value, f"Map keys must satisfy constraint: [{text}]", sensitive)
        if value_failures:
            text = ", ".join(value_failures)
            self._add("constraint", path, value, f"Map value must satisfy constraint: [{text}]", sensitive)


def _body_members(shape: Any) -> dict[str, tuple[str, Any]]:
    """Map each member's JSON key to (member name, shape), as botocore serialises it."""
    return {
        member.serialization.get("name", name): (name, member)
        for name, member in shape.members.items()
        if member.serialization.get("location") not in _NON_BODY_LOCATIONS
    }


def _native_members(shape: Any) -> dict[str, tuple[str, Any]]:
    """Every member under its own name, as boto3 takes and returns them (query protocols)."""
    return {name: (name, member) for name, member in shape.members.items()}


def _sensitive(shape: Any) -> bool:
    return bool(shape.metadata.get("sensitive", False))


def _is_number(value: Any) -> bool:
    # bool is an int subclass in Python but a distinct JSON type.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_problem(shape: Any, value: Any, *, native: bool = False) -> str | None:
    """Return the expected type when ``value`` cannot be ``shape`` on the wire.

    ``native``: the value is a Python value before serialisation (query
    protocols), so a timestamp must be a datetime.
    """
    kind = shape.type_name
    if kind == "string":
        return None if isinstance(value, str) else "string"
    if kind in _INT_BOUNDS:
        bound = _INT_BOUNDS[kind]
        ok = isinstance(value, int) and not isinstance(value, bool) and -bound <= value < bound
        return None if ok else f"{kind} ({bound.bit_length()}-bit)"
    if kind in ("float", "double"):
        return None if _is_number(value) or value in _NON_FINITE else kind
    if kind == "boolean":
        return None if isinstance(value, bool) else "boolean"
    if kind == "timestamp" and native:
        # Naive datetimes are UTC, as for to_wire.
        return None if isinstance(value, dt.datetime) else "timestamp (datetime)"
    if kind == "timestamp":
        if shape.serialization.get("timestampFormat") in ("iso8601", "rfc822"):
            return None if isinstance(value, str) else "timestamp string"
        return None if _is_number(value) else "timestamp (epoch seconds number)"
    if kind == "blob":
        return None if _is_base64(value) else "blob (base64 string)"
    if kind == "structure":
        return None if shape.is_document_type or isinstance(value, dict) else "object"
    if kind == "list":
        return None if isinstance(value, list) else "list"
    if kind == "map":
        return None if isinstance(value, dict) else "map"
    raise ValueError(f"unsupported shape type {kind} ({shape.name})")


def _is_base64(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        return False
    return True


def _enum_failure(shape: Any, value: Any) -> str | None:
    allowed = shape.enum if shape.type_name == "string" else []
    if allowed and value not in allowed:
        return f"Member must satisfy enum value set: [{', '.join(allowed)}]"
    return None


def _pattern_failure(shape: Any, value: Any) -> str | None:
    """AWS's wording when ``value`` does not match the string shape's pattern (searched, as Smithy specifies)."""
    pattern = shape.metadata.get("pattern") if shape.type_name == "string" else None
    if pattern is None:
        return None
    # Compiled once per pattern (java_regex.matcher is cached); shape names repeat across services with
    # different patterns, the pattern text does not.
    search = java_regex.matcher(pattern)
    if search is None or search(value):
        return None
    return f"Member must satisfy regular expression pattern: {pattern}"


def _constraint_failures(shape: Any, value: Any, *, patterns: bool = True) -> list[str]:
    """AWS's wording for each length, range, pattern and enum constraint ``value`` breaks."""
    failures: list[str] = []
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if shape.type_name in ("integer", "long", "float", "double"):
        if isinstance(value, str):
            return failures  # NaN/Infinity: nothing to compare.
        if high is not None and value > high:
            failures.append(f"Member must have value less than or equal to {_number(shape, high)}")
        if low is not None and value < low:
            failures.append(f"Member must have value greater than or equal to {_number(shape, low)}")
        return failures
    if shape.type_name in ("string", "list", "map", "blob"):
        size = len(base64.b64decode(value)) if shape.type_name == "blob" else len(value)
        if high is not None and size > high:
            failures.append(f"Member must have length less than or equal to {high}")
        if low is not None and size < low:
            failures.append(f"Member must have length greater than or equal to {low}")
    pattern_failure = _pattern_failure(shape, value) if patterns else None
    if pattern_failure:
        failures.append(pattern_failure)
    enum_failure = _enum_failure(shape, value)
    if enum_failure:
        failures.append(enum_failure)
    return failures


def _number(shape: Any, bound: float) -> str:
    # AWS prints float bounds the Java way ("1.0"), integer bounds without a point.
    if shape.type_name in ("float", "double"):
        return str(float(bound))
    return str(int(bound))


def _java(value: Any) -> str:
    """Render a value the way AWS's Java services echo it in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_java(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java(v)}" for k, v in value.items()) + "}"
    return str(value)


def _aws_path(path: tuple[_Segment, ...]) -> str:
    """AWS's member path: lowerCamelCase names, list items as "N.member" (1-based)."""
    parts: list[str] = []
    for segment in path:
        if isinstance(segment, _MapKey):
            parts.append(f"{segment.key}.member")
        elif isinstance(segment, int):
            parts.append(f"{segment + 1}.member")
        else:
            parts.append(segment[:1].lower() + segment[1:])
    return ".".join(parts)


def _aws_value(issue: _Issue) -> str:
    # AWS leaves sensitive values out of the message entirely.
    if issue.sensitive:
        return "Value"
    if issue.value is None:
        return "Value null"
    return f"Value '{_java(issue.value)}'"


def _aws_constraint_message(issue: _Issue) -> str:
    where = _aws_path(issue.path)
    if issue.kind == "unknown":
        # Not an AWS message (AWS ignores unknown members); it only catches
        # sandbox callers sending members the model does not have.
        # The raw key is kept so the typo is visible as sent.
        where = ".".join(filter(None, [_aws_path(issue.path[:-1]), str(issue.path[-1])]))
        return (
            f"{_aws_value(issue)} at '{where}' failed to satisfy constraint: Member is not defined in the service model"
        )
    return f"{_aws_value(issue)} at '{where}' failed to satisfy constraint: {issue.detail}"


def _aws_type_message(issue: _Issue) -> str:
    where = _aws_path(issue.path) or "body"
    return f"Expected {issue.detail} at '{where}', got JSON {_json_type(issue.value)}"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def _py_path(path: tuple[_Segment, ...]) -> str:
    text = ""
    for segment in path:
        if isinstance(segment, _MapKey):
            text += f"[{json.dumps(segment.key)}]"
        elif isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else segment
    return text or "<body>"


def _label(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return "datetime (convert it with to_wire)"
    if isinstance(value, (dict, list)):
        return type(value).__name__
    return f"{type(value).__name__} {value!r}"


def _response_message(issue: _Issue) -> str:
    where = _py_path(issue.path)
    if issue.kind == "type":
        return f"{where}: expected {issue.detail}, got {_label(issue.value)}"
    if issue.kind == "missing":
        return f"{where}: required member is missing"
    if issue.kind == "unknown":
        return f"{where}: unknown member ({issue.detail})"
    if issue.kind == "constraint":
        return f"{where}: {issue.value!r} violates: {issue.detail}"
    return f"{where}: {issue.detail}"
