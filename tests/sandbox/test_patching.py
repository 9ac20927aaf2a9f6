"""Patch Manager semantics (patching.py) and the SSM patch APIs built on them (ssm_patches.py), without HTTP.

Each test seeds a small fleet into a fresh moto (mock_aws) through the real seeder, then drives
patching and the handlers directly. Every handler call checks the request and the response
against botocore's model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws
from moto.ssm.models import ssm_backends
from moto.ssm.responses import SimpleSystemManagerResponse

from include.sandbox import fleet, patching, protocol, ssm_patches
from include.sandbox.api import RequestContext
from include.sandbox.protocol import AwsApiError
from include.sandbox.scenario import ScenarioError, parse_scenario
from include.sandbox.world import ManagedInstance, World

ACCOUNT = "123456789012"
REGION = "us-east-1"
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
AL2023, UBUNTU, WINDOWS = "ami-0a2023000000000a1", "ami-0b2204000000000b1", "ami-0c2022000000000c1"

SCENARIO: dict[str, Any] = {
    "name": "patching-unit",
    "seed": 7,
    "clock": {"start": START.isoformat(), "speed": 1.0},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}, UBUNTU: {"os": "UBUNTU"}, WINDOWS: {"os": "WINDOWS"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [
                        {
                            "name": "web",
                            "count": 12,
                            "ami": AL2023,
                            "tags": {"PatchGroup": "web"},
                            "patched_through": "2026-09-30",
                        },
                        {
                            "name": "app",
                            "count": 2,
                            "ami": UBUNTU,
                            "tags": {"Patch Group": "app"},
                            "patched_through": "2026-10-15",
                        },
                        {"name": "win", "count": 2, "ami": WINDOWS, "patched_through": "2026-09-15"},
                        {
                            "name": "winweb",
                            "count": 1,
                            "ami": WINDOWS,
                            "tags": {"PatchGroup": "web"},
                            "patched_through": "2026-09-15",
                        },
                        {"name": "legacy", "count": 1, "ami": AL2023, "agent": "unmanaged"},
                    ]
                },
                "eu-west-1": {"instance_groups": [{"name": "web-eu", "count": 1, "ami": AL2023}]},
            },
        }
    ],
    "baselines": [
        {
            "name": "al2023-web",
            "os": "AMAZON_LINUX_2023",
            "description": "web tier",
            "patch_groups": ["web"],
            "approval_rules": [
                {
                    "classification": ["Security"],
                    "severity": ["Critical", "Important"],
                    "approve_after_days": 3,
                    "compliance_level": "CRITICAL",
                },
                {
                    "classification": ["Security", "Bugfix"],
                    "severity": ["Medium", "Low"],
                    "approve_after_days": 7,
                    "compliance_level": "MEDIUM",
                },
            ],
            "approved_patches": ["ALAS2023-2026-1021"],
            "rejected_patches": ["ALAS2023-2026-1041"],
        },
        {
            "name": "ubuntu-app",
            "os": "UBUNTU",
            "patch_groups": ["app"],
            "approval_rules": [{"classification": ["Security"], "approve_after_days": 5, "compliance_level": "HIGH"}],
        },
    ],
}

# What a web instance (patched through 2026-09-30) reports against al2023-web at START.
WEB_STATES = {
    "ALAS2023-2026-1012": "INSTALLED",
    "ALAS2023-2026-1018": "INSTALLED",
    "ALAS2023-2026-1021": "INSTALLED",  # Bugfix without severity: approved by the explicit list
    "ALAS2023-2026-1035": "INSTALLED",
    "ALAS2023-2026-1041": "INSTALLED_REJECTED",
    "ALAS2023-2026-1047": "INSTALLED_OTHER",  # Enhancement: no rule approves it
    "ALAS2023-2026-1056": "INSTALLED",
    "ALAS2023-2026-1062": "INSTALLED",
    "ALAS2023-2026-1070": "INSTALLED_OTHER",
    "ALAS2023-2026-1083": "INSTALLED",
    "ALAS2023-2026-1089": "INSTALLED",
    "ALAS2023-2026-1094": "INSTALLED",
    "ALAS2023-2026-1101": "MISSING",
    "ALAS2023-2026-1108": "MISSING",
    "ALAS2023-2026-1119": "MISSING",
    "ALAS2023-2026-1125": "MISSING",
    "ALAS2023-2026-1131": "MISSING",  # Low, 7 days: released 11-12, approved 11-19
    "ALAS2023-2026-1134": "MISSING",
    "ALAS2023-2026-1138": "MISSING",  # Important, 3 days: released 11-17, approved 11-20 00:00
}
WEB_MISSING = sorted(pid for pid, state in WEB_STATES.items() if state == "MISSING")


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        world = World(parse_scenario(copy.deepcopy(SCENARIO), source="<test>"))
        fleet.seed(world)
        yield world


def _group(world: World, name: str, region: str = REGION) -> list[ManagedInstance]:
    instances = world.instances(ACCOUNT, region).values()
    return sorted((i for i in instances if i.group == name), key=lambda i: i.instance_id)


def _web(world: World) -> ManagedInstance:
    return _group(world, "web")[0]


def call(world: World, operation: str, params: dict[str, Any], region: str = REGION) -> dict[str, Any]:
    """Call a handler as the server would: valid request in, response checked against botocore's model."""
    protocol.validate_request("ssm", operation, params)
    ctx = RequestContext(ACCOUNT, region, "ssm", operation)
    result = ssm_patches.HANDLERS[("ssm", operation)](world, ctx, params)
    assert protocol.validate_response("ssm", operation, protocol.to_wire(result)) == []
    return result


