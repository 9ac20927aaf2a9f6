"""Production set, staging profiles, the staging template and staging results."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from patchcycle.core.inventory import combine, ec2_rows
from patchcycle.core.plan import combine_plan, patch_plan
from patchcycle.core.scope import Scope, apply_scope
from patchcycle.core.staging import (
    PROFILE_COLUMNS,
    PROFILE_PARAMETERS,
    STAGING_RESULT_COLUMNS,
    assign_profiles,
    instance_family,
    instance_logical_id,
    override_list_yaml,
    production_instances,
    stack_name,
    staging_profiles,
    staging_results,
    staging_summary,
    staging_template,
)

ACCOUNT, OTHER, EAST, WEST = "111111111111", "222222222222", "us-east-1", "eu-west-1"
TEMPLATE = Path(__file__).parents[2] / "include" / "cloudformation" / "staging.yaml"


def _instance(
    iid: str, itype: str = "m6i.large", ami: str = "ami-0a1b2c3d4e5f60001", group: str = "web", **extra: Any
) -> dict[str, Any]:
    tags = [{"Key": "Environment", "Value": extra.pop("env", "production")}]
    if group:
        tags.append({"Key": "Patch Group", "Value": group})
    return {
        "InstanceId": iid,
        "State": {"Name": extra.pop("state", "running")},
        "InstanceType": itype,
        "ImageId": ami,
        "Placement": {"AvailabilityZone": extra.pop("az", "us-east-1a")},
        "PlatformDetails": "Linux/UNIX",
        "Tags": tags,
    }


def _info(iid: str) -> dict[str, Any]:
    return {"InstanceId": iid, "PingStatus": "Online", "PlatformType": "Linux", "PlatformName": "Amazon Linux"}


def _patch(kb: str, state: str = "MISSING") -> dict[str, Any]:
    return {"KBId": kb, "Title": kb, "Classification": "Security", "Severity": "Important", "State": state}


def production_fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inventory and plan: web instances of two types, a db profile, and every reason to be left out."""
    east = [
        _instance("i-web1"),
        _instance("i-web2", itype="m6i.xlarge"),
        _instance("i-web3", itype="m6i.xlarge", az="us-east-1b"),
        _instance("i-db1", itype="r6g.large", ami="ami-0a1b2c3d4e5f60002", group="db"),
        _instance("i-nogroup", itype="t3.micro", ami="ami-0a1b2c3d4e5f60001", group=""),
        _instance("i-clean"),  # nothing outstanding
        _instance("i-scanfail"),
        _instance("i-staging", env="staging"),  # out of scope
        _instance("i-offline"),  # not patchable
        _instance("i-installed"),  # only patches already installed
    ]
    west = [_instance("i-west1", az="eu-west-1a")]
    managed_east = [_info(i["InstanceId"]) for i in east if i["InstanceId"] != "i-offline"]
    inventory = combine(
        [
            ec2_rows(ACCOUNT, EAST, east, managed_east),
            ec2_rows(OTHER, WEST, west, [_info("i-west1")]),
        ]
    )
    inventory = apply_scope(inventory, Scope(include_tags={"Environment": ["production"]}))
    patches = {
        "i-web1": [_patch("kernel"), _patch("openssl", "FAILED")],
        "i-web2": [_patch("kernel"), _patch("curl", "INSTALLED_PENDING_REBOOT")],
        "i-web3": [_patch("kernel")],
        "i-db1": [_patch("postgres-libs")],
        "i-nogroup": [_patch("kernel")],
        "i-clean": [],
        "i-scanfail": [_patch("kernel")],
        "i-staging": [_patch("kernel")],
        "i-offline": [_patch("kernel")],
        "i-installed": [_patch("kernel", "INSTALLED")],
        "i-west1": [_patch("kernel")],
    }
    states = [{"InstanceId": iid, "PatchGroup": "", "BaselineId": "pb-1"} for iid in patches]
    return inventory, combine_plan([patch_plan(states, patches, inventory)])


def test_instance_family() -> None:
    assert instance_family("m6i.large") == "m6i"
    assert instance_family("u-6tb1.112xlarge") == "u-6tb1"
    assert instance_family("t3") == "t3"


