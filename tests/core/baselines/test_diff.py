"""core.baselines.diff: fields compared in SSM's normal form, and changes logged leaf by leaf."""

from __future__ import annotations

import pytest

from patchcycle.core.baselines.diff import MANAGED_FIELDS, BaselineDiff, Change, changed_fields, normalized
from tests.core.baselines.samples import APP, WEB, WIN, applied, spec, with_field


def test_what_ssm_answers_after_applying_has_no_changed_field() -> None:
    specs = [spec(WEB), spec(APP), spec(WIN)]
    current, _ = applied(specs)
    for s, baseline in zip(specs, current, strict=True):
        assert changed_fields(s, baseline.fields) == ({}, {})


def test_a_changed_field_is_sent_with_ssms_old_value() -> None:
    before = spec(WEB)
    current, _ = applied([before])
    after = spec(with_field(WEB, "description", "Web tier, now documented"))
    assert changed_fields(after, current[0].fields) == (
        {"Description": "Web tier, now documented"},
        {"Description": "Web tier"},
    )


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


def test_an_update_is_described_leaf_by_leaf() -> None:
    rule = {"PatchFilterGroup": {"PatchFilters": [{"Key": "SEVERITY", "Values": ["Low", "Critical"]}]}}
    update = Change(
        "update",
        "web",
        "pb-1",
        values={"ApprovalRules": {"PatchRules": [{**rule, "ApproveAfterDays": 4}]}},
        previous={"ApprovalRules": {"PatchRules": [{**rule, "ApproveAfterDays": 3, "ComplianceLevel": "UNSPECIFIED"}]}},
    )
    # The filter values differ in order only, and ComplianceLevel is SSM's default: neither is a difference.
    assert update.describe() == "~ update web: ApprovalRules.PatchRules[0].ApproveAfterDays: 3 -> 4"


def test_a_diff_counts_every_kind_and_lists_what_is_kept() -> None:
    diff = BaselineDiff(
        changes=(Change("register", "web", "pb-1", "blue"), Change("untag", "web", "pb-1", values={"Old": "x"})),
        unchanged=("app",),
        orphans=("old",),
    )
    assert diff.counts() == {
        "create": 0,
        "update": 0,
        "tag": 0,
        "untag": 1,
        "deregister": 0,
        "register": 1,
        "delete": 0,
        "unchanged": 1,
        "orphaned": 1,
    }
    assert diff.lines() == [
        "+ register patch group 'blue' -> web",
        "~ untag web: Old",
        "= app unchanged",
        "? old is managed but no longer declared: kept (prune deletes it)",
    ]
    assert not diff.empty and BaselineDiff(changes=()).empty