def pages(world: World, operation: str, params: dict[str, Any], key: str) -> tuple[list[Any], int]:
    """Every item over all pages, and how many pages it took."""
    items: list[Any] = []
    token: str | None = None
    count = 0
    while True:
        page = call(world, operation, {**params, **({"NextToken": token} if token else {})})
        items.extend(page[key])
        count += 1
        token = page.get("NextToken")
        if token is None:
            return items, count


def _error(world: World, operation: str, params: dict[str, Any]) -> AwsApiError:
    with pytest.raises(AwsApiError) as raised:
        call(world, operation, params)
    return raised.value


def _view(**changes: Any) -> patching.BaselineView:
    rule = patching.Rule(
        (patching.PatchFilter("CLASSIFICATION", ("Security",)), patching.PatchFilter("SEVERITY", ("Critical",))),
        compliance_level="CRITICAL",
        approve_after_days=7,
    )
    fields: dict[str, Any] = {
        "baseline_id": "pb-0123456789abcdef0",
        "name": "t",
        "os": "AMAZON_LINUX_2023",
        "rules": (rule,),
    }
    return patching.BaselineView(**{**fields, **changes})


def _ids(patches: list[Any]) -> list[str]:
    return [patch.id for patch in patches]


# -- approval ------------------------------------------------------------------------------------


def test_rule_approves_only_after_its_delay_counted_from_release(world: World) -> None:
    view = _view()
    openssl = "ALAS2023-2026-1134"  # Security / Critical, released 2026-11-13
    just_before = datetime(2026, 11, 19, 23, 59, 59, tzinfo=UTC)
    assert openssl not in _ids(patching.approved_patches(world.catalog, view, just_before))
    assert openssl in _ids(patching.approved_patches(world.catalog, view, just_before + timedelta(seconds=1)))
    # Every filter of the rule must match: Important or Bugfix patches stay unapproved.
    approved = _ids(patching.approved_patches(world.catalog, view, START))
    assert approved == ["ALAS2023-2026-1056", "ALAS2023-2026-1108", "ALAS2023-2026-1134"]


def test_explicit_approval_and_rejection(world: World) -> None:
    view = _view(approved=("ALAS2023-2026-1070",), rejected=("ALAS2023-2026-1108",), approved_compliance_level="LOW")
    approved = _ids(patching.approved_patches(world.catalog, view, START))
    assert approved == ["ALAS2023-2026-1056", "ALAS2023-2026-1070", "ALAS2023-2026-1134"]
    bugfix = world.catalog.get("ALAS2023-2026-1070")
    assert bugfix is not None and patching.approval_level(bugfix, view, START) == "LOW"
    # Rejection wins over the approved list too.
    both = _view(approved=("ALAS2023-2026-1070",), rejected=("ALAS2023-2026-1070",))
    assert "ALAS2023-2026-1070" not in _ids(patching.approved_patches(world.catalog, both, START))


def test_the_most_severe_approving_rule_sets_the_compliance_level(world: World) -> None:
    loose = patching.Rule((patching.PatchFilter("CLASSIFICATION", ("Security",)),), "LOW", approve_after_days=0)
    view = _view(rules=(loose, *_view().rules))
    levels = patching.approval_levels(world.catalog, view, START)
    assert levels["ALAS2023-2026-1134"] == "CRITICAL"
    assert levels["ALAS2023-2026-1138"] == "LOW"  # only the loose rule approves it
    assert "ALAS2023-2026-1140" not in levels  # Enhancement


def test_ubuntu_approves_without_delay_and_global_filters_narrow_rules(world: World) -> None:
    rule = patching.Rule((patching.PatchFilter("SECTION", ("Security",)),), approve_after_days=30)
    ubuntu = _view(os="UBUNTU", rules=(rule,))
    assert "USN-7855-1" in _ids(patching.approved_patches(world.catalog, ubuntu, START))  # released 2 days ago
    narrowed = _view(os="UBUNTU", rules=(rule,), global_filters=(patching.PatchFilter("PRIORITY", ("Critical",)),))
    assert _ids(patching.approved_patches(world.catalog, narrowed, START)) == ["USN-7690-1", "USN-7795-1", "USN-7848-1"]