def test_production_instances_are_the_patchable_ones_with_outstanding_patches() -> None:
    inventory, plan = production_fleet()
    production = production_instances(inventory, plan, {"i-scanfail": "exit code 1"})
    assert production["resource_id"].tolist() == ["i-db1", "i-nogroup", "i-web1", "i-web2", "i-web3", "i-west1"]
    by_id = production.set_index("resource_id")
    assert by_id.loc["i-web1", "patch_ids"] == "kernel;openssl"
    assert by_id.loc["i-web2", "patch_ids"] == "curl;kernel"
    assert by_id.loc["i-web2", "pinned"] == 2
    assert by_id.loc["i-web2", "instance_family"] == "m6i"
    assert by_id.loc["i-web3", "availability_zone"] == "us-east-1b"
    assert by_id.loc["i-db1", "patch_group"] == "db"
    assert by_id.loc["i-nogroup", "patch_group"] == ""
    assert by_id.loc["i-west1", "account_id"] == OTHER
    assert str(production["pinned"].dtype) == "int64"
    with pytest.raises(ValueError, match="apply_scope"):
        production_instances(inventory.drop(columns="in_scope"), plan, {})


def test_profiles_group_instances_and_the_cap_applies_per_target() -> None:
    inventory, plan = production_fleet()
    production = production_instances(inventory, plan, {"i-scanfail": ""})
    profiles = staging_profiles(production, cap_per_target=2)
    assert list(profiles.columns) == list(PROFILE_COLUMNS)
    assert {n: str(d) for n, d in profiles.dtypes.items()} == dict(PROFILE_COLUMNS)
    assert profiles["profile_id"].tolist() == ["p01", "p02", "p03", "p04"]
    web = profiles.iloc[0]  # the largest profile of the first target comes first
    assert (web["account_id"], web["patch_group"], web["production_instances"]) == (ACCOUNT, "web", 3)
    assert web["instance_type"] == "m6i.xlarge"  # most common of large, xlarge, xlarge
    assert web["patch_ids"] == "curl;kernel;openssl"
    # Three profiles in the east target, capped at two; the west target's one is staged on its own cap.
    assert profiles.groupby(["account_id", "region"])["staged"].sum().to_dict() == {
        (ACCOUNT, EAST): 2,
        (OTHER, WEST): 1,
    }
    east = profiles[profiles["region"] == EAST]
    assert east["production_instances"].is_monotonic_decreasing
    assert not staging_profiles(production, 0)["staged"].any()
    with pytest.raises(ValueError, match=r"^cap_per_target:"):
        staging_profiles(production, -1)
    # Stable: the same instances in another order give the same profiles.
    pd.testing.assert_frame_equal(staging_profiles(production.iloc[::-1], 2), profiles)


def test_instance_type_ties_go_to_the_smallest_string() -> None:
    inventory, plan = production_fleet()
    production = production_instances(inventory, plan, {})
    tied = production[production["resource_id"].isin(["i-web1", "i-web2"])]
    assert staging_profiles(tied, 1)["instance_type"].tolist() == ["m6i.large"]


def test_assign_profiles() -> None:
    inventory, plan = production_fleet()
    production = production_instances(inventory, plan, {})
    profiles = staging_profiles(production, 5)
    assigned = assign_profiles(production, profiles)
    assert len(assigned) == len(production)
    merged = assigned.merge(profiles, on="profile_id", suffixes=("", "_profile"))
    for column in ("account_id", "region", "image_id", "instance_family", "patch_group"):
        assert (merged[column] == merged[f"{column}_profile"]).all()
    with pytest.raises(ValueError, match="match no profile"):
        assign_profiles(production, profiles.iloc[1:])


def test_override_list_yaml_is_the_install_override_list_format() -> None:
    text = override_list_yaml(["kernel", "KB5031364", "kernel", "yes"])
    assert yaml.safe_load(text) == {"patches": [{"id": "kernel"}, {"id": "KB5031364"}, {"id": "yes"}]}
    assert text.startswith("patches:\n- id: ")
    assert "'yes'" in text  # quoted, so YAML 1.1 readers do not turn it into a boolean
    with pytest.raises(ValueError, match=r"^patch_ids:"):
        override_list_yaml([])


STACK_NAME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]{0,127}$")


def test_stack_name_is_valid_and_unique() -> None:
    name = stack_name("scheduled__2026-11-10T03:00:00+00:00")
    assert name == "patchcycle-staging-scheduled--2026-11-10T03-00-00-00-00"
    long_a, long_b = "manual__" + "x" * 200 + "a", "manual__" + "x" * 200 + "b"
    names = {stack_name(run_id) for run_id in (long_a, long_b, "a" * 500, "é/ü run")}
    assert len(names) == 4
    assert all(STACK_NAME.match(name) for name in names)
    assert stack_name(long_a) == stack_name(long_a)
    with pytest.raises(ValueError, match=r"^run_id:"):
        stack_name("")


def _base() -> dict[str, Any]:
    base = yaml.safe_load(TEMPLATE.read_text())
    assert isinstance(base, dict)
    return base


