"""Patch baselines as code: the YAML model, its validation, the SSM API shape, and the diff against SSM.

One YAML file describes one SSM patch baseline (docs/baselines.md has the format). `load_baseline_files`
reads a directory and validates every file; a bad file fails naming the file and the field path
(`web.yaml: approval_rules[1].approve_after_days: must be an integer 0..360, got 400`).
`plan_baselines` compares the baselines with what SSM holds and returns the changes, in the order that
applies them without leaving anything half-done: creates and updates first, then patch-group moves
(deregister from the old baseline, register to the new), then deletions.

Ownership: the code manages only baselines tagged `patchcycle:managed=true` (it tags what it creates).
An unmanaged baseline is never changed, and a YAML baseline whose name an unmanaged one holds, or a patch
group an unmanaged baseline holds, fails the plan (OwnershipError) before anything changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml

MANAGED_TAG_KEY = "patchcycle:managed"
MANAGED_TAG_VALUE = "true"
BASELINE_SUFFIXES = (".yaml", ".yml")

# botocore's ssm model: OperatingSystem, PatchComplianceLevel, PatchAction.
OPERATING_SYSTEMS = (
    "WINDOWS",
    "AMAZON_LINUX",
    "AMAZON_LINUX_2",
    "AMAZON_LINUX_2022",
    "AMAZON_LINUX_2023",
    "UBUNTU",
    "DEBIAN",
    "RASPBIAN",
    "REDHAT_ENTERPRISE_LINUX",
    "CENTOS",
    "ORACLE_LINUX",
    "ROCKY_LINUX",
    "ALMA_LINUX",
    "SUSE",
    "MACOS",
)
COMPLIANCE_LEVELS = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNSPECIFIED")
REJECTED_PATCHES_ACTIONS = ("ALLOW_AS_DEPENDENCY", "BLOCK")
# The model's limits: 10 rules, 20 values per filter (64 characters each), 50 approved or rejected patch
# ids (100 characters each), approval delay 0..360 days, description 1..1024 characters.
MAX_RULES = 10
MAX_FILTER_VALUES = 20
MAX_FILTER_VALUE_LENGTH = 64
MAX_PATCH_IDS = 50
MAX_PATCH_ID_LENGTH = 100
MAX_APPROVE_AFTER_DAYS = 360
MAX_DESCRIPTION_LENGTH = 1024
MAX_TAGS = 1000
_NAME = re.compile(r"^[a-zA-Z0-9_\-.]{3,128}$")
# PatchGroup, TagKey and TagValue: letters, spaces, digits and _.:/=+-@ (botocore's pattern, in Python's re).
_TAG_TEXT = re.compile(r"^[\w\s.:/=+\-@]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
WILDCARD = "*"


@dataclass(frozen=True)
class OsVocabulary:
    """The filter keys and values an operating system's baselines use (SSM's DescribePatchProperties).

    None for a key: the OS has no such property. An empty value set: any value (not checked here).
    """

    classification_key: str | None
    classifications: frozenset[str]
    severity_key: str | None
    severities: frozenset[str]
    approval_delay: bool = True  # ApproveAfterDays / ApproveUntilDate: not for Debian Server or Ubuntu Server
    linux: bool = True  # EnableNonSecurity and ApprovedPatchesEnableNonSecurity apply to Linux only


_AMAZON = OsVocabulary(
    "CLASSIFICATION",
    frozenset({"Security", "Bugfix", "Enhancement", "Recommended", "Newpackage"}),
    "SEVERITY",
    frozenset({"Critical", "Important", "Medium", "Low"}),
)
_RHEL = OsVocabulary(
    "CLASSIFICATION",
    frozenset({"Security", "Bugfix", "Enhancement", "Recommended", "Newpackage"}),
    "SEVERITY",
    frozenset({"Critical", "Important", "Moderate", "Low"}),
)
_DEBIAN = OsVocabulary(
    None, frozenset(), "PRIORITY", frozenset({"Required", "Important", "Standard", "Optional", "Extra"}), False
)
OS_VOCABULARY: dict[str, OsVocabulary] = {
    "WINDOWS": OsVocabulary(
        "CLASSIFICATION",
        frozenset(
            {
                "CriticalUpdates",
                "DefinitionUpdates",
                "Drivers",
                "FeaturePacks",
                "SecurityUpdates",
                "ServicePacks",
                "Tools",
                "UpdateRollups",
                "Updates",
                "Upgrades",
            }
        ),
        "MSRC_SEVERITY",
        frozenset({"Critical", "Important", "Moderate", "Low", "Unspecified"}),
        linux=False,
    ),
    "AMAZON_LINUX": _AMAZON,
    "AMAZON_LINUX_2": _AMAZON,
    "AMAZON_LINUX_2022": _AMAZON,
    "AMAZON_LINUX_2023": _AMAZON,
    "REDHAT_ENTERPRISE_LINUX": _RHEL,
    "CENTOS": _RHEL,
    "ORACLE_LINUX": _RHEL,
    "ROCKY_LINUX": _RHEL,
    "ALMA_LINUX": _RHEL,
    "SUSE": OsVocabulary(
        "CLASSIFICATION",
        frozenset({"Security", "Recommended", "Optional", "Feature", "Document", "Yast"}),
        "SEVERITY",
        frozenset({"Critical", "Important", "Moderate", "Low"}),
    ),
    "UBUNTU": _DEBIAN,
    "DEBIAN": _DEBIAN,
    "RASPBIAN": _DEBIAN,
    "MACOS": OsVocabulary("CLASSIFICATION", frozenset(), None, frozenset(), linux=False),
}

_FILTER_KEYS = ("products", "classification", "severity")
_RULE_KEYS = (*_FILTER_KEYS, "approve_after_days", "approve_until_date", "compliance_level", "enable_non_security")
_BASELINE_KEYS = (
    "name",
    "operating_system",
    "description",
    "patch_groups",
    "approval_rules",
    "approved_patches",
    "approved_patches_compliance_level",
    "approved_patches_enable_non_security",
    "rejected_patches",
    "rejected_patches_action",
    "global_filters",
    "tags",
)
_REQUIRED_KEYS = ("name", "operating_system", "description")
# The fields of a baseline the YAML manages, as GetPatchBaseline returns them and UpdatePatchBaseline takes them.
MANAGED_FIELDS = (
    "Description",
    "GlobalFilters",
    "ApprovalRules",
    "ApprovedPatches",
    "ApprovedPatchesComplianceLevel",
    "ApprovedPatchesEnableNonSecurity",
    "RejectedPatches",
    "RejectedPatchesAction",
)


class BaselineConfigError(ValueError):
    """A baseline file that is not valid: names the file and the field path."""

    def __init__(self, source: str, where: str, message: str) -> None:
        super().__init__(f"{source}: {where}: {message}" if where else f"{source}: {message}")
        self.source = source
        self.where = where


class OwnershipError(ValueError):
    """The plan would touch what the code does not own (or cannot change); nothing is applied."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


