"""PatchApprovalOperator over staging artifacts: the auto policy, the manual request (Human-in-the-loop, no API
server: upsert_hitl_detail is patched), the recorded decision, and skipping the first wave on Reject."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowSkipException, DownstreamTasksSkipped, TaskAwaitingInput

from patchcycle.artifacts import ArtifactStore
from patchcycle.core.inventory import typed_frame
from patchcycle.core.staging import STAGING_RESULT_COLUMNS, stack_name
from patchcycle.core.waves import WAVE_PLAN_COLUMNS
from patchcycle.operators.approval import PatchApprovalOperator
from tests.operators.install_helpers import ACCOUNT, DAG_ID, read_json, settings

EAST, WEST = "us-east-1", "eu-west-1"
TARGETS = [{"aws_conn_id": "aws_default", "region_name": region} for region in (EAST, WEST)]
FAILURE = "health check Failed (exit 1): FAIL: 1 failed systemd unit(s)"


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


def write_staging(
    root: Path, run_id: str, *, east_passes: bool = True, west_stack: dict[str, Any] | None = None
) -> ArtifactStore:
    """Staging as check_staging leaves it: us-east-1 with two replicas; eu-west-1 with one (or a stack record)."""
    store = ArtifactStore(f"file://{root}", DAG_ID, run_id, None)
    created = {"stack_name": stack_name(run_id), "created": True, "status": "CREATE_COMPLETE", "account_ids": [ACCOUNT]}
    store.write_json("staging", f"aws_default.{EAST}.stack.json", {**created, "region": EAST})
    rows = [staging_row(EAST, "p01", "i-0staging00001"), staging_row(EAST, "p02", "i-0staging00002", east_passes)]
    store.write_frame("staging", f"aws_default.{EAST}.results", typed_frame(rows, STAGING_RESULT_COLUMNS))
    if west_stack is None:
        store.write_json("staging", f"aws_default.{WEST}.stack.json", {**created, "region": WEST})
        west = [staging_row(WEST, "p03", "i-0staging00003")]
        store.write_frame("staging", f"aws_default.{WEST}.results", typed_frame(west, STAGING_RESULT_COLUMNS))
    elif west_stack:
        store.write_json("staging", f"aws_default.{WEST}.stack.json", {**west_stack, "region": WEST})
    waves = [
        {"account_id": ACCOUNT, "region": EAST, "resource_id": f"i-{n:017x}", "profile_id": "p01", "wave": wave}
        for n, wave in enumerate([1, 2, 2, 3, 3, 3])
    ]
    store.write_frame("install", "waves", typed_frame(waves, WAVE_PLAN_COLUMNS))
    return store


def approval(root: Path, **install: Any) -> tuple[PatchApprovalOperator, DAG]:
    """The gate in a DAG shaped like patch_cycle's: check_staging >> approve >> wave_1 >> wave_2."""
    with DAG(dag_id=DAG_ID, schedule=None) as dag:
        operator = PatchApprovalOperator(
            task_id="approve_production",
            targets=TARGETS,
            settings=settings(**install),
            artifact_root=f"file://{root}",
            artifact_conn_id="aws_default",
        )
        EmptyOperator(task_id="check_staging") >> operator >> EmptyOperator(task_id="wave_1")
        dag.get_task("wave_1") >> EmptyOperator(task_id="wave_2")
    return operator, dag


def context(dag: DAG, operator: PatchApprovalOperator, run_id: str) -> Any:
    ti = SimpleNamespace(id=uuid.uuid4(), map_index=-1, task_id=operator.task_id, xcom_push=mock.Mock())
    return {"dag": dag, "run_id": run_id, "task": operator, "ti": ti, "task_instance": ti, "params": {}}


def decision(root: Path, run_id: str) -> dict[str, Any]:
    document: dict[str, Any] = read_json(root, run_id, "approval", "decision.json")
    return document


def test_auto_approves_when_every_replica_passed_and_every_stack_was_created(tmp_path: Path) -> None:
    run_id = "scheduled__auto_ok"
    write_staging(tmp_path, run_id)
    operator, dag = approval(tmp_path, approval_mode="auto")
    ctx = context(dag, operator, run_id)

    result = operator.execute(ctx)  # neither waits nor skips

    assert result["chosen_options"] == ["Approve"]
    recorded = decision(tmp_path, run_id)
    assert {k: v for k, v in recorded.items() if k != "at"} == {
        "mode": "auto",
        "decision": "Approve",
        "by": "approval policy: auto",
        "timed_out": False,
        "staging_passed": True,
    }
    assert datetime.fromisoformat(recorded["at"]) <= datetime.now(UTC)
    request = read_json(tmp_path, run_id, "approval", "request.json")
    assert (request["mode"], request["staging_passed"]) == ("auto", True)
    assert request["body"].startswith("# Staging passed: 3 replicas patched and healthy")
    ctx["ti"].xcom_push.assert_not_called()


def test_auto_counts_a_target_that_needed_no_stack_as_passed(tmp_path: Path) -> None:
    run_id = "scheduled__auto_not_needed"
    write_staging(
        tmp_path, run_id, west_stack={"stack_name": stack_name(run_id), "created": False, "status": "NOT_NEEDED"}
    )
    operator, dag = approval(tmp_path, approval_mode="auto")
    assert operator.execute(context(dag, operator, run_id))["chosen_options"] == ["Approve"]
    assert decision(tmp_path, run_id)["decision"] == "Approve"


