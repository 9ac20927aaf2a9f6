"""An Automation runbook (an SSM document of type Automation, schemaVersion 0.3): parsed, checked, resolved.

``parse`` checks a document's content the way CreateDocument / UpdateDocument do before AWS stores it
(InvalidDocumentContent naming the problem, InvalidDocumentSchemaVersion for another schema):
mainSteps present and non-empty; each step a known action with a unique name matching ``[a-zA-Z0-9_]+``;
only the properties a step may have; nextStep, onFailure / onCancel ``step:NAME`` and aws:branch's NextStep
and Default naming steps that exist; the inputs each supported action requires; parameters with a known type
and a default of that type; every ``{{ reference }}`` naming a declared parameter, an output of a step (its
declared outputs, or the action's own), or an automation variable (``global:ACCOUNT_ID``, ...); document
``outputs`` naming step outputs.

``resolve_parameters`` checks StartAutomationExecution's Parameters against the document's (types,
allowedValues, allowedPattern, minItems / maxItems, minChars / maxChars, required ones) and fills in
defaults (InvalidAutomationExecutionParametersException). ``substitute`` replaces ``{{ }}`` references in a
step's inputs: a string that is exactly one reference takes the referenced value with its type (a list
for a StringList, an int for an Integer, ...), and such a string inside a list is replaced by the list's
elements; references inside longer strings are written out as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from include.sandbox import jsonpath
from include.sandbox.protocol import AwsApiError

SCHEMA_VERSION = "0.3"
# Every action AWS documents for Automation runbooks: a document may use any of them.
KNOWN_ACTIONS = frozenset(
    {
        "aws:approve",
        "aws:assertAwsResourceProperty",
        "aws:branch",
        "aws:changeInstanceState",
        "aws:copyImage",
        "aws:createImage",
        "aws:createStack",
        "aws:createTags",
        "aws:deleteImage",
        "aws:deleteStack",
        "aws:executeAutomation",
        "aws:executeAwsApi",
        "aws:executeScript",
        "aws:executeStateMachine",
        "aws:invokeLambdaFunction",
        "aws:invokeWebhook",
        "aws:loop",
        "aws:pause",
        "aws:runCommand",
        "aws:runInstances",
        "aws:sleep",
        "aws:updateVariable",
        "aws:waitForAwsResourceProperty",
    }
)
# The actions the sandbox runs; a step with any other known action fails its execution when it is reached.
EXECUTE_API, WAIT, ASSERT, RUN_COMMAND, BRANCH, SLEEP = (
    "aws:executeAwsApi",
    "aws:waitForAwsResourceProperty",
    "aws:assertAwsResourceProperty",
    "aws:runCommand",
    "aws:branch",
    "aws:sleep",
)
SUPPORTED_ACTIONS = frozenset({EXECUTE_API, WAIT, ASSERT, RUN_COMMAND, BRANCH, SLEEP})
# Outputs an action produces without declaring them (aws:runCommand's documented outputs).
ACTION_OUTPUTS: dict[str, frozenset[str]] = {RUN_COMMAND: frozenset({"CommandId", "Status", "ResponseCode", "Output"})}
_REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    EXECUTE_API: ("Service", "Api"),
    WAIT: ("Service", "Api", "PropertySelector", "DesiredValues"),
    ASSERT: ("Service", "Api", "PropertySelector", "DesiredValues"),
    RUN_COMMAND: ("DocumentName",),
    BRANCH: ("Choices",),
}
_TOP_LEVEL = frozenset({"schemaVersion", "description", "assumeRole", "parameters", "mainSteps", "outputs", "files"})
_TOP_LEVEL_EXTRA = frozenset({"templateVersion", "variables"})
_STEP_PROPERTIES = frozenset(
    {
        "name",
        "action",
        "inputs",
        "description",
        "timeoutSeconds",
        "maxAttempts",
        "onFailure",
        "onCancel",
        "isEnd",
        "nextStep",
        "isCritical",
        "outputs",
    }
)
_PARAMETER_PROPERTIES = frozenset(
    {
        "type",
        "description",
        "default",
        "allowedValues",
        "allowedPattern",
        "minItems",
        "maxItems",
        "minChars",
        "maxChars",
        "displayType",
    }
)
PARAMETER_TYPES = frozenset({"String", "StringList", "Integer", "Boolean", "MapList", "StringMap"})
OUTPUT_TYPES = frozenset({"String", "StringList", "Integer", "Boolean", "MapList", "StringMap"})
# Variables every execution knows.
AUTOMATION_VARIABLES = frozenset(
    {
        "global:ACCOUNT_ID",
        "global:REGION",
        "global:AWS_PARTITION",
        "global:AWS_URL_SUFFIX",
        "global:DATE",
        "global:DATE_TIME",
        "automation:EXECUTION_ID",
        "automation:DOCUMENT_EXECUTION_ID",
    }
)
_BRANCH_OPERATORS = frozenset(
    {
        "StringEquals",
        "EqualsIgnoreCase",
        "StartsWith",
        "EndsWith",
        "Contains",
        "NumericEquals",
        "NumericGreater",
        "NumericLesser",
        "NumericGreaterOrEquals",
        "NumericLesserOrEquals",
        "BooleanEquals",
    }
)
_STEP_NAME = re.compile(r"^[a-zA-Z0-9_]+$")
_PARAMETER_NAME = re.compile(r"^[a-zA-Z0-9_\-]{1,50}$")
REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_.:\-]+)\s*\}\}")
_WHOLE_REFERENCE = re.compile(r"^\s*\{\{\s*([A-Za-z0-9_.:\-]+)\s*\}\}\s*$")
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
MAX_SLEEP = timedelta(days=7)
MAX_CONTENT_BYTES = 64 * 1024  # "The maximum size of a document is 64 KB"


# -- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # one of PARAMETER_TYPES (AWS::... resource types are read as String / StringList)
    declared_type: str
    description: str = ""
    default: Any = None
    has_default: bool = False
    allowed_values: tuple[str, ...] | None = None
    allowed_pattern: str | None = None
    min_items: int | None = None
    max_items: int | None = None
    min_chars: int | None = None
    max_chars: int | None = None


@dataclass(frozen=True)
class OutputSpec:
    name: str
    selector: str
    type: str = "String"


@dataclass(frozen=True)
class Step:
    name: str
    action: str
    inputs: Any
    index: int
    timeout_seconds: int | None = None
    max_attempts: int = 1
    on_failure: str = "Abort"
    on_cancel: str = "Abort"
    is_end: bool = False
    next_step: str | None = None
    is_critical: bool = True
    outputs: tuple[OutputSpec, ...] = ()

    def output_names(self) -> frozenset[str]:
        return frozenset(o.name for o in self.outputs) | ACTION_OUTPUTS.get(self.action, frozenset())


@dataclass(frozen=True)
class Runbook:
    description: str
    assume_role: Any
    parameters: Mapping[str, Parameter]
    steps: tuple[Step, ...]
    outputs: tuple[str, ...]
    step_index: Mapping[str, int] = field(default_factory=dict)

    def step(self, name: str) -> Step:
        return self.steps[self.step_index[name]]


def invalid(message: str) -> AwsApiError:
    return AwsApiError("InvalidDocumentContent", message)


def load_content(content: str, document_format: str) -> Any:
    """The document's content, parsed (JSON or YAML); InvalidDocumentContent if it does not parse."""
    try:
        return json.loads(content) if document_format == "JSON" else yaml.safe_load(content)
    except (ValueError, yaml.YAMLError) as exc:
        raise invalid(f"The content for the document is not valid {document_format}: {exc}") from None


