"""SSM documents as AWS keeps them: CreateDocument, UpdateDocument, GetDocument, DescribeDocument,
UpdateDocumentDefaultVersion, DeleteDocument and ListDocuments, over moto's document store.

moto 5.2.5 stores documents and their versions well enough (its store is kept: versions, DefaultVersion,
LatestVersion, tags, sharing); what it gets wrong is fixed here:

- Automation content is checked as AWS checks it (runbook.parse: InvalidDocumentContent naming the
  problem, InvalidDocumentSchemaVersion); moto only requires a schemaVersion. Documents over 64 KB are
  MaxDocumentSizeExceeded. Names starting with AWS-, Amazon or AMZN are refused in any case (moto only
  refuses lower-case aws-).
- DocumentVersion "$DEFAULT" (moto: "The specified document does not exist") and VersionName, and
  InvalidDocumentVersion (not InvalidDocument) for a version the document does not have.
- Descriptions botocore can parse: PlatformTypes (moto: "Not Implemented (moto)"; Automation documents
  run on Windows, Linux and MacOS, Command documents on their plugins' platforms), DocumentParameter types
  as the model's enum has them (String, StringList), DefaultValue as text, CreatedDate on the simulated
  clock, DisplayName kept.
- UpdateDocument without DocumentVersion updates the latest version.
- ListDocuments filters, then pages (Owner Self / Private / All / an account id, Name, DocumentType,
  PlatformTypes, TargetType, SearchKeyword, tag:KEY; the legacy DocumentFilterList too; InvalidFilterKey
  for another key).

Documents of other types (Command, ChangeCalendar, ...) go through the same handlers, checked as moto
(and change_calendar.py's patches of moto's store) check them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.core.exceptions import ServiceException
from moto.ssm.models import ssm_backends

from include.sandbox import runbook
from include.sandbox.api import Handler, RequestContext
from include.sandbox.paging import paginate
from include.sandbox.protocol import AwsApiError
from include.sandbox.runbook import Runbook
from include.sandbox.world import World

AUTOMATION = "Automation"
ALL_PLATFORMS = ["Windows", "Linux", "MacOS"]
_PLUGIN_PLATFORMS = {
    "aws:runShellScript": {"Linux", "MacOS"},
    "aws:runPowerShellScript": {"Windows", "Linux", "MacOS"},
}
_RESERVED_PREFIXES = ("aws-", "amazon", "amzn")
_DISPLAY_NAMES = "ssm_documents.display_names"  # World.extra: (account, region, name) -> DisplayName

# Operations moto 5.2.5 answers wrongly for Automation documents (see the module docstring).
MOTO_WRONG: list[str] = [
    "CreateDocument",
    "UpdateDocument",
    "GetDocument",
    "DescribeDocument",
    "UpdateDocumentDefaultVersion",
    "DeleteDocument",
    "ListDocuments",
]


def _backend(ctx: RequestContext) -> Any:
    return ssm_backends[ctx.account_id][ctx.region]


def _moto(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ServiceException as error:
        raise AwsApiError(str(error.code), str(error.message)) from None


def document_name(ctx: RequestContext, name_or_arn: str) -> str:
    """A document's name from its name or ARN (arn:aws:ssm:REGION:ACCOUNT:document/NAME)."""
    if not name_or_arn.startswith("arn:"):
        return name_or_arn
    parts = name_or_arn.split(":", 5)
    if len(parts) == 6 and parts[5].startswith("document/") and parts[4] in ("", ctx.account_id):
        return parts[5][len("document/") :]
    raise AwsApiError("InvalidDocument", f"Document {name_or_arn} does not exist in account {ctx.account_id}.")


def _documents(ctx: RequestContext, name_or_arn: str) -> Any:
    documents = _backend(ctx)._documents.get(document_name(ctx, name_or_arn))
    if documents is None:
        raise AwsApiError("InvalidDocument", "The specified document does not exist.")
    return documents


def find_version(documents: Any, version: str | None, version_name: str | None = None) -> Any:
    """One version of a document: a number, $LATEST, $DEFAULT (the default when neither is given), a VersionName."""
    if version == "$LATEST":
        found = documents.get_latest_version()
    elif version == "$DEFAULT" or (version is None and not version_name):
        found = documents.get_default_version()
    elif version is not None:
        found = documents.versions.get(version)
    else:
        found = documents.find_by_version_name(version_name)
    if found is not None and version_name and found.version_name != version_name:
        found = None
    if found is None:
        raise AwsApiError("InvalidDocumentVersion", "The document version is not valid or does not exist.")
    return found


