"""core.baselines.plan: the changes in apply order, and the ownership rules that refuse a plan."""

from __future__ import annotations

from typing import Any

import pytest

from patchcycle.core.baselines.diff import normalized
from patchcycle.core.baselines.model import CurrentBaseline, OwnershipError, Registration
from patchcycle.core.baselines.plan import plan_baselines
from patchcycle.core.baselines.vocabulary import MANAGED_TAG_KEY
from tests.core.baselines.samples import APP, DELETE, WEB, WIN, applied, spec, with_field


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
    after = spec(with_field(WEB, path, value))
    diff = plan_baselines([after], current, registrations)
    assert [c.kind for c in diff.changes] == ["update"]
    (update,) = diff.changes
    assert update.baseline_id == current[0].baseline_id
    assert dict(update.values) == {field: after.api_fields()[field]}
    assert normalized(field, update.previous[field]) == normalized(field, before.api_fields()[field])
    assert diff.counts()["update"] == 1 and diff.unchanged == ()
    assert field in diff.lines()[0]


def test_an_update_is_logged_leaf_by_leaf() -> None:
    current, registrations = applied([spec(WEB)])
    days = WEB["approval_rules"][1]["approve_after_days"]
    changed = with_field(WEB, "approval_rules[1].approve_after_days", days + 1)
    diff = plan_baselines([spec(changed)], current, registrations)
    assert diff.lines() == [
        f"~ update {WEB['name']}: ApprovalRules.PatchRules[1].ApproveAfterDays: {days} -> {days + 1}"
    ]


def test_tags_follow_the_yaml_and_the_ownership_tag_stays() -> None:
    current, registrations = applied([spec(WEB)])
    current[0] = CurrentBaseline(
        current[0].baseline_id,
        current[0].name,
        current[0].operating_system,
        {**current[0].tags, "Tier": "old", "HandAdded": "x", "aws:cloudformation:stack-name": "s"},
        current[0].fields,
    )
    diff = plan_baselines([spec(with_field(WEB, "tags", {"Tier": "web", "Owner": "ops"}))], current, registrations)
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
    moved_os = spec(with_field(APP, "operating_system", "DEBIAN"))
    with pytest.raises(OwnershipError) as raised:
        plan_baselines([spec(WEB), moved_os], [*current, twin], [])
    first, second = raised.value.problems
    assert first.startswith(f"{WEB['name']}: 2 baselines have this name")
    assert second.startswith(f"{APP['name']}: SSM cannot change a baseline's operating system (UBUNTU -> DEBIAN)")


def test_name_and_patch_group_refusals_are_listed_together_names_first() -> None:
    theirs = CurrentBaseline("pb-0000000000000000b", "their-web", WEB["operating_system"], {})
    unmanaged = CurrentBaseline("pb-0000000000000000a", APP["name"], APP["operating_system"], {})
    held = [Registration("web", WEB["operating_system"], theirs.baseline_id, theirs.name)]
    with pytest.raises(OwnershipError) as raised:
        plan_baselines([spec(WEB), spec(APP)], [theirs, unmanaged], held)
    first, second = raised.value.problems
    assert first.startswith(f"{APP['name']}: baseline {unmanaged.baseline_id} has this name")
    assert second.startswith(f"{WEB['name']}: patch group 'web' is registered with their-web")


def test_a_patch_group_moving_between_managed_baselines_is_deregistered_then_registered() -> None:
    web, win = spec(WEB), spec(WIN)
    current, registrations = applied([web, win])
    other = spec({**WEB, "name": "web-two", "patch_groups": ["web-canary"]})
    web_now = spec(with_field(WEB, "patch_groups", ["web"]))
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
    diff = plan_baselines([spec(with_field(WEB, "patch_groups", ["web"]))], current, registrations)
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
