"""The patch_cycle graph: the gates sit where DESIGN.md puts them, with the trigger rules they rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag  # after tests/conftest.py has configured Airflow

from patchcycle.config import MAX_WAVES

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "patch_cycle.py"


@pytest.fixture(scope="module")
def dag() -> object:
    bag = DagBag(dag_folder=DAG_FILE, safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    return bag.dags["patch_cycle"]


def downstream(dag: object, task_id: str) -> set[str]:
    return set(dag.get_task(task_id).downstream_task_ids)  # type: ignore[attr-defined]


def test_staging_stack_is_a_setup_with_its_deletion_as_teardown(dag: object) -> None:
    create, delete = dag.get_task("create_staging"), dag.get_task("delete_staging")  # type: ignore[attr-defined]
    assert create.is_setup and delete.is_teardown
    assert "delete_staging" in downstream(dag, "create_staging")
    assert delete.on_failure_fail_dagrun, "a stack left behind must fail the run"
    # Staging is torn down before production waits for approval.
    assert downstream(dag, "check_staging") == {"delete_staging", "approve_production", "prove_images"}
    # Inspector's proof of the baked AMIs reads their replicas: before the teardown and the gate.
    assert downstream(dag, "prove_images") == {"delete_staging", "approve_production"}


def test_rds_staging_is_a_setup_with_its_deletion_as_teardown_and_the_rollout_follows_the_gate(dag: object) -> None:
    create, delete = dag.get_task("create_rds_staging"), dag.get_task("delete_rds_staging")  # type: ignore[attr-defined]
    assert create.is_setup and delete.is_teardown and delete.on_failure_fail_dagrun
    assert "create_rds_staging" in downstream(dag, "plan_install")
    assert downstream(dag, "rehearse_rds") == {"delete_rds_staging", "approve_production"}
    # The RDS waves run after the gate (a rejection skips them) and before the report, which reads their outcome.
    assert downstream(dag, "rds_rollout") == {"report"}


def test_the_approval_gate_stands_between_staging_and_the_canary(dag: object) -> None:
    # The in-place canary, the RDS waves and the Auto Scaling groups' refreshes, all behind the gate; verify
    # follows the refreshes.
    assert downstream(dag, "approve_production") == {"wave_1", "rds_rollout", "refresh_groups"}
    assert downstream(dag, "refresh_groups") == {"verify_replacements"}
    assert downstream(dag, "verify_replacements") == {"verify"}
    rule = dag.get_task("verify_replacements").trigger_rule  # type: ignore[attr-defined]
    assert rule == "none_skipped", "after a failed refresh too, never after skipped ones"
    # The runbooks are in every target before anyone is asked to approve the waves that start them, and before
    # the bakes that run PatchCycle-BakeAmi; staging waits for the bakes (it stages each baked AMI too).
    assert downstream(dag, "plan_install") >= {"register_runbooks"}
    assert downstream(dag, "register_runbooks") == {"approve_production", "bake_images"}
    assert downstream(dag, "bake_images") == {"create_staging"}
    gate = dag.get_task("approve_production")  # type: ignore[attr-defined]
    assert gate.defaults == ["Reject"] and gate.retries == 0


def test_waves_run_one_after_another_and_each_needs_the_last_to_succeed(dag: object) -> None:
    for wave in range(1, MAX_WAVES):
        assert downstream(dag, f"wave_{wave}") == {f"wave_{wave + 1}"}
        assert dag.get_task(f"wave_{wave + 1}").trigger_rule == "all_success"  # type: ignore[attr-defined]
    assert downstream(dag, f"wave_{MAX_WAVES}") == {"verify"}


def test_verify_evidence_and_report_run_whatever_happened_upstream(dag: object) -> None:
    for task_id in ("verify", "config", "report", "match"):
        assert dag.get_task(task_id).trigger_rule == "all_done", task_id  # type: ignore[attr-defined]
    # inspect follows verify even when it failed, but not when the mode gate skipped it.
    assert dag.get_task("inspect").trigger_rule == "none_skipped"  # type: ignore[attr-defined]
    assert downstream(dag, "verify") == {"inspect", "config", "expire_snapshots"}
    assert downstream(dag, "inspect") == downstream(dag, "config") == {"report"}
    # Snapshots expire only once verify has read the waves back, and never in scan mode.
    assert dag.get_task("expire_snapshots").trigger_rule == "none_skipped"  # type: ignore[attr-defined]
    assert downstream(dag, "expire_snapshots") == {"report"}
    assert {"report"} <= downstream(dag, "match")


def test_the_mode_is_checked_once_by_the_gate_before_the_install_branch(dag: object) -> None:
    gate = dag.get_task("install_mode")  # type: ignore[attr-defined]
    assert type(gate).__name__ == "InstallModeGate" and gate.ignore_downstream_trigger_rules is False
    assert downstream(dag, "match") == {"install_mode", "report"}
    # It skips exactly the install branch's entry and verify; the rest follow their trigger rules.
    assert downstream(dag, "install_mode") == {"plan_install", "verify"}
    operators = {type(task).__name__ for task in dag.tasks}  # type: ignore[attr-defined]
    assert "ShortCircuitOperator" not in operators  # the one gate is the project's own class


def test_every_task_but_the_first_takes_the_validated_config(dag: object) -> None:
    for task in dag.tasks:  # type: ignore[attr-defined]
        if task.task_id == "validate_params":
            continue
        config = task.partial_kwargs.get("config") if hasattr(task, "partial_kwargs") else getattr(task, "config", None)
        if task.task_id == "install_mode":
            config = task.op_kwargs["config"]
        assert config is not None, task.task_id
        assert (config.operator.task_id, config.key) == ("validate_params", "config"), task.task_id


def test_findings_and_metrics_go_out_before_the_run_s_outcome_is_decided(dag: object) -> None:
    assert downstream(dag, "report") == {"publish_findings", "publish_metrics"}
    assert downstream(dag, "publish_findings") == downstream(dag, "publish_metrics") == {"conclude"}
    conclude = dag.get_task("conclude")  # type: ignore[attr-defined]
    # all_success: a failed report or publisher fails the run through conclude, never silently.
    assert conclude.trigger_rule == "all_success" and not conclude.downstream_task_ids
    assert [outlet.name for outlet in dag.get_task("report").outlets] == ["patch_cycle_report"]  # type: ignore[attr-defined]


def test_the_tasks_that_act_in_aws_link_to_the_console_and_the_links_survive_serialization(dag: object) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    waves = {f"wave_{n}": {"Run Command", "Automation execution"} for n in range(1, MAX_WAVES + 1)}
    expected = {
        "match": {"Run Command"},
        "create_staging": {"CloudFormation stack"},
        "bake_images": {"Automation execution"},
        "delete_staging": {"CloudFormation stack"},
        "create_rds_staging": {"CloudFormation stack"},
        "delete_rds_staging": {"CloudFormation stack"},
        "patch_staging": {"Run Command"},
        "check_staging": {"Run Command"},
        **waves,
        "inspect": {"Inspector findings", "EC2 Instances"},
        "publish_findings": {"Security Hub findings"},
        "publish_metrics": {"CloudWatch dashboard"},
    }
    tasks = DagSerialization.to_dict(dag)["dag"]["tasks"]
    serialized = {t["__var"]["task_id"]: set(t["__var"].get("_operator_extra_links", {})) for t in tasks}
    assert {task_id: names for task_id, names in serialized.items() if names} == expected