def parse(content: Any) -> Runbook:
    """Check an Automation document's parsed content; the Runbook, or AWS's InvalidDocumentContent."""
    if not isinstance(content, dict):
        raise invalid("The content of an Automation document must be an object.")
    if "schemaVersion" not in content:
        raise invalid("The document is missing the required property schemaVersion.")
    if str(content["schemaVersion"]) != SCHEMA_VERSION:
        raise AwsApiError(
            "InvalidDocumentSchemaVersion",
            f"Automation documents use schemaVersion {SCHEMA_VERSION}; got {content['schemaVersion']!r}.",
        )
    unknown = sorted(set(content) - _TOP_LEVEL - _TOP_LEVEL_EXTRA)
    if unknown:
        raise invalid(f"The document has properties an Automation document does not have: {', '.join(unknown)}.")
    parameters = _parameters(content.get("parameters"))
    steps = _steps(content.get("mainSteps"))
    index = {step.name: step.index for step in steps}
    for step in steps:
        _check_flow(step, index)
    outputs = _document_outputs(content.get("outputs"), steps, index)
    assume_role = content.get("assumeRole", "")
    if not isinstance(assume_role, str):
        raise invalid("assumeRole must be a string (a role ARN or a {{ parameter }}).")
    _check_references(parameters, steps, index, assume_role)
    description = content.get("description", "")
    return Runbook(
        description=description if isinstance(description, str) else "",
        assume_role=assume_role,
        parameters=parameters,
        steps=tuple(steps),
        outputs=outputs,
        step_index=index,
    )


