"""core.baselines: the YAML model's validation (each rule names the file and the field) and the pure diff."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from include.sandbox.scenario import DEFAULT_SCENARIO
from patchcycle.core.baselines import (
    MANAGED_FIELDS,
    MANAGED_TAG_KEY,
    MANAGED_TAG_VALUE,
    BaselineConfigError,
    BaselineSpec,
    CurrentBaseline,
    OwnershipError,
    Registration,
    changed_fields,
    load_baseline_files,
    normalized,
    parse_baseline,
    parse_baselines,
    plan_baselines,
)

REPO_BASELINES = Path(__file__).resolve().parents[2] / "include" / "baselines"

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


def write(directory: Path, name: str, document: Any) -> Path:
    path = directory / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def spec(document: dict[str, Any], source: str = "test.yaml") -> BaselineSpec:
    return parse_baseline(copy.deepcopy(document), source)


# -- the repository's baselines --------------------------------------------------------------------


def test_the_repository_baselines_cover_the_default_scenarios_patch_groups() -> None:
    specs = load_baseline_files(REPO_BASELINES)
    scenario = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    amis = scenario["amis"]
    fleet = {
        (group["tags"]["PatchGroup"], amis[group["ami"]]["os"])
        for account in scenario["accounts"]
        for region in account["regions"].values()
        for group in region.get("instance_groups", [])
        if "PatchGroup" in group.get("tags", {})
    }
    covered = {(group, s.operating_system) for s in specs for group in s.patch_groups}
    assert fleet <= covered
    assert {s.name for s in specs} == {b["name"] for b in scenario["baselines"]}
    assert all(s.source.startswith(str(REPO_BASELINES)) for s in specs)


def test_a_document_round_trips_through_xcom_form() -> None:
    for document in (WEB, APP, WIN):
        original = spec(document)
        again = parse_baseline(yaml.safe_load(yaml.safe_dump(original.as_document())), original.source)
        assert again == original


def test_api_fields_use_each_operating_systems_filter_keys() -> None:
    rules = {
        name: spec(document).api_fields()["ApprovalRules"]["PatchRules"][0]
        for name, document in (("web", WEB), ("app", APP), ("win", WIN))
    }
    keys = {name: [f["Key"] for f in rule["PatchFilterGroup"]["PatchFilters"]] for name, rule in rules.items()}
    assert keys == {
        "web": ["CLASSIFICATION", "SEVERITY"],
        "app": ["PRIORITY"],
        "win": ["CLASSIFICATION", "MSRC_SEVERITY"],
    }
    assert rules["web"]["ApproveAfterDays"] == 0 and "ApproveUntilDate" not in rules["web"]
    assert rules["win"]["ApproveUntilDate"] == "2026-12-31" and "ApproveAfterDays" not in rules["win"]
    assert "ApproveAfterDays" not in rules["app"] and "ApproveUntilDate" not in rules["app"]
    # EnableNonSecurity is Linux-only: never sent for Windows.
    assert "EnableNonSecurity" not in rules["win"] and rules["web"]["EnableNonSecurity"] is False
    request = spec(WEB).create_request()
    assert {"Key": MANAGED_TAG_KEY, "Value": MANAGED_TAG_VALUE} in request["Tags"]
    assert {"Key": "Tier", "Value": "web"} in request["Tags"]
    assert request["GlobalFilters"] == {"PatchFilters": [{"Key": "PRODUCT", "Values": ["*"]}]}


# -- validation: every rule names the file and the field ---------------------------------------------


def _set(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
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


DELETE = object()

INVALID = [
    # (base document, field to set, value, field path in the message, words of the message)
    (WEB, "colour", "blue", "colour", "unknown field"),
    (WEB, "name", DELETE, "name", "is required"),
    (WEB, "operating_system", DELETE, "operating_system", "is required"),
    (WEB, "description", DELETE, "description", "is required"),
    (WEB, "name", "a b", "name", "3..128 letters"),
    (WEB, "operating_system", "AMAZON_LINUX_2025", "operating_system", "must be one of"),
    (WEB, "description", "x" * 1025, "description", "1..1024"),
    (WEB, "approval_rules[1].approve_after_days", 400, "approval_rules[1].approve_after_days", "integer 0..360"),
    (WEB, "approval_rules[1].approve_after_days", -1, "approval_rules[1].approve_after_days", "integer 0..360"),
    (WEB, "approval_rules[1].approve_after_days", True, "approval_rules[1].approve_after_days", "integer 0..360"),
    (WEB, "approval_rules[1].approve_after_days", "7", "approval_rules[1].approve_after_days", "integer 0..360"),
    (WEB, "approval_rules[0].approve_until_date", "2026-12-31", "approval_rules[0]", "not both"),
    (WEB, "approval_rules[0].approve_after_days", DELETE, "approval_rules[0]", "approve_after_days or"),
    (WIN, "approval_rules[0].approve_until_date", "2026-13-01", "approval_rules[0].approve_until_date", "YYYY-MM-DD"),
    (WIN, "approval_rules[0].approve_until_date", "31/12/2026", "approval_rules[0].approve_until_date", "YYYY-MM-DD"),
    (
        APP,
        "approval_rules[0].approve_after_days",
        5,
        "approval_rules[0].approve_after_days",
        "not supported for UBUNTU",
    ),
    (APP, "approval_rules[0].approve_until_date", "2026-12-01", "approval_rules[0].approve_until_date", "UBUNTU"),
    (APP, "approval_rules[0].classification", ["Security"], "approval_rules[0].classification", "no classification"),
    (WEB, "approval_rules[0].classification", ["SecurityUpdates"], "approval_rules[0].classification[0]", "one of"),
    (WIN, "approval_rules[0].severity", ["Medium"], "approval_rules[0].severity[0]", "one of"),
    (APP, "approval_rules[0].severity", ["Critical"], "approval_rules[0].severity[0]", "one of"),
    (WEB, "approval_rules[0].severity", [], "approval_rules[0].severity", "1..20 values"),
    (WEB, "approval_rules[0].products", [f"p{n}" for n in range(21)], "approval_rules[0].products", "1..20"),
    (WEB, "approval_rules[0].products", ["x" * 65], "approval_rules[0].products[0]", "1..64"),
    (WEB, "approval_rules[0].severity", ["Critical", "Critical"], "approval_rules[0].severity", "twice"),
    (WEB, "approval_rules[0].compliance_level", "SEVERE", "approval_rules[0].compliance_level", "must be one of"),
    (WEB, "approval_rules[0].enable_non_security", "yes", "approval_rules[0].enable_non_security", "true or false"),
    (WIN, "approval_rules[0].enable_non_security", True, "approval_rules[0].enable_non_security", "Linux only"),
    (WEB, "approval_rules[0].approve_days", 3, "approval_rules[0].approve_days", "unknown field"),
    (WEB, "approval_rules[0]", "Security", "approval_rules[0]", "must be a mapping"),
    (WEB, "approval_rules", [WEB["approval_rules"][1]] * 11, "approval_rules", "at most 10"),
    (WEB, "approved_patches", [f"ALAS-{n}" for n in range(51)], "approved_patches", "at most 50"),
    (WEB, "approved_patches", ["ALAS-1", "ALAS-1"], "approved_patches", "twice"),
    (WEB, "approved_patches", [""], "approved_patches[0]", "1..100"),
    (WEB, "rejected_patches", ["ALAS2023-2026-1001"], "rejected_patches", "also in approved_patches"),
    (WEB, "approved_patches_compliance_level", "high", "approved_patches_compliance_level", "must be one of"),
    (WIN, "approved_patches_enable_non_security", True, "approved_patches_enable_non_security", "Linux only"),
    (WEB, "rejected_patches_action", "DENY", "rejected_patches_action", "must be one of"),
    (WEB, "global_filters", {"product": ["*"]}, "global_filters.product", "unknown field"),
    (APP, "global_filters", {"classification": ["Security"]}, "global_filters.classification", "no classification"),
    (WEB, "patch_groups", ["web", "web"], "patch_groups", "twice"),
    (WEB, "patch_groups", ["web;prod"], "patch_groups[0]", "letters, digits"),
    (WEB, "patch_groups", "web", "patch_groups", "must be a list"),
    (WEB, "tags", {MANAGED_TAG_KEY: "false"}, f"tags.{MANAGED_TAG_KEY}", "reserved"),
    (WEB, "tags", {"aws:cloudformation:stack-name": "x"}, "tags.aws:cloudformation:stack-name", "reserved"),
    (WEB, "tags", {"CostCentre": 42}, "tags.CostCentre", "quote numbers"),
]


@pytest.mark.parametrize(
    ("document", "path", "value", "where", "words"),
    INVALID,
    # Ids must not depend on the process (xdist workers compare them): the sentinel has no stable repr.
    ids=[f"{case[1]}={'<deleted>' if case[2] is DELETE else repr(case[2])}"[:60] for case in INVALID],
)
def test_an_invalid_field_fails_naming_the_file_and_the_field(
    tmp_path: Path, document: dict[str, Any], path: str, value: Any, where: str, words: str
) -> None:
    file = write(tmp_path, "tier.yaml", _set(document, path, value))
    with pytest.raises(BaselineConfigError) as raised:
        load_baseline_files(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{file}: {where}: "), message
    assert words in message
    assert (raised.value.source, raised.value.where) == (str(file), where)


def test_the_base_documents_of_the_invalid_cases_are_valid() -> None:
    """So each case above fails for the field it changes, not for something else."""
    for document in (WEB, APP, WIN):
        assert spec(document).name == document["name"]


def test_invalid_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    file = write(tmp_path, "broken.yaml", "name: x\napproval_rules: [\n  - {a: 1\n")
    with pytest.raises(BaselineConfigError, match=rf"^{file}: line \d+: invalid YAML"):
        load_baseline_files(tmp_path)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path, "list.yml", [WEB])
    with pytest.raises(BaselineConfigError, match=rf"^{file}: must be a mapping"):
        load_baseline_files(tmp_path)


def test_an_unquoted_yaml_date_reads_as_the_date(tmp_path: Path) -> None:
    write(tmp_path, "win.yaml", yaml.safe_dump(WIN).replace("'2026-12-31'", "2026-12-31"))
    assert "'" not in (tmp_path / "win.yaml").read_text().split("approve_until_date:")[1].split("\n")[0]
    (loaded,) = load_baseline_files(tmp_path)
    assert loaded.approval_rules[0].approve_until_date == "2026-12-31"


def test_a_directory_without_baselines_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "not a baseline")
    with pytest.raises(BaselineConfigError, match="no baseline files"):
        load_baseline_files(tmp_path)
    with pytest.raises(BaselineConfigError, match="not a directory"):
        load_baseline_files(tmp_path / "missing")


def test_two_files_with_one_name_are_refused_naming_both(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", WEB)
    second = write(tmp_path, "b.yaml", {**WEB, "patch_groups": ["other"]})
    with pytest.raises(BaselineConfigError) as raised:
        load_baseline_files(tmp_path)
    assert str(raised.value).startswith(f"{second}: name: ")
    assert str(first) in str(raised.value)


def test_a_patch_group_claimed_twice_for_one_os_is_refused(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", WEB)
    second = write(tmp_path, "b.yaml", {**WEB, "name": "web-two", "patch_groups": ["blue", "web-canary"]})
    with pytest.raises(BaselineConfigError) as raised:
        load_baseline_files(tmp_path)
    assert str(raised.value).startswith(f"{second}: patch_groups[1]: patch group 'web-canary'")
    assert str(first) in str(raised.value) and "web-al2023" in str(raised.value)


def test_one_patch_group_may_hold_a_baseline_per_operating_system(tmp_path: Path) -> None:
    write(tmp_path, "web.yaml", WEB)
    write(tmp_path, "win.yaml", WIN)
    specs = load_baseline_files(tmp_path)
    assert {(s.name, "web" in s.patch_groups) for s in specs} == {("web-al2023", True), ("windows", True)}


# -- the diff -------------------------------------------------------------------------------------


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


def test_an_empty_account_gets_creates_then_registrations() -> None:
    specs = [spec(WEB), spec(APP), spec(WIN)]
    diff = plan_baselines(specs, [], [])
    kinds = [c.kind for c in diff.changes]
    groups = sum(len(s.patch_groups) for s in specs)
    assert kinds == ["create"] * len(specs) + ["register"] * groups
    assert {(c.baseline_name, c.patch_group) for c in diff.changes if c.kind == "register"} == {
        (s.name, g) for s in specs for g in s.patch_groups
    }
    creates = {c.baseline_name: c.values for c in diff.changes if c.kind == "create"}
    assert creates == {s.name: s.create_request() for s in specs}
    assert all(c.baseline_id == "" for c in diff.changes)  # ids come from the creates
    assert diff.counts()["create"] == len(specs) and diff.counts()["register"] == groups


def test_what_was_applied_diffs_empty() -> None:
    specs = [spec(WEB), spec(APP), spec(WIN)]
    current, registrations = applied(specs)
    diff = plan_baselines(specs, current, registrations)
    assert diff.empty
    assert diff.unchanged == tuple(s.name for s in specs)
    assert diff.lines() == [f"= {s.name} unchanged" for s in specs]
    for s, baseline in zip(specs, current, strict=True):
        assert changed_fields(s, baseline.fields) == ({}, {})


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("approval_rules[1].approve_after_days", 8, "ApprovalRules"),
        ("approval_rules[0].severity", ["Critical", "Important"], "ApprovalRules"),
        ("description", "Web tier, now documented", "Description"),
        ("approved_patches", [], "ApprovedPatches"),
        ("rejected_patches_action", "ALLOW_AS_DEPENDENCY", "RejectedPatchesAction"),
        ("global_filters", DELETE, "GlobalFilters"),
        ("approved_patches_compliance_level", "CRITICAL", "ApprovedPatchesComplianceLevel"),
    ],
)
def test_one_changed_field_is_exactly_one_update_of_that_field(path: str, value: Any, field: str) -> None:
    before = spec(WEB)
    current, registrations = applied([before])
    after = spec(_set(WEB, path, value))
    diff = plan_baselines([after], current, registrations)
    assert [c.kind for c in diff.changes] == ["update"]
    (update,) = diff.changes
    assert update.baseline_id == current[0].baseline_id
    assert dict(update.values) == {field: after.api_fields()[field]}
    assert normalized(field, update.previous[field]) == normalized(field, before.api_fields()[field])
    assert diff.counts()["update"] == 1 and diff.unchanged == ()
    assert field in diff.lines()[0]


def test_tags_follow_the_yaml_and_the_ownership_tag_stays() -> None:
    current, registrations = applied([spec(WEB)])
    current[0] = CurrentBaseline(
        current[0].baseline_id,
        current[0].name,
        current[0].operating_system,
        {**current[0].tags, "Tier": "old", "HandAdded": "x", "aws:cloudformation:stack-name": "s"},
        current[0].fields,
    )
    diff = plan_baselines([spec(_set(WEB, "tags", {"Tier": "web", "Owner": "ops"}))], current, registrations)
    tags = {c.kind: dict(c.values) for c in diff.changes}
    assert tags == {"tag": {"Tier": "web", "Owner": "ops"}, "untag": {"HandAdded": "x"}}


def test_an_unmanaged_baseline_of_the_same_name_is_refused() -> None:
    specs = [spec(WEB), spec(APP)]
    unmanaged = CurrentBaseline("pb-0000000000000000a", WEB["name"], WEB["operating_system"], {"Owner": "someone"})
    with pytest.raises(OwnershipError) as raised:
        plan_baselines(specs, [unmanaged], [])
    (problem,) = raised.value.problems
    assert problem.startswith(f"{WEB['name']}: baseline {unmanaged.baseline_id} ")
    assert "not managed" in problem and MANAGED_TAG_KEY in problem


def test_a_managed_tag_other_than_true_is_not_ownership() -> None:
    looks_managed = CurrentBaseline(
        "pb-0000000000000000a", WEB["name"], WEB["operating_system"], {MANAGED_TAG_KEY: "no"}
    )
    with pytest.raises(OwnershipError):
        plan_baselines([spec(WEB)], [looks_managed], [])


def test_two_baselines_with_the_declared_name_and_an_os_change_are_refused_together() -> None:
    current, _ = applied([spec(WEB), spec(APP)])
    twin = CurrentBaseline("pb-0000000000000000f", WEB["name"], WEB["operating_system"], spec(WEB).all_tags())
    moved_os = spec(_set(APP, "operating_system", "DEBIAN"))
    with pytest.raises(OwnershipError) as raised:
        plan_baselines([spec(WEB), moved_os], [*current, twin], [])
    first, second = raised.value.problems
    assert first.startswith(f"{WEB['name']}: 2 baselines have this name")
    assert second.startswith(f"{APP['name']}: SSM cannot change a baseline's operating system (UBUNTU -> DEBIAN)")


def test_a_patch_group_moving_between_managed_baselines_is_deregistered_then_registered() -> None:
    web, win = spec(WEB), spec(WIN)
    current, registrations = applied([web, win])
    other = spec({**WEB, "name": "web-two", "patch_groups": ["web-canary"]})
    web_now = spec(_set(WEB, "patch_groups", ["web"]))
    diff = plan_baselines([web_now, win, other], current, registrations)
    assert [(c.kind, c.baseline_name, c.patch_group) for c in diff.changes] == [
        ("create", "web-two", ""),
        ("deregister", web.name, "web-canary"),
        ("register", "web-two", "web-canary"),
    ]
    assert diff.changes[1].baseline_id == current[0].baseline_id
    assert web.name not in diff.unchanged and win.name in diff.unchanged


def test_a_patch_group_dropped_from_the_yaml_is_deregistered() -> None:
    current, registrations = applied([spec(WEB)])
    diff = plan_baselines([spec(_set(WEB, "patch_groups", ["web"]))], current, registrations)
    assert [(c.kind, c.patch_group) for c in diff.changes] == [("deregister", "web-canary")]


def test_a_patch_group_an_unmanaged_baseline_holds_is_refused() -> None:
    theirs = CurrentBaseline("pb-0000000000000000b", "their-web", WEB["operating_system"], {})
    held = [Registration("web", WEB["operating_system"], theirs.baseline_id, theirs.name)]
    with pytest.raises(OwnershipError) as raised:
        plan_baselines([spec(WEB)], [theirs], held)
    assert raised.value.problems == (
        f"{WEB['name']}: patch group 'web' is registered with their-web ({theirs.baseline_id}), which patchcycle "
        "does not manage; deregister it by hand first",
    )


def test_unmanaged_baselines_and_their_patch_groups_are_left_alone() -> None:
    theirs = CurrentBaseline("pb-0000000000000000b", "their-db", "REDHAT_ENTERPRISE_LINUX", {})
    # An AWS predefined baseline registered for a group: not Self-owned, so not in `current` at all.
    held = [
        Registration("db", "REDHAT_ENTERPRISE_LINUX", theirs.baseline_id, theirs.name),
        Registration("legacy", "WINDOWS", "arn:aws:ssm:us-east-1:075727635805:patchbaseline/pb-0", "AWS-Default"),
    ]
    diff = plan_baselines([spec(APP)], [theirs], held)
    assert [c.kind for c in diff.changes] == ["create", "register"]


def test_a_managed_baseline_no_file_declares_is_kept_unless_pruned() -> None:
    web, win = spec(WEB), spec(WIN)
    current, registrations = applied([web, win])
    kept = plan_baselines([web], current, registrations)
    assert kept.empty and kept.orphans == (win.name,)
    assert kept.counts()["orphaned"] == 1
    assert any(win.name in line and "prune" in line for line in kept.lines())

    pruned = plan_baselines([web], current, registrations, prune=True)
    assert [(c.kind, c.baseline_name, c.patch_group) for c in pruned.changes] == [
        *sorted(("deregister", win.name, group) for group in win.patch_groups),
        ("delete", win.name, ""),
    ]
    assert pruned.changes[-1].baseline_id == current[1].baseline_id and pruned.orphans == ()


def test_prune_never_deletes_an_unmanaged_baseline() -> None:
    theirs = CurrentBaseline("pb-0000000000000000b", "their-db", "REDHAT_ENTERPRISE_LINUX", {})
    diff = plan_baselines([spec(APP)], [theirs], [], prune=True)
    assert "delete" not in [c.kind for c in diff.changes]


def test_normalized_reads_missing_values_as_ssms_defaults() -> None:
    assert normalized("ApprovedPatchesComplianceLevel", None) == "UNSPECIFIED"
    assert normalized("RejectedPatchesAction", None) == "ALLOW_AS_DEPENDENCY"
    assert normalized("GlobalFilters", None) == normalized("GlobalFilters", {"PatchFilters": []})
    assert normalized("ApprovedPatches", ["b", "a"]) == normalized("ApprovedPatches", ["a", "b"])
    assert normalized("ApprovalRules", {"PatchRules": [{"PatchFilterGroup": {"PatchFilters": []}}]}) == [
        {
            "PatchFilterGroup": [],
            "ComplianceLevel": "UNSPECIFIED",
            "ApproveAfterDays": None,
            "ApproveUntilDate": None,
            "EnableNonSecurity": False,
        }
    ]
    assert set(MANAGED_FIELDS) >= set(spec(WEB).api_fields())
    with pytest.raises(KeyError):
        normalized("Name", "x")


def test_parse_baselines_keeps_the_file_order() -> None:
    documents = {"b.yaml": copy.deepcopy(WIN), "a.yaml": copy.deepcopy(WEB)}
    assert [s.source for s in parse_baselines(documents)] == ["b.yaml", "a.yaml"]


def test_an_update_is_logged_leaf_by_leaf() -> None:
    current, registrations = applied([spec(WEB)])
    days = WEB["approval_rules"][1]["approve_after_days"]
    diff = plan_baselines([spec(_set(WEB, "approval_rules[1].approve_after_days", days + 1))], current, registrations)
    assert diff.lines() == [
        f"~ update {WEB['name']}: ApprovalRules.PatchRules[1].ApproveAfterDays: {days} -> {days + 1}"
    ]
