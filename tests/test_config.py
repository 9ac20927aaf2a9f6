"""CycleConfig.from_params: valid params parse, and every bad field is refused by name before any AWS call."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from patchcycle.config import (
    BaselinesConfig,
    CycleConfig,
    InstallSettings,
    RolloutSafety,
    RunConfig,
    Target,
    WatchConfig,
)
from patchcycle.core.scope import Scope

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "patch_cycle.py"
TARGETS = [{"aws_conn_id": "aws_default", "regions": ["us-east-1", "eu-west-1"]}]


def params(**overrides: Any) -> dict[str, Any]:
    """Valid params with some fields replaced."""
    return {"targets": TARGETS, "artifact_root": "s3://patchcycle-artifacts", **overrides}


def refused(field: str, **overrides: Any) -> str:
    """The error message for params with `overrides`; it must start by naming `field`."""
    with pytest.raises(ValueError) as caught:
        CycleConfig.from_params(params(**overrides))
    message = str(caught.value)
    assert message.startswith(f"{field}:"), message
    return message


def dag_param_defaults() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("patch_cycle_dag_for_config_test", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defaults: dict[str, Any] = module.dag.params.dump()
    return defaults


def test_the_dags_param_defaults_are_valid() -> None:
    defaults = dag_param_defaults()
    config = CycleConfig.from_params(defaults)
    assert config.targets == (Target("aws_default", "us-east-1"), Target("aws_default", "eu-west-1"))
    assert config.mode == "scan"  # "default" scans on a run triggered by hand
    assert CycleConfig.from_params(defaults, run_type="scheduled").mode == "install"
    assert config.install == InstallSettings()
    assert config.scope == Scope()
    assert config.artifact_root == "s3://patchcycle-artifacts"
    assert (str(config.max_concurrency), str(config.max_errors)) == ("50", "10%")
    assert (config.poll_seconds, config.command_timeout_minutes) == (30.0, 60.0)


def test_the_dags_params_are_the_settings_fields_with_their_defaults() -> None:
    """One place for each default: the DAG's params are derived from CycleConfig, field by field."""
    defaults = dag_param_defaults()
    settings = CycleConfig.settings()
    assert sorted(defaults) == sorted(settings)  # in the form's order: by section, then field order
    assert defaults == {name: default for name, (default, _) in settings.items()}
    assert CycleConfig.from_params(defaults) == CycleConfig.from_params({})


def test_the_config_travels_as_params_and_reads_back_the_same() -> None:
    config = CycleConfig.from_params(
        params(
            mode="install",
            scope={"include_tags": {"Environment": ["production"]}, "exclude_ids": ["i-1"], "exclude_tags": {}},
            canary="3",
            halt_threshold="0",
            wave_percentages=[50, 50],
            max_errors="0%",
            approval_mode="auto",
        )
    )
    sent = config.as_params()
    assert json.loads(json.dumps(sent)) == sent  # XCom-safe
    assert CycleConfig.from_params(sent) == config
    assert sent["mode"] == "install" and sent["canary"] == "3" and sent["targets"] == TARGETS
    assert RunConfig.from_params(sent).artifact_root == config.artifact_root  # a base class reads its part


def test_fields_left_out_take_their_defaults() -> None:
    config = CycleConfig.from_params({"targets": TARGETS, "artifact_root": "file:///tmp/patchcycle/"})
    assert config.artifact_root == "file:///tmp/patchcycle"  # trailing slash dropped
    assert config.artifact_conn_id == "aws_default"
    assert (config.mode, str(config.max_concurrency), str(config.max_errors)) == ("scan", "50", "10%")
    assert (config.poll_seconds, config.command_timeout_minutes) == (30.0, 60.0)


def test_targets_fan_out_by_connection_and_region_in_order() -> None:
    config = CycleConfig.from_params(
        params(
            targets=[
                {"aws_conn_id": "aws_prod", "regions": ["us-east-1", "eu-west-1"]},
                {"aws_conn_id": "aws_dev", "regions": ["us-east-1", "us-gov-west-1"]},
            ]
        )
    )
    assert [t.as_kwargs() for t in config.targets] == [
        {"aws_conn_id": "aws_prod", "region_name": "us-east-1"},
        {"aws_conn_id": "aws_prod", "region_name": "eu-west-1"},
        {"aws_conn_id": "aws_dev", "region_name": "us-east-1"},
        {"aws_conn_id": "aws_dev", "region_name": "us-gov-west-1"},
    ]
    assert config.targets[0].key == "aws_prod.us-east-1"