# -- the YAML model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchFilters:
    """Which patches a rule (or the global filters) selects; an empty tuple leaves that property open."""

    products: tuple[str, ...] = ()
    classification: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()

    def api(self, os: str) -> dict[str, Any]:
        """A PatchFilterGroup."""
        vocabulary = OS_VOCABULARY[os]
        filters = []
        if self.products:
            filters.append({"Key": "PRODUCT", "Values": list(self.products)})
        if self.classification and vocabulary.classification_key:
            filters.append({"Key": vocabulary.classification_key, "Values": list(self.classification)})
        if self.severity and vocabulary.severity_key:
            filters.append({"Key": vocabulary.severity_key, "Values": list(self.severity)})
        return {"PatchFilters": filters}

    @property
    def empty(self) -> bool:
        return not (self.products or self.classification or self.severity)

    def as_document(self) -> dict[str, list[str]]:
        found = {"products": self.products, "classification": self.classification, "severity": self.severity}
        return {key: list(values) for key, values in found.items() if values}


@dataclass(frozen=True)
class ApprovalRule:
    filters: PatchFilters
    compliance_level: str = "UNSPECIFIED"
    approve_after_days: int | None = None
    approve_until_date: str | None = None  # YYYY-MM-DD
    enable_non_security: bool = False

    def api(self, os: str) -> dict[str, Any]:
        """A PatchRule."""
        rule: dict[str, Any] = {"PatchFilterGroup": self.filters.api(os), "ComplianceLevel": self.compliance_level}
        if self.approve_after_days is not None:
            rule["ApproveAfterDays"] = self.approve_after_days
        if self.approve_until_date is not None:
            rule["ApproveUntilDate"] = self.approve_until_date
        if OS_VOCABULARY[os].linux:
            rule["EnableNonSecurity"] = self.enable_non_security
        return rule

    def as_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {**self.filters.as_document(), "compliance_level": self.compliance_level}
        if self.approve_after_days is not None:
            document["approve_after_days"] = self.approve_after_days
        if self.approve_until_date is not None:
            document["approve_until_date"] = self.approve_until_date
        document["enable_non_security"] = self.enable_non_security
        return document


