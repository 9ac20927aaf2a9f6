"""The staging operators against the sandbox: the stack (created, failed and cleaned up, torn down), the pinned
install on the replicas, and the health checks (shell on Linux, PowerShell on Windows; a failing one is kept
with its reason)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.config import Target
from patchcycle.core.staging import stack_name
from patchcycle.hooks.staging_stack import StagingStackHook
from patchcycle.links.cloudformation import CloudFormationStackLink
from patchcycle.operators.run_command import HEALTHCHECKS
from patchcycle.operators.staging_checks import StagingHealthCheckOperator, StagingPatchOperator
from patchcycle.operators.staging_stack import StagingStackOperator, StagingTeardownOperator
from patchcycle.run_artifacts import (
    INVENTORY,
    INVENTORY_SUMMARY,
    OVERRIDES,
    PRODUCTION,
    PROFILES,
    RDS_PLAN,
    STACK,
    STAGING_HEALTH_COMMANDS,
    STAGING_INSTALL_COMMANDS,
    STAGING_RESULTS,
    TARGET_ERROR,
    WAVE_PLAN,
    RunArtifacts,
    Step,
)
from patchcycle.run_records import StackRecord
from patchcycle.triggers.command_completion import CommandCompletionTrigger
from patchcycle.triggers.stack_status import StackStatusTrigger
from tests.conftest import advance_clock, client_factory, first_trigger_payload, sandbox_calls
from tests.operators.install_helpers import (
    ACCOUNT,
    AL2023,
    REGION,
    TARGET,
    LinkTi,
    context,
    copy_run,
    cycle_config,
    deferral,
    linked_context,
    plan_run,
    run_artifacts,
    s3_root,
    scenario,
)

BASE_RUN = "scheduled__staging"
BROKEN_RUN = "scheduled__staging_broken"
BROKEN_REGION = "eu-west-1"  # every staging stack there fails to create
BROKEN_TARGET = Target("aws_default", BROKEN_REGION)
REASON = "Your requested instance type (t3.medium) is not supported in your requested Availability Zone"
# Each test runs stacks, installs or health checks through the triggers (3 to 5 s each): not in `make test-fast`.
pytestmark = pytest.mark.slow


def staging_scenario() -> dict[str, Any]:
    document = scenario(
        "staging",
        cloudformation={
            "fail_stacks": [{"name_prefix": "patchcycle-staging-", "region": BROKEN_REGION, "reason": REASON}]
        },
    )
    regions = document["accounts"][0]["regions"]
    regions[BROKEN_REGION] = {
        "instance_groups": [
            {
                "name": "web-eu",
                "count": 3,
                "ami": AL2023,
                "instance_type": "t3.medium",
                "tags": {"Environment": "production", "PatchGroup": "web"},
                "patched_through": "2026-09-30",
            }
        ]
    }
    # The Windows replica's health check fails; the Linux replica's passes.
    document["failures"] = [{"tags": {"patchcycle:role": "staging", "PatchGroup": "windows"}, "script_fails": True}]
    return document


SCENARIO = staging_scenario()
ROOT = s3_root("staging")
# What inventory and plan_install leave a run (the override lists stay where BASE_RUN's overrides point).
PLANNED = (INVENTORY, RDS_PLAN, INVENTORY_SUMMARY, PRODUCTION, PROFILES, WAVE_PLAN, OVERRIDES)


@pytest.fixture(scope="module")
def base(server: SandboxServer) -> dict[str, Any]:
    """BASE_RUN's inventory and install plan of REGION (two profiles: web on Linux, windows); the module's config."""
    config = cycle_config(ROOT, command_timeout_minutes=5)
    plan_run(server, config, BASE_RUN)
    return config


@pytest.fixture(scope="module")
def broken(server: SandboxServer) -> dict[str, Any]:
    """BROKEN_RUN's inventory and install plan of BROKEN_REGION; the config of runs there."""
    config = cycle_config(ROOT, regions=[BROKEN_REGION], canary="1", wave_percentages=[100])
    plan_run(server, config, BROKEN_RUN, region=BROKEN_REGION)
    return config


