"""What differs between a declared baseline and SSM's: normalised fields, the changes, and their log lines.

SSM answers GetPatchBaseline with its defaults filled in and lists in its own order, so fields are
compared in a normal form (`normalized`); an update is logged leaf by leaf ("ApprovalRules.PatchRules[0].
ApproveAfterDays: 3 -> 4").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from patchcycle.core.baselines.model import BaselineSpec

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
