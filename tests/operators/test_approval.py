"""PatchApprovalOperator over staging artifacts: the request's body from a real plan, the auto policy, the manual
request (Human-in-the-loop, no API server: upsert_hitl_detail is patched), the recorded decision, and skipping the
first wave on Reject."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowSkipException, DownstreamTasksSkipped, TaskAwaitingInput

from patchcycle.config import Target
from patchcycle.core.frames import typed_frame
from patchcycle.core.outcomes import ApprovalRecord
from patchcycle.core.staging import STAGING_RESULT_COLUMNS, stack_name
from patchcycle.core.waves import WAVE_PLAN_COLUMNS
from patchcycle.operators.approval import PatchApprovalOperator
from patchcycle.run_artifacts import (
    APPROVAL_DECISION,
    APPROVAL_REQUEST,
    MATCH_PLAN,
    PRODUCTION,
    PROFILES,
    STACK,
    STAGING_RESULTS,
    WAVE_PLAN,
    RunArtifacts,
)
from patchcycle.run_records import StackRecord
from tests.operators.install_helpers import (
    ACCOUNT,
    DAG_ID,
    FAILING_PATCH,
    cycle_config,
    plan_run,
    run_artifacts,
    s3_root,
    scenario,
)

EAST, WEST = "us-east-1", "eu-west-1"
EAST_TARGET, WEST_TARGET = Target("aws_default", EAST), Target("aws_default", WEST)
FAILURE = "health check Failed (exit 1): FAIL: 1 failed systemd unit(s)"
# The artifacts live in the sandbox's S3 (install mode needs an s3:// root); the gate itself calls no AWS API.
SCENARIO = scenario("approval")
ROOT = s3_root("approval")
pytestmark = pytest.mark.usefixtures("server")


def staging_row(region: str, profile: str, instance: str, passed: bool = True) -> dict[str, Any]:
    return {
        "account_id": ACCOUNT,
        "region": region,
        "profile_id": profile,
        "instance_id": instance,
        "patch_group": "web",
        "platform_name": "Amazon Linux",
        "patch_ids": "ALAS2023-2026-1101;ALAS2023-2026-1134",
        "install_status": "Success",
        "installed": 2,
        "not_installed": "",
        "health_status": "Success" if passed else "Failed",
        "health_output": "" if passed else "FAIL: 1 failed systemd unit(s)",
        "passed": passed,
        "reason": "" if passed else FAILURE,
    }


def created_stack(run_id: str, region: str) -> StackRecord:
    return StackRecord(
        stack_name=stack_name(run_id), account_id=ACCOUNT, region=region, created=True, status="CREATE_COMPLETE"
    )


def write_staging(run_id: str, *, east_passes: bool = True, west_stack: dict[str, Any] | None = None) -> RunArtifacts:
    """Staging as check_staging leaves it: us-east-1 with two replicas; eu-west-1 with one (or a stack record:
    the given fields, or none at all when empty)."""
    artifacts = run_artifacts(config(), run_id)
    artifacts.write(STACK, created_stack(run_id, EAST), target=EAST_TARGET)
    rows = [staging_row(EAST, "p01", "i-0staging00001"), staging_row(EAST, "p02", "i-0staging00002", east_passes)]
    artifacts.write(STAGING_RESULTS, typed_frame(rows, STAGING_RESULT_COLUMNS), target=EAST_TARGET)
    if west_stack is None:
        artifacts.write(STACK, created_stack(run_id, WEST), target=WEST_TARGET)
        west = [staging_row(WEST, "p03", "i-0staging00003")]
        artifacts.write(STAGING_RESULTS, typed_frame(west, STAGING_RESULT_COLUMNS), target=WEST_TARGET)
    elif west_stack:
        fields = {"stack_name": stack_name(run_id), "account_id": ACCOUNT, **west_stack}
        artifacts.write(STACK, StackRecord(region=WEST, **fields), target=WEST_TARGET)
    waves = [
        {"account_id": ACCOUNT, "region": EAST, "resource_id": f"i-{n:017x}", "profile_id": "p01", "wave": wave}
        for n, wave in enumerate([1, 2, 2, 3, 3, 3])
    ]
    artifacts.write(WAVE_PLAN, typed_frame(waves, WAVE_PLAN_COLUMNS))
    return artifacts


def config(**install: Any) -> dict[str, Any]:
    return cycle_config(ROOT, regions=[EAST, WEST], **install)


def approval(settings: dict[str, Any] | None = None, **install: Any) -> tuple[PatchApprovalOperator, DAG]:
    """The gate in a DAG shaped like patch_cycle's: check_staging >> approve >> wave_1 >> wave_2."""
    with DAG(dag_id=DAG_ID, schedule=None) as dag:
        operator = PatchApprovalOperator(task_id="approve_production", config=settings or config(**install))
        EmptyOperator(task_id="check_staging") >> operator >> EmptyOperator(task_id="wave_1")
        dag.get_task("wave_1") >> EmptyOperator(task_id="wave_2")
    return operator, dag


