"""AWS Security Hub (CSPM) findings in the sandbox: BatchImportFindings, GetFindings, BatchUpdateFindings.

moto 5.2.5 imports and lists findings but checks no ASFF, ignores GetFindings' filters and has no
BatchUpdateFindings, so the sandbox takes the three over, with the findings of each account and region
in ``world.extra["securityhub"]``. As AWS documents them:

* Security Hub must be enabled for the account and region (the scenario's ``securityhub`` section),
  else InvalidAccessException.
* BatchImportFindings takes 1-100 findings (botocore's model) of at most 240 KB each, and a request of
  at most 6 MB (InvalidInputException). Only the account's default product ARN
  (``arn:aws:securityhub:<region>:<account>:product/<account>/default``) is served; another product
  ARN fails the request (InvalidInputException). A finding that breaks the ASFF (required attributes,
  empty strings, SchemaVersion 2018-10-08, Title <= 256 and Description <= 1024 characters, 1-32
  Resources, Types as namespace/category/classifier, ISO 8601 timestamps, an AwsAccountId other than
  the caller's, ...) is not imported and is listed in FailedFindings with ErrorCode InvalidInput and
  AWS's "Finding does not adhere to Amazon Finding Format. ..." message; the rest are.
* Import upserts by (ProductArn, Id). An update keeps CreatedAt and FirstObservedAt, and the fields
  only customers change (Note, UserDefinedFields, VerificationState, Workflow); Severity, Types,
  Confidence, Criticality and RelatedFindings follow FindingProviderFields unless a customer changed
  them through BatchUpdateFindings. Workflow RESOLVED or NOTIFIED goes back to NEW when RecordState
  goes from ARCHIVED to ACTIVE or Compliance.Status from PASSED to WARNING, FAILED or NOT_AVAILABLE.
* GetFindings: MaxResults 1-100 (default 100), NextToken paging, at most 10 filter attributes of at
  most 20 values each. StringFilter on Id, ProductArn, ProductName, CompanyName, GeneratorId,
  AwsAccountId, Region, Title, Type, RecordState, WorkflowStatus, ComplianceStatus, SeverityLabel,
  ResourceId, ResourceType, ResourceRegion and ResourcePartition: EQUALS, PREFIX and CONTAINS on a
  field are ORed, NOT_EQUALS, PREFIX_NOT_EQUALS and NOT_CONTAINS ANDed after them; EQUALS with
  NOT_EQUALS or PREFIX_NOT_EQUALS on one field, CONTAINS with anything else, and CONTAINS_WORD are
  InvalidInputException. Fields are ANDed. Other filter attributes are not implemented (501), never
  silently ignored. Findings come newest UpdatedAt first unless SortCriteria name a top-level field.
* BatchUpdateFindings: 1-100 finding identifiers and at least one field to update
  (InvalidInputException); unknown or repeated identifiers are UnprocessedFindings (FindingNotFound,
  DuplicatedFindingIdentifier); UpdatedAt is left alone, Note gets UpdatedAt now.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from include.sandbox.api import Handler, RequestContext
from include.sandbox.paging import paginate
from include.sandbox.protocol import AwsApiError

if TYPE_CHECKING:
    from include.sandbox.world import World

STATE_KEY = "securityhub"
SCHEMA_VERSION = "2018-10-08"
MAX_FINDING_BYTES = 240 * 1024
MAX_REQUEST_BYTES = 6 * 1024 * 1024
MAX_UPDATE_IDENTIFIERS = 100
MAX_FILTER_ATTRIBUTES = 10
MAX_FILTER_VALUES = 20
DEFAULT_MAX_RESULTS = 100
TYPE_NAMESPACES = (
    "Software and Configuration Checks",
    "TTPs",
    "Effects",
    "Unusual Behaviors",
    "Sensitive Data Identifications",
)
# ASFF length limits AWS enforces on import (characters).
MAX_LENGTHS = {"Id": 512, "GeneratorId": 512, "Title": 256, "Description": 1024}
MAX_RESOURCES = 32
MAX_TYPES = 50
MAX_PRODUCT_FIELDS = 50
MAX_NOTE_TEXT = 512
MAX_RECOMMENDATION_TEXT = 512
# Customers change these through BatchUpdateFindings; import never does once the finding exists.
CUSTOMER_FIELDS = ("Note", "UserDefinedFields", "VerificationState", "Workflow", "WorkflowState")
# Providers set these through FindingProviderFields; the top-level copy is the customer's once changed.
PROVIDER_FIELDS = ("Severity", "Types", "Confidence", "Criticality", "RelatedFindings")
UPDATE_FIELDS = (
    "Note",
    "Severity",
    "VerificationState",
    "Confidence",
    "Criticality",
    "Types",
    "UserDefinedFields",
    "Workflow",
    "RelatedFindings",
)
REOPENED_FROM = frozenset({"NOTIFIED", "RESOLVED"})

# moto 5.2.5 lacks BatchUpdateFindings (500) and serves the other two without ASFF checks or filters.
MOTO_MISSING: list[str] = ["BatchUpdateFindings"]
MOTO_TAKEN_OVER: list[str] = ["BatchImportFindings", "GetFindings"]

_POSITIVE = frozenset({"EQUALS", "PREFIX", "CONTAINS"})
_NEGATIVE = frozenset({"NOT_EQUALS", "PREFIX_NOT_EQUALS", "NOT_CONTAINS"})


@dataclass
class StoredFinding:
    finding: dict[str, Any]
    customer_changed: set[str] = field(default_factory=set)  # PROVIDER_FIELDS a customer overrode


def _findings(world: World, ctx: RequestContext) -> dict[tuple[str, str], StoredFinding]:
    settings = world.scenario.securityhub
    if not settings.enabled or ctx.region in settings.disabled_regions:
        raise AwsApiError(
            "InvalidAccessException", f"Account {ctx.account_id} is not subscribed to AWS Security Hub", 401
        )
    hubs: dict[tuple[str, str], dict[tuple[str, str], StoredFinding]] = world.extra.setdefault(STATE_KEY, {})
    return hubs.setdefault((ctx.account_id, ctx.region), {})


def default_product_arn(account_id: str, region: str) -> str:
    return f"arn:aws:securityhub:{region}:{account_id}:product/{account_id}/default"


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _invalid(message: str) -> AwsApiError:
    return AwsApiError("InvalidInputException", message)


# -- ASFF checks -------------------------------------------------------------------------------


def _empty_strings(value: Any, path: str) -> Iterable[str]:
    if isinstance(value, str):
        if not value.strip():
            yield f"{path} should NOT be shorter than 1 characters"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _empty_strings(item, f"{path}.{key}" if re.fullmatch(r"\w+", str(key)) else f"{path}['{key}']")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _empty_strings(item, f"{path}[{index}]")


def _is_timestamp(value: Any) -> bool:
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        return False
    return True


def asff_problems(finding: dict[str, Any], account_id: str) -> list[str]:
    """What keeps a finding out of Security Hub, in the ASFF schema's own words ("data.Title ...")."""
    problems: list[str] = []
    required = ("SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "CreatedAt", "UpdatedAt")
    for name in (*required, "Title", "Description", "Resources"):
        if name not in finding:
            problems.append(f"data should have required property '{name}'")
    has_top_level = "Severity" in finding and "Types" in finding
    if not has_top_level and "FindingProviderFields" not in finding:
        problems.append(
            "data should have required property 'FindingProviderFields', data should match some schema in anyOf"
        )
    problems.extend(_empty_strings(finding, "data"))
    if finding.get("SchemaVersion", SCHEMA_VERSION) != SCHEMA_VERSION:
        problems.append("data.SchemaVersion should be equal to one of the allowed values")
    for name, limit in MAX_LENGTHS.items():
        if len(str(finding.get(name, ""))) > limit:
            problems.append(f"data.{name} should NOT be longer than {limit} characters")
    for name in ("CreatedAt", "UpdatedAt", "FirstObservedAt", "LastObservedAt"):
        if name in finding and not _is_timestamp(finding[name]):
            problems.append(f'data.{name} should match format "date-time"')
    resources = finding.get("Resources", [None])
    if not 1 <= len(resources) <= MAX_RESOURCES:
        problems.append(f"data.Resources should NOT have fewer than 1 items or more than {MAX_RESOURCES} items")
    for where, severity in (("data.Severity", finding.get("Severity")), _provider(finding, "Severity")):
        if severity is not None and "Label" not in severity and "Normalized" not in severity:
            problems.append(f"{where} should have required property 'Label'")
    for where, types in (("data.Types", finding.get("Types")), _provider(finding, "Types")):
        if types is None:
            continue
        if len(types) > MAX_TYPES:
            problems.append(f"{where} should NOT have more than {MAX_TYPES} items")
        for index, kind in enumerate(types):
            parts = str(kind).split("/")
            if parts[0] not in TYPE_NAMESPACES or len(parts) > 3:
                problems.append(f'{where}[{index}] should match pattern "namespace/category/classifier"')
    product_fields = finding.get("ProductFields") or {}
    if len(product_fields) > MAX_PRODUCT_FIELDS:
        problems.append(f"data.ProductFields should NOT have more than {MAX_PRODUCT_FIELDS} properties")
    text = ((finding.get("Remediation") or {}).get("Recommendation") or {}).get("Text", "")
    if len(text) > MAX_RECOMMENDATION_TEXT:
        problems.append(
            f"data.Remediation.Recommendation.Text should NOT be longer than {MAX_RECOMMENDATION_TEXT} characters"
        )
    if len((finding.get("Note") or {}).get("Text", "")) > MAX_NOTE_TEXT:
        problems.append(f"data.Note.Text should NOT be longer than {MAX_NOTE_TEXT} characters")
    if "AwsAccountId" in finding and finding["AwsAccountId"] != account_id:
        problems.append(
            f"data.AwsAccountId must be the calling account {account_id} when importing to the default product"
        )
    return problems


def _provider(finding: dict[str, Any], name: str) -> tuple[str, Any]:
    return f"data.FindingProviderFields.{name}", (finding.get("FindingProviderFields") or {}).get(name)


# -- BatchImportFindings -----------------------------------------------------------------------


def batch_import_findings(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Import each valid finding (create, or update the one with its ProductArn and Id); report the rest."""
    store = _findings(world, ctx)
    findings = params["Findings"]
    if len(json.dumps(params).encode()) > MAX_REQUEST_BYTES:
        raise _invalid(f"The request is larger than the maximum of {MAX_REQUEST_BYTES} bytes")
    product_arn = default_product_arn(ctx.account_id, ctx.region)
    for finding in findings:
        if finding.get("ProductArn") != product_arn:
            raise _invalid(f"productArn: {finding.get('ProductArn')!r} is not a product this account can import to")
    failed = []
    for finding in findings:
        problems = asff_problems(finding, ctx.account_id)
        if len(json.dumps(finding).encode()) > MAX_FINDING_BYTES:
            problems.append(f"The finding is larger than the maximum of {MAX_FINDING_BYTES} bytes")
        if problems:
            message = "Finding does not adhere to Amazon Finding Format. " + ", ".join(problems) + "."
            failed.append({"Id": str(finding.get("Id") or "-"), "ErrorCode": "InvalidInput", "ErrorMessage": message})
            continue
        _upsert(store, finding, ctx.region)
    return {"FailedCount": len(failed), "SuccessCount": len(findings) - len(failed), "FailedFindings": failed}


def _upsert(store: dict[tuple[str, str], StoredFinding], finding: dict[str, Any], region: str) -> None:
    incoming = copy.deepcopy(finding)
    incoming["Region"] = region  # Security Hub sets it; providers cannot
    incoming.setdefault("RecordState", "ACTIVE")
    provided = dict(incoming.get("FindingProviderFields") or {})
    for name in PROVIDER_FIELDS:
        if name in provided:
            incoming[name] = copy.deepcopy(provided[name])
        elif name in incoming:
            provided[name] = copy.deepcopy(incoming[name])
    if provided:
        incoming["FindingProviderFields"] = provided
    key = (incoming["ProductArn"], incoming["Id"])
    stored = store.get(key)
    if stored is None:
        status = (incoming.get("Workflow") or {}).get("Status", "NEW")
        incoming["Workflow"] = {"Status": status}
        store[key] = StoredFinding(incoming)
        return
    old = stored.finding
    for name in ("CreatedAt", "FirstObservedAt"):
        if name in old:
            incoming[name] = old[name]
    for name in CUSTOMER_FIELDS:
        incoming.pop(name, None)
        if name in old:
            incoming[name] = old[name]
    for name in stored.customer_changed:
        if name in old:
            incoming[name] = old[name]
    if incoming["Workflow"]["Status"] in REOPENED_FROM and _reopens(old, incoming):
        incoming["Workflow"] = {"Status": "NEW"}
    stored.finding = incoming


def _reopens(old: dict[str, Any], new: dict[str, Any]) -> bool:
    unarchived = old.get("RecordState") == "ARCHIVED" and new.get("RecordState") == "ACTIVE"
    was = (old.get("Compliance") or {}).get("Status")
    now = (new.get("Compliance") or {}).get("Status")
    return unarchived or (was == "PASSED" and now in ("WARNING", "FAILED", "NOT_AVAILABLE"))


# -- GetFindings -------------------------------------------------------------------------------


def _values(finding: dict[str, Any], name: str) -> list[str]:
    """The finding's values for a string filter attribute (several for resources and types)."""
    resources = finding.get("Resources") or []
    extractors: dict[str, Callable[[], list[Any]]] = {
        "Id": lambda: [finding.get("Id")],
        "ProductArn": lambda: [finding.get("ProductArn")],
        "ProductName": lambda: [finding.get("ProductName")],
        "CompanyName": lambda: [finding.get("CompanyName")],
        "GeneratorId": lambda: [finding.get("GeneratorId")],
        "AwsAccountId": lambda: [finding.get("AwsAccountId")],
        "Region": lambda: [finding.get("Region")],
        "Title": lambda: [finding.get("Title")],
        "Type": lambda: list(finding.get("Types") or []),
        "RecordState": lambda: [finding.get("RecordState")],
        "WorkflowStatus": lambda: [(finding.get("Workflow") or {}).get("Status")],
        "ComplianceStatus": lambda: [(finding.get("Compliance") or {}).get("Status")],
        "SeverityLabel": lambda: [(finding.get("Severity") or {}).get("Label")],
        "ResourceId": lambda: [r.get("Id") for r in resources],
        "ResourceType": lambda: [r.get("Type") for r in resources],
        "ResourceRegion": lambda: [r.get("Region") for r in resources],
        "ResourcePartition": lambda: [r.get("Partition") for r in resources],
    }
    return [str(value) for value in extractors[name]() if value is not None]


# Top-level text fields GetFindings can sort by here (ISO 8601 timestamps sort as text).
SORT_FIELDS = frozenset(
    {"Id", "ProductArn", "GeneratorId", "AwsAccountId", "Title", "CreatedAt", "UpdatedAt", "FirstObservedAt"}
)
STRING_FILTERS = frozenset(
    {
        "Id",
        "ProductArn",
        "ProductName",
        "CompanyName",
        "GeneratorId",
        "AwsAccountId",
        "Region",
        "Title",
        "Type",
        "RecordState",
        "WorkflowStatus",
        "ComplianceStatus",
        "SeverityLabel",
        "ResourceId",
        "ResourceType",
        "ResourceRegion",
        "ResourcePartition",
    }
)


def _compare(comparison: str, have: str, wanted: str) -> bool:
    if comparison in ("EQUALS", "NOT_EQUALS"):
        return have == wanted
    if comparison in ("PREFIX", "PREFIX_NOT_EQUALS"):
        return have.startswith(wanted)
    return wanted in have  # CONTAINS, NOT_CONTAINS


def _field_filter(name: str, filters: list[dict[str, Any]]) -> Callable[[dict[str, Any]], bool]:
    comparisons = {f.get("Comparison", "EQUALS") for f in filters}
    if "CONTAINS_WORD" in comparisons:
        raise _invalid("CONTAINS_WORD is supported only by the V2 finding APIs")
    if "EQUALS" in comparisons and comparisons & {"NOT_EQUALS", "PREFIX_NOT_EQUALS"}:
        raise _invalid(f"{name}: an EQUALS filter cannot be combined with NOT_EQUALS or PREFIX_NOT_EQUALS")
    for lone in ("CONTAINS", "NOT_CONTAINS"):
        if lone in comparisons and len(comparisons) > 1:
            raise _invalid(f"{name}: {lone} filters can only be used with other {lone} filters")
    positive = [
        (f.get("Comparison", "EQUALS"), str(f.get("Value", "")))
        for f in filters
        if f.get("Comparison", "EQUALS") in _POSITIVE
    ]
    negative = [(f["Comparison"], str(f.get("Value", ""))) for f in filters if f.get("Comparison") in _NEGATIVE]

    def matches(finding: dict[str, Any]) -> bool:
        values = _values(finding, name)
        if positive and not any(_compare(c, v, w) for c, w in positive for v in values):
            return False
        return all(not _compare(c, v, w) for c, w in negative for v in values)

    return matches


def _finding_filter(filters: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    used = {name: values for name, values in filters.items() if values}
    if len(used) > MAX_FILTER_ATTRIBUTES:
        raise _invalid(f"You can filter by up to {MAX_FILTER_ATTRIBUTES} finding attributes, got {len(used)}")
    checks = []
    for name, values in used.items():
        if len(values) > MAX_FILTER_VALUES:
            raise _invalid(f"{name}: at most {MAX_FILTER_VALUES} filter values, got {len(values)}")
        if name not in STRING_FILTERS:
            raise AwsApiError("NotImplemented", f"The sandbox does not implement the GetFindings filter {name}", 501)
        checks.append(_field_filter(name, values))
    return lambda finding: all(check(finding) for check in checks)


def get_findings(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """The account's findings in this region that match every filter, sorted, one page."""
    store = _findings(world, ctx)
    keep = _finding_filter(params.get("Filters") or {})
    found = [stored.finding for stored in store.values() if keep(stored.finding)]
    found.sort(key=lambda f: f["Id"])
    criteria = params.get("SortCriteria") or [{"Field": "UpdatedAt", "SortOrder": "desc"}]
    for criterion in reversed(criteria):
        name = criterion.get("Field", "UpdatedAt")
        if name not in SORT_FIELDS:
            raise AwsApiError("NotImplemented", f"The sandbox does not sort findings by {name}", 501)
        found.sort(key=lambda f: str(f.get(name, "")), reverse=criterion.get("SortOrder", "asc") == "desc")
    page, more = paginate(found, params, DEFAULT_MAX_RESULTS)
    return {"Findings": copy.deepcopy(page), **more}


# -- BatchUpdateFindings -----------------------------------------------------------------------


def batch_update_findings(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """A customer's update of 1-100 findings: workflow, note, severity, ...; UpdatedAt is not changed."""
    store = _findings(world, ctx)
    identifiers = params["FindingIdentifiers"]
    if not 1 <= len(identifiers) <= MAX_UPDATE_IDENTIFIERS:
        raise _invalid(f"FindingIdentifiers must list 1 to {MAX_UPDATE_IDENTIFIERS} findings, got {len(identifiers)}")
    changes = {name: params[name] for name in UPDATE_FIELDS if name in params}
    if not changes:
        raise _invalid("At least one field to update must be provided")
    if len(changes.get("Note", {}).get("Text", "")) > MAX_NOTE_TEXT:
        raise _invalid(f"Note.Text must be at most {MAX_NOTE_TEXT} characters")
    now = _iso(world.now())
    processed, unprocessed, seen = [], [], set()
    for identifier in identifiers:
        key = (identifier["ProductArn"], identifier["Id"])
        stored = store.get(key)
        if key in seen:
            code, message = "DuplicatedFindingIdentifier", "The finding identifier is listed more than once"
        elif stored is None:
            code, message = "FindingNotFound", "Finding not found"
        else:
            code, message = "", ""
        seen.add(key)
        if code or stored is None:
            unprocessed.append({"FindingIdentifier": identifier, "ErrorCode": code, "ErrorMessage": message})
            continue
        _apply(stored, changes, now)
        processed.append(identifier)
    return {"ProcessedFindings": processed, "UnprocessedFindings": unprocessed}


def _apply(stored: StoredFinding, changes: dict[str, Any], now: str) -> None:
    finding = stored.finding
    for name, value in changes.items():
        if name == "Note":
            finding["Note"] = {"Text": value["Text"], "UpdatedBy": value["UpdatedBy"], "UpdatedAt": now}
        elif name == "Workflow":
            if "Status" in value:
                finding["Workflow"] = {"Status": value["Status"]}
        elif name == "Severity":
            finding["Severity"] = {**(finding.get("Severity") or {}), **value}
            stored.customer_changed.add(name)
        else:
            finding[name] = copy.deepcopy(value)
            if name in PROVIDER_FIELDS:
                stored.customer_changed.add(name)


HANDLERS: dict[tuple[str, str], Handler] = {
    ("securityhub", "BatchImportFindings"): batch_import_findings,
    ("securityhub", "GetFindings"): get_findings,
    ("securityhub", "BatchUpdateFindings"): batch_update_findings,
}