@pytest.mark.parametrize(
    ("targets", "field"),
    [
        (None, "targets"),
        ([], "targets"),
        ({"aws_conn_id": "aws_default", "regions": ["us-east-1"]}, "targets"),
        (["aws_default"], "targets[0]"),
        ([{"aws_conn_id": "aws_default", "regions": ["us-east-1"], "region": "x"}], "targets[0]"),
        ([{"regions": ["us-east-1"]}], "targets[0].aws_conn_id"),
        ([{"aws_conn_id": "has space", "regions": ["us-east-1"]}], "targets[0].aws_conn_id"),
        ([{"aws_conn_id": "aws_default"}], "targets[0].regions"),
        ([{"aws_conn_id": "aws_default", "regions": []}], "targets[0].regions"),
        ([{"aws_conn_id": "aws_default", "regions": "us-east-1"}], "targets[0].regions"),
    ],
)
def test_badly_shaped_targets_are_refused(targets: Any, field: str) -> None:
    refused(field, targets=targets)


@pytest.mark.parametrize("region", ["US-EAST-1", "us-east", "useast1", "us-east-1a", "", 1])
def test_a_bad_region_name_is_refused(region: Any) -> None:
    targets = [{"aws_conn_id": "aws_default", "regions": ["us-east-1", region]}]
    message = refused("targets[0].regions[1]", targets=targets)
    assert repr(region) in message


def test_a_target_listed_twice_is_refused() -> None:
    targets = [
        {"aws_conn_id": "aws_default", "regions": ["us-east-1"]},
        {"aws_conn_id": "aws_default", "regions": ["eu-west-1", "us-east-1"]},
    ]
    message = refused("targets[1].regions[1]", targets=targets)
    assert "aws_default / us-east-1" in message and "twice" in message
    # The same region under another connection (another account) is a different target.
    other = [*targets[:1], {"aws_conn_id": "aws_other", "regions": ["us-east-1"]}]
    assert len(CycleConfig.from_params(params(targets=other)).targets) == 2


@pytest.mark.parametrize(
    "root",
    ["", "/tmp/artifacts", "file://relative/path", "gs://bucket", "s3://", "s3://A_Bucket", "http://example.com", None],
)
def test_an_artifact_root_outside_s3_or_file_is_refused(root: Any) -> None:
    refused("artifact_root", artifact_root=root)


@pytest.mark.parametrize("root", ["s3://patchcycle-artifacts", "s3://my.bucket-1/prefix/run", "file:///tmp/x"])
def test_s3_and_absolute_file_artifact_roots_are_accepted(root: str) -> None:
    assert CycleConfig.from_params(params(artifact_root=root)).artifact_root == root


def test_an_empty_artifact_connection_is_refused() -> None:
    refused("artifact_conn_id", artifact_conn_id="")


# Candidates for SSM's MaxConcurrency / MaxErrors, valid or not.
RATE_CANDIDATES = [
    "0", "1", "10", "50", "1000000", "10000000", "00", "01", "007",
    "0%", "1%", "5%", "05%", "00%", "10%", "99%", "100%", "101%", "1000%",
    "", "-1", "ten", "10 %", "1.5", "%",
]  # fmt: skip


def model_pattern(shape: str) -> tuple[re.Pattern[str], int]:
    """The pattern and maximum length botocore's SSM model gives a SendCommand member."""
    metadata = botocore.session.get_session().get_service_model("ssm").shape_for(shape).metadata
    return re.compile(metadata["pattern"]), int(metadata["max"])


@pytest.mark.parametrize("field", ["max_concurrency", "max_errors"])
def test_rate_controls_follow_the_ssm_api_syntax(field: str) -> None:
    """Accepted exactly when SendCommand would accept it: a bad value must not fail only after the inventory."""
    pattern, max_length = model_pattern("MaxConcurrency" if field == "max_concurrency" else "MaxErrors")
    for value in RATE_CANDIDATES:
        valid = bool(pattern.match(value)) and len(value) <= max_length
        if valid:
            assert str(getattr(CycleConfig.from_params(params(**{field: value})), field)) == value
        else:
            assert str(value) in refused(field, **{field: value})


@pytest.mark.parametrize("field", ["max_concurrency", "max_errors"])
def test_rate_controls_must_be_strings(field: str) -> None:
    refused(field, **{field: 10})


@pytest.mark.parametrize("field", ["poll_seconds", "command_timeout_minutes"])
@pytest.mark.parametrize("value", [0, -1, -0.5, "30", None, True])
def test_waits_must_be_positive_numbers(field: str, value: Any) -> None:
    refused(field, **{field: value})