def context(dag: DAG, operator: PatchApprovalOperator, run_id: str) -> Any:
    ti = SimpleNamespace(id=uuid.uuid4(), map_index=-1, task_id=operator.task_id, xcom_push=mock.Mock())
    return {"dag": dag, "run_id": run_id, "task": operator, "ti": ti, "task_instance": ti, "params": {}}


def decision(run_id: str) -> ApprovalRecord:
    return run_artifacts(config(), run_id).read(APPROVAL_DECISION)


def test_auto_approves_when_every_replica_passed_and_every_stack_was_created() -> None:
    run_id = "scheduled__auto_ok"
    artifacts = write_staging(run_id)
    operator, dag = approval(approval_mode="auto")
    ctx = context(dag, operator, run_id)

    result = operator.execute(ctx)  # neither waits nor skips

    assert result["chosen_options"] == ["Approve"]
    recorded = decision(run_id)
    assert recorded == ApprovalRecord(
        mode="auto",
        decision="Approve",
        by="approval policy: auto",
        at=recorded.at,
        timed_out=False,
        staging_passed=True,
    )
    assert datetime.fromisoformat(recorded.at) <= datetime.now(UTC)
    request = artifacts.read(APPROVAL_REQUEST)
    assert (request.mode, request.staging_passed) == ("auto", True)
    assert request.body.startswith("# Staging passed: 3 replicas patched and healthy")
    ctx["ti"].xcom_push.assert_not_called()


def test_auto_counts_a_target_that_needed_no_stack_as_passed() -> None:
    run_id = "scheduled__auto_not_needed"
    write_staging(run_id, west_stack={"created": False, "status": "NOT_NEEDED"})
    operator, dag = approval(approval_mode="auto")
    assert operator.execute(context(dag, operator, run_id))["chosen_options"] == ["Approve"]
    assert decision(run_id).decision == "Approve"


@pytest.mark.parametrize(
    ("case", "staging"),
    [
        ("instance_failed", {"east_passes": False}),  # a staging instance failed
        ("stack_failed", {"west_stack": {"created": False, "status": "ROLLBACK_COMPLETE", "error": "boom"}}),
        ("no_stack_record", {"west_stack": {}}),  # create_staging never wrote one
    ],
)
def test_auto_rejects_and_skips_the_first_wave(case: str, staging: dict[str, Any]) -> None:
    run_id = f"scheduled__auto_reject_{case}"
    write_staging(run_id, **staging)
    operator, dag = approval(approval_mode="auto")
    ctx = context(dag, operator, run_id)

    with pytest.raises(DownstreamTasksSkipped) as caught:
        operator.execute(ctx)

    assert caught.value.tasks == ["wave_1"], case  # the direct downstream; later waves follow by trigger rule
    ctx["ti"].xcom_push.assert_called_once_with(key="skipmixin_key", value={"skipped": ["wave_1"]})
    recorded = decision(run_id)
    assert (recorded.mode, recorded.decision, recorded.by) == ("auto", "Reject", "approval policy: auto")
    assert (recorded.timed_out, recorded.staging_passed) == (False, False)


def test_a_reject_calls_skip_with_only_the_direct_downstream_task() -> None:
    run_id = "scheduled__skip_spy"
    write_staging(run_id, east_passes=False)
    operator, dag = approval(approval_mode="auto")
    ctx = context(dag, operator, run_id)
    with mock.patch.object(PatchApprovalOperator, "skip", autospec=True) as skip:
        operator.execute(ctx)
    (call,) = skip.call_args_list
    assert call.kwargs["ti"] is ctx["ti"]
    assert [task.task_id for task in call.kwargs["tasks"]] == ["wave_1"]


def test_manual_asks_a_person_with_the_failures_and_the_report_link_and_the_response_timeout() -> None:
    run_id = "scheduled__manual"
    artifacts = write_staging(run_id, east_passes=False)
    operator, dag = approval(approval_mode="manual", approval_timeout_hours=6)
    ctx = context(dag, operator, run_id)

    with (
        mock.patch("airflow.providers.standard.operators.hitl.upsert_hitl_detail") as upsert,
        pytest.raises(TaskAwaitingInput) as caught,
    ):
        operator.execute(ctx)

    assert caught.value.method_name == "execute_complete"
    assert caught.value.timeout == operator.response_timeout == timedelta(hours=6)
    body = operator.body
    assert body is not None and body.startswith("# Staging FAILED: 1 of 3 replicas failed")
    assert "i-0staging00002" in body and FAILURE in body
    run_page = f"/patchcycle/runs/{DAG_ID}/{run_id}"  # no [api] base_url: relative to the UI's host
    assert f"- [Run page]({run_page})" in body
    staging = f"{run_page}/artifacts/staging%2Faws_default.{EAST}.results.parquet"
    assert f"- [Staging results (aws_default, {EAST})]({staging})" in body
    assert "s3://" not in body and "report.html" not in body  # the report does not exist yet at the gate
    upsert.assert_called_once()
    request = upsert.call_args.kwargs
    assert request["ti_id"] == ctx["task_instance"].id
    assert (request["options"], request["defaults"], request["body"]) == (["Approve", "Reject"], ["Reject"], body)
    recorded = artifacts.read(APPROVAL_REQUEST)
    assert (recorded.mode, recorded.staging_passed, recorded.body) == ("manual", False, body)
    assert not artifacts.exists(APPROVAL_DECISION)  # nobody decided yet