def test_patches_released_after_now_do_not_exist_yet(world: World) -> None:
    view = _view(rules=(patching.Rule((), approve_after_days=0),))
    before = datetime(2026, 11, 16, tzinfo=UTC)
    assert _ids(patching.applicable_patches(world.catalog, "AMAZON_LINUX_2023", before))[-1] == "ALAS2023-2026-1134"
    assert "ALAS2023-2026-1138" not in _ids(patching.approved_patches(world.catalog, view, before))


# -- baselines -----------------------------------------------------------------------------------


def test_scenario_baselines_are_created_in_moto_in_the_api_shape(world: World) -> None:
    backend = ssm_backends[ACCOUNT][REGION]
    by_name = {fake.name: fake for fake in backend.baselines.values()}
    assert set(by_name) == {"al2023-web", "ubuntu-app"}
    web = by_name["al2023-web"]
    assert web.approval_rules is not None and web.approval_rules["PatchRules"][0] == {
        "PatchFilterGroup": {
            "PatchFilters": [
                {"Key": "CLASSIFICATION", "Values": ["Security"]},
                {"Key": "SEVERITY", "Values": ["Critical", "Important"]},
            ]
        },
        "ComplianceLevel": "CRITICAL",
        "ApproveAfterDays": 3,
    }
    assert web.rejected_patches_action == "BLOCK"
    assert backend.patch_groups["web"].associations["AMAZON_LINUX_2023"] == web.id
    # Ubuntu speaks SECTION/PRIORITY and takes no ApproveAfterDays.
    ubuntu_rules = by_name["ubuntu-app"].approval_rules
    assert ubuntu_rules is not None
    ubuntu_rule = ubuntu_rules["PatchRules"][0]
    assert ubuntu_rule["PatchFilterGroup"]["PatchFilters"] == [{"Key": "SECTION", "Values": ["Security"]}]
    assert "ApproveAfterDays" not in ubuntu_rule
    # Every region of the scenario gets them; seeding again adds nothing.
    assert {fake.name for fake in ssm_backends[ACCOUNT]["eu-west-1"].baselines.values()} == {"al2023-web", "ubuntu-app"}
    patching.register_scenario_baselines(world, ACCOUNT, REGION)
    assert len(backend.baselines) == 2


def test_effective_baseline_follows_patch_group_then_the_os_default(world: World) -> None:
    assert patching.effective_baseline(world, _web(world)).name == "al2023-web"
    assert patching.effective_baseline(world, _group(world, "app")[0]).name == "ubuntu-app"  # "Patch Group" tag
    windows = patching.effective_baseline(world, _group(world, "win")[0])
    assert windows.name == "AWS-DefaultPatchBaseline" and windows.predefined
    assert windows.baseline_id == "arn:aws:ssm:us-east-1:075727635805:patchbaseline/pb-09ca3fb51f0412ec3"
    # The web patch group has no Windows baseline: its Windows instance gets the default.
    assert patching.effective_baseline(world, _group(world, "winweb")[0]).baseline_id == windows.baseline_id
    eu = patching.effective_baseline(world, _group(world, "web-eu", "eu-west-1")[0])
    assert eu.name == "AWS-AmazonLinux2023DefaultPatchBaseline" and ":eu-west-1:" in eu.baseline_id


def test_one_patch_group_may_have_a_baseline_per_os(world: World) -> None:
    scenario = copy.deepcopy(SCENARIO)
    scenario["baselines"].append(
        {
            "name": "windows-web",
            "os": "WINDOWS",
            "patch_groups": ["web"],
            "approval_rules": [{"classification": ["Updates"]}],
        }
    )
    with mock_aws():
        other = World(parse_scenario(scenario))
        fleet.seed(other)
        assert patching.effective_baseline(other, _group(other, "winweb")[0]).name == "windows-web"
        assert patching.effective_baseline(other, _web(other)).name == "al2023-web"


def test_two_baselines_claiming_a_patch_group_for_one_os_is_a_scenario_error() -> None:
    scenario = copy.deepcopy(SCENARIO)
    clash = copy.deepcopy(scenario["baselines"][0])
    clash["name"] = "al2023-web-too"
    scenario["baselines"].append(clash)
    with mock_aws():
        other = World(parse_scenario(scenario))
        with pytest.raises(ScenarioError, match="both register patch group 'web' for AMAZON_LINUX_2023"):
            fleet.seed(other)


# -- seeding, scan and install -------------------------------------------------------------------