# -- descriptions -------------------------------------------------------------------------------


def _platforms(doc: Any) -> list[str]:
    if doc.document_type == AUTOMATION:
        return list(ALL_PLATFORMS)
    given = [p for p in (doc.platform_types or []) if p in ALL_PLATFORMS]
    if doc.document_type != "Command":
        return given if given or doc.platform_types == [] else list(ALL_PLATFORMS)
    content = doc.content_json if isinstance(doc.content_json, dict) else {}
    runtime = content.get("runtimeConfig")
    plugins = runtime if isinstance(runtime, dict) else {}
    steps = content.get("mainSteps") or [{"action": plugin} for plugin in plugins]
    platforms: set[str] = set()
    for step in steps if isinstance(steps, list) else []:
        action = step.get("action") if isinstance(step, dict) else None
        platforms |= _PLUGIN_PLATFORMS.get(str(action), set(ALL_PLATFORMS))
    return [p for p in ALL_PLATFORMS if p in platforms] or list(ALL_PLATFORMS)


def _parameters(doc: Any) -> list[dict[str, Any]]:
    if doc.document_type == AUTOMATION:
        try:
            book = _parse(doc)
        except AwsApiError:
            return []
        listed = []
        for parameter in book.parameters.values():
            entry: dict[str, Any] = {
                "Name": parameter.name,
                "Type": "StringList" if parameter.type in ("StringList", "MapList") else "String",
            }
            if parameter.description:
                entry["Description"] = parameter.description
            if parameter.has_default:
                values = runbook.default_values(parameter)
                listed_type = parameter.type in ("StringList", "MapList")
                entry["DefaultValue"] = json.dumps(values) if listed_type else values[0]
            listed.append(entry)
        return listed
    listed = []
    for raw in doc.parameter_list or []:
        entry = {"Name": str(raw["Name"]), "Type": "StringList" if raw.get("Type") == "StringList" else "String"}
        if raw.get("Description"):
            entry["Description"] = str(raw["Description"])
        if raw.get("DefaultValue") is not None:
            entry["DefaultValue"] = str(raw["DefaultValue"])
        listed.append(entry)
    return listed


def _created(doc: Any) -> datetime:
    created: datetime = doc.created_date
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def _display_name(world: World, ctx: RequestContext, name: str) -> str | None:
    names: dict[tuple[str, str, str], str] = world.extra.get(_DISPLAY_NAMES, {})
    return names.get((ctx.account_id, ctx.region, name))


def describe(world: World, ctx: RequestContext, documents: Any, doc: Any) -> dict[str, Any]:
    """A DocumentDescription of one version."""
    tags = _backend(ctx)._get_documents_tags(doc.name)
    out: dict[str, Any] = {
        "Hash": doc.hash,
        "HashType": "Sha256",
        "Name": doc.name,
        "Owner": doc.owner,
        "CreatedDate": _created(doc),
        "Status": doc.status,
        "DocumentVersion": doc.document_version,
        "PlatformTypes": _platforms(doc),
        "DocumentType": doc.document_type,
        "LatestVersion": documents.latest_version,
        "DefaultVersion": documents.default_version,
        "DocumentFormat": doc.document_format,
        "Tags": tags,
    }
    description = doc.description
    if isinstance(description, str) and description:
        out["Description"] = description
    parameters = _parameters(doc)
    if parameters:
        out["Parameters"] = parameters
    if doc.schema_version:
        out["SchemaVersion"] = str(doc.schema_version)
    if doc.version_name:
        out["VersionName"] = doc.version_name
    if doc.target_type:
        out["TargetType"] = doc.target_type
    if doc.requires:
        out["Requires"] = doc.requires
    display = _display_name(world, ctx, doc.name)
    if display:
        out["DisplayName"] = display
    return out


def _identifier(world: World, ctx: RequestContext, doc: Any) -> dict[str, Any]:
    """A DocumentIdentifier (ListDocuments): the document's default version."""
    out: dict[str, Any] = {
        "Name": doc.name,
        "CreatedDate": _created(doc),
        "Owner": doc.owner,
        "PlatformTypes": _platforms(doc),
        "DocumentVersion": doc.document_version,
        "DocumentType": doc.document_type,
        "DocumentFormat": doc.document_format,
        "Tags": _backend(ctx)._get_documents_tags(doc.name),
    }
    for key, value in (("SchemaVersion", doc.schema_version), ("VersionName", doc.version_name)):
        if value:
            out[key] = str(value)
    if doc.target_type:
        out["TargetType"] = doc.target_type
    if doc.requires:
        out["Requires"] = doc.requires
    display = _display_name(world, ctx, doc.name)
    if display:
        out["DisplayName"] = display
    return out