def new_run(config: dict[str, Any], run_id: str, source: str = BASE_RUN, target: Target = TARGET) -> RunArtifacts:
    """A run with `source`'s inventory and install plan; its artifacts."""
    return copy_run(config, source, run_id, PLANNED, [target])


def create_operator(config: dict[str, Any], region: str = REGION) -> StagingStackOperator:
    return StagingStackOperator(task_id="create_staging", config=config, region_name=region)


def teardown_operator(config: dict[str, Any], region: str = REGION) -> StagingTeardownOperator:
    return StagingTeardownOperator(task_id="delete_staging", config=config, region_name=region)


def create_stack(config: dict[str, Any], run_id: str) -> dict[str, Any]:
    operator = create_operator(config)
    payload = first_trigger_payload(deferral(operator, context(run_id)).trigger)
    record: dict[str, Any] = operator.execute_complete(context(run_id), payload)
    return record


def staging_hook(region: str = REGION) -> StagingStackHook:
    return StagingStackHook(aws_conn_id="aws_default", region_name=region)


def profiles(config: dict[str, Any]) -> pd.DataFrame:
    return run_artifacts(config, BASE_RUN).read(PROFILES)


# -- the stack ------------------------------------------------------------------------------------------------


def test_create_defers_on_the_stack_then_records_its_instances_by_profile(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__create"
    artifacts = new_run(base, run_id)
    name = stack_name(run_id)
    creates = sandbox_calls(server.url, "cloudformation:CreateStack")
    ti = LinkTi()

    deferred = deferral(create_operator(base), linked_context(run_id, ti))

    assert sandbox_calls(server.url, "cloudformation:CreateStack") - creates == 1
    assert deferred.method_name == "execute_complete"
    trigger = deferred.trigger
    assert isinstance(trigger, StackStatusTrigger)
    _, kwargs = trigger.serialize()
    assert (kwargs["stack_name"], kwargs["waiter_name"], kwargs["region_name"]) == (
        name,
        "stack_create_complete",
        REGION,
    )
    assert artifacts.read(STACK, target=TARGET).status == "CREATE_IN_PROGRESS"
    # The task links to its stack by the stack's ARN (the console opens a deleted stack only by its id).
    stack_id = staging_hook().status(name)["stack_id"]  # type: ignore[index]
    assert stack_id.startswith(f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/")
    assert ti.url(CloudFormationStackLink()) == (
        f"https://console.aws.amazon.com/cloudformation/home?region={REGION}#/stacks/stackinfo"
        f"?stackId={quote(stack_id, safe='')}"
    )
    # A retried task finds its stack and waits for it again instead of creating another, and links to it again.
    retried = LinkTi()
    deferral(create_operator(base), linked_context(run_id, retried))
    assert sandbox_calls(server.url, "cloudformation:CreateStack") - creates == 1
    assert retried.xcom == ti.xcom

    payload = first_trigger_payload(trigger)
    assert payload == {"status": "success", "stack_name": name}
    record = create_operator(base).execute_complete(context(run_id), payload)

    staged = profiles(base)
    staged = staged[staged["staged"] & (staged["region"] == REGION)]
    assert sorted(record["instances"]) == sorted(staged["profile_id"]) and len(staged) == 2
    assert (record["stack_name"], record["created"], record["status"]) == (name, True, "CREATE_COMPLETE")
    assert record["account_id"] == ACCOUNT and record["region"] == REGION and record["created_at"]
    assert asdict(artifacts.read(STACK, target=TARGET)) == record
    ec2 = client_factory(server.url)("ec2", region=REGION)
    reservations = ec2.describe_instances(InstanceIds=list(record["instances"].values()))["Reservations"]
    tags = {i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]} for r in reservations for i in r["Instances"]}
    for profile in staged.to_dict("records"):
        instance_tags = tags[record["instances"][profile["profile_id"]]]
        assert instance_tags["patchcycle:profile"] == profile["profile_id"]
        assert instance_tags["patchcycle:role"] == "staging"
        assert instance_tags["PatchGroup"] == profile["patch_group"]