@dataclass(frozen=True)
class BaselineSpec:
    """One baseline as its YAML file declares it."""

    source: str  # the file, for messages
    name: str
    operating_system: str
    description: str
    patch_groups: tuple[str, ...] = ()
    approval_rules: tuple[ApprovalRule, ...] = ()
    approved_patches: tuple[str, ...] = ()
    approved_patches_compliance_level: str = "UNSPECIFIED"
    approved_patches_enable_non_security: bool = False
    rejected_patches: tuple[str, ...] = ()
    rejected_patches_action: str = "ALLOW_AS_DEPENDENCY"
    global_filters: PatchFilters = PatchFilters()
    tags: Mapping[str, str] = field(default_factory=dict)

    def api_fields(self) -> dict[str, Any]:
        """The managed fields (MANAGED_FIELDS) in the shape CreatePatchBaseline and UpdatePatchBaseline take."""
        os = self.operating_system
        fields: dict[str, Any] = {
            "Description": self.description,
            "GlobalFilters": self.global_filters.api(os),
            "ApprovalRules": {"PatchRules": [rule.api(os) for rule in self.approval_rules]},
            "ApprovedPatches": list(self.approved_patches),
            "ApprovedPatchesComplianceLevel": self.approved_patches_compliance_level,
            "RejectedPatches": list(self.rejected_patches),
            "RejectedPatchesAction": self.rejected_patches_action,
        }
        if OS_VOCABULARY[os].linux:
            fields["ApprovedPatchesEnableNonSecurity"] = self.approved_patches_enable_non_security
        return fields

    def as_document(self) -> dict[str, Any]:
        """The baseline as a YAML document (JSON-safe, for XCom); parse_baseline reads it back unchanged."""
        document: dict[str, Any] = {
            "name": self.name,
            "operating_system": self.operating_system,
            "description": self.description,
            "patch_groups": list(self.patch_groups),
            "approval_rules": [rule.as_document() for rule in self.approval_rules],
            "approved_patches": list(self.approved_patches),
            "approved_patches_compliance_level": self.approved_patches_compliance_level,
            "approved_patches_enable_non_security": self.approved_patches_enable_non_security,
            "rejected_patches": list(self.rejected_patches),
            "rejected_patches_action": self.rejected_patches_action,
            "tags": dict(self.tags),
        }
        if not self.global_filters.empty:
            document["global_filters"] = self.global_filters.as_document()
        return document

    def all_tags(self) -> dict[str, str]:
        """The YAML's tags plus the ownership tag."""
        return {**self.tags, MANAGED_TAG_KEY: MANAGED_TAG_VALUE}

    def create_request(self) -> dict[str, Any]:
        """CreatePatchBaseline's parameters, tagged as managed."""
        tags = [{"Key": key, "Value": value} for key, value in sorted(self.all_tags().items())]
        return {"Name": self.name, "OperatingSystem": self.operating_system, **self.api_fields(), "Tags": tags}


# -- parsing and validation --------------------------------------------------------------------


def load_baseline_files(directory: Path) -> list[BaselineSpec]:
    """Every *.yaml / *.yml file of the directory (sorted by name), validated one by one and together."""
    if not directory.is_dir():
        raise BaselineConfigError(str(directory), "", "is not a directory of baseline files")
    paths = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in BASELINE_SUFFIXES)
    if not paths:
        raise BaselineConfigError(str(directory), "", "holds no baseline files (*.yaml)")
    return parse_baselines({str(path): read_baseline_document(path) for path in paths})