def test_seeded_instances_report_from_the_start(world: World) -> None:
    web = _web(world)
    assert web.installed["ALAS2023-2026-1094"] == datetime(2026, 10, 2, tzinfo=UTC)  # released 09-29, +3 days
    assert "ALAS2023-2026-1101" not in web.installed
    report = web.report
    assert report is not None and report.operation == "Scan" and report.end <= world.now()
    assert report.states == WEB_STATES
    assert patching.report_counts(report) == {
        "InstalledCount": 9,
        "InstalledOtherCount": 2,
        "InstalledPendingRebootCount": 0,
        "InstalledRejectedCount": 1,
        "MissingCount": 7,
        "FailedCount": 0,
        "NotApplicableCount": 0,
        "UnreportedNotApplicableCount": 0,
        "CriticalNonCompliantCount": 5,  # the missing Critical/Important ones (rule level CRITICAL)
        "SecurityNonCompliantCount": 8,  # the 7 missing and the installed rejected one
        "OtherNonCompliantCount": 0,
    }
    assert _group(world, "legacy")[0].report is None  # never registered: never reported


def test_scan_then_install_installs_what_the_baseline_approves(world: World) -> None:
    web = _web(world)
    now = world.now()
    report, ok = patching.install(world, web, now, now + timedelta(minutes=5))
    assert ok
    assert {pid for pid, state in report.states.items() if state == "INSTALLED"} >= set(WEB_MISSING)
    assert patching.report_counts(report)["MissingCount"] == 0
    assert report.operation == "Install" and web.report is report
    assert web.installed["ALAS2023-2026-1138"] == now + timedelta(minutes=5)
    # Unapproved patches stay as they were: not installed, not reported.
    assert "ALAS2023-2026-1112" not in web.installed and "ALAS2023-2026-1112" not in report.states
    assert report.states["ALAS2023-2026-1047"] == "INSTALLED_OTHER"
    assert patching.is_compliant(report) is False  # the installed rejected patch remains
    rescan = patching.scan(world, web, now + timedelta(minutes=6), now + timedelta(minutes=7))
    assert rescan.states == report.states and rescan.operation == "Scan"


def test_install_failures_are_reported_failed_and_fail_the_operation(world: World) -> None:
    web = _web(world)
    web.faults.install_fails.update({"ALAS2023-2026-1108", "ALAS2023-2026-1047"})  # the second is installed already
    now = world.now()
    report, ok = patching.install(world, web, now, now)
    assert not ok
    assert report.states["ALAS2023-2026-1108"] == "FAILED"
    assert web.failed == {"ALAS2023-2026-1108"}
    assert patching.report_counts(report)["FailedCount"] == 1
    assert all(report.states[pid] == "INSTALLED" for pid in WEB_MISSING if pid != "ALAS2023-2026-1108")
    # A later scan sees the patch as still missing: only the failed Install reports FAILED.
    assert patching.scan(world, web, now, now).states["ALAS2023-2026-1108"] == "MISSING"


def test_no_reboot_leaves_reboot_patches_pending_until_a_reboot(world: World) -> None:
    web = _web(world)
    now = world.now()
    report, ok = patching.install(world, web, now, now, reboot_option="NoReboot")
    assert ok
    pending = {pid for pid, state in report.states.items() if state == "INSTALLED_PENDING_REBOOT"}
    assert pending == {"ALAS2023-2026-1108", "ALAS2023-2026-1138"}  # the kernels
    assert report.states["ALAS2023-2026-1134"] == "INSTALLED"
    assert report.critical_noncompliant == 2 and report.reboot_option == "NoReboot"
    assert isinstance(report, patching.PatchStateReport) and report.last_no_reboot_install == now
    later = now + timedelta(hours=1)
    rebooted, _ = patching.install(world, web, later, later)  # nothing left to install, but a reboot is pending
    assert {pid for pid, state in rebooted.states.items() if state == "INSTALLED_PENDING_REBOOT"} == set()
    assert rebooted.states["ALAS2023-2026-1108"] == "INSTALLED"
    assert isinstance(rebooted, patching.PatchStateReport) and rebooted.last_no_reboot_install == now


def test_reboot_required_fault_keeps_patches_pending_whatever_the_option(world: World) -> None:
    web = _web(world)
    web.faults.reboot_required = True
    now = world.now()
    report, ok = patching.install(world, web, now, now)
    assert ok
    assert {pid for pid, state in report.states.items() if state == "INSTALLED_PENDING_REBOOT"} == set(WEB_MISSING)


def test_override_list_installs_exactly_the_listed_applicable_patches(world: World) -> None:
    web = _web(world)
    before = dict(web.installed)
    now = world.now()
    wanted = {"ALAS2023-2026-1108", "ALAS2023-2026-1112", "ALAS2023-2026-1012", "KB5070506", "ALAS2023-2099-0001"}
    url = "s3://patch-lists/run-1/override.yaml"
    report, ok = patching.install(world, web, now, now, override_ids=wanted, install_override_list=url)
    assert ok
    assert set(web.installed) - set(before) == {"ALAS2023-2026-1108", "ALAS2023-2026-1112"}
    assert web.installed["ALAS2023-2026-1012"] == before["ALAS2023-2026-1012"]  # already there: untouched
    assert report.states["ALAS2023-2026-1112"] == "INSTALLED_OTHER"  # not approved by the baseline
    assert report.states["ALAS2023-2026-1134"] == "MISSING"  # approved, but not on the list
    assert report.install_override_list == url