def test_a_stack_that_fails_to_create_is_deleted_and_the_task_fails_with_the_reason(
    server: SandboxServer, broken: dict[str, Any]
) -> None:
    run_id = "scheduled__broken"
    artifacts = new_run(broken, run_id, BROKEN_RUN, BROKEN_TARGET)
    name = stack_name(run_id)
    operator = create_operator(broken, BROKEN_REGION)
    payload = first_trigger_payload(deferral(operator, context(run_id)).trigger)
    assert payload["status"] == "error"

    with pytest.raises(AirflowFailException) as caught:
        create_operator(broken, BROKEN_REGION).execute_complete(context(run_id), payload)

    message = str(caught.value)
    assert message.startswith(f"staging stack {name} in {BROKEN_REGION} failed to create (ROLLBACK_COMPLETE): ")
    assert REASON in message and message.endswith("the stack was deleted")
    assert staging_hook(BROKEN_REGION).status(name) is None  # by name, a deleted stack does not exist
    record = artifacts.read(STACK, target=BROKEN_TARGET)
    assert (record.created, record.status, record.deleted) == (False, "ROLLBACK_COMPLETE", True)
    assert REASON in record.error and record.deleted_at
    error = artifacts.read(TARGET_ERROR, step=Step.STAGING, target=BROKEN_TARGET)
    assert error.stage == "staging" and REASON in error.error