def read_baseline_document(path: Path) -> Any:
    """A file's YAML document; invalid YAML fails naming the file and the line."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise BaselineConfigError(str(path), where, f"invalid YAML: {problem}") from error


def parse_baselines(documents: Mapping[str, Any]) -> list[BaselineSpec]:
    """Validate each {source: YAML document}, then the set: names and (patch group, OS) claims are unique."""
    specs = [parse_baseline(document, source) for source, document in documents.items()]
    names: dict[str, BaselineSpec] = {}
    claims: dict[tuple[str, str], BaselineSpec] = {}
    for spec in specs:
        if spec.name in names:
            first = names[spec.name].source
            raise BaselineConfigError(spec.source, "name", f"{spec.name!r} is also the name of the baseline in {first}")
        names[spec.name] = spec
        for index, group in enumerate(spec.patch_groups):
            # SSM registers one baseline per operating system in a patch group.
            key = (group, spec.operating_system)
            if key in claims:
                other = claims[key]
                raise BaselineConfigError(
                    spec.source,
                    f"patch_groups[{index}]",
                    f"patch group {group!r} is already claimed for {spec.operating_system} by "
                    f"{other.name!r} ({other.source})",
                )
            claims[key] = spec
    return specs


def parse_baseline(document: Any, source: str) -> BaselineSpec:
    """One baseline file's document, validated (BaselineConfigError names the field)."""

    def fail(where: str, message: str) -> BaselineConfigError:
        return BaselineConfigError(source, where, message)

    if not isinstance(document, Mapping):
        raise fail("", "must be a mapping of baseline fields (name, operating_system, description, ...)")
    _check_keys(document, _BASELINE_KEYS, "", fail)
    for key in _REQUIRED_KEYS:
        if key not in document:
            raise fail(key, "is required")
    name = document["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("name", f"must be 3..128 letters, digits, '_', '-' or '.', got {name!r}")
    os = document["operating_system"]
    if os not in OPERATING_SYSTEMS:
        raise fail("operating_system", f"must be one of {list(OPERATING_SYSTEMS)}, got {os!r}")
    description = document["description"]
    if not isinstance(description, str) or not 0 < len(description) <= MAX_DESCRIPTION_LENGTH:
        raise fail("description", f"must be text of 1..{MAX_DESCRIPTION_LENGTH} characters")
    vocabulary = OS_VOCABULARY[os]
    rules_raw = document.get("approval_rules", [])
    if not isinstance(rules_raw, list) or len(rules_raw) > MAX_RULES:
        raise fail("approval_rules", f"must be a list of at most {MAX_RULES} rules")
    rules = tuple(_rule(raw, os, f"approval_rules[{index}]", fail) for index, raw in enumerate(rules_raw))
    approved = _patch_ids(document.get("approved_patches", []), "approved_patches", fail)
    rejected = _patch_ids(document.get("rejected_patches", []), "rejected_patches", fail)
    both = sorted(set(approved) & set(rejected))
    if both:
        raise fail("rejected_patches", f"{both} are also in approved_patches")
    enable_non_security = _boolean(
        document.get("approved_patches_enable_non_security", False), "approved_patches_enable_non_security", fail
    )
    if enable_non_security and not vocabulary.linux:
        raise fail("approved_patches_enable_non_security", f"applies to Linux only, not {os}")
    global_raw = document.get("global_filters", {})
    if not isinstance(global_raw, Mapping):
        raise fail("global_filters", f"must be a mapping of {list(_FILTER_KEYS)}")
    _check_keys(global_raw, _FILTER_KEYS, "global_filters", fail)
    return BaselineSpec(
        source=source,
        name=name,
        operating_system=os,
        description=description,
        patch_groups=_patch_groups(document.get("patch_groups", []), fail),
        approval_rules=rules,
        approved_patches=approved,
        approved_patches_compliance_level=_choice(
            document.get("approved_patches_compliance_level", "UNSPECIFIED"),
            COMPLIANCE_LEVELS,
            "approved_patches_compliance_level",
            fail,
        ),
        approved_patches_enable_non_security=enable_non_security,
        rejected_patches=rejected,
        rejected_patches_action=_choice(
            document.get("rejected_patches_action", "ALLOW_AS_DEPENDENCY"),
            REJECTED_PATCHES_ACTIONS,
            "rejected_patches_action",
            fail,
        ),
        global_filters=_filters(global_raw, os, "global_filters", fail),
        tags=_tags(document.get("tags", {}), fail),
    )


# Builds the error for a field path of the file being parsed.
Fail = Callable[[str, str], BaselineConfigError]


def _check_keys(raw: Mapping[str, Any], allowed: Iterable[str], where: str, fail: Fail) -> None:
    allowed = tuple(allowed)
    for key in raw:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise fail(path, f"unknown field (allowed: {', '.join(allowed)})")


def _rule(raw: Any, os: str, where: str, fail: Fail) -> ApprovalRule:
    if not isinstance(raw, Mapping):
        raise fail(where, f"must be a mapping of {list(_RULE_KEYS)}")
    _check_keys(raw, _RULE_KEYS, where, fail)
    vocabulary = OS_VOCABULARY[os]
    days = raw.get("approve_after_days")
    until = raw.get("approve_until_date")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 360):
        raise fail(f"{where}.approve_after_days", f"must be an integer 0..{MAX_APPROVE_AFTER_DAYS}, got {days!r}")
    if isinstance(until, date):  # YAML reads an unquoted 2026-12-31 as a date
        until = until.isoformat()
    if until is not None and not _is_date(until):
        raise fail(f"{where}.approve_until_date", f"must be a date YYYY-MM-DD, got {until!r}")
    if not vocabulary.approval_delay:
        for key, value in (("approve_after_days", days), ("approve_until_date", until)):
            if value is not None:
                raise fail(f"{where}.{key}", f"is not supported for {os}: Patch Manager approves its patches at once")
    elif days is None and until is None:
        raise fail(where, "needs approve_after_days or approve_until_date")
    elif days is not None and until is not None:
        raise fail(where, "takes approve_after_days or approve_until_date, not both")
    enable_non_security = _boolean(raw.get("enable_non_security", False), f"{where}.enable_non_security", fail)
    if enable_non_security and not vocabulary.linux:
        raise fail(f"{where}.enable_non_security", f"applies to Linux only, not {os}")
    return ApprovalRule(
        filters=_filters(raw, os, where, fail),
        compliance_level=_choice(
            raw.get("compliance_level", "UNSPECIFIED"), COMPLIANCE_LEVELS, f"{where}.compliance_level", fail
        ),
        approve_after_days=days,
        approve_until_date=until,
        enable_non_security=enable_non_security,
    )