def _parameters(spec: Any) -> dict[str, Parameter]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise invalid("parameters must be an object: parameter name -> definition.")
    parameters = {}
    for name, definition in spec.items():
        parameters[str(name)] = _parameter(str(name), definition)
    return parameters


def _parameter(name: str, definition: Any) -> Parameter:
    if not _PARAMETER_NAME.match(name):
        raise invalid(f"Parameter name {name!r} is not valid: use letters, digits, '_' and '-' (at most 50).")
    if not isinstance(definition, dict):
        raise invalid(f"Parameter {name} must be an object with a type.")
    unknown = sorted(set(definition) - _PARAMETER_PROPERTIES)
    if unknown:
        raise invalid(f"Parameter {name} has unknown properties: {', '.join(unknown)}.")
    declared = definition.get("type")
    if not isinstance(declared, str):
        raise invalid(f"Parameter {name} has no type.")
    kind = _base_type(declared)
    if kind is None:
        types = ", ".join(sorted(PARAMETER_TYPES))
        raise invalid(f"Parameter {name} has type {declared}, which is not one of {types} (or an AWS:: type).")
    pattern = definition.get("allowedPattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise invalid(f"allowedPattern of parameter {name} must be a string.")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise invalid(f"allowedPattern of parameter {name} is not a valid regular expression: {exc}.") from None
    allowed = definition.get("allowedValues")
    if allowed is not None and (not isinstance(allowed, list) or not allowed):
        raise invalid(f"allowedValues of parameter {name} must be a non-empty list.")
    bounds = {key: definition.get(key) for key in ("minItems", "maxItems", "minChars", "maxChars")}
    for key, bound in bounds.items():
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 0):
            raise invalid(f"{key} of parameter {name} must be a non-negative integer.")
    has_default = "default" in definition
    default = definition.get("default")
    if has_default:
        _check_default(name, kind, default)
    return Parameter(
        name=name,
        type=kind,
        declared_type=declared,
        description=str(definition.get("description") or ""),
        default=default,
        has_default=has_default,
        allowed_values=tuple(_text(v) for v in allowed) if allowed is not None else None,
        allowed_pattern=pattern,
        min_items=bounds["minItems"],
        max_items=bounds["maxItems"],
        min_chars=bounds["minChars"],
        max_chars=bounds["maxChars"],
    )


def _base_type(declared: str) -> str | None:
    if declared in PARAMETER_TYPES:
        return declared
    if declared.startswith("AWS::"):
        return "String"
    if declared.startswith("List<AWS::") and declared.endswith(">"):
        return "StringList"
    return None