def test_scan_fails_raises_and_keeps_the_last_report(world: World) -> None:
    web = _web(world)
    last = web.report
    web.faults.scan_fails = True
    now = world.now()
    with pytest.raises(patching.ScanFailed, match=web.instance_id):
        patching.scan(world, web, now, now)
    with pytest.raises(patching.ScanFailed):
        patching.install(world, web, now, now)
    assert web.report is last and "ALAS2023-2026-1108" not in web.installed


def test_rejected_patches_count_as_installed_other_under_allow_as_dependency(world: World) -> None:
    web = _web(world)
    view = patching.effective_baseline(world, web)
    allowing = patching.BaselineView(**{**view.__dict__, "rejected_action": "ALLOW_AS_DEPENDENCY"})
    report = patching.scan(world, web, world.now(), world.now(), baseline=allowing)
    assert report.states["ALAS2023-2026-1041"] == "INSTALLED_OTHER"
    assert patching.report_counts(report)["InstalledRejectedCount"] == 0


def test_windows_default_baseline_approves_security_updates_after_seven_days(world: World) -> None:
    report = _group(world, "win")[0].report
    assert report is not None
    missing = sorted(pid for pid, state in report.states.items() if state == "MISSING")
    # KB5069766 is rated Low and KB5070080 is a CriticalUpdate without MSRC severity: not approved.
    assert missing == ["KB5069705", "KB5070506", "KB5070567"]
    assert report.baseline_id.endswith("pb-09ca3fb51f0412ec3")
    assert report.critical_noncompliant == 0  # predefined baselines assign UNSPECIFIED
    assert report.security_noncompliant == 3


# -- the API: DescribeInstancePatchStates and friends ---------------------------------------------


def _managed_ids(world: World) -> list[str]:
    return sorted(i.instance_id for i in world.instances(ACCOUNT, REGION).values() if i.registered)


def test_describe_instance_patch_states_skips_unknown_and_unreported_ids(world: World) -> None:
    web = _web(world)
    legacy = _group(world, "legacy")[0].instance_id
    result = call(
        world, "DescribeInstancePatchStates", {"InstanceIds": [web.instance_id, legacy, "i-0123456789abcdef0"]}
    )
    assert [s["InstanceId"] for s in result["InstancePatchStates"]] == [web.instance_id]
    state = result["InstancePatchStates"][0]
    assert state["PatchGroup"] == "web" and state["Operation"] == "Scan"
    assert state["MissingCount"] == 7 and state["CriticalNonCompliantCount"] == 5
    assert state["BaselineId"] == patching.effective_baseline(world, web).baseline_id
    assert call(world, "DescribeInstancePatchStates", {"InstanceIds": []})["InstancePatchStates"] == []


def test_describe_instance_patch_states_pages(world: World) -> None:
    ids = _managed_ids(world)
    assert len(ids) == 17
    states, count = pages(
        world, "DescribeInstancePatchStates", {"InstanceIds": ids, "MaxResults": 10}, "InstancePatchStates"
    )
    assert [s["InstanceId"] for s in states] == ids and count == 2
    assert "NextToken" not in call(world, "DescribeInstancePatchStates", {"InstanceIds": ids})


def test_patch_states_for_patch_group_filter_on_counts(world: World) -> None:
    web_ids = sorted(i.instance_id for i in _group(world, "web"))
    winweb = _group(world, "winweb")[0].instance_id
    everyone, count = pages(
        world, "DescribeInstancePatchStatesForPatchGroup", {"PatchGroup": "web"}, "InstancePatchStates"
    )
    assert sorted(s["InstanceId"] for s in everyone) == sorted([*web_ids, winweb]) and count == 2
    patching.install(world, _web(world), world.now(), world.now())
    missing = {"Key": "MissingCount", "Values": ["0"], "Type": "GreaterThan"}
    behind, _ = pages(
        world,
        "DescribeInstancePatchStatesForPatchGroup",
        {"PatchGroup": "web", "Filters": [missing]},
        "InstancePatchStates",
    )
    assert sorted(s["InstanceId"] for s in behind) == sorted([*web_ids[1:], winweb])
    done = {"Key": "MissingCount", "Values": ["0"], "Type": "Equal"}
    result = call(world, "DescribeInstancePatchStatesForPatchGroup", {"PatchGroup": "web", "Filters": [done]})
    assert [s["InstanceId"] for s in result["InstancePatchStates"]] == [web_ids[0]]
    assert (
        call(world, "DescribeInstancePatchStatesForPatchGroup", {"PatchGroup": "nobody"})["InstancePatchStates"] == []
    )