def _filters(raw: Mapping[str, Any], os: str, where: str, fail: Fail) -> PatchFilters:
    vocabulary = OS_VOCABULARY[os]
    known = {
        "products": (True, frozenset[str]()),
        "classification": (vocabulary.classification_key is not None, vocabulary.classifications),
        "severity": (vocabulary.severity_key is not None, vocabulary.severities),
    }
    values: dict[str, tuple[str, ...]] = {}
    for key in _FILTER_KEYS:
        path = f"{where}.{key}" if where else key
        if key not in raw:
            values[key] = ()
            continue
        supported, allowed = known[key]
        if not supported:
            raise fail(path, f"{os} baselines have no {key} filter")
        values[key] = _filter_values(raw[key], allowed, path, fail)
    return PatchFilters(values["products"], values["classification"], values["severity"])


def _filter_values(raw: Any, allowed: frozenset[str], where: str, fail: Fail) -> tuple[str, ...]:
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_FILTER_VALUES:
        raise fail(where, f"must be a list of 1..{MAX_FILTER_VALUES} values")
    for index, value in enumerate(raw):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_FILTER_VALUE_LENGTH:
            raise fail(f"{where}[{index}]", f"must be text of 1..{MAX_FILTER_VALUE_LENGTH} characters, got {value!r}")
        if allowed and value != WILDCARD and value not in allowed:
            raise fail(f"{where}[{index}]", f"must be one of {sorted(allowed)} or '*', got {value!r}")
    if len(set(raw)) != len(raw):
        raise fail(where, "lists a value twice")
    return tuple(raw)


def _patch_ids(raw: Any, where: str, fail: Fail) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_PATCH_IDS:
        raise fail(where, f"must be a list of at most {MAX_PATCH_IDS} patch ids")
    for index, value in enumerate(raw):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_PATCH_ID_LENGTH:
            raise fail(f"{where}[{index}]", f"must be a patch id of 1..{MAX_PATCH_ID_LENGTH} characters, got {value!r}")
    if len(set(raw)) != len(raw):
        raise fail(where, "lists a patch twice")
    return tuple(raw)


def _patch_groups(raw: Any, fail: Fail) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise fail("patch_groups", "must be a list of patch group names")
    for index, value in enumerate(raw):
        if not isinstance(value, str) or not 0 < len(value) <= 256 or not _TAG_TEXT.match(value):
            raise fail(
                f"patch_groups[{index}]",
                f"must be 1..256 letters, digits, spaces or _.:/=+-@, got {value!r}",
            )
    if len(set(raw)) != len(raw):
        raise fail("patch_groups", "lists a patch group twice")
    return tuple(raw)