@pytest.mark.parametrize("field", ["poll_seconds", "command_timeout_minutes"])
def test_waits_accept_ints_and_floats(field: str) -> None:
    assert getattr(CycleConfig.from_params(params(**{field: 2})), field) == 2.0
    assert getattr(CycleConfig.from_params(params(**{field: 0.5})), field) == 0.5


def test_install_mode_needs_an_s3_artifact_root() -> None:
    assert CycleConfig.from_params(params(mode="install")).mode == "install"
    message = refused("artifact_root", mode="install", artifact_root="file:///tmp/x")
    assert "s3://" in message and "pinned patch list" in message


@pytest.mark.parametrize(("run_type", "mode"), [("scheduled", "install"), ("manual", "scan"), ("backfill", "scan")])
def test_mode_default_resolves_by_run_type(run_type: str, mode: str) -> None:
    assert CycleConfig.from_params(params(mode="default"), run_type=run_type).mode == mode


@pytest.mark.parametrize("mode", ["patch", "", None, "SCAN"])
def test_an_unknown_mode_is_refused(mode: Any) -> None:
    assert "must be one of ['default', 'scan', 'install']" in refused("mode", mode=mode)


def test_install_settings_defaults() -> None:
    install = CycleConfig.from_params(params()).install
    assert install == InstallSettings()
    assert InstallSettings.from_params(install.as_params()) == install


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("approval_mode", "policy"),
        ("approval_timeout_hours", 0),
        ("staging_max_instances", 0),
        ("staging_max_instances", 2.5),
        ("staging_instance_profile", "has space"),
        ("staging_subnet_id", "subnet-XYZ"),
        ("staging_timeout_minutes", -1),
        ("canary", "0%"),
        ("canary", 5),
        ("halt_threshold", "ten"),
        ("reboot_option", "Always"),
        ("wave_percentages", []),
        ("wave_percentages", [50, 60]),
        ("wave_percentages", [20, 20, 20, 20, 20]),
        ("wave_percentages[1]", [50, "50"]),
        ("wave_percentages[0]", [0, 100]),
    ],
)
def test_bad_install_settings_are_refused_by_name(field: str, value: Any) -> None:
    refused(field, **{field.split("[")[0]: value})


def test_rds_settings_defaults_and_values() -> None:
    rds = CycleConfig.from_params(params()).rds
    assert (rds.rds_actions, rds.rds_apply, rds.rds_timeout_minutes) == (
        ("system-update", "os-upgrade"),
        "immediate",
        120,
    )
    chosen = CycleConfig.from_params(params(rds_actions=["db-upgrade", "db-upgrade"], rds_apply="next-maintenance"))
    assert (chosen.rds.rds_actions, chosen.rds.rds_apply) == (("db-upgrade",), "next-maintenance")
    assert CycleConfig.from_params(params(rds_actions=[])).rds.rds_actions == ()  # no database touched
    assert rds.rds_connect_check and not CycleConfig.from_params(params(rds_connect_check=False)).rds.rds_connect_check


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("rds_actions", "system-update", "must be a list of maintenance actions"),
        ("rds_actions", ["system-update", "patch"], "unknown maintenance action(s) ['patch']"),
        ("rds_actions", [None], "unknown maintenance action(s) [None]"),
        ("rds_apply", "later", "must be one of ['immediate', 'next-maintenance']"),
        ("rds_apply", "undo-opt-in", "must be one of ['immediate', 'next-maintenance']"),
        ("rds_apply", None, "must be one of"),
        ("rds_timeout_minutes", 0, "must be a positive number"),
        ("rds_timeout_minutes", "60", "must be a positive number"),
        ("rds_connect_check", "yes", "must be true or false, got 'yes'"),
    ],
)
def test_bad_rds_settings_are_refused_by_name(field: str, value: Any, words: str) -> None:
    assert words in refused(field, **{field: value})


def test_rollout_safety_defaults_snapshot_and_roll_back_failures_with_no_gates() -> None:
    safety = CycleConfig.from_params(params()).safety
    assert safety == RolloutSafety()
    assert (safety.snapshot, safety.rollback, safety.snapshot_retention_days) == (True, "failed", 7)
    assert (safety.change_calendar, safety.health_alarms, safety.automation_assume_role) == ("", (), "")


