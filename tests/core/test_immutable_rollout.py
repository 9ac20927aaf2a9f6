"""core/immutable_rollout: the bakes' results, the auto policy's condition, the approver's section, and the verdicts
of Auto Scaling instances whose group was refreshed, rolled back, halted or refused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable import (
    GROUP_PLAN_COLUMNS,
    NO_LAUNCH_TEMPLATE,
    irreversible_reason,
    no_launch_template_reason,
)
from patchcycle.core.immutable_rollout import (
    BAKE_RESULT_COLUMNS,
    BAKE_STEP_WORDS,
    GroupRefresh,
    approval_section,
    bake_result,
    foreign_refresh,
    foreign_refresh_reason,
    halt_reason,
    image_problems,
    image_profiles,
    immutable_outcomes,
    refresh_entries,
    refresh_key,
    rollout_halt,
    run_refresh,
    run_version,
    version_description,
)
from patchcycle.core.outcomes import ApprovalRecord, StagingRecord
from patchcycle.core.staging import STAGING_RESULT_COLUMNS
from patchcycle.core.verdicts import install_verdicts

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE, BAKED = "ami-0a1b2c3d4e5f60001", "ami-0baked0000000001"
BAKE = {
    "bake_id": "b01",
    "account_id": "123456789012",
    "region": "us-east-1",
    "image_id": SOURCE,
    "platform_type": "Linux",
    "platform_name": "Amazon Linux",
    "instance_type": "t3.medium",
    "patch_ids": "ALAS-1;ALAS-2",
    "auto_scaling_groups": "api;web",
    "instances": 5,
}
GROUPS = typed_frame(
    [
        {
            **{k: BAKE[k] for k in ("account_id", "region")},
            "auto_scaling_group": "api",
            "launch_template": "api",
            "launch_template_version": "1",
            "image_id": SOURCE,
            "bake_id": "b01",
            "instance_ids": "i-a1;i-a2",
            "instances": 2,
        },
        {
            **{k: BAKE[k] for k in ("account_id", "region")},
            "auto_scaling_group": "web",
            "launch_template": "web",
            "launch_template_version": "1",
            "image_id": SOURCE,
            "bake_id": "b01",
            "instance_ids": "i-w1;i-w2;i-w3",
            "instances": 3,
        },
    ],
    GROUP_PLAN_COLUMNS,
)
APPROVED = ApprovalRecord(decision="Approve", mode="auto", by="policy", at="t", staging_passed=True)
PASSED = StagingRecord(ran=True, passed=True)


def _results(baked: bool = True) -> pd.DataFrame:
    execution = {
        "AutomationExecutionId": "e-1",
        "AutomationExecutionStatus": "Success" if baked else "Failed",
        "Outputs": {"createImage.ImageId": [BAKED] if baked else [], "findBuilder.InstanceId": ["i-builder"]},
    }
    failed = None if baked else {"StepName": "linuxHealthCheck", "FailureMessage": "exit 1"}
    return typed_frame([bake_result(BAKE, execution, failed)], BAKE_RESULT_COLUMNS)


def _refresh(group: str, **changes: object) -> GroupRefresh:
    base = GroupRefresh(
        account_id="123456789012",
        region="us-east-1",
        group=group,
        launch_template=group,
        source_image_id=SOURCE,
        image_id=BAKED,
        version="2",
        refresh_id=f"r-{group}",
        state="done",
        status="Successful",
    )
    return GroupRefresh(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def _keyed(refreshes: dict[str, GroupRefresh]) -> dict[str, GroupRefresh]:
    """Group name -> refresh, as refresh_groups keys them (account, region, group)."""
    return {refresh_key(r.account_id, r.region, r.group): r for r in refreshes.values()}


def _codes(outcomes: pd.DataFrame) -> dict[str, str]:
    return dict(zip(outcomes["resource_id"], outcomes["reason_code"], strict=True))


def test_a_bake_result_names_the_image_or_the_failed_step() -> None:
    good, bad = _results().iloc[0], _results(baked=False).iloc[0]
    assert good["baked"] and good["image_id"] == BAKED and good["builder_instance_id"] == "i-builder"
    assert not bad["baked"] and bad["image_id"] == ""
    assert bad["reason"] == "PatchCycle-BakeAmi Failed while running the health checks (step linuxHealthCheck): exit 1"


def test_every_step_of_the_bake_runbook_that_can_fail_has_words() -> None:
    runbook = yaml.safe_load((REPO_ROOT / "include" / "automation" / "PatchCycle-BakeAmi.yaml").read_text())
    steps = {step["name"] for step in runbook["mainSteps"] if step["action"] != "aws:branch"}
    assert steps == set(BAKE_STEP_WORDS)


def test_the_baked_ami_is_staged_from_the_baked_image_not_its_source() -> None:
    profiles = image_profiles(pd.DataFrame([BAKE]), _results())
    assert list(profiles["profile_id"]) == ["b01"] and list(profiles["image_id"]) == [BAKED]
    assert image_profiles(pd.DataFrame([BAKE]), _results(baked=False)).empty


def _staging(passed: bool) -> pd.DataFrame:
    row = dict.fromkeys(STAGING_RESULT_COLUMNS, "")
    row.update(profile_id="b01", instance_id="i-stage", installed=2, passed=passed)
    row["reason"] = "" if passed else "health check Failed (exit 1)"
    return typed_frame([row], STAGING_RESULT_COLUMNS)


def test_a_baked_ami_failing_its_staging_health_check_stops_the_auto_policy_and_nothing_is_refreshed() -> None:
    bakes = pd.DataFrame([BAKE])
    assert image_problems(bakes, _results(), None, _staging(True)) == []
    problems = image_problems(bakes, _results(), None, _staging(False))
    assert len(problems) == 1 and BAKED in problems[0] and "health check" in problems[0]
    assert image_problems(bakes, _results(baked=False), None, _staging(True))[0].startswith(f"{SOURCE} was not baked")
    # The gate rejected: the groups are not refreshed, their instances say why.
    rejected = ApprovalRecord(decision="Reject", mode="auto", by="policy", at="t", staging_passed=False)
    failed = StagingRecord(ran=True, passed=False, error="b01: health check Failed")
    outcomes = immutable_outcomes(GROUPS, _results(), rejected, failed, {})
    assert set(_codes(outcomes).values()) == {"STAGING_FAILED"}
    section = approval_section(GROUPS, _results(), pd.DataFrame(columns=["bake_id"]), problems)
    assert "web" in section and SOURCE in section and BAKED in section and "Not ready" in section


def test_an_alarm_during_the_second_groups_refresh_rolls_it_back_and_halts_the_rest() -> None:
    rolled = _refresh(
        "web", status="RollbackSuccessful", rollback_reason="alarm web-asg-health in ALARM", new_instances=[]
    )
    refreshes = {"api": _refresh("api", new_instances=["i-n1", "i-n2"]), "web": rolled}
    outcomes = immutable_outcomes(GROUPS, _results(), APPROVED, PASSED, _keyed(refreshes))
    codes = _codes(outcomes)
    assert Counter(codes.values()) == {"REPLACED": 2, "REFRESH_ROLLED_BACK": 3}
    web = outcomes[outcomes["resource_id"] == "i-w1"].iloc[0]
    assert "web-asg-health" in web["detail"] and SOURCE in web["detail"]
    assert halt_reason(rolled) == "the instance refresh of web rolled back: alarm web-asg-health in ALARM"
    # A third group after it would have been halted with that reason.
    halted = _refresh("api", state="halted", status="", reason=halt_reason(rolled))
    codes = _codes(immutable_outcomes(GROUPS, _results(), APPROVED, PASSED, _keyed({"web": rolled, "api": halted})))
    assert codes["i-a1"] == "HALTED_BY_REFRESH"


def test_a_rollback_that_failed_is_a_failed_refresh_that_says_the_group_may_be_mixed() -> None:
    broken = _refresh(
        "web",
        status="RollbackFailed",
        rollback_reason="alarm web-asg-health in ALARM",
        status_reason="The rollback failed: the instances it launched did not pass the health checks.",
    )
    outcomes = immutable_outcomes(GROUPS, _results(), APPROVED, PASSED, _keyed({"api": _refresh("api"), "web": broken}))
    assert _codes(outcomes)["i-w1"] == "REFRESH_FAILED"
    detail = outcomes[outcomes["resource_id"] == "i-w1"].iloc[0]["detail"]
    assert detail.startswith("the instance refresh of web failed to roll back: alarm web-asg-health in ALARM; then ")
    assert "did not pass the health checks" in detail and SOURCE in detail and BAKED in detail
    # The later groups are halted naming both reasons.
    assert "then The rollback failed" in halt_reason(broken)


def test_a_group_refused_for_its_launch_configuration_gets_its_own_code() -> None:
    groups = GROUPS.copy()
    groups.loc[groups["auto_scaling_group"] == "web", ["bake_id", "refused", "refused_kind"]] = [
        "",
        no_launch_template_reason("web"),
        NO_LAUNCH_TEMPLATE,
    ]
    outcomes = immutable_outcomes(groups, _results(), APPROVED, PASSED, _keyed({"api": _refresh("api")}))
    assert Counter(_codes(outcomes).values()) == {"REPLACED": 2, "REFRESH_NO_LAUNCH_TEMPLATE": 3}
    assert "launch configuration" in outcomes[outcomes["resource_id"] == "i-w1"].iloc[0]["detail"]


def test_every_inventory_instance_gets_one_verdict_from_its_refresh() -> None:
    refreshes = {"api": _refresh("api", new_instances=["i-n1"]), "web": _refresh("web", status="Failed")}
    outcomes = immutable_outcomes(GROUPS, _results(), APPROVED, PASSED, _keyed(refreshes))
    ids = ["i-a1", "i-a2", "i-w1", "i-w2", "i-w3"]
    inventory = pd.DataFrame(
        {
            "resource_id": ids,
            "resource_type": "ec2",
            "account_id": "123456789012",
            "region": "us-east-1",
            "responsibility": "customer",
            "in_scope": True,
            "state": "running",
            "managed": True,
            "ping_status": "Online",
            "skip_reason": "",
        }
    )
    compliance = pd.DataFrame(columns=["resource_id"])
    plan = pd.DataFrame(columns=["account_id", "region", "resource_type", "resource_id"])
    verdicts = install_verdicts(inventory, compliance, plan, {}, outcomes)
    assert dict(zip(verdicts["resource_id"], verdicts["verdict"], strict=True)) == {
        "i-a1": "REPLACED",
        "i-a2": "REPLACED",
        "i-w1": "FAILED",
        "i-w2": "FAILED",
        "i-w3": "FAILED",
    }


def test_a_group_on_latest_is_refused_not_refreshed() -> None:
    assert "$Latest" in irreversible_reason("web", "$Latest") and irreversible_reason("web", "3") == ""
    refused = _refresh("web", state="refused", status="", reason=irreversible_reason("web", "$Latest"))
    codes = _codes(
        immutable_outcomes(GROUPS, _results(), APPROVED, PASSED, _keyed({"api": _refresh("api"), "web": refused}))
    )
    assert codes["i-w1"] == "REFRESH_IRREVERSIBLE" and codes["i-a1"] == "REPLACED"


def test_inspector_proves_a_baked_ami_only_once_it_scanned_its_replica_and_shows_no_pinned_cve() -> None:
    from patchcycle.core.immutable_rollout import IMAGE_PROOF_COLUMNS, image_proof

    baked = _results().iloc[0].to_dict()
    proven = image_proof(baked, "i-stage", ["CVE-1", "CVE-2"], "2026-11-20T03:10:00Z", ["CVE-9"])
    assert proven["proven"] and proven["closed"] == "CVE-1;CVE-2" and proven["image_id"] == BAKED
    open_one = image_proof(baked, "i-stage", ["CVE-1", "CVE-2"], "2026-11-20T03:10:00Z", ["CVE-2"])
    assert not open_one["proven"] and open_one["still_active"] == "CVE-2" and "CVE-2" in open_one["reason"]
    unscanned = image_proof(baked, "i-stage", ["CVE-1"], "", [])
    assert not unscanned["proven"] and "did not scan" in unscanned["reason"]
    # The auto policy wants the proof once one was taken.
    proofs = typed_frame([open_one], IMAGE_PROOF_COLUMNS)
    problems = image_problems(pd.DataFrame([BAKE]), _results(), proofs, _staging(True))
    assert problems == [f"{BAKED} (baked from {SOURCE}): Amazon Inspector still reports CVE-2 on i-stage"]
    section = approval_section(GROUPS, _results(), typed_frame([proven], IMAGE_PROOF_COLUMNS), [])
    assert "2 CVEs closed" in section and "Not ready" not in section


def _version(number: int, description: str, image: str) -> dict[str, object]:
    return {"VersionNumber": number, "VersionDescription": description, "LaunchTemplateData": {"ImageId": image}}


def test_a_retry_finds_the_version_this_run_made_for_the_baked_ami() -> None:
    run = "scheduled__2026-12-08T03:00:00+00:00"
    mine = version_description(run, SOURCE, BAKED)
    assert mine.startswith(f"patchcycle {run}: ")
    versions = [
        _version(3, "", SOURCE),
        _version(4, version_description("scheduled__2026-11-10T03:00:00+00:00", SOURCE, BAKED), BAKED),  # last month
        _version(5, mine, "ami-0other"),  # this run, another AMI (the group's AMI was baked again)
        _version(6, version_description("scheduled__2026-12-08T03:30:00+00:00", SOURCE, BAKED), BAKED),  # same hour
    ]
    assert run_version(versions, run, BAKED) == ""
    assert run_version([*versions, _version(7, mine, BAKED)], run, BAKED) == "7"
    assert run_version([], run, BAKED) == ""


def _ir(refresh_id: str, status: str, version: str = "", **template: str) -> dict[str, object]:
    refresh: dict[str, object] = {"InstanceRefreshId": refresh_id, "Status": status}
    if version:
        refresh["DesiredConfiguration"] = {"LaunchTemplate": {**template, "Version": version}}
    return refresh


def test_a_retry_tells_its_own_refresh_from_another_one() -> None:
    newest_first = [
        _ir("r-3", "InProgress", "7", LaunchTemplateName="web"),  # someone else's, onto another version
        _ir("r-2", "Successful", "6", LaunchTemplateId="lt-web"),  # this run's, named by template id
        _ir("r-1", "Successful"),  # an old one without a desired configuration
    ]
    own = run_refresh(newest_first, "lt-web", "web", "6")
    assert own is not None and own["InstanceRefreshId"] == "r-2"
    assert run_refresh(newest_first, "lt-web", "web", "8") is None
    assert run_refresh(newest_first, "lt-api", "api", "6") is None  # another template's version 6
    assert run_refresh(newest_first, "lt-web", "web", "") is None  # no version of this run: nothing is its own
    other = foreign_refresh(newest_first, "r-2")
    assert other is not None and other["InstanceRefreshId"] == "r-3"
    assert foreign_refresh(newest_first, "r-3") is None  # r-3 is the run's own: nothing else runs
    assert foreign_refresh([_ir("r-9", "Cancelled"), _ir("r-8", "RollbackSuccessful")]) is None
    assert foreign_refresh([_ir("r-9", "RollbackInProgress")]) is not None
    reason = foreign_refresh_reason("web", {**other, "StartTime": pd.Timestamp("2026-12-08T03:05:00Z")})
    assert reason.startswith("an instance refresh of web that this run did not start (r-3, InProgress since 2026")
    assert "the groups after it are not refreshed" in reason


def test_a_group_another_refresh_is_replacing_halts_the_rollout() -> None:
    assert rollout_halt({"api": _refresh("api")}) == ""
    blocked = _refresh("web", state="halted", status="", reason="an instance refresh of web that ...")
    assert rollout_halt({"api": _refresh("api"), "web": blocked}) == ""  # halted by an earlier group: not a cause
    blocked = _refresh("web", state="halted", status="", reason="another refresh", foreign_refresh_id="r-3")
    assert rollout_halt({"api": _refresh("api"), "web": blocked}) == "another refresh"
    failed = _refresh("api", status="RollbackSuccessful", rollback_reason="alarm api-5xx")
    assert rollout_halt({"api": failed}) == "the instance refresh of api rolled back: alarm api-5xx"
    codes = _codes(
        immutable_outcomes(GROUPS, _results(), APPROVED, PASSED, _keyed({"api": _refresh("api"), "web": blocked}))
    )
    assert codes["i-w1"] == "HALTED_BY_REFRESH" and codes["i-a1"] == "REPLACED"


def test_groups_of_one_name_in_two_regions_are_two_refreshes() -> None:
    west = GROUPS.copy()
    west["region"] = "eu-west-1"
    west["instance_ids"] = ["i-wa1;i-wa2", "i-ww1;i-ww2;i-ww3"]
    groups = pd.concat([GROUPS, west], ignore_index=True)
    east_web = _refresh("web", new_instances=["i-n1"])
    west_web = _refresh("web", region="eu-west-1", status="RollbackSuccessful", rollback_reason="alarm eu-5xx")
    refreshes = {refresh_key(r.account_id, r.region, r.group): r for r in (east_web, west_web)}
    assert len(refreshes) == 2
    codes = _codes(immutable_outcomes(groups, _results(), APPROVED, PASSED, refreshes))
    assert codes["i-w1"] == "REPLACED" and codes["i-ww1"] == "REFRESH_ROLLED_BACK"
    assert codes["i-a1"] == codes["i-wa1"] == "NOT_ATTEMPTED"  # neither region's api has a record
    entries = {(e["region"], e["group"]): e for e in refresh_entries(groups, refreshes)}
    assert entries[("us-east-1", "web")]["status"] == "Successful"
    assert [n["instance_id"] for n in entries[("us-east-1", "web")]["new_instances"]] == ["i-n1"]
    assert entries[("eu-west-1", "web")]["status"] == "RollbackSuccessful"
    assert [i["instance_id"] for i in entries[("eu-west-1", "web")]["instances"]] == ["i-ww1", "i-ww2", "i-ww3"]


def test_members_needing_no_patch_are_replaced_too_and_a_refused_group_is_skipped_in_words() -> None:
    groups = GROUPS.copy()
    groups["patched_ids"] = ["i-a1;i-a2", "i-w1"]  # i-w2 and i-w3 were compliant already
    refreshes = _keyed({"web": _refresh("web", new_instances=["i-n1", "i-n2", "i-n3"])})
    outcomes = immutable_outcomes(groups.iloc[[1]], _results(), APPROVED, PASSED, refreshes).set_index("resource_id")
    assert set(outcomes["reason_code"]) == {"REPLACED"}
    assert "needed no pinned patch" not in outcomes.loc["i-w1", "detail"]
    assert "a refresh replaces every instance of web" in outcomes.loc["i-w2", "detail"]
    assert (outcomes.loc["i-w1", "pinned"], outcomes.loc["i-w2", "pinned"]) == (2, 0)
    refused = "web is not refreshed: an instance refresh replaces every instance of the group, and the scope ..."
    groups.loc[1, ["bake_id", "refused"]] = ["", refused]
    codes = _codes(immutable_outcomes(groups, _results(), APPROVED, PASSED, refreshes))
    assert codes == {"i-a1": "NOT_ATTEMPTED", "i-a2": "NOT_ATTEMPTED"} | dict.fromkeys(
        ["i-w1", "i-w2", "i-w3"], "REFRESH_REPLACES_EXCLUDED"
    )
    entry = next(e for e in refresh_entries(groups, {}) if e["group"] == "web")
    assert (entry["state"], entry["reason"]) == ("refused", refused)
    section = approval_section(groups, _results(), pd.DataFrame(columns=["bake_id"]), [])
    assert "Left out" in section and refused in section and "| web |" not in section


def test_groups_a_gate_halted_get_the_gates_reason_code() -> None:
    """A change calendar or health alarm that halted the refreshes: SKIPPED_HALTED with the waves' codes."""
    reason = "halted before the refresh of api: health alarm(s) in ALARM: web-5xx (123456789012/us-east-1: 42 > 10)"
    for code in ("HALTED_BY_ALARM", "HALTED_BY_CALENDAR"):
        halted = {g: _refresh(g, state="halted", status="", reason=reason, halt_code=code) for g in ("api", "web")}
        outcomes = immutable_outcomes(GROUPS, _results(), APPROVED, PASSED, _keyed(halted))
        assert set(_codes(outcomes).values()) == {code}
        assert all(reason in detail for detail in outcomes["detail"])
        assert rollout_halt(_keyed(halted)) == reason  # nothing after them is refreshed either
