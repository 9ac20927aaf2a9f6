"""Baseline documents and SSM states the baselines tests share."""

from __future__ import annotations

import copy
from typing import Any

from patchcycle.baseline_files import baseline_validator
from patchcycle.core.baselines.model import BaselineSpec, CurrentBaseline, Registration
from patchcycle.core.baselines.validation import parse_baseline

WEB: dict[str, Any] = {
    "name": "web-al2023",
    "operating_system": "AMAZON_LINUX_2023",
    "description": "Web tier",
    "patch_groups": ["web", "web-canary"],
    "approval_rules": [
        {"classification": ["Security"], "severity": ["Critical"], "approve_after_days": 0, "compliance_level": "HIGH"},
        {"classification": ["Bugfix"], "approve_after_days": 7, "compliance_level": "LOW"},
    ],
    "approved_patches": ["ALAS2023-2026-1001"],
    "rejected_patches": ["ALAS2023-2026-1002"],
    "rejected_patches_action": "BLOCK",
    "global_filters": {"products": ["*"]},
    "tags": {"Tier": "web"},
}
APP: dict[str, Any] = {
    "name": "app-ubuntu",
    "operating_system": "UBUNTU",
    "description": "App tier",
    "patch_groups": ["app"],
    "approval_rules": [{"severity": ["Required", "Important"], "compliance_level": "CRITICAL"}],
}
WIN: dict[str, Any] = {
    "name": "windows",
    "operating_system": "WINDOWS",
    "description": "Windows tier",
    "patch_groups": ["windows", "web"],  # web again, for another OS: SSM allows one baseline per OS
    "approval_rules": [
        {
            "classification": ["SecurityUpdates"],
            "severity": ["Critical", "Important"],
            "approve_until_date": "2026-12-31",
        }
    ],
}

DELETE = object()  # with_field's value that removes the field


def spec(document: dict[str, Any], source: str = "test.yaml") -> BaselineSpec:
    """The document validated against the repository's schema."""
    return parse_baseline(copy.deepcopy(document), source, baseline_validator())


def with_field(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of the document with one field (dotted path, [n] for list items) set, or removed for DELETE."""
    changed = copy.deepcopy(document)
    parts = path.replace("[", ".").replace("]", "").split(".")
    node: Any = changed
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return changed


def as_ssm_answers(baseline: BaselineSpec) -> dict[str, Any]:
    """What GetPatchBaseline answers once the baseline is applied: SSM's defaults filled in, lists reordered."""
    fields = baseline.api_fields()
    rules = []
    for rule in fields["ApprovalRules"]["PatchRules"]:
        group = rule["PatchFilterGroup"]["PatchFilters"]
        answered = {
            **rule,
            "PatchFilterGroup": {
                "PatchFilters": [{"Key": f["Key"], "Values": list(reversed(f["Values"]))} for f in reversed(group)]
            },
        }
        answered.setdefault("EnableNonSecurity", False)
        rules.append(answered)
    return {
        **fields,
        "BaselineId": "ignored",
        "ApprovalRules": {"PatchRules": rules},
        "ApprovedPatches": list(reversed(fields["ApprovedPatches"])),
        "ApprovedPatchesEnableNonSecurity": fields.get("ApprovedPatchesEnableNonSecurity", False),
        "PatchGroups": list(baseline.patch_groups),
    }


def applied(specs: list[BaselineSpec]) -> tuple[list[CurrentBaseline], list[Registration]]:
    """SSM's state after the specs were applied: managed baselines, their tags and patch groups."""
    current = [
        CurrentBaseline(f"pb-{n:017x}", s.name, s.operating_system, s.all_tags(), as_ssm_answers(s))
        for n, s in enumerate(specs)
    ]
    registrations = [
        Registration(group, s.operating_system, b.baseline_id, s.name)
        for s, b in zip(specs, current, strict=True)
        for group in s.patch_groups
    ]
    return current, registrations
