"""The baselines as frozen values: what a YAML file declares, what SSM holds, and the errors about them.

A BaselineSpec is built by validation.parse_baseline only, so its values are valid for its operating
system; its methods give the SSM API's shapes (CreatePatchBaseline, UpdatePatchBaseline) and the YAML
document back (as_document, which is what travels over XCom).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from patchcycle.core.baselines.vocabulary import MANAGED_TAG_KEY, MANAGED_TAG_VALUE, OS_VOCABULARY


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


# -- what a YAML file declares -------------------------------------------------------------------


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
        """The managed fields (diff.MANAGED_FIELDS) in the shape CreatePatchBaseline and UpdatePatchBaseline take."""
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
        """The baseline as a YAML document (JSON-safe, for XCom); validation.parse_baseline reads it back unchanged."""
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


# -- what SSM holds ------------------------------------------------------------------------------


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
