"""Patch baseline writes and listings (botocore service "ssm") that moto 5.2.5 lacks or gets wrong.

moto keeps the baselines and patch groups (its SSM backend is the state patching.py reads); these
handlers answer the API over that state the way AWS does:

- CreatePatchBaseline with Tags: moto creates the baseline and then fails (InvalidResourceId), because
  its tag store refuses every PatchBaseline. Here the tags are kept (in moto's own tag store), the
  ClientToken makes a retried create return the same baseline, and the approval rules are checked as
  AWS documents them (see _check_rules).
- UpdatePatchBaseline and DescribePatchGroups: not implemented by moto (500). Update changes the fields
  it is given (all optional fields with Replace) and answers the whole baseline.
- DescribePatchBaselines: moto ignores OWNER, treats NAME_PREFIX as an exact name and never pages. Here
  OWNER Self / AWS / All, NAME_PREFIX, OPERATING_SYSTEM and NextToken paging (10 per page unless
  MaxResults says otherwise) work, and AWS's predefined baselines the sandbox knows are listed as AWS's.
- RegisterPatchBaselineForPatchGroup: moto refuses a second operating system on an existing patch group,
  which AWS allows (one baseline per OS); DeregisterPatchBaselineForPatchGroup never deregisters in
  moto. Here a patch group holds one baseline per OS: AlreadyExistsException when that OS already has
  one, InvalidResourceId when deregistering a baseline the group does not have.
- DeletePatchBaseline: moto deletes a baseline its patch groups still use, and fails with a 500 on an
  unknown id. Here: ResourceInUseException while a patch group uses it, DoesNotExistException if unknown.
- Add/RemoveTagsFromResource, ListTagsForResource: PatchBaseline tags as AWS keeps them (moto refuses
  them); other resource types are moto's as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any

from moto.core.exceptions import ServiceException
from moto.ssm.models import FakePatchGroup, ssm_backends

from include.sandbox import patching, ssm_patches
from include.sandbox.api import Handler, RequestContext
from include.sandbox.paging import paginate
from include.sandbox.protocol import AwsApiError
from include.sandbox.world import World

PATCH_BASELINE = "PatchBaseline"
DEFAULT_PAGE = 10
_TOKENS = "ssm_baselines.client_tokens"  # World.extra key: (account, region, ClientToken) -> baseline id

# The patch properties each OS filters on (DescribePatchProperties, plus what AWS's predefined baselines use).
_WINDOWS_KEYS = frozenset({"PATCH_SET", "PRODUCT", "PRODUCT_FAMILY", "CLASSIFICATION", "MSRC_SEVERITY"})
_DEBIAN_KEYS = frozenset({"PRODUCT", "PRIORITY", "SECTION"})
_MACOS_KEYS = frozenset({"PRODUCT", "CLASSIFICATION"})
_LINUX_KEYS = frozenset({"PRODUCT", "CLASSIFICATION", "SEVERITY"})
FILTER_KEYS: dict[str, frozenset[str]] = {
    "WINDOWS": _WINDOWS_KEYS,
    "UBUNTU": _DEBIAN_KEYS,
    "DEBIAN": _DEBIAN_KEYS,
    "RASPBIAN": _DEBIAN_KEYS,
    "MACOS": _MACOS_KEYS,
}
# ApproveAfterDays and ApproveUntilDate are "not supported for Debian Server or Ubuntu Server" (PatchRule).
NO_APPROVAL_DELAY = frozenset({"UBUNTU", "DEBIAN", "RASPBIAN"})
# EnableNonSecurity and ApprovedPatchesEnableNonSecurity "apply to Linux managed nodes only".
_NON_LINUX = frozenset({"WINDOWS", "MACOS"})
_OPTIONAL_FIELDS = {
    "GlobalFilters": "global_filters",
    "ApprovalRules": "approval_rules",
    "ApprovedPatches": "approved_patches",
    "ApprovedPatchesComplianceLevel": "approved_patches_compliance_level",
    "ApprovedPatchesEnableNonSecurity": "approved_patches_enable_non_security",
    "RejectedPatches": "rejected_patches",
    "RejectedPatchesAction": "rejected_patches_action",
    "Description": "description",
    "Sources": "sources",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Operations moto 5.2.5 does not implement (500 NotImplemented), and those it answers wrongly (see above).
MOTO_MISSING: list[str] = ["UpdatePatchBaseline", "DescribePatchGroups"]
MOTO_WRONG: list[str] = [
    "CreatePatchBaseline",
    "DescribePatchBaselines",
    "DeletePatchBaseline",
    "RegisterPatchBaselineForPatchGroup",
    "DeregisterPatchBaselineForPatchGroup",
    "AddTagsToResource",
    "RemoveTagsFromResource",
    "ListTagsForResource",
]


def _backend(ctx: RequestContext) -> Any:
    return ssm_backends[ctx.account_id][ctx.region]


def _own_arn_prefix(ctx: RequestContext) -> str:
    return f"arn:aws:ssm:{ctx.region}:{ctx.account_id}:patchbaseline/"


def _baseline(ctx: RequestContext, baseline_id: str) -> Any:
    """The account's own baseline by id or ARN, else DoesNotExistException."""
    fake = _backend(ctx).baselines.get(baseline_id.removeprefix(_own_arn_prefix(ctx)))
    if fake is None:
        raise AwsApiError("DoesNotExistException", f"Patch Baseline {baseline_id} does not exist.")
    return fake