def _check_default(name: str, kind: str, default: Any) -> None:
    ok = {
        "String": isinstance(default, (str, int, float)) and not isinstance(default, bool),
        "Integer": (isinstance(default, int) and not isinstance(default, bool))
        or (isinstance(default, str) and re.fullmatch(r"-?\d+", default) is not None),
        "Boolean": isinstance(default, bool),
        "StringList": isinstance(default, list) and all(isinstance(v, (str, int, float)) for v in default),
        "MapList": isinstance(default, list) and all(isinstance(v, dict) for v in default),
        "StringMap": isinstance(default, dict),
    }[kind]
    if not ok:
        raise invalid(f"The default value of parameter {name} is not a {kind}.")


def _steps(spec: Any) -> list[Step]:
    if not isinstance(spec, list) or not spec:
        raise invalid("The document must have mainSteps, a list of at least one step.")
    steps: list[Step] = []
    seen: set[str] = set()
    for position, raw in enumerate(spec):
        step = _step(position, raw)
        if step.name in seen:
            raise invalid(f"Step name {step.name} is used more than once: step names must be unique.")
        seen.add(step.name)
        steps.append(step)
    return steps


def _step(position: int, raw: Any) -> Step:
    where = f"mainSteps[{position}]"
    if not isinstance(raw, dict):
        raise invalid(f"{where} must be an object.")
    name, action = raw.get("name"), raw.get("action")
    if not isinstance(name, str) or not _STEP_NAME.match(name):
        raise invalid(f"{where} needs a name matching [a-zA-Z0-9_]+.")
    where = f"Step {name}"
    if not isinstance(action, str):
        raise invalid(f"{where} has no action.")
    if action not in KNOWN_ACTIONS:
        raise invalid(f"{where} has action {action}, which is not an Automation action.")
    unknown = sorted(set(raw) - _STEP_PROPERTIES)
    if unknown:
        raise invalid(f"{where} has properties a step does not have: {', '.join(unknown)}.")
    inputs = raw.get("inputs", {})
    if not isinstance(inputs, dict):
        raise invalid(f"{where}: inputs must be an object.")
    missing = [key for key in _REQUIRED_INPUTS.get(action, ()) if key not in inputs]
    if missing:
        raise invalid(f"{where} ({action}) is missing the required input(s) {', '.join(missing)}.")
    _check_action_inputs(where, action, inputs)
    on_failure = raw.get("onFailure", "Abort")
    on_cancel = raw.get("onCancel", "Abort")
    for key, value, allowed in (("onFailure", on_failure, ("Abort", "Continue")), ("onCancel", on_cancel, ("Abort",))):
        if not isinstance(value, str) or (value not in allowed and not value.startswith("step:")):
            raise invalid(f"{where}: {key} must be {' or '.join(allowed)} or step:<step name>, not {value!r}.")
    is_critical = raw.get("isCritical", on_failure != "Continue")
    for key in ("isEnd", "isCritical"):
        if key in raw and not isinstance(raw[key], bool):
            raise invalid(f"{where}: {key} must be true or false.")
    return Step(
        name=name,
        action=action,
        inputs=inputs,
        index=position,
        timeout_seconds=_positive(where, "timeoutSeconds", raw.get("timeoutSeconds")),
        max_attempts=_positive(where, "maxAttempts", raw.get("maxAttempts")) or 1,
        on_failure=on_failure,
        on_cancel=on_cancel,
        is_end=bool(raw.get("isEnd", False)),
        next_step=_optional_name(where, raw.get("nextStep")),
        is_critical=bool(is_critical),
        outputs=_step_outputs(where, raw.get("outputs")),
    )