def test_a_timed_out_request_records_a_default_reject_by_nobody() -> None:
    run_id = "scheduled__timeout"
    write_staging(run_id)
    operator, dag = approval(approval_mode="manual")
    ctx = context(dag, operator, run_id)
    with mock.patch("airflow.providers.standard.operators.hitl.upsert_hitl_detail"), pytest.raises(TaskAwaitingInput):
        operator.execute(ctx)
    at = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    # What the scheduler's timeout sweep resumes the task with (HITLDetail.as_resume_event_payload).
    event = {
        "chosen_options": ["Reject"],
        "params_input": {},
        "responded_at": at,
        "responded_by_user": None,
        "timedout": True,
    }

    with pytest.raises(DownstreamTasksSkipped) as caught:
        operator.execute_complete(ctx, event)

    assert caught.value.tasks == ["wave_1"]
    assert decision(run_id) == ApprovalRecord(
        mode="manual",
        decision="Reject",
        by="",
        at=at.isoformat(),
        timed_out=True,
        staging_passed=True,
    )


def test_a_person_approving_is_recorded_by_name() -> None:
    run_id = "scheduled__person"
    write_staging(run_id)
    operator, dag = approval(approval_mode="manual")
    ctx = context(dag, operator, run_id)
    with mock.patch("airflow.providers.standard.operators.hitl.upsert_hitl_detail"), pytest.raises(TaskAwaitingInput):
        operator.execute(ctx)
    at = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    event = {
        "chosen_options": ["Approve"],
        "params_input": {},
        "responded_at": at,
        "responded_by_user": {"id": "42", "name": "alice"},
        "timedout": False,
    }

    result = operator.execute_complete(ctx, event)

    assert result["chosen_options"] == ["Approve"]
    recorded = decision(run_id)
    assert (recorded.decision, recorded.by, recorded.at, recorded.timed_out) == (
        "Approve",
        "alice",
        at.isoformat(),
        False,
    )
    ctx["ti"].xcom_push.assert_not_called()


@pytest.mark.parametrize("mode", ["manual", "auto"])
def test_nothing_to_roll_out_asks_no_one(mode: str) -> None:
    run_id = f"scheduled__nothing_{mode}"
    artifacts = run_artifacts(config(), run_id)
    for target in (EAST_TARGET, WEST_TARGET):
        not_needed = StackRecord(
            stack_name=stack_name(run_id), account_id=ACCOUNT, region=target.region_name, status="NOT_NEEDED"
        )
        artifacts.write(STACK, not_needed, target=target)
        artifacts.write(STAGING_RESULTS, typed_frame([], STAGING_RESULT_COLUMNS), target=target)
    artifacts.write(WAVE_PLAN, typed_frame([], WAVE_PLAN_COLUMNS))
    operator, dag = approval(approval_mode=mode)
    with (
        mock.patch("airflow.providers.standard.operators.hitl.upsert_hitl_detail") as upsert,
        pytest.raises(AirflowSkipException, match="nothing to roll out"),
    ):
        operator.execute(context(dag, operator, run_id))
    upsert.assert_not_called()


def test_manual_tells_the_run_s_topic_where_to_answer_and_auto_tells_nobody() -> None:
    run_id = "scheduled__told"
    write_staging(run_id)
    topic = "arn:aws:sns:us-east-1:123456789012:patch-ops"
    operator, dag = approval(approval_mode="manual", notify_topic_arn=topic, approval_timeout_hours=6)
    ctx = {**context(dag, operator, run_id), "dag_run": SimpleNamespace(dag_id=DAG_ID, run_id=run_id)}
    sent: list[tuple[str, str, str]] = []

    def publish(notifier: Any, _: Any) -> None:
        sent.append((notifier.target_arn, notifier.subject, notifier.message))

    with (
        mock.patch.dict("os.environ", {"AIRFLOW__API__BASE_URL": "https://airflow.example.com"}),
        mock.patch("airflow.providers.amazon.aws.notifications.sns.SnsNotifier.notify", publish),
        mock.patch("airflow.providers.standard.operators.hitl.upsert_hitl_detail"),
        pytest.raises(TaskAwaitingInput),
    ):
        operator.execute(ctx)

    ((arn, subject, message),) = sent
    assert (arn, subject) == (topic, f"Patch cycle {run_id}: approval needed")
    page = f"https://airflow.example.com/dags/{DAG_ID}/runs/scheduled__told/tasks/approve_production/required_actions"
    assert f"Answer here: {page}" in message and "No answer within 6 hours rejects." in message
    auto, _ = approval(approval_mode="auto", notify_topic_arn=topic)
    with mock.patch("airflow.providers.amazon.aws.notifications.sns.SnsNotifier.notify", publish):
        auto.execute(ctx)  # staging passed: the policy approves
    assert len(sent) == 1  # the policy decided: nobody needed telling