@pytest.mark.parametrize(
    "bad_filter",
    [
        {"Key": "Missing", "Values": ["0"], "Type": "Equal"},
        {"Key": "MissingCount", "Values": ["many"], "Type": "Equal"},
    ],
)
def test_patch_states_for_patch_group_rejects_bad_filters(world: World, bad_filter: dict[str, Any]) -> None:
    error = _error(world, "DescribeInstancePatchStatesForPatchGroup", {"PatchGroup": "web", "Filters": [bad_filter]})
    assert error.code == "InvalidFilter" and error.status == 400


def test_describe_instance_patches_reports_the_last_operation(world: World) -> None:
    web = _web(world)
    patches, count = pages(world, "DescribeInstancePatches", {"InstanceId": web.instance_id}, "Patches")
    assert {p["KBId"]: p["State"] for p in patches} == WEB_STATES and count == 2
    by_id = {p["KBId"]: p for p in patches}
    assert by_id["ALAS2023-2026-1101"]["CVEIds"] == "CVE-2026-23014,CVE-2026-23015"
    assert by_id["ALAS2023-2026-1101"]["InstalledTime"] == datetime(1970, 1, 1, tzinfo=UTC)
    assert "CVEIds" not in by_id["ALAS2023-2026-1012"]  # AWS reports CVEs only for missing and failed patches
    assert by_id["ALAS2023-2026-1012"]["InstalledTime"] == web.installed["ALAS2023-2026-1012"]
    assert by_id["ALAS2023-2026-1134"]["Title"] == "Critical: openssl security update"


def test_describe_instance_patches_filters(world: World) -> None:
    web = _web(world)
    both_spellings = [{"Key": "State", "Values": ["InstalledOther", "INSTALLED_REJECTED"]}]
    result = call(world, "DescribeInstancePatches", {"InstanceId": web.instance_id, "Filters": both_spellings})
    assert sorted(p["KBId"] for p in result["Patches"]) == [
        "ALAS2023-2026-1041",
        "ALAS2023-2026-1047",
        "ALAS2023-2026-1070",
    ]
    critical_missing = [{"Key": "Severity", "Values": ["Critical"]}, {"Key": "State", "Values": ["Missing"]}]
    result = call(world, "DescribeInstancePatches", {"InstanceId": web.instance_id, "Filters": critical_missing})
    assert [p["KBId"] for p in result["Patches"]] == ["ALAS2023-2026-1108", "ALAS2023-2026-1134"]
    error = _error(
        world, "DescribeInstancePatches", {"InstanceId": web.instance_id, "Filters": [{"Key": "Name", "Values": ["x"]}]}
    )
    assert error.code == "InvalidFilter"


def test_describe_instance_patches_needs_a_managed_instance(world: World) -> None:
    legacy = _group(world, "legacy")[0].instance_id
    for instance_id in (legacy, "i-0123456789abcdef0"):
        assert _error(world, "DescribeInstancePatches", {"InstanceId": instance_id}).code == "InvalidInstanceId"
    fresh = _web(world)
    fresh.report = None  # registered but never reported: nothing to list
    assert call(world, "DescribeInstancePatches", {"InstanceId": fresh.instance_id})["Patches"] == []


def test_describe_available_patches_lists_windows_unless_a_product_is_named(world: World) -> None:
    everything, _ = pages(world, "DescribeAvailablePatches", {"MaxResults": 100}, "Patches")
    assert {p["Product"] for p in everything} == {"WindowsServer2022"} and len(everything) == 17
    kb = next(p for p in everything if p["KbNumber"] == "KB5070506")
    assert kb["MsrcSeverity"] == "Critical" and kb["Classification"] == "SecurityUpdates" and kb["Id"] != "KB5070506"
    critical = call(world, "DescribeAvailablePatches", {"Filters": [{"Key": "MSRC_SEVERITY", "Values": ["Critical"]}]})
    assert {p["KbNumber"] for p in critical["Patches"]} == {
        "KB5066101",
        "KB5067302",
        "KB5068103",
        "KB5068904",
        "KB5069705",
        "KB5070506",
    }
    al2 = [{"Key": "PRODUCT", "Values": ["AmazonLinux2"]}, {"Key": "CVE_ID", "Values": ["CVE-2026-21040"]}]
    result = call(world, "DescribeAvailablePatches", {"Filters": al2})
    assert [(p["AdvisoryIds"], p["Name"], p["Severity"]) for p in result["Patches"]] == [
        (["ALAS2-2026-2297"], "openssl11", "Critical")
    ]
    # AWS serves Amazon Linux 2 and Windows here, not Amazon Linux 2023.
    al2023 = call(world, "DescribeAvailablePatches", {"Filters": [{"Key": "PRODUCT", "Values": ["AmazonLinux2023"]}]})
    assert al2023["Patches"] == []