def _validation(message: str) -> AwsApiError:
    return AwsApiError("ValidationException", message)


# -- what AWS checks beyond botocore's model ---------------------------------------------------


def _check_filters(os: str, group: Any, where: str) -> None:
    allowed = FILTER_KEYS.get(os, _LINUX_KEYS)
    seen: set[str] = set()
    for patch_filter in (group or {}).get("PatchFilters") or ():
        key = patch_filter["Key"]
        if key not in allowed:
            valid = ", ".join(sorted(allowed))
            raise _validation(f"{where}: filter key {key} is not valid for {os}; valid keys: {valid}")
        if key in seen:
            raise _validation(f"{where}: filter key {key} appears more than once")
        seen.add(key)


def _is_date(text: str) -> bool:
    try:
        return bool(_DATE.match(text)) and date.fromisoformat(text) is not None
    except ValueError:
        return False


def _check_rules(os: str, rules: Any, global_filters: Any) -> None:
    _check_filters(os, global_filters, "GlobalFilters")
    for index, rule in enumerate((rules or {}).get("PatchRules") or ()):
        where = f"ApprovalRules.PatchRules[{index}]"
        _check_filters(os, rule.get("PatchFilterGroup"), where)
        after, until = rule.get("ApproveAfterDays"), rule.get("ApproveUntilDate")
        if os in NO_APPROVAL_DELAY:
            if after is not None or until is not None:
                raise _validation(f"{where}: ApproveAfterDays and ApproveUntilDate are not supported for {os}")
        elif (after is None) == (until is None):
            raise _validation(f"{where}: specify either ApproveAfterDays or ApproveUntilDate")
        if until is not None and not _is_date(until):
            raise _validation(f"{where}.ApproveUntilDate: {until!r} is not a date in the format YYYY-MM-DD")
        if rule.get("EnableNonSecurity") and os in _NON_LINUX:
            raise _validation(f"{where}.EnableNonSecurity applies to Linux operating systems only")


# -- create / update / delete ------------------------------------------------------------------