def test_the_request_shows_a_real_plan_and_its_staging_with_links_that_open_in_a_browser(server: Any) -> None:
    """The body from what inventory, match and plan_install leave in the sandbox (six Amazon Linux web servers,
    two Windows servers), with the Amazon Linux replica failing its install."""
    run_id = "scheduled__planned"
    settings = cycle_config(ROOT)  # us-east-1 only: the sandbox's fleet
    plan_run(server, settings, run_id)
    artifacts = run_artifacts(settings, run_id)
    production, profiles, plan = (
        artifacts.read(PRODUCTION),
        artifacts.read(PROFILES),
        artifacts.read(MATCH_PLAN, target=EAST_TARGET),
    )
    staged = profiles[profiles["staged"]].reset_index(drop=True)
    rows = []
    for number, profile in enumerate(staged.to_dict("records"), start=1):
        patches = str(profile["patch_ids"]).split(";")
        failing = FAILING_PATCH in patches
        rows.append(
            staging_row(EAST, profile["profile_id"], f"i-0staging{number:05d}", not failing)
            | {"platform_name": profile["platform_name"], "patch_group": profile["patch_group"]}
            | {"patch_ids": profile["patch_ids"], "installed": len(patches) - failing}
        )
    artifacts.write(STAGING_RESULTS, typed_frame(rows, STAGING_RESULT_COLUMNS), target=EAST_TARGET)
    artifacts.write(STACK, created_stack(run_id, EAST), target=EAST_TARGET)
    operator, dag = approval(settings | {"approval_mode": "manual"})
    ctx = {**context(dag, operator, run_id), "dag_run": SimpleNamespace(dag_id=DAG_ID, run_id=run_id)}

    with (
        mock.patch.dict("os.environ", {"AIRFLOW__API__BASE_URL": "https://airflow.example.com/"}),
        mock.patch("airflow.providers.standard.operators.hitl.upsert_hitl_detail"),
        pytest.raises(TaskAwaitingInput),
    ):
        operator.execute(ctx)

    body = operator.body
    assert body is not None and body.startswith("# Staging FAILED: 1 of 2 replicas failed\n")
    linux = production[production["platform_name"].str.startswith("Amazon Linux")]
    windows = production[production["platform_name"].str.contains("Windows")]
    assert (len(linux), len(windows)) == (6, 2)
    pinned = {patch for joined in production["patch_ids"] for patch in joined.split(";")}
    critical = sorted(set(plan.loc[plan["severity"].str.lower() == "critical", "patch_id"]) & pinned)
    cves = {cve for joined in plan.loc[plan["patch_id"].isin(pinned), "cve_ids"] for cve in joined.split(";") if cve}
    assert critical and FAILING_PATCH in critical
    assert (
        f"**Approve** installs {len(pinned)} pinned patches ({len(critical)} critical, fixing {len(cves)} CVEs) on "
        "8 production instances in 1 account and 1 region, in 3 waves (the canary first)." in body
    )
    for platform, instances in ((linux, 6), (windows, 2)):
        name = platform["platform_name"].iloc[0]
        patches = {p for joined in platform["patch_ids"] for p in joined.split(";")}
        assert f"| {name} | {instances} | {len(patches)} |" in body
    for patch in critical:
        assert f"| {patch} |" in body
    assert f"| {ACCOUNT} | {EAST} | web | 6 |" in body and f"| {ACCOUNT} | {EAST} | windows | 2 |" in body
    assert "**FAILED** |" in body and "health check Failed (exit 1)" in body
    run_page = f"https://airflow.example.com/patchcycle/runs/{DAG_ID}/{run_id}"
    assert f"- [Run page]({run_page})" in body
    assert f"- [Staging results (aws_default, {EAST})]({run_page}/artifacts/staging%2Faws_default.{EAST}" in body
    assert f"- [Staging profiles]({run_page}/artifacts/install%2Fprofiles.parquet)" in body
    assert artifacts.read(APPROVAL_REQUEST).body == body