def _refs(node: Any) -> set[str]:
    """Every name the template refers to, by Ref or in a Fn::Sub string."""
    if isinstance(node, list):
        return set().union(*map(_refs, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = set().union(*map(_refs, node.values())) if node else set()
    if "Ref" in node:
        found.add(node["Ref"])
    if "Fn::Sub" in node:
        text = node["Fn::Sub"][0] if isinstance(node["Fn::Sub"], list) else node["Fn::Sub"]
        found |= set(re.findall(r"\$\{([^}!]+)\}", text))
    return found


def test_base_template_is_a_single_instance_template() -> None:
    base = _base()
    assert base["AWSTemplateFormatVersion"] == "2010-09-09"
    assert base["Description"]
    assert set(base["Parameters"]) == {*PROFILE_PARAMETERS, "RunId", "InstanceProfile", "SubnetId"}
    assert base["Parameters"]["ImageId"]["Type"] == "String"
    assert base["Parameters"]["InstanceProfile"]["Default"] == base["Parameters"]["SubnetId"]["Default"] == ""
    assert list(base["Resources"]) == ["StagingInstance"]
    assert base["Resources"]["StagingInstance"]["Type"] == "AWS::EC2::Instance"
    assert set(base["Conditions"]) == {"HasInstanceProfile", "HasSubnet"}
    # Every Ref names a parameter, a resource or a pseudo parameter.
    known = {*base["Parameters"], *base["Resources"], "AWS::NoValue"}
    assert _refs(base) <= known


def test_staging_template_has_one_replica_per_staged_profile() -> None:
    inventory, plan = production_fleet()
    profiles = staging_profiles(production_instances(inventory, plan, {}), 2)
    east = profiles[profiles["region"] == EAST]  # p01, p02 staged; p03 over the cap
    base = _base()
    pristine = copy.deepcopy(base)
    template = staging_template(base, east)
    assert base == pristine
    staged = east[east["staged"]]
    logical_ids = [instance_logical_id(pid) for pid in staged["profile_id"]]
    assert logical_ids == ["StagingInstanceP01", "StagingInstanceP02"]
    assert list(template["Resources"]) == logical_ids
    assert set(template["Outputs"]) == set(logical_ids)
    assert set(template["Parameters"]) == {"RunId", "InstanceProfile", "SubnetId"}
    assert template["Conditions"] == base["Conditions"]
    for logical_id, profile in zip(logical_ids, staged.to_dict("records"), strict=True):
        resource = template["Resources"][logical_id]
        assert resource["Type"] == "AWS::EC2::Instance"
        props = resource["Properties"]
        assert (props["ImageId"], props["InstanceType"]) == (profile["image_id"], profile["instance_type"])
        tags = {tag["Key"]: tag["Value"] for tag in props["Tags"]}
        assert tags["Name"] == f"patchcycle-staging-{profile['profile_id']}"
        assert tags["patchcycle:profile"] == profile["profile_id"]
        assert tags.get("PatchGroup", "") == profile["patch_group"]
        assert tags["patchcycle:run-id"] == {"Ref": "RunId"}
        assert template["Outputs"][logical_id]["Value"] == {"Ref": logical_id}
    assert not _refs(template) & set(PROFILE_PARAMETERS)
    assert _refs(template) <= {*template["Parameters"], *template["Resources"], "AWS::NoValue"}
    json.dumps(template)  # what the operator sends as TemplateBody


@pytest.mark.slow  # cfn-lint loads its AWS specs: about 3 s
def test_staging_template_passes_cfn_lint() -> None:
    api = pytest.importorskip("cfnlint.api")
    inventory, plan = production_fleet()
    profiles = staging_profiles(production_instances(inventory, plan, {}), 3)
    template = staging_template(_base(), profiles[profiles["region"] == EAST])
    matches = api.lint(json.dumps(template), config=api.ManualArgs(regions=[EAST]))
    assert [str(match) for match in matches if match.rule.id[0] == "E"] == []


def test_staging_template_drops_an_empty_patch_group_tag() -> None:
    inventory, plan = production_fleet()
    profiles = staging_profiles(production_instances(inventory, plan, {}), 5)
    nogroup = profiles[profiles["patch_group"] == ""]
    template = staging_template(_base(), nogroup)
    (resource,) = template["Resources"].values()
    assert "PatchGroup" not in {tag["Key"] for tag in resource["Properties"]["Tags"]}


def test_staging_template_errors() -> None:
    inventory, plan = production_fleet()
    profiles = staging_profiles(production_instances(inventory, plan, {}), 5)
    east = profiles[profiles["region"] == EAST]
    base = _base()
    without_resource = {**base, "Resources": {"Other": base["Resources"]["StagingInstance"]}}
    with pytest.raises(ValueError, match="StagingInstance"):
        staging_template(without_resource, east)
    without_param = {**base, "Parameters": {k: v for k, v in base["Parameters"].items() if k != "ProfileId"}}
    with pytest.raises(ValueError, match="ProfileId"):
        staging_template(without_param, east)
    with pytest.raises(ValueError, match="one account and region"):
        staging_template(base, profiles)
    with pytest.raises(ValueError, match="no staged profile"):
        staging_template(base, east.assign(staged=False))
    leaky = {**base, "Outputs": {**base["Outputs"], "Image": {"Value": {"Ref": "ImageId"}}}}
    with pytest.raises(ValueError, match="ImageId"):
        staging_template(leaky, east)


def _staged() -> pd.DataFrame:
    rows = [
        ("p01", "i-ok", "kernel;openssl"),
        ("p02", "i-missing", "curl;kernel;tzdata"),
        ("p03", "i-unhealthy", "kernel"),
        ("p04", "i-undeliverable", "kernel"),
        ("p05", "i-installfail", "kernel"),
    ]
    return pd.DataFrame(
        [
            {"account_id": ACCOUNT, "region": EAST, "profile_id": pid, "instance_id": iid, "patch_ids": ids}
            | {"patch_group": "web", "platform_name": "Amazon Linux"}
            for pid, iid, ids in rows
        ]
    )


def _results() -> pd.DataFrame:
    ok = {"Status": "Success", "ResponseCode": 0, "Output": "ok"}
    install = {
        "i-ok": ok,
        "i-missing": ok,
        "i-unhealthy": ok,
        "i-undeliverable": {
            "Status": "Undeliverable",
            "StatusDetails": "instance not managed by SSM within 10 minutes",
        },
        "i-installfail": {"Status": "Failed", "StatusDetails": "Failed", "stderr": "yum: no space left on device"},
    }
    patches = {
        "i-ok": [_patch("kernel", "INSTALLED"), _patch("openssl", "INSTALLED_PENDING_REBOOT")],
        "i-missing": [_patch("kernel", "INSTALLED_OTHER"), _patch("curl", "FAILED")],  # tzdata not reported
        "i-unhealthy": [_patch("kernel", "INSTALLED")],
        "i-installfail": [_patch("kernel", "MISSING")],
    }
    health = {
        "i-ok": ok,
        "i-missing": ok,
        "i-unhealthy": {"Status": "Failed", "ResponseCode": 1, "StandardErrorContent": "nginx down\n" + "x" * 900},
    }
    return staging_results(_staged(), install, patches, health)


def test_staging_results() -> None:
    results = _results()
    assert list(results.columns) == list(STAGING_RESULT_COLUMNS)
    assert {n: str(d) for n, d in results.dtypes.items()} == dict(STAGING_RESULT_COLUMNS)
    by_id = results.set_index("instance_id")
    assert by_id["passed"].to_dict() == {
        "i-ok": True,
        "i-missing": False,
        "i-unhealthy": False,
        "i-undeliverable": False,
        "i-installfail": False,
    }
    assert by_id.loc["i-ok", "reason"] == ""
    assert by_id.loc["i-ok", "installed"] == 2
    assert by_id.loc["i-missing", "not_installed"] == "curl;tzdata"
    assert by_id.loc["i-missing", "reason"] == "2 planned patches not installed: curl, tzdata"
    unhealthy = by_id.loc["i-unhealthy", "reason"]
    assert unhealthy.startswith("health check Failed (exit 1): ")
    assert len(by_id.loc["i-unhealthy", "health_output"]) <= 500
    assert by_id.loc["i-undeliverable", "reason"].startswith(
        "install Undeliverable: instance not managed by SSM within 10 minutes"
    )
    assert by_id.loc["i-undeliverable", "install_status"] == "Undeliverable"
    assert by_id.loc["i-undeliverable", "health_status"] == ""
    failed = by_id.loc["i-installfail", "reason"]
    assert failed.startswith("install Failed: yum: no space left on device; 1 planned patch not installed: kernel")


def test_staging_summary() -> None:
    summary = staging_summary(_results())
    assert {k: summary[k] for k in ("instances", "passed", "failed", "patches")} == {
        "instances": 5,
        "passed": 1,
        "failed": 4,
        "patches": 4,  # curl, kernel, openssl, tzdata
    }
    assert [f["instance_id"] for f in summary["failures"]] == [
        "i-missing",
        "i-unhealthy",
        "i-undeliverable",
        "i-installfail",
    ]