def _tags(raw: Any, fail: Fail) -> dict[str, str]:
    if not isinstance(raw, Mapping) or len(raw) >= MAX_TAGS:
        raise fail("tags", f"must be a mapping of fewer than {MAX_TAGS} tag keys to values")
    tags: dict[str, str] = {}
    for key, value in raw.items():
        where = f"tags.{key}"
        if not isinstance(key, str) or not 0 < len(key) <= 128 or not _TAG_TEXT.match(key):
            raise fail(where, "tag keys are 1..128 letters, digits, spaces or _.:/=+-@")
        if key.lower().startswith("aws:") or key == MANAGED_TAG_KEY:
            raise fail(where, f"is reserved (aws: is AWS's, {MANAGED_TAG_KEY} is set by the DAG)")
        if not isinstance(value, str) or len(value) > 256 or not _TAG_TEXT.match(value):
            raise fail(where, "tag values are text of up to 256 letters, digits, spaces or _.:/=+-@ (quote numbers)")
        tags[key] = value
    return tags


def _choice(value: Any, choices: tuple[str, ...], where: str, fail: Fail) -> str:
    if value not in choices:
        raise fail(where, f"must be one of {list(choices)}, got {value!r}")
    return str(value)


def _boolean(value: Any, where: str, fail: Fail) -> bool:
    if not isinstance(value, bool):
        raise fail(where, f"must be true or false, got {value!r}")
    return value


def _is_date(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


# -- what SSM holds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CurrentBaseline:
    """A baseline of the account (DescribePatchBaselines owner Self) with its tags.

    `fields` is GetPatchBaseline's answer, read only for managed baselines the YAML declares.
    """

    baseline_id: str
    name: str
    operating_system: str
    tags: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        return self.tags.get(MANAGED_TAG_KEY) == MANAGED_TAG_VALUE


@dataclass(frozen=True)
class Registration:
    """A patch group's baseline for one operating system (DescribePatchGroups)."""

    patch_group: str
    operating_system: str
    baseline_id: str
    baseline_name: str


# -- the diff ----------------------------------------------------------------------------------

ChangeKind = Literal["create", "update", "tag", "untag", "deregister", "register", "delete"]
CHANGE_KINDS: tuple[ChangeKind, ...] = ("create", "update", "tag", "untag", "deregister", "register", "delete")


@dataclass(frozen=True)
class Change:
    """One API call of the plan.

    create: `values` is CreatePatchBaseline's request. update: `values` the changed fields' new values,
    `previous` their old ones. tag: `values` the tags to set. untag: `values` {key: old value} to remove.
    register / deregister: `patch_group`. A baseline still to be created has no baseline_id yet.
    """

    kind: ChangeKind
    baseline_name: str
    baseline_id: str = ""
    patch_group: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)
    previous: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One readable line for the log."""
        name = self.baseline_name
        if self.kind == "create":
            rules = len(self.values["ApprovalRules"]["PatchRules"])
            return f"+ create {name} ({self.values['OperatingSystem']}, {rules} approval rule(s))"
        if self.kind == "update":
            differences = [
                line
                for key, value in self.values.items()
                for line in _differences(_canonical(key, self.previous.get(key)), _canonical(key, value), key)
            ]
            return f"~ update {name}: " + "; ".join(differences)
        if self.kind == "tag":
            return f"~ tag {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(self.values.items()))
        if self.kind == "untag":
            return f"~ untag {name}: " + ", ".join(sorted(self.values))
        if self.kind == "register":
            return f"+ register patch group {self.patch_group!r} -> {name}"
        if self.kind == "deregister":
            return f"- deregister patch group {self.patch_group!r} from {name}"
        return f"- delete {name} ({self.baseline_id})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "baseline": self.baseline_name,
            "baseline_id": self.baseline_id,
            "patch_group": self.patch_group,
            "fields": sorted(self.values) if self.kind in ("update", "tag", "untag") else [],
        }


def _canonical(field_name: str, value: Any) -> Any:
    """A managed field in the API's shape with SSM's defaults filled in and unordered lists sorted (for display)."""

    def group(raw: Any) -> dict[str, Any]:
        filters = sorted((raw or {}).get("PatchFilters") or (), key=lambda f: str(f["Key"]))
        return {"PatchFilters": [{"Key": f["Key"], "Values": sorted(f.get("Values") or ())} for f in filters]}

    if field_name == "GlobalFilters":
        return group(value)
    if field_name == "ApprovalRules":
        defaults = {"ComplianceLevel": "UNSPECIFIED", "EnableNonSecurity": False}
        rules = (value or {}).get("PatchRules") or ()
        return {
            "PatchRules": [
                {**defaults, **rule, "PatchFilterGroup": group(rule.get("PatchFilterGroup"))} for rule in rules
            ]
        }
    return normalized(field_name, value)


def _differences(old: Any, new: Any, path: str) -> list[str]:
    """Where two API values differ, leaf by leaf: "ApprovalRules.PatchRules[0].ApproveAfterDays: 3 -> 4"."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        keys = list(dict.fromkeys([*old, *new]))
        return [line for key in keys for line in _differences(old.get(key), new.get(key), f"{path}.{key}")]
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and len(old) == len(new)
        and all(isinstance(item, Mapping) for item in [*old, *new])
    ):
        return [
            line
            for index, pair in enumerate(zip(old, new, strict=True))
            for line in _differences(*pair, f"{path}[{index}]")
        ]
    return [] if old == new else [f"{path}: {_short(old)} -> {_short(new)}"]


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class BaselineDiff:
    """The changes in apply order, and what needs none."""

    changes: tuple[Change, ...]
    unchanged: tuple[str, ...] = ()  # baselines already as declared
    orphans: tuple[str, ...] = ()  # managed baselines the YAML no longer declares, kept (no prune)

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {kind: sum(1 for c in self.changes if c.kind == kind) for kind in CHANGE_KINDS}
        return {**counts, "unchanged": len(self.unchanged), "orphaned": len(self.orphans)}

    def lines(self) -> list[str]:
        lines = [change.describe() for change in self.changes]
        lines += [f"= {name} unchanged" for name in self.unchanged]
        lines += [f"? {name} is managed but no longer declared: kept (prune deletes it)" for name in self.orphans]
        return lines