def test_a_rerun_after_a_failed_create_records_the_new_stack_without_the_old_failure(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rerun"
    artifacts = new_run(base, run_id)
    # What the failed first attempt left (see the test above): its error, and its stack deleted.
    failed = StackRecord(
        stack_name=stack_name(run_id),
        account_id=ACCOUNT,
        region=REGION,
        created=False,
        status="ROLLBACK_COMPLETE",
        error=f"StagingInstanceP01: {REASON}",
        deleted=True,
        deleted_at="2026-11-20T03:00:00Z",
    )
    artifacts.write(STACK, failed, target=TARGET)

    record = create_stack(base, run_id)  # the task cleared and run again: this time the stack is created

    assert (record["created"], record["status"]) == (True, "CREATE_COMPLETE")
    assert not record["error"] and not record["deleted"] and not record["deleted_at"]
    torn_down = teardown_operator(base).execute_complete(
        context(run_id), first_trigger_payload(deferral(teardown_operator(base), context(run_id)).trigger)
    )
    assert torn_down["deleted"] and torn_down["deleted_at"] >= torn_down["created_at"]


def test_teardown_deletes_the_stack_in_the_triggerer_and_records_it(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__teardown"
    artifacts = new_run(base, run_id)
    created = create_stack(base, run_id)
    name = created["stack_name"]
    deletes = sandbox_calls(server.url, "cloudformation:DeleteStack")
    stack_id = staging_hook().status(name)["stack_id"]  # type: ignore[index]
    ti = LinkTi()

    deferred = deferral(teardown_operator(base), linked_context(run_id, ti))
    assert ti.url(CloudFormationStackLink()).endswith(f"?stackId={quote(stack_id, safe='')}")

    assert sandbox_calls(server.url, "cloudformation:DeleteStack") - deletes == 1
    trigger = deferred.trigger
    assert isinstance(trigger, StackStatusTrigger) and deferred.method_name == "execute_complete"
    assert trigger.serialize()[1]["waiter_name"] == "stack_delete_complete"
    payload = first_trigger_payload(trigger)
    assert payload == {"status": "success", "stack_name": name}
    record = teardown_operator(base).execute_complete(context(run_id), payload)

    assert record == {**created, "deleted": True, "deleted_at": record["deleted_at"]} and record["deleted_at"]
    assert asdict(artifacts.read(STACK, target=TARGET)) == record
    assert staging_hook().status(name) is None
    ec2 = client_factory(server.url)("ec2", region=REGION)
    reservations = ec2.describe_instances(InstanceIds=list(created["instances"].values()))["Reservations"]
    assert {i["State"]["Name"] for r in reservations for i in r["Instances"]} == {"terminated"}

    # Run again (a cleared teardown): nothing left to delete, no call, no deferral.
    again = teardown_operator(base).execute(context(run_id))
    assert sandbox_calls(server.url, "cloudformation:DeleteStack") - deletes == 1
    assert again == record


def test_teardown_without_a_stack_is_a_no_op(server: SandboxServer) -> None:
    run_id = "scheduled__nothing"  # a run with no artifacts at all: its inventory did not even run
    config = cycle_config(ROOT)
    deletes = sandbox_calls(server.url, "cloudformation:DeleteStack")
    record = teardown_operator(config).execute(context(run_id))  # no TaskDeferred
    assert record == asdict(StackRecord(stack_name=stack_name(run_id), account_id="", region=REGION))
    assert not record["created"] and not record["deleted"]
    assert sandbox_calls(server.url, "cloudformation:DeleteStack") == deletes
    assert asdict(run_artifacts(config, run_id).read(STACK, target=TARGET)) == record


# -- the install and the health checks ---------------------------------------------------------------------


def wait_for_commands(server: SandboxServer, operator: Any, run_id: str) -> dict[str, Any]:
    """Execute until the operator waits on its commands (it may first wait for the replicas to be Online),
    then run that trigger to its event."""
    for _ in range(20):
        with pytest.raises(TaskDeferred) as caught:
            operator.execute(context(run_id))
        if caught.value.method_name == "execute_complete":
            break
        advance_clock(server.url, 10)
    trigger = caught.value.trigger
    assert isinstance(trigger, CommandCompletionTrigger)
    advance_clock(server.url, 60)
    payload = first_trigger_payload(trigger)
    assert payload["status"] == "done"
    return payload


def test_staging_installs_the_pinned_lists_then_health_checks_by_platform(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__checks"
    artifacts = new_run(base, run_id)
    instances = create_stack(base, run_id)["instances"]
    staged = profiles(base).set_index("profile_id")
    platform_of = {instance_id: staged.loc[profile, "platform_type"] for profile, instance_id in instances.items()}
    assert sorted(platform_of.values()) == ["Linux", "Windows"]
    overrides = run_artifacts(base, BASE_RUN).read(OVERRIDES)
    ssm = client_factory(server.url)("ssm", region=REGION)

    patch = StagingPatchOperator(task_id="patch_staging", config=base, region_name=REGION)
    payload = wait_for_commands(server, patch, run_id)
    summary = patch.execute_complete(context(run_id), payload)

    assert summary == {"staging_instances": 2, "install_succeeded": 2}
    install_commands = artifacts.read(STAGING_INSTALL_COMMANDS, target=TARGET)
    assert sorted(install_commands) == sorted(instances)
    for profile, command_id in install_commands.items():
        (command,) = ssm.list_commands(CommandId=command_id)["Commands"]
        assert command["InstanceIds"] == [instances[profile]]
        assert command["Parameters"]["Operation"] == ["Install"]
        assert command["Parameters"]["InstallOverrideList"] == [overrides[profile]]

    check = StagingHealthCheckOperator(task_id="check_staging", config=base, region_name=REGION)
    payload = wait_for_commands(server, check, run_id)
    summary = check.execute_complete(context(run_id), payload)

    assert summary == {"instances": 2, "passed": 1, "failed": 1}
    health_commands = artifacts.read(STAGING_HEALTH_COMMANDS, target=TARGET)
    assert sorted(health_commands) == ["Linux.0", "Windows.0"]  # one command (batch 0) per platform
    expected = {"Linux": ("AWS-RunShellScript", "linux.sh"), "Windows": ("AWS-RunPowerShellScript", "windows.ps1")}
    for key, command_id in health_commands.items():
        platform = key.split(".")[0]
        (command,) = ssm.list_commands(CommandId=command_id)["Commands"]
        document, script = expected[platform]
        assert command["DocumentName"] == document
        assert command["InstanceIds"] == [i for i, p in platform_of.items() if p == platform]
        assert command["Parameters"]["commands"] == [(HEALTHCHECKS / script).read_text()]
        assert command["Parameters"]["executionTimeout"] == ["300"]

    results = artifacts.read(STAGING_RESULTS, target=TARGET)
    by_platform = {platform_of[row["instance_id"]]: row for row in results.to_dict("records")}
    linux, windows = by_platform["Linux"], by_platform["Windows"]
    assert (linux["install_status"], linux["health_status"], linux["passed"], linux["reason"]) == (
        "Success",
        "Success",
        True,
        "",
    )
    linux_profile = next(p for p, i in instances.items() if platform_of[i] == "Linux")
    assert linux["not_installed"] == "" and linux["installed"] == len(staged.loc[linux_profile, "patch_ids"].split(";"))
    assert (windows["install_status"], windows["health_status"], windows["passed"]) == ("Success", "Failed", False)
    assert windows["reason"].startswith("health check Failed (exit 1): ")
    assert "failed to run commands: exit status 1" in windows["reason"]
    assert "failed to run commands: exit status 1" in windows["health_output"]

    # A retried check sends nothing again.
    sent = sandbox_calls(server.url, "ssm:SendCommand")
    with pytest.raises(TaskDeferred):
        StagingHealthCheckOperator(task_id="check_staging", config=base, region_name=REGION).execute(context(run_id))
    assert sandbox_calls(server.url, "ssm:SendCommand") == sent


def test_a_baked_amis_replica_is_scanned_not_installed_and_must_come_with_its_pinned_patches(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    """The Linux replica stands for a baked AMI here (its profile id is a planned bake's): it gets a Scan, so the
    pinned patches its image lacks (it was launched from an unpatched AMI) show as not installed, and it fails."""
    from patchcycle.core.frames import typed_frame
    from patchcycle.core.immutable import BAKE_PLAN_COLUMNS
    from patchcycle.core.staging import staging_results
    from patchcycle.run_artifacts import BAKE_PLAN, STAGING_INSTALL

    run_id = "scheduled__bake-scan"
    artifacts = new_run(base, run_id)
    instances = create_stack(base, run_id)["instances"]
    staged = profiles(base).set_index("profile_id")
    linux, windows = sorted(instances, key=lambda p: staged.loc[p, "platform_type"] != "Linux")
    artifacts.write(
        BAKE_PLAN,
        typed_frame([{"bake_id": linux, "image_id": staged.loc[linux, "image_id"], "instances": 1}], BAKE_PLAN_COLUMNS),
    )
    overrides = run_artifacts(base, BASE_RUN).read(OVERRIDES)
    ssm = client_factory(server.url)("ssm", region=REGION)

    patch = StagingPatchOperator(task_id="patch_staging", config=base, region_name=REGION)
    patch.execute_complete(context(run_id), wait_for_commands(server, patch, run_id))

    commands = artifacts.read(STAGING_INSTALL_COMMANDS, target=TARGET)
    (scan,) = ssm.list_commands(CommandId=commands[linux])["Commands"]
    assert scan["Parameters"]["Operation"] == ["Scan"] and "InstallOverrideList" not in scan["Parameters"]
    (install,) = ssm.list_commands(CommandId=commands[windows])["Commands"]
    assert install["Parameters"]["Operation"] == ["Install"]
    assert install["Parameters"]["InstallOverrideList"] == [overrides[windows]]
    record = artifacts.read(STAGING_INSTALL, target=TARGET)
    rows = staged.loc[[linux]].reset_index().assign(instance_id=[instances[linux]])
    healthy = {instances[linux]: {"Status": "Success"}}
    (result,) = staging_results(rows, record.install, record.patches, healthy).to_dict("records")
    pinned = staged.loc[linux, "patch_ids"].split(";")
    assert result["install_status"] == "Success" and not result["passed"]
    assert result["installed"] == 0 and result["not_installed"].split(";") == pinned