def _positive(where: str, key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid(f"{where}: {key} must be a positive integer.")
    return value


def _optional_name(where: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{where}: nextStep must be a step name.")
    return value


def _step_outputs(where: str, spec: Any) -> tuple[OutputSpec, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, list):
        raise invalid(f"{where}: outputs must be a list of Name / Selector / Type.")
    outputs = []
    for item in spec:
        if not isinstance(item, dict) or not all(isinstance(item.get(key), str) for key in ("Name", "Selector")):
            raise invalid(f"{where}: each output needs a Name and a Selector.")
        kind = item.get("Type", "String")
        if kind not in OUTPUT_TYPES:
            types = ", ".join(sorted(OUTPUT_TYPES))
            raise invalid(f"{where}: output {item['Name']} has Type {kind}, not one of {types}.")
        if not REFERENCE.search(item["Selector"]):
            try:
                jsonpath.select({}, item["Selector"])
            except jsonpath.JsonPathError as exc:
                raise invalid(f"{where}: output {item['Name']}: {exc}.") from None
        outputs.append(OutputSpec(item["Name"], item["Selector"], kind))
    return tuple(outputs)


def _check_action_inputs(where: str, action: str, inputs: dict[str, Any]) -> None:
    if action == RUN_COMMAND and "InstanceIds" not in inputs and "Targets" not in inputs:
        raise invalid(f"{where} ({action}) needs InstanceIds or Targets.")
    if action == SLEEP:
        if ("Duration" in inputs) == ("Timestamp" in inputs):
            raise invalid(f"{where} ({action}) needs exactly one of Duration and Timestamp.")
        duration = inputs.get("Duration")
        if isinstance(duration, str) and not REFERENCE.search(duration):
            try:
                seconds = parse_duration(duration)
            except ValueError as exc:
                raise invalid(f"{where}: {exc}") from None
            if seconds > MAX_SLEEP:
                raise invalid(f"{where}: aws:sleep lasts at most 7 days (604800 seconds).")
    if action == BRANCH:
        choices = inputs["Choices"]
        if not isinstance(choices, list) or not choices:
            raise invalid(f"{where} (aws:branch): Choices must be a non-empty list.")
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("NextStep"), str):
                raise invalid(f"{where} (aws:branch): each choice needs a NextStep.")
            _check_condition(where, {k: v for k, v in choice.items() if k != "NextStep"})
    if action in (WAIT, ASSERT):
        desired = inputs["DesiredValues"]
        if not isinstance(desired, list) and not (isinstance(desired, str) and REFERENCE.search(desired)):
            raise invalid(f"{where} ({action}): DesiredValues must be a list.")
        selector = inputs["PropertySelector"]
        if isinstance(selector, str) and not REFERENCE.search(selector):
            try:
                jsonpath.select({}, selector)
            except jsonpath.JsonPathError as exc:
                raise invalid(f"{where}: PropertySelector {exc}.") from None


def _check_condition(where: str, condition: Any) -> None:
    if not isinstance(condition, dict):
        raise invalid(f"{where} (aws:branch): a condition must be an object.")
    if "And" in condition or "Or" in condition:
        key = "And" if "And" in condition else "Or"
        parts = condition[key]
        if not isinstance(parts, list) or not parts:
            raise invalid(f"{where} (aws:branch): {key} takes a list of conditions.")
        for part in parts:
            _check_condition(where, part)
        return
    if "Not" in condition:
        inner = condition["Not"]
        parts = inner if isinstance(inner, list) else [inner]
        if len(parts) != 1:
            raise invalid(f"{where} (aws:branch): Not takes one condition.")
        _check_condition(where, parts[0])
        return
    operators = [key for key in condition if key in _BRANCH_OPERATORS]
    if "Variable" not in condition or len(operators) != 1 or set(condition) - {"Variable", *operators}:
        operators_text = ", ".join(sorted(_BRANCH_OPERATORS))
        raise invalid(f"{where} (aws:branch): a choice needs a Variable and one operator of {operators_text}.")


def _check_flow(step: Step, index: Mapping[str, int]) -> None:
    targets = []
    if step.next_step is not None:
        targets.append(("nextStep", step.next_step))
    for key, value in (("onFailure", step.on_failure), ("onCancel", step.on_cancel)):
        if value.startswith("step:"):
            targets.append((key, value[len("step:") :]))
    if step.action == BRANCH:
        targets += [("NextStep", choice["NextStep"]) for choice in step.inputs["Choices"]]
        if "Default" in step.inputs:
            targets.append(("Default", step.inputs["Default"]))
    for key, target in targets:
        if target not in index:
            raise invalid(f"Step {step.name}: {key} {target} is not a step of this document.")


def _document_outputs(spec: Any, steps: list[Step], index: Mapping[str, int]) -> tuple[str, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, list) or not all(isinstance(item, str) for item in spec):
        raise invalid("outputs must be a list of step outputs (stepName.outputName).")
    for item in spec:
        step_name, _, output = item.partition(".")
        if step_name not in index or not output:
            raise invalid(f"Document output {item} does not name an output of a step of this document.")
        step = steps[index[step_name]]
        if _declares_outputs(step) and output not in step.output_names():
            raise invalid(f"Document output {item}: step {step_name} has no output {output}.")
    return tuple(spec)


def _declares_outputs(step: Step) -> bool:
    """Whether the step's outputs are all known: supported actions declare them or have none."""
    return step.action in SUPPORTED_ACTIONS


def references(value: Any) -> Iterable[str]:
    """Every {{ reference }} in a value (strings, lists and objects, recursively)."""
    if isinstance(value, str):
        yield from REFERENCE.findall(value)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from references(item)


def _check_references(
    parameters: Mapping[str, Parameter], steps: list[Step], index: Mapping[str, int], assume_role: str
) -> None:
    for where, value in [("assumeRole", assume_role), *((f"Step {s.name}", s.inputs) for s in steps)]:
        for name in references(value):
            if name in parameters or name in AUTOMATION_VARIABLES:
                continue
            step_name, dot, output = name.partition(".")
            if dot and step_name in index:
                step = steps[index[step_name]]
                if not _declares_outputs(step) or output in step.output_names():
                    continue
                raise invalid(f"{where} references {{{{ {name} }}}}, but step {step_name} has no output {output}.")
            raise invalid(f"{where} references {{{{ {name} }}}}, which is not a parameter declared by the document.")


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration (PT30S, PT5M, PT1H30M, P1D, ...)."""
    match = _DURATION.match(text.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"Duration {text!r} is not an ISO 8601 duration such as PT30S or PT5M.")
    days, hours, minutes, seconds = match.groups()
    return timedelta(days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0))


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 timestamp (2026-11-20T03:00:00Z); naive ones are UTC."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- parameters at StartAutomationExecution -----------------------------------------------------


def parameter_error(message: str) -> AwsApiError:
    return AwsApiError("InvalidAutomationExecutionParametersException", message)


def resolve_parameters(
    runbook: Runbook, given: Mapping[str, list[str]], *, supplied_later: Collection[str] = ()
) -> dict[str, list[str]]:
    """The execution's Parameters: the given values checked, defaults filled in (each as a list of strings).

    `supplied_later` names the parameters a rate-controlled execution's targets give (TargetParameterName,
    or those of the TargetMaps): their values come with each child execution and are checked there.
    """
    unknown = sorted(set(given) - set(runbook.parameters))
    if unknown:
        raise parameter_error(f"Parameters [{', '.join(unknown)}] are not defined in the document.")
    resolved: dict[str, list[str]] = {}
    for name, parameter in runbook.parameters.items():
        if name in given:
            resolved[name] = check_value(parameter, list(given[name]))
        elif parameter.has_default:
            resolved[name] = default_values(parameter)
        elif name in supplied_later:
            continue
        else:
            raise parameter_error(f"Parameter {name} is required (it has no default) but was not provided.")
    return resolved


def default_values(parameter: Parameter) -> list[str]:
    default = parameter.default
    if parameter.type == "StringList":
        return [_text(v) for v in default]
    if parameter.type == "MapList":
        return [json.dumps(v, separators=(",", ":")) for v in default]
    if parameter.type == "StringMap":
        return [json.dumps(default, separators=(",", ":"))]
    return [_text(default)]


def check_value(parameter: Parameter, values: list[str]) -> list[str]:
    """One parameter's given values, checked against its definition."""
    name, kind = parameter.name, parameter.type
    if kind in ("String", "Integer", "Boolean", "StringMap") and len(values) != 1:
        raise parameter_error(f"Parameter {name} is a {kind} and takes exactly one value, got {len(values)}.")
    if kind in ("StringList", "MapList"):
        if parameter.min_items is not None and len(values) < parameter.min_items:
            raise parameter_error(f"Parameter {name} needs at least {parameter.min_items} item(s).")
        if parameter.max_items is not None and len(values) > parameter.max_items:
            raise parameter_error(f"Parameter {name} takes at most {parameter.max_items} item(s).")
    for value in values:
        _check_one(parameter, value)
    return values