def create_patch_baseline(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """A new baseline (with its tags); the same ClientToken again returns the baseline it created."""
    tokens: dict[tuple[str, str, str], str] = world.extra.setdefault(_TOKENS, {})
    token_key = (ctx.account_id, ctx.region, str(params.get("ClientToken", "")))
    backend = _backend(ctx)
    if params.get("ClientToken") and tokens.get(token_key) in backend.baselines:
        return {"BaselineId": tokens[token_key]}
    os = params.get("OperatingSystem", "WINDOWS")
    _check_rules(os, params.get("ApprovalRules"), params.get("GlobalFilters"))
    if params.get("ApprovedPatchesEnableNonSecurity") and os in _NON_LINUX:
        raise _validation("ApprovedPatchesEnableNonSecurity applies to Linux operating systems only")
    baseline_id: str = backend.create_patch_baseline(
        name=params["Name"],
        operating_system=os,
        global_filters=params.get("GlobalFilters"),
        approval_rules=params.get("ApprovalRules"),
        approved_patches=params.get("ApprovedPatches", []),
        approved_patches_compliance_level=params.get("ApprovedPatchesComplianceLevel"),
        approved_patches_enable_non_security=params.get("ApprovedPatchesEnableNonSecurity"),
        rejected_patches=params.get("RejectedPatches", []),
        rejected_patches_action=params.get("RejectedPatchesAction"),
        description=params.get("Description"),
        sources=params.get("Sources", []),
        tags=None,  # moto's tag store refuses PatchBaseline: kept below instead
    )
    _tags(backend, baseline_id).update({tag["Key"]: tag["Value"] for tag in params.get("Tags", [])})
    patching.baseline_created(world, baseline_id)
    if params.get("ClientToken"):
        tokens[token_key] = baseline_id
    return {"BaselineId": baseline_id}


def update_patch_baseline(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Change the fields given (and, with Replace, reset the optional ones not given); answer the baseline."""
    fake = _baseline(ctx, params["BaselineId"])
    _check_rules(
        fake.operating_system,
        params.get("ApprovalRules", fake.approval_rules),
        params.get("GlobalFilters", fake.global_filters),
    )
    if params.get("ApprovedPatchesEnableNonSecurity") and fake.operating_system in _NON_LINUX:
        raise _validation("ApprovedPatchesEnableNonSecurity applies to Linux operating systems only")
    if "Name" in params:
        fake.name = params["Name"]
    for member, attribute in _OPTIONAL_FIELDS.items():
        if member in params:
            setattr(fake, attribute, params[member])
        elif params.get("Replace"):
            setattr(fake, attribute, None)
    patching.mark_baseline_modified(world, fake.id)
    return ssm_patches.baseline_fields(world, fake)


def _patch_groups_of(backend: Any, baseline_id: str) -> list[str]:
    return sorted(name for name, group in backend.patch_groups.items() if baseline_id in group.associations.values())


def delete_patch_baseline(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Delete an unused baseline; one that a patch group still uses is refused, as on AWS."""
    backend = _backend(ctx)
    fake = _baseline(ctx, params["BaselineId"])
    groups = _patch_groups_of(backend, fake.id)
    if groups:
        raise AwsApiError(
            "ResourceInUseException",
            f"Patch baseline {fake.id} is registered with patch group(s) {', '.join(groups)}; deregister it first.",
        )
    del backend.baselines[fake.id]
    backend._resource_tags[PATCH_BASELINE].pop(fake.id, None)
    return {"BaselineId": fake.id}


# -- listings ----------------------------------------------------------------------------------


def _filters(params: dict[str, Any], keys: Iterable[str]) -> dict[str, list[str]]:
    allowed = tuple(keys)
    found: dict[str, list[str]] = {}
    for raw in params.get("Filters", []):
        key = raw.get("Key")
        if key not in allowed:
            valid = ", ".join(allowed)
            raise AwsApiError("InvalidFilter", f"The filter key {key!r} is not valid. Valid keys: {valid}.")
        values = [str(value) for value in raw.get("Values") or ()]
        if not values:
            raise AwsApiError("InvalidFilter", f"The filter {key!r} needs at least one value.")
        found[key] = values
    return found


def _identity(fake: Any) -> dict[str, Any]:
    identity: dict[str, Any] = {
        "BaselineId": fake.id,
        "BaselineName": fake.name,
        "OperatingSystem": fake.operating_system,
        "DefaultBaseline": False,  # the sandbox never makes a custom baseline an OS default
    }
    if fake.description:
        identity["BaselineDescription"] = fake.description
    return identity


def _predefined_identity(view: patching.BaselineView) -> dict[str, Any]:
    return {
        "BaselineId": view.baseline_id,
        "BaselineName": view.name,
        "OperatingSystem": view.os,
        "BaselineDescription": view.description,
        "DefaultBaseline": True,
    }


def describe_patch_baselines(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """The account's baselines (OWNER Self) and AWS's predefined ones (OWNER AWS), filtered and paged."""
    filters = _filters(params, ("NAME_PREFIX", "OWNER", "OPERATING_SYSTEM"))
    owners = set(filters.get("OWNER", ["All"]))
    if not owners <= {"Self", "AWS", "All"}:
        raise AwsApiError("InvalidFilter", f"OWNER must be Self, AWS or All, not {sorted(owners)}.")
    identities: list[dict[str, Any]] = []
    if owners & {"Self", "All"}:
        identities += [_identity(fake) for fake in _backend(ctx).baselines.values()]
    if owners & {"AWS", "All"}:
        predefined = (patching.default_baseline(os, ctx.region) for os in patching.DEFAULT_BASELINES)
        identities += [_predefined_identity(view) for view in predefined]
    prefixes = filters.get("NAME_PREFIX")
    systems = filters.get("OPERATING_SYSTEM")
    matching = [
        identity
        for identity in identities
        if (prefixes is None or any(identity["BaselineName"].startswith(p) for p in prefixes))
        and (systems is None or identity["OperatingSystem"] in systems)
    ]
    page, more = paginate(matching, params, DEFAULT_PAGE)
    return {"BaselineIdentities": page, **more}


def describe_patch_groups(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """One mapping per (patch group, operating system) that has a baseline registered, by patch group."""
    filters = _filters(params, ("NAME_PREFIX", "OPERATING_SYSTEM"))
    backend = _backend(ctx)
    mappings = []
    for name, group in sorted(backend.patch_groups.items()):
        if "NAME_PREFIX" in filters and not any(name.startswith(p) for p in filters["NAME_PREFIX"]):
            continue
        for os, baseline_id in sorted(group.associations.items()):
            fake = backend.baselines.get(baseline_id)
            if fake is None or ("OPERATING_SYSTEM" in filters and os not in filters["OPERATING_SYSTEM"]):
                continue  # no custom baseline registered for this OS: the OS default applies
            mappings.append({"PatchGroup": name, "BaselineIdentity": _identity(fake)})
    page, more = paginate(mappings, params, DEFAULT_PAGE)
    return {"Mappings": page, **more}


# -- patch groups ------------------------------------------------------------------------------


def register_patch_baseline_for_patch_group(
    world: World, ctx: RequestContext, params: dict[str, Any]
) -> dict[str, Any]:
    """Register the baseline for its OS in the patch group; an OS holds one baseline per patch group."""
    backend = _backend(ctx)
    fake = _baseline(ctx, params["BaselineId"])
    name = params["PatchGroup"]
    group = backend.patch_groups.get(name)
    if group is None:
        group = backend.patch_groups[name] = FakePatchGroup(name, ctx.region)
    current = group.associations.get(fake.operating_system)
    if current in backend.baselines:
        raise AwsApiError(
            "AlreadyExistsException",
            f"Patch Group {name} already has a baseline registered for OperatingSystem {fake.operating_system}.",
        )
    group.associations[fake.operating_system] = fake.id
    return {"BaselineId": fake.id, "PatchGroup": name}


def deregister_patch_baseline_for_patch_group(
    world: World, ctx: RequestContext, params: dict[str, Any]
) -> dict[str, Any]:
    """Remove the baseline from the patch group: its OS falls back to AWS's default baseline."""
    backend = _backend(ctx)
    baseline_id = params["BaselineId"].removeprefix(_own_arn_prefix(ctx))
    name = params["PatchGroup"]
    group = backend.patch_groups.get(name)
    fake = backend.baselines.get(baseline_id)
    if group is None or fake is None or group.associations.get(fake.operating_system) != baseline_id:
        message = f"Patch baseline {baseline_id} is not registered with patch group {name}."
        raise AwsApiError("InvalidResourceId", message)
    group.associations[fake.operating_system] = patching.default_baseline_id(ctx.region, fake.operating_system)
    return {"BaselineId": baseline_id, "PatchGroup": name}


# -- tags --------------------------------------------------------------------------------------


def _tags(backend: Any, baseline_id: str) -> dict[str, str]:
    tags: dict[str, str] = backend._resource_tags[PATCH_BASELINE][baseline_id]
    return tags


def _moto_error(error: ServiceException) -> AwsApiError:
    return AwsApiError(str(error.code), str(error.message))


def add_tags_to_resource(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    backend = _backend(ctx)
    tags = {tag["Key"]: tag["Value"] for tag in params["Tags"]}
    if params["ResourceType"] != PATCH_BASELINE:
        try:
            backend.add_tags_to_resource(params["ResourceType"], params["ResourceId"], tags)
        except ServiceException as error:
            raise _moto_error(error) from None
        return {}
    _tags(backend, _baseline(ctx, params["ResourceId"]).id).update(tags)
    return {}


def remove_tags_from_resource(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    backend = _backend(ctx)
    if params["ResourceType"] != PATCH_BASELINE:
        try:
            backend.remove_tags_from_resource(params["ResourceType"], params["ResourceId"], params["TagKeys"])
        except ServiceException as error:
            raise _moto_error(error) from None
        return {}
    tags = _tags(backend, _baseline(ctx, params["ResourceId"]).id)
    for key in params["TagKeys"]:
        tags.pop(key, None)
    return {}


def list_tags_for_resource(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    backend = _backend(ctx)
    if params["ResourceType"] != PATCH_BASELINE:
        try:
            found = backend.list_tags_for_resource(params["ResourceType"], params["ResourceId"])
        except ServiceException as error:
            raise _moto_error(error) from None
        return {"TagList": [{"Key": k, "Value": v} for k, v in found.items()]}
    tags = _tags(backend, _baseline(ctx, params["ResourceId"]).id)
    return {"TagList": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}


HANDLERS: dict[tuple[str, str], Handler] = {
    ("ssm", "CreatePatchBaseline"): create_patch_baseline,
    ("ssm", "UpdatePatchBaseline"): update_patch_baseline,
    ("ssm", "DeletePatchBaseline"): delete_patch_baseline,
    ("ssm", "DescribePatchBaselines"): describe_patch_baselines,
    ("ssm", "DescribePatchGroups"): describe_patch_groups,
    ("ssm", "RegisterPatchBaselineForPatchGroup"): register_patch_baseline_for_patch_group,
    ("ssm", "DeregisterPatchBaselineForPatchGroup"): deregister_patch_baseline_for_patch_group,
    ("ssm", "AddTagsToResource"): add_tags_to_resource,
    ("ssm", "RemoveTagsFromResource"): remove_tags_from_resource,
    ("ssm", "ListTagsForResource"): list_tags_for_resource,
}
