"""PatchBaselineHook against the sandbox: paging, the writes, and the AWS behaviour the sandbox adds to moto."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.sandbox import patching
from include.sandbox.server import SandboxServer
from patchcycle.hooks.patch_baselines import MAX_PAGE_SIZE, PatchBaselineHook
from tests.conftest import advance_clock, sandbox_calls

ACCOUNT = "123456789012"
REGION = "eu-west-1"
# No scenario baselines: the account starts with none of its own.
SCENARIO: dict[str, Any] = {
    "name": "baselines",
    "seed": 1,
    "clock": {"start": "2026-11-20T03:00:00+00:00", "speed": 1e-9},
    "amis": {"ami-0a1b2c3d4e5f60001": {"os": "AMAZON_LINUX_2023"}},
    "accounts": [{"id": ACCOUNT, "regions": {"us-east-1": {}, REGION: {}}}],
}
SANDBOX_MAX_ATTEMPTS = 1


UBUNTU_RULE = {"PatchFilterGroup": {"PatchFilters": [{"Key": "PRIORITY", "Values": ["Required"]}]}}


def rule(days: int = 7, *classes: str) -> dict[str, Any]:
    filters = [{"Key": "CLASSIFICATION", "Values": list(classes or ["Security"])}]
    return {"PatchFilterGroup": {"PatchFilters": filters}, "ComplianceLevel": "HIGH", "ApproveAfterDays": days}


def request(name: str, os: str = "AMAZON_LINUX_2023", **extra: Any) -> dict[str, Any]:
    return {
        "Name": name,
        "OperatingSystem": os,
        "Description": f"{name} baseline",
        "ApprovalRules": {"PatchRules": [rule()]} if os != "UBUNTU" else {"PatchRules": []},
        **extra,
    }


@pytest.fixture
def hook(fresh_server: SandboxServer) -> PatchBaselineHook:
    return PatchBaselineHook(aws_conn_id="aws_default", region_name=REGION)


def error_code(raised: pytest.ExceptionInfo[ClientError]) -> str:
    return str(raised.value.response["Error"]["Code"])


def test_own_baselines_reads_every_page_and_only_the_accounts_own(
    fresh_server: SandboxServer, hook: PatchBaselineHook
) -> None:
    count = MAX_PAGE_SIZE + 5
    names = {f"pc-{n:03d}" for n in range(count)}
    for name in sorted(names):
        hook.create_baseline(request(name))
    before = sandbox_calls(fresh_server.url, "ssm:DescribePatchBaselines")
    found = hook.own_baselines()
    assert {b["BaselineName"] for b in found} == names  # AWS's predefined baselines are not the account's
    assert len(found) == count
    pages = sandbox_calls(fresh_server.url, "ssm:DescribePatchBaselines") - before
    assert pages == -(-count // MAX_PAGE_SIZE)


def test_create_keeps_every_field_and_the_tags(hook: PatchBaselineHook) -> None:
    sent = request(
        "pc-web",
        ApprovedPatches=["ALAS2023-2026-1012"],
        ApprovedPatchesComplianceLevel="LOW",
        RejectedPatches=["ALAS2023-2026-1013"],
        RejectedPatchesAction="BLOCK",
        GlobalFilters={"PatchFilters": [{"Key": "PRODUCT", "Values": ["*"]}]},
        Tags=[{"Key": "patchcycle:managed", "Value": "true"}, {"Key": "Tier", "Value": "web"}],
    )
    baseline_id = hook.create_baseline(sent)
    got = hook.baseline(baseline_id)
    for key in ("Name", "OperatingSystem", "Description", "ApprovalRules", "ApprovedPatches", "GlobalFilters"):
        assert got[key] == sent[key], key
    assert (got["RejectedPatches"], got["RejectedPatchesAction"]) == (sent["RejectedPatches"], "BLOCK")
    assert hook.baseline_tags(baseline_id) == {t["Key"]: t["Value"] for t in sent["Tags"]}
    assert [b["BaselineId"] for b in hook.own_baselines()] == [baseline_id]


def test_a_retried_create_with_the_same_client_token_returns_the_same_baseline(hook: PatchBaselineHook) -> None:
    first = hook.create_baseline(request("pc-web", ClientToken="token-1"))
    again = hook.create_baseline(request("pc-web", ClientToken="token-1"))
    assert first == again and len(hook.own_baselines()) == 1
    assert hook.create_baseline(request("pc-web", ClientToken="token-2")) != first


def test_update_changes_only_the_fields_given(fresh_server: SandboxServer, hook: PatchBaselineHook) -> None:
    baseline_id = hook.create_baseline(request("pc-web", RejectedPatches=["ALAS2023-2026-1013"]))
    before = hook.baseline(baseline_id)
    advance_clock(fresh_server.url, 60)
    hook.update_baseline(baseline_id, {"ApprovalRules": {"PatchRules": [rule(3, "Security", "Bugfix")]}})
    after = hook.baseline(baseline_id)
    assert after["ApprovalRules"]["PatchRules"][0]["ApproveAfterDays"] == 3
    assert after["ApprovalRules"]["PatchRules"][0]["PatchFilterGroup"]["PatchFilters"][0]["Values"] == [
        "Security",
        "Bugfix",
    ]
    unchanged = ("Name", "Description", "RejectedPatches", "OperatingSystem", "ApprovedPatches")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    # GetPatchBaseline dates the update, as UpdatePatchBaseline's own answer does.
    assert before["ModifiedDate"] == before["CreatedDate"] == after["CreatedDate"] < after["ModifiedDate"]


@pytest.mark.parametrize(
    ("os", "rules", "words"),
    [
        ("UBUNTU", [{**UBUNTU_RULE, "ApproveAfterDays": 5}], "not supported for UBUNTU"),
        ("UBUNTU", [rule(5)], "CLASSIFICATION is not valid for UBUNTU"),
        ("AMAZON_LINUX_2023", [{**rule(), "ApproveUntilDate": "2026-12-01"}], "either ApproveAfterDays or"),
        ("AMAZON_LINUX_2023", [{"PatchFilterGroup": {"PatchFilters": []}}], "either ApproveAfterDays or"),
        (
            "WINDOWS",
            [{**rule(), "PatchFilterGroup": {"PatchFilters": [{"Key": "SEVERITY", "Values": ["Critical"]}]}}],
            "SEVERITY is not valid for WINDOWS",
        ),
        ("WINDOWS", [{**rule(), "EnableNonSecurity": True}], "Linux operating systems only"),
        ("AMAZON_LINUX_2023", [{"PatchFilterGroup": {"PatchFilters": []}, "ApproveUntilDate": "2026-02-30"}], "date"),
    ],
)
def test_the_sandbox_refuses_rules_aws_refuses(hook: PatchBaselineHook, os: str, rules: Any, words: str) -> None:
    with pytest.raises(ClientError) as raised:
        hook.create_baseline({**request("pc-bad", os), "ApprovalRules": {"PatchRules": rules}})
    assert error_code(raised) == "ValidationException" and words in str(raised.value)
    assert hook.own_baselines() == []


def test_patch_groups_hold_one_baseline_per_operating_system(
    fresh_server: SandboxServer, hook: PatchBaselineHook
) -> None:
    web = hook.create_baseline(request("pc-web"))
    web_two = hook.create_baseline(request("pc-web-two"))
    windows = hook.create_baseline({**request("pc-win", "WINDOWS"), "ApprovalRules": {"PatchRules": []}})
    hook.register_patch_group(web, "web")
    hook.register_patch_group(windows, "web")  # another OS: allowed
    with pytest.raises(ClientError) as raised:
        hook.register_patch_group(web_two, "web")
    assert error_code(raised) == "AlreadyExistsException"
    held = {
        (m["PatchGroup"], m["BaselineIdentity"]["OperatingSystem"]): m["BaselineIdentity"] for m in hook.patch_groups()
    }
    assert {key: identity["BaselineId"] for key, identity in held.items()} == {
        ("web", "AMAZON_LINUX_2023"): web,
        ("web", "WINDOWS"): windows,
    }
    assert held[("web", "WINDOWS")]["BaselineName"] == "pc-win"
    # Patch Manager's view follows the registration (the sandbox's patching reads the same state).
    assert patching.baseline_for_patch_group(ACCOUNT, REGION, "web", "AMAZON_LINUX_2023").baseline_id == web

    hook.deregister_patch_group(web, "web")
    hook.register_patch_group(web_two, "web")
    assert patching.baseline_for_patch_group(ACCOUNT, REGION, "web", "AMAZON_LINUX_2023").baseline_id == web_two
    with pytest.raises(ClientError) as raised:
        hook.deregister_patch_group(web, "web")
    assert error_code(raised) == "InvalidResourceId"
    hook.deregister_patch_group(web_two, "web")
    view = patching.baseline_for_patch_group(ACCOUNT, REGION, "web", "AMAZON_LINUX_2023")
    assert view.predefined  # back to AWS's default baseline for the OS
    assert [m["BaselineIdentity"]["BaselineId"] for m in hook.patch_groups()] == [windows]


def test_patch_groups_reads_every_page(fresh_server: SandboxServer, hook: PatchBaselineHook) -> None:
    baseline_id = hook.create_baseline(request("pc-web"))
    groups = {f"group-{n:03d}" for n in range(MAX_PAGE_SIZE + 1)}
    for group in groups:
        hook.register_patch_group(baseline_id, group)
    before = sandbox_calls(fresh_server.url, "ssm:DescribePatchGroups")
    assert {m["PatchGroup"] for m in hook.patch_groups()} == groups
    assert sandbox_calls(fresh_server.url, "ssm:DescribePatchGroups") - before == 2


def test_a_baseline_in_use_cannot_be_deleted(hook: PatchBaselineHook) -> None:
    baseline_id = hook.create_baseline(request("pc-web"))
    hook.register_patch_group(baseline_id, "web")
    with pytest.raises(ClientError) as raised:
        hook.delete_baseline(baseline_id)
    assert error_code(raised) == "ResourceInUseException"
    hook.deregister_patch_group(baseline_id, "web")
    hook.delete_baseline(baseline_id)
    assert hook.own_baselines() == []
    with pytest.raises(ClientError) as raised:
        hook.baseline(baseline_id)
    assert error_code(raised) == "DoesNotExistException"


def test_tags_are_set_and_removed(hook: PatchBaselineHook) -> None:
    baseline_id = hook.create_baseline(request("pc-web", Tags=[{"Key": "Tier", "Value": "web"}]))
    hook.add_tags(baseline_id, {"Tier": "front", "Owner": "ops"})
    assert hook.baseline_tags(baseline_id) == {"Tier": "front", "Owner": "ops"}
    hook.remove_tags(baseline_id, ["Tier"])
    assert hook.baseline_tags(baseline_id) == {"Owner": "ops"}


def test_the_hook_works_in_the_region_it_is_given(fresh_server: SandboxServer, hook: PatchBaselineHook) -> None:
    hook.create_baseline(request("pc-web"))
    other = PatchBaselineHook(aws_conn_id="aws_default", region_name="us-east-1")
    assert other.own_baselines() == [] and other.patch_groups() == []