def normalized(field_name: str, value: Any) -> Any:
    """A managed field in a canonical form, so that what SSM answers compares equal to what was sent.

    Missing values read as SSM's defaults; filter keys, filter values and patch lists are unordered.
    """
    if field_name == "Description":
        return value or ""
    if field_name == "GlobalFilters":
        return _normalized_group(value)
    if field_name == "ApprovalRules":
        return [
            {
                "PatchFilterGroup": _normalized_group(rule.get("PatchFilterGroup")),
                "ComplianceLevel": rule.get("ComplianceLevel") or "UNSPECIFIED",
                "ApproveAfterDays": rule.get("ApproveAfterDays"),
                "ApproveUntilDate": rule.get("ApproveUntilDate") or None,
                "EnableNonSecurity": bool(rule.get("EnableNonSecurity", False)),
            }
            for rule in (value or {}).get("PatchRules") or ()
        ]
    if field_name in ("ApprovedPatches", "RejectedPatches"):
        return sorted(value or ())
    if field_name == "ApprovedPatchesComplianceLevel":
        return value or "UNSPECIFIED"
    if field_name == "ApprovedPatchesEnableNonSecurity":
        return bool(value)
    if field_name == "RejectedPatchesAction":
        return value or "ALLOW_AS_DEPENDENCY"
    raise KeyError(f"{field_name} is not a managed field")


def _normalized_group(group: Any) -> list[tuple[str, list[str]]]:
    filters = (group or {}).get("PatchFilters") or ()
    return sorted((str(f["Key"]), sorted(str(v) for v in f.get("Values") or ())) for f in filters)