# -- content checks ----------------------------------------------------------------------------


def _check_content(content: str, document_type: str, document_format: str) -> None:
    if len(content.encode()) > runbook.MAX_CONTENT_BYTES:
        raise AwsApiError("MaxDocumentSizeExceeded", "The size limit of a document is 64 KB.")
    if document_type != AUTOMATION:
        return
    if document_format not in ("JSON", "YAML"):
        raise runbook.invalid(f"Automation documents are JSON or YAML, not {document_format}.")
    runbook.parse(runbook.load_content(content, document_format))


def _check_name(name: str) -> None:
    if name.lower().startswith(_RESERVED_PREFIXES):
        raise AwsApiError(
            "ValidationException",
            f"Invalid document name {name}: names starting with AWS-, Amazon or AMZN are reserved for AWS.",
        )


def _parse(doc: Any) -> Runbook:
    return _parse_cached(doc.content, doc.document_format)


@functools.lru_cache(maxsize=256)
def _parse_cached(content: str, document_format: str) -> Runbook:
    return runbook.parse(runbook.load_content(content, document_format))


def runbook_for(ctx: RequestContext, name_or_arn: str, version: str | None) -> tuple[str, str, Runbook]:
    """(name, version number, runbook) of the Automation document StartAutomationExecution names."""
    try:
        documents = _documents(ctx, name_or_arn)
    except AwsApiError:
        documents = None
    doc = documents.get_default_version() if documents is not None else None
    if doc is None or doc.document_type != AUTOMATION:
        raise AwsApiError(
            "AutomationDefinitionNotFoundException", f"Automation definition {name_or_arn} could not be found."
        )
    try:
        chosen = find_version(documents, version)
    except AwsApiError:
        raise AwsApiError(
            "AutomationDefinitionVersionNotFoundException",
            f"Automation definition {name_or_arn} has no version {version}.",
        ) from None
    try:
        book = _parse(chosen)
    except AwsApiError as exc:  # stored before the sandbox checked Automation content (not expected)
        raise AwsApiError("InvalidAutomationExecutionParametersException", exc.message) from None
    return str(chosen.name), str(chosen.document_version), book


# -- handlers ------------------------------------------------------------------------------------