def test_describe_available_patches_pages_and_hides_unreleased_patches() -> None:
    scenario = copy.deepcopy(SCENARIO)
    scenario["catalog"] = {
        "patches": [
            {
                "id": "KB5099999",
                "os": "WINDOWS",
                "title": "future",
                "classification": "SecurityUpdates",
                "severity": "Critical",
                "released": "2026-12-08",
            }
        ]
    }
    with mock_aws():
        world = World(parse_scenario(scenario))
        items, count = pages(world, "DescribeAvailablePatches", {"MaxResults": 5}, "Patches")
        assert count == 4 and len(items) == len({p["KbNumber"] for p in items}) == 17
        assert "KB5099999" not in {p["KbNumber"] for p in items}


def test_get_patch_baseline_serves_moto_and_predefined_baselines(world: World) -> None:
    backend = ssm_backends[ACCOUNT][REGION]
    web_id = next(fake.id for fake in backend.baselines.values() if fake.name == "al2023-web")
    web = call(world, "GetPatchBaseline", {"BaselineId": web_id})
    assert (
        web["Name"] == "al2023-web" and web["PatchGroups"] == ["web"] and web["OperatingSystem"] == "AMAZON_LINUX_2023"
    )
    assert web["RejectedPatches"] == ["ALAS2023-2026-1041"] and web["ApprovedPatches"] == ["ALAS2023-2026-1021"]
    assert web["ApprovalRules"]["PatchRules"][1]["ComplianceLevel"] == "MEDIUM"
    by_arn = call(world, "GetPatchBaseline", {"BaselineId": f"arn:aws:ssm:{REGION}:{ACCOUNT}:patchbaseline/{web_id}"})
    assert by_arn["BaselineId"] == web_id
    arn = "arn:aws:ssm:us-east-1:075727635805:patchbaseline/pb-05c9c9bf778d4c4d0"
    predefined = call(world, "GetPatchBaseline", {"BaselineId": arn})
    assert predefined["Name"] == "AWS-AmazonLinux2023DefaultPatchBaseline"
    assert [rule["ApproveAfterDays"] for rule in predefined["ApprovalRules"]["PatchRules"]] == [7, 7]


@pytest.mark.parametrize(
    ("baseline_id", "code"),
    [
        ("pb-0123456789abcdef0", "DoesNotExistException"),
        ("pb-05c9c9bf778d4c4d0", "DoesNotExistException"),  # a predefined baseline is named by its ARN
        ("arn:aws:ssm:eu-west-1:075727635805:patchbaseline/pb-0a2f1059b670ebc4d", "DoesNotExistException"),
        ("not-a-baseline-id-at-all", "InvalidResourceId"),
    ],
)
def test_get_patch_baseline_errors(world: World, baseline_id: str, code: str) -> None:
    assert _error(world, "GetPatchBaseline", {"BaselineId": baseline_id}).code == code


def test_list_compliance_items_has_one_item_per_reported_patch(world: World) -> None:
    web = _web(world)
    params = {"ResourceIds": [web.instance_id], "ResourceTypes": ["ManagedInstance"]}
    items, _ = pages(world, "ListComplianceItems", {**params, "MaxResults": 50}, "ComplianceItems")
    assert {i["Id"]: i["Status"] for i in items} == {
        pid: "NON_COMPLIANT" if state in ("MISSING", "INSTALLED_REJECTED") else "COMPLIANT"
        for pid, state in WEB_STATES.items()
    }
    by_id = {i["Id"]: i for i in items}
    assert by_id["ALAS2023-2026-1134"]["Severity"] == "CRITICAL"
    assert by_id["ALAS2023-2026-1131"]["Severity"] == "MEDIUM"
    assert by_id["ALAS2023-2026-1047"]["Severity"] == "UNSPECIFIED"
    assert by_id["ALAS2023-2026-1134"]["Details"]["PatchState"] == "MISSING"
    assert web.report is not None
    assert by_id["ALAS2023-2026-1134"]["ExecutionSummary"]["ExecutionId"] == web.report.snapshot_id
    critical = [{"Key": "Severity", "Values": ["CRITICAL"]}, {"Key": "Status", "Values": ["NON_COMPLIANT"]}]
    result = call(world, "ListComplianceItems", {**params, "Filters": critical, "MaxResults": 50})
    assert len(result["ComplianceItems"]) == 5
    above_medium = [{"Key": "Severity", "Values": ["MEDIUM"], "Type": "GREATER_THAN"}]
    result = call(world, "ListComplianceItems", {**params, "Filters": above_medium, "MaxResults": 50})
    assert {i["Severity"] for i in result["ComplianceItems"]} == {"CRITICAL"}