def _check_one(parameter: Parameter, value: str) -> None:
    name, kind = parameter.name, parameter.type
    if kind == "Integer" and not re.fullmatch(r"-?\d+", value):
        raise parameter_error(f"Parameter {name} is an Integer: {value!r} is not one.")
    if kind == "Boolean" and value.lower() not in ("true", "false"):
        raise parameter_error(f"Parameter {name} is a Boolean: {value!r} is neither true nor false.")
    if kind in ("MapList", "StringMap"):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise parameter_error(f"Parameter {name} is a {kind}: {value!r} is not a JSON object.")
        return
    if parameter.min_chars is not None and len(value) < parameter.min_chars:
        raise parameter_error(f"Parameter {name}: {value!r} is shorter than {parameter.min_chars} characters.")
    if parameter.max_chars is not None and len(value) > parameter.max_chars:
        raise parameter_error(f"Parameter {name}: {value!r} is longer than {parameter.max_chars} characters.")
    if parameter.allowed_values is not None and value not in parameter.allowed_values:
        allowed = ", ".join(parameter.allowed_values)
        raise parameter_error(f"Parameter {name}: {value!r} is not one of the allowed values [{allowed}].")
    if parameter.allowed_pattern is not None and not re.fullmatch(parameter.allowed_pattern, value):
        raise parameter_error(
            f"Parameter {name}: {value!r} does not match the allowed pattern {parameter.allowed_pattern}."
        )