def create_document(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["Name"]
    document_type = params.get("DocumentType", "Command")
    document_format = params.get("DocumentFormat", "JSON")
    _check_name(name)
    _check_content(params["Content"], document_type, document_format)
    backend = _backend(ctx)
    documents = _moto(
        lambda: backend.create_document(
            content=params["Content"],
            requires=params.get("Requires"),
            attachments=params.get("Attachments"),
            name=name,
            version_name=params.get("VersionName"),
            document_type=document_type,
            document_format=document_format,
            target_type=params.get("TargetType"),
            tags=params.get("Tags"),
        )
    )
    doc = documents.get_latest_version()
    doc.created_date = world.now()
    if params.get("DisplayName"):
        world.extra.setdefault(_DISPLAY_NAMES, {})[(ctx.account_id, ctx.region, name)] = params["DisplayName"]
    return {"DocumentDescription": describe(world, ctx, documents, doc)}


def update_document(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["Name"]
    documents = _documents(ctx, name)
    document_format = params.get("DocumentFormat", "JSON")
    _check_content(params["Content"], documents.get_default_version().document_type, document_format)
    backend = _backend(ctx)
    _moto(
        lambda: backend.update_document(
            content=params["Content"],
            attachments=params.get("Attachments"),
            name=name,
            version_name=params.get("VersionName"),
            document_version=params.get("DocumentVersion") or "$LATEST",
            document_format=document_format,
            target_type=params.get("TargetType"),
        )
    )
    doc = documents.get_latest_version()
    doc.created_date = world.now()
    if params.get("DisplayName"):
        world.extra.setdefault(_DISPLAY_NAMES, {})[(ctx.account_id, ctx.region, name)] = params["DisplayName"]
    return {"DocumentDescription": describe(world, ctx, documents, doc)}


def describe_document(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    documents = _documents(ctx, params["Name"])
    doc = find_version(documents, params.get("DocumentVersion"), params.get("VersionName"))
    return {"Document": describe(world, ctx, documents, doc)}


def get_document(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    documents = _documents(ctx, params["Name"])
    doc = find_version(documents, params.get("DocumentVersion"), params.get("VersionName"))
    document_format = params.get("DocumentFormat") or doc.document_format
    content = _moto(lambda: _backend(ctx)._get_document_content(document_format, doc))
    out: dict[str, Any] = {
        "Name": doc.name,
        "CreatedDate": _created(doc),
        "DocumentVersion": doc.document_version,
        "Status": doc.status,
        "Content": content,
        "DocumentType": doc.document_type,
        "DocumentFormat": document_format,
    }
    if doc.version_name:
        out["VersionName"] = doc.version_name
    if doc.requires:
        out["Requires"] = doc.requires
    display = _display_name(world, ctx, doc.name)
    if display:
        out["DisplayName"] = display
    return out


def update_document_default_version(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    documents = _documents(ctx, params["Name"])
    doc = find_version(documents, params["DocumentVersion"])
    documents.default_version = doc.document_version
    out: dict[str, Any] = {"Name": doc.name, "DefaultVersion": doc.document_version}
    if doc.version_name:
        out["DefaultVersionName"] = doc.version_name
    return {"Description": out}


def delete_document(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["Name"]
    documents = _documents(ctx, name)
    version = params.get("DocumentVersion")
    if version is not None or params.get("VersionName"):
        version = find_version(documents, version, params.get("VersionName")).document_version
    backend = _backend(ctx)
    _moto(
        lambda: backend.delete_document(
            name=name,
            document_version=version,
            version_name=params.get("VersionName"),
            force=params.get("Force", False),
        )
    )
    if name not in backend._documents:
        world.extra.get(_DISPLAY_NAMES, {}).pop((ctx.account_id, ctx.region, name), None)
    return {}


_FILTER_KEYS = frozenset({"Name", "Owner", "PlatformTypes", "DocumentType", "TargetType", "SearchKeyword"})


def list_documents(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    filters = [(str(f["Key"]), [str(v) for v in f.get("Values") or []]) for f in params.get("Filters") or []]
    filters += [(str(f["key"]), [str(f["value"])]) for f in params.get("DocumentFilterList") or []]
    checks = [_document_filter(ctx, key, values) for key, values in filters]
    backend = _backend(ctx)
    chosen = []
    for name in sorted(backend._documents):
        doc = backend._documents[name].get_default_version()
        if all(check(doc) for check in checks):
            chosen.append(doc)
    page, token = paginate(chosen, params, 10)
    return {"DocumentIdentifiers": [_identifier(world, ctx, doc) for doc in page], **token}


def _document_filter(ctx: RequestContext, key: str, values: list[str]) -> Callable[[Any], bool]:
    wanted = set(values)
    if key.startswith("tag:"):
        tag = key[len("tag:") :]
        backend = _backend(ctx)
        return lambda doc: backend._resource_tags.get("Document", {}).get(doc.name, {}).get(tag) in wanted
    if key not in _FILTER_KEYS:
        raise AwsApiError("InvalidFilterKey", f"The filter key {key} isn't valid for ListDocuments.")
    if key == "Owner":
        own = bool(wanted & {"Self", "Private", "All", ctx.account_id})
        return lambda doc: own
    if key == "Name":
        return lambda doc: doc.name in wanted
    if key == "SearchKeyword":
        lowered = [v.lower() for v in values]
        return lambda doc: any(v in doc.name.lower() for v in lowered)
    if key == "PlatformTypes":
        return lambda doc: bool(wanted & set(_platforms(doc)))
    if key == "DocumentType":
        return lambda doc: doc.document_type in wanted
    return lambda doc: doc.target_type in wanted


HANDLERS: dict[tuple[str, str], Handler] = {
    ("ssm", "CreateDocument"): create_document,
    ("ssm", "UpdateDocument"): update_document,
    ("ssm", "DescribeDocument"): describe_document,
    ("ssm", "GetDocument"): get_document,
    ("ssm", "UpdateDocumentDefaultVersion"): update_document_default_version,
    ("ssm", "DeleteDocument"): delete_document,
    ("ssm", "ListDocuments"): list_documents,
}