def changed_fields(spec: BaselineSpec, current: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The managed fields whose value differs: (new values to send, old values as SSM has them)."""
    desired = spec.api_fields()
    new: dict[str, Any] = {}
    old: dict[str, Any] = {}
    for name in MANAGED_FIELDS:
        if name not in desired:  # e.g. ApprovedPatchesEnableNonSecurity on Windows: SSM's default stands
            continue
        if normalized(name, desired[name]) != normalized(name, current.get(name)):
            new[name] = desired[name]
            old[name] = current.get(name)
    return new, old


def plan_baselines(
    desired: Sequence[BaselineSpec],
    current: Sequence[CurrentBaseline],
    registrations: Sequence[Registration],
    *,
    prune: bool = False,
) -> BaselineDiff:
    """The changes that make SSM match the YAML; OwnershipError lists every refusal before anything changes."""
    by_name: dict[str, list[CurrentBaseline]] = {}
    for held_baseline in current:
        by_name.setdefault(held_baseline.name, []).append(held_baseline)
    by_id = {b.baseline_id: b for b in current}
    problems: list[str] = []
    existing: dict[str, CurrentBaseline] = {}  # YAML name -> the managed baseline that is it
    for spec in desired:
        same_name = by_name.get(spec.name, [])
        if len(same_name) > 1:
            ids = ", ".join(sorted(b.baseline_id for b in same_name))
            problems.append(f"{spec.name}: {len(same_name)} baselines have this name ({ids}); leave one")
        elif same_name and not same_name[0].managed:
            problems.append(
                f"{spec.name}: baseline {same_name[0].baseline_id} has this name but is not managed by patchcycle "
                f"(no {MANAGED_TAG_KEY}={MANAGED_TAG_VALUE} tag); rename the YAML baseline, or tag that baseline "
                "to hand it over"
            )
        elif same_name and same_name[0].operating_system != spec.operating_system:
            problems.append(
                f"{spec.name}: SSM cannot change a baseline's operating system "
                f"({same_name[0].operating_system} -> {spec.operating_system}); give the YAML baseline a new name"
            )
        elif same_name:
            existing[spec.name] = same_name[0]

    declared = {spec.name for spec in desired}
    orphans = sorted(b.name for b in current if b.managed and b.name not in declared)
    doomed = {b.baseline_id for b in current if b.managed and b.name not in declared} if prune else set()

    changes: list[Change] = []
    unchanged: list[str] = []
    for spec in desired:
        baseline = existing.get(spec.name)
        if baseline is None:
            changes.append(Change("create", spec.name, values=spec.create_request()))
            continue
        touched = False
        new, old = changed_fields(spec, baseline.fields)
        if new:
            changes.append(Change("update", spec.name, baseline.baseline_id, values=new, previous=old))
            touched = True
        wanted_tags = spec.all_tags()
        to_set = {k: v for k, v in wanted_tags.items() if baseline.tags.get(k) != v}
        to_unset = {k: v for k, v in baseline.tags.items() if k not in wanted_tags and not k.startswith("aws:")}
        if to_set:
            changes.append(Change("tag", spec.name, baseline.baseline_id, values=to_set))
            touched = True
        if to_unset:
            changes.append(Change("untag", spec.name, baseline.baseline_id, values=to_unset))
            touched = True
        if not touched:
            unchanged.append(spec.name)

    # Patch groups: one baseline per (patch group, OS). Moves are deregister-then-register, group by group.
    held = {(r.patch_group, r.operating_system): r for r in registrations}
    wanted = {(group, spec.operating_system): spec.name for spec in desired for group in spec.patch_groups}
    group_changes: list[Change] = []
    regrouped: set[str] = set()
    for key in sorted(set(held) | set(wanted)):
        group, _ = key
        registration = held.get(key)
        owner = by_id.get(registration.baseline_id) if registration else None
        target = wanted.get(key)
        target_id = existing[target].baseline_id if target in existing else ""
        if registration is not None and registration.baseline_id == target_id and target_id:
            continue  # already where the YAML wants it
        if registration is not None and target is None:
            if owner is not None and owner.managed and (owner.name in declared or owner.baseline_id in doomed):
                group_changes.append(Change("deregister", owner.name, owner.baseline_id, group))
                regrouped.add(owner.name)
            continue  # an unmanaged baseline's group, or a kept orphan's: not ours to change
        if registration is not None:
            if owner is None or not owner.managed:
                problems.append(
                    f"{target}: patch group {group!r} is registered with {registration.baseline_name} "
                    f"({registration.baseline_id}), which patchcycle does not manage; deregister it by hand first"
                )
                continue
            group_changes.append(Change("deregister", owner.name, owner.baseline_id, group))
            regrouped.add(owner.name)
        assert target is not None
        group_changes.append(Change("register", target, target_id, group))
        regrouped.add(target)
    if problems:
        raise OwnershipError(problems)

    deletions = [Change("delete", b.name, b.baseline_id) for b in current if b.baseline_id in doomed]
    return BaselineDiff(
        changes=(*changes, *group_changes, *deletions),
        unchanged=tuple(name for name in unchanged if name not in regrouped),
        orphans=tuple(name for name in orphans if not prune),
    )