def typed_value(parameter: Parameter, values: list[str]) -> Any:
    """A parameter's value as a step's inputs see it: str, int, bool, list or dict by its type."""
    kind = parameter.type
    if kind == "StringList":
        return list(values)
    if kind == "MapList":
        return [json.loads(v) for v in values]
    first = values[0] if values else ""
    if kind == "Integer":
        return int(first)
    if kind == "Boolean":
        return first.lower() == "true"
    if kind == "StringMap":
        return json.loads(first)
    return first


# -- substitution ------------------------------------------------------------------------------


class UnresolvedReference(Exception):
    """A {{ reference }} with no value (yet): the step that uses it fails."""


Lookup = Callable[[str], Any]


def substitute(value: Any, lookup: Lookup) -> Any:
    """`value` with every {{ reference }} replaced (see the module's docstring)."""
    if isinstance(value, str):
        whole = _WHOLE_REFERENCE.match(value)
        if whole:
            return lookup(whole.group(1))
        return REFERENCE.sub(lambda match: _text(lookup(match.group(1))), value)
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            whole = _WHOLE_REFERENCE.match(item) if isinstance(item, str) else None
            resolved = lookup(whole.group(1)) if whole else substitute(item, lookup)
            if whole and isinstance(resolved, list):
                out.extend(resolved)
            else:
                out.append(resolved)
        return out
    if isinstance(value, dict):
        return {key: substitute(item, lookup) for key, item in value.items()}
    return value


def _text(value: Any) -> str:
    """A value written into text: booleans as true / false, lists and objects as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


text = _text