def test_rollout_safety_reads_names_arns_and_alarm_prefixes() -> None:
    calendar = "arn:aws:ssm:us-east-1:123456789012:document/prod-freeze"
    role = "arn:aws:iam::123456789012:role/patchcycle-automation"
    safety = CycleConfig.from_params(
        params(
            change_calendar=calendar,
            change_calendar_wait_minutes=30,
            health_alarms=["web-5xx", "payments-*", "web-5xx"],
            automation_assume_role=role,
            snapshot_retention_days=30,
        )
    ).safety
    assert (safety.change_calendar, safety.change_calendar_wait.total_seconds()) == (calendar, 1800)
    assert safety.health_alarms == ("web-5xx", "payments-*")  # a name listed twice is watched once
    assert (safety.automation_assume_role, safety.snapshot_retention_days) == (role, 30)
    assert RolloutSafety.from_params(safety.as_params()) == safety
    assert CycleConfig.from_params(params(change_calendar="prod-freeze")).safety.change_calendar == "prod-freeze"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("snapshot", "yes"),
        ("snapshot_retention_days", 0),
        ("rollback", "all"),
        ("change_calendar", "no spaces allowed"),
        ("change_calendar", "arn:aws:ssm:us-east-1:1234:document/short-account"),
        ("change_calendar_wait_minutes", 0),
        ("health_alarms", "web-5xx"),
        ("health_alarms[1]", ["web-5xx", "*"]),
        ("health_alarms[0]", [""]),
        ("automation_assume_role", "patchcycle-automation"),
        ("automation_assume_role", "arn:aws:iam::123456789012:user/ops"),
    ],
)
def test_bad_rollout_safety_settings_are_refused_by_name(field: str, value: Any) -> None:
    refused(field, **{field.split("[")[0]: value})


def test_a_rollback_without_snapshots_is_refused() -> None:
    message = refused("rollback", snapshot=False)
    assert "needs snapshot: true" in message
    assert not CycleConfig.from_params(params(snapshot=False, rollback="none")).safety.snapshot


@pytest.mark.parametrize(
    ("scope", "field"),
    [
        ("Environment=production", "scope"),
        ({"include_tag": {"Environment": ["production"]}}, "scope.include_tag"),
        ({"include_tags": ["Environment"]}, "scope.include_tags"),
        ({"include_tags": {"Environment": []}}, "scope.include_tags.Environment"),
        ({"exclude_ids": "i-0123"}, "scope.exclude_ids"),
        ({"exclude_ids": [""]}, "scope.exclude_ids"),
        ({"exclude_tags": {"Environment": "staging"}}, "scope.exclude_tags.Environment"),
    ],
)
def test_scope_errors_name_the_scope_field(scope: Any, field: str) -> None:
    refused(field, scope=scope)


def test_scope_is_parsed() -> None:
    scope = {"include_tags": {"Environment": ["production"]}, "exclude_ids": ["i-1"], "exclude_tags": {"App": ["x"]}}
    config = CycleConfig.from_params(params(scope=scope))
    assert config.scope == Scope(
        include_tags={"Environment": ["production"]}, exclude_ids=frozenset({"i-1"}), exclude_tags={"App": ["x"]}
    )


def test_watch_config_defaults_and_refusals() -> None:
    config = WatchConfig.from_params({})
    assert config.finding_severities == ("CRITICAL",) and config.poll_seconds == 15.0
    assert WatchConfig.from_params({"finding_severities": ["HIGH", "CRITICAL", "HIGH"]}).finding_severities == (
        "HIGH",
        "CRITICAL",
    )
    with pytest.raises(ValueError, match=r"^finding_severities\[1\]: must be one of"):
        WatchConfig.from_params({"finding_severities": ["HIGH", "SEVERE"]})
    with pytest.raises(ValueError, match=r"^config_rule_name: must be 1 to 64 characters"):
        WatchConfig.from_params({"config_rule_name": ""})


def test_baselines_config_resolves_a_relative_directory_from_the_repository() -> None:
    config = BaselinesConfig.from_params({"baselines_dir": "include/baselines"})
    assert config.directory == Path(__file__).resolve().parents[1] / "include" / "baselines"
    assert config.dry_run is True and config.prune is False
    with pytest.raises(ValueError, match=r"^dry_run: must be true or false"):
        BaselinesConfig.from_params({"dry_run": "no"})


@pytest.mark.parametrize("name", ["", "x" * 300, "other-dashboard", "patchcycle with space"])
def test_a_dashboard_the_policy_does_not_allow_is_refused(name: str) -> None:
    if name == "":
        assert CycleConfig.from_params(params(dashboard_name="")).dashboard_name == ""  # no dashboard
    else:
        refused("dashboard_name", dashboard_name=name)