def test_list_compliance_items_checks_resources_and_filters(world: World) -> None:
    ids = _managed_ids(world)[:2]
    assert _error(world, "ListComplianceItems", {"ResourceIds": ids}).code == "ValidationException"
    assert _error(world, "ListComplianceItems", {"ResourceTypes": ["EC2Instance"]}).code == "InvalidResourceType"
    bad = [{"Key": "Colour", "Values": ["red"]}]
    assert _error(world, "ListComplianceItems", {"ResourceIds": ids[:1], "Filters": bad}).code == "InvalidFilter"
    unknown = call(world, "ListComplianceItems", {"ResourceIds": ["i-0123456789abcdef0"]})
    assert unknown["ComplianceItems"] == []


def test_list_resource_compliance_summaries_one_per_reported_instance(world: World) -> None:
    summaries, count = pages(world, "ListResourceComplianceSummaries", {}, "ResourceComplianceSummaryItems")
    assert sorted(s["ResourceId"] for s in summaries) == _managed_ids(world) and count == 2
    web = next(s for s in summaries if s["ResourceId"] == _web(world).instance_id)
    assert web["Status"] == "NON_COMPLIANT" and web["OverallSeverity"] == "CRITICAL"
    assert web["NonCompliantSummary"]["NonCompliantCount"] == 8
    assert web["NonCompliantSummary"]["SeveritySummary"]["CriticalCount"] == 5
    assert web["CompliantSummary"]["CompliantCount"] == 11
    # Installed on the Windows instances (nothing rejected there), they become compliant.
    for instance in _group(world, "winweb") + _group(world, "win"):
        patching.install(world, instance, world.now(), world.now())
    compliant = [{"Key": "Status", "Values": ["COMPLIANT"]}]
    result, _ = pages(
        world, "ListResourceComplianceSummaries", {"Filters": compliant}, "ResourceComplianceSummaryItems"
    )
    windows = {i.instance_id for i in _group(world, "winweb") + _group(world, "win")}
    assert {s["ResourceId"] for s in result} == windows
    assert all(s["OverallSeverity"] == "UNSPECIFIED" for s in result)


def test_every_handler_answers_in_botocores_shape(world: World) -> None:
    """Exercise every optional member (pending reboot, failures, override list) and validate each response."""
    web, other = _group(world, "web")[:2]
    web.faults.install_fails.add("ALAS2023-2026-1125")
    patching.install(
        world, web, world.now(), world.now(), reboot_option="NoReboot", install_override_list="s3://b/k.yaml"
    )
    patching.install(world, other, world.now(), world.now())
    backend = ssm_backends[ACCOUNT][REGION]
    requests: dict[str, dict[str, Any]] = {
        "DescribeInstancePatchStates": {"InstanceIds": [web.instance_id, other.instance_id]},
        "DescribeInstancePatchStatesForPatchGroup": {"PatchGroup": "web", "MaxResults": 100},
        "DescribeInstancePatches": {"InstanceId": web.instance_id, "MaxResults": 100},
        "DescribeAvailablePatches": {"Filters": [{"Key": "PRODUCT", "Values": ["AmazonLinux2", "WindowsServer2022"]}]},
        "GetPatchBaseline": {"BaselineId": next(iter(backend.baselines))},
        "ListComplianceItems": {"ResourceIds": [web.instance_id], "MaxResults": 50},
        "ListResourceComplianceSummaries": {"MaxResults": 50},
    }
    assert set(requests) == {operation for _, operation in ssm_patches.HANDLERS}
    for operation, params in requests.items():
        assert call(world, operation, params)  # call() asserts the response validates
    state = call(world, "DescribeInstancePatchStates", {"InstanceIds": [web.instance_id]})["InstancePatchStates"][0]
    assert state["InstallOverrideList"] == "s3://b/k.yaml" and state["RebootOption"] == "NoReboot"
    assert state["FailedCount"] == 1 and state["InstalledPendingRebootCount"] == 2
    assert "LastNoRebootInstallOperationTime" in state


def test_moto_missing_lists_what_moto_does_not_implement() -> None:
    def snake(name: str) -> str:
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")

    served = [operation for _, operation in ssm_patches.HANDLERS]
    missing = [op for op in served if not hasattr(SimpleSystemManagerResponse, snake(op))]
    assert sorted(ssm_patches.MOTO_MISSING) == sorted(missing) == sorted(served)
    assert hasattr(SimpleSystemManagerResponse, snake("DescribePatchBaselines"))  # the check can see an implemented one


def test_an_instance_patched_through_nothing_misses_every_approved_patch() -> None:
    scenario = copy.deepcopy(SCENARIO)
    del scenario["accounts"][0]["regions"][REGION]["instance_groups"][0]["patched_through"]
    with mock_aws():
        world = World(parse_scenario(scenario))
        fleet.seed(world)
        report = _web(world).report
        assert report is not None and not _web(world).installed
        assert set(report.states.values()) == {"MISSING"}
        approved = patching.approved_patches(
            world.catalog, patching.effective_baseline(world, _web(world)), report.start
        )
        assert sorted(report.states) == sorted(p.id for p in approved)
        assert report.start.date() == date(2026, 11, 20)