@pytest.mark.parametrize(
    ("case", "staging"),
    [
        ("a staging instance failed", {"east_passes": False}),
        ("a stack was not created", {"west_stack": {"created": False, "status": "ROLLBACK_COMPLETE", "error": "boom"}}),
        ("a stack has no record", {"west_stack": {}}),  # create_staging never wrote one
    ],
)
def test_auto_rejects_and_skips_the_first_wave(tmp_path: Path, case: str, staging: dict[str, Any]) -> None:
    run_id = "scheduled__auto_reject"
    write_staging(tmp_path, run_id, **staging)
    operator, dag = approval(tmp_path, approval_mode="auto")
    ctx = context(dag, operator, run_id)

    with pytest.raises(DownstreamTasksSkipped) as caught:
        operator.execute(ctx)

    assert caught.value.tasks == ["wave_1"], case  # the direct downstream; later waves follow by trigger rule
    ctx["ti"].xcom_push.assert_called_once_with(key="skipmixin_key", value={"skipped": ["wave_1"]})
    recorded = decision(tmp_path, run_id)
    assert (recorded["mode"], recorded["decision"], recorded["by"]) == ("auto", "Reject", "approval policy: auto")
    assert (recorded["timed_out"], recorded["staging_passed"]) == (False, False)


def test_a_reject_calls_skip_with_only_the_direct_downstream_task(tmp_path: Path) -> None:
    run_id = "scheduled__skip_spy"
    write_staging(tmp_path, run_id, east_passes=False)
    operator, dag = approval(tmp_path, approval_mode="auto")
    ctx = context(dag, operator, run_id)
    with mock.patch.object(PatchApprovalOperator, "skip", autospec=True) as skip:
        operator.execute(ctx)
    (call,) = skip.call_args_list
    assert call.kwargs["ti"] is ctx["ti"]
    assert [task.task_id for task in call.kwargs["tasks"]] == ["wave_1"]


def test_manual_asks_a_person_with_the_failures_and_the_report_link_and_the_response_timeout(
    tmp_path: Path,
) -> None:
    run_id = "scheduled__manual"
    store = write_staging(tmp_path, run_id, east_passes=False)
    operator, dag = approval(tmp_path, approval_mode="manual", approval_timeout_hours=6)
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
    assert f"- Report: {store.uri('report', 'report.html')}" in body
    assert f"- Staging results: {store.uri('staging', '')}" in body
    upsert.assert_called_once()
    request = upsert.call_args.kwargs
    assert request["ti_id"] == ctx["task_instance"].id
    assert (request["options"], request["defaults"], request["body"]) == (["Approve", "Reject"], ["Reject"], body)
    recorded = read_json(tmp_path, run_id, "approval", "request.json")
    assert (recorded["mode"], recorded["staging_passed"], recorded["body"]) == ("manual", False, body)
    assert not (tmp_path / DAG_ID / run_id / "approval" / "decision.json").exists()  # nobody decided yet


def test_a_timed_out_request_records_a_default_reject_by_nobody(tmp_path: Path) -> None:
    run_id = "scheduled__timeout"
    write_staging(tmp_path, run_id)
    operator, dag = approval(tmp_path, approval_mode="manual")
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
    assert decision(tmp_path, run_id) == {
        "mode": "manual",
        "decision": "Reject",
        "by": "",
        "at": at.isoformat(),
        "timed_out": True,
        "staging_passed": True,
    }


def test_a_person_approving_is_recorded_by_name(tmp_path: Path) -> None:
    run_id = "scheduled__person"
    write_staging(tmp_path, run_id)
    operator, dag = approval(tmp_path, approval_mode="manual")
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
    recorded = decision(tmp_path, run_id)
    assert (recorded["decision"], recorded["by"], recorded["at"], recorded["timed_out"]) == (
        "Approve",
        "alice",
        at.isoformat(),
        False,
    )
    ctx["ti"].xcom_push.assert_not_called()


@pytest.mark.parametrize("mode", ["manual", "auto"])
def test_nothing_to_roll_out_asks_no_one(tmp_path: Path, mode: str) -> None:
    run_id = f"scheduled__nothing_{mode}"
    store = ArtifactStore(f"file://{tmp_path}", DAG_ID, run_id, None)
    not_needed = {"stack_name": stack_name(run_id), "created": False, "status": "NOT_NEEDED"}
    for region in (EAST, WEST):
        store.write_json("staging", f"aws_default.{region}.stack.json", {**not_needed, "region": region})
        store.write_frame("staging", f"aws_default.{region}.results", typed_frame([], STAGING_RESULT_COLUMNS))
    store.write_frame("install", "waves", typed_frame([], WAVE_PLAN_COLUMNS))
    operator, dag = approval(tmp_path, approval_mode=mode)
    with (
        mock.patch("airflow.providers.standard.operators.hitl.upsert_hitl_detail") as upsert,
        pytest.raises(AirflowSkipException, match="nothing to roll out"),
    ):
        operator.execute(context(dag, operator, run_id))
    upsert.assert_not_called()
