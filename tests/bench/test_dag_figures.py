"""The per-stage figures `make bench` prints for a whole cycle, from a dags-test log and samples."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.bench.dag_figures import (
    CallTotals,
    Sample,
    StageFigures,
    WaveRow,
    call_totals,
    patch_read_minimums,
    per_thousand,
    ratio,
    stage_figures,
    stage_of,
    task_runs,
    wave_minimums,
)

LOG = """\
2026-12-07T14:00:00.000000Z [info     ] [DAG TEST] starting task_id=inventory map_index=0 [airflow.sdk] loc=dag.py:1501
2026-12-07T14:00:00.100000Z [info     ] [DAG TEST] running task <TaskInstance: patch_cycle.inventory> [airflow.sdk]
2026-12-07T14:00:02.000000Z [info     ] [DAG TEST] end task task_id=inventory map_index=0 [airflow.sdk] loc=dag.py:1563
2026-12-07T14:00:02.500000Z [info     ] something else entirely
2026-12-07T14:00:03.000000Z [info     ] [DAG TEST] starting task_id=match map_index=0 [airflow.sdk] loc=dag.py:1501
2026-12-07T14:00:04.000000Z [info     ] [DAG TEST] running trigger in line [airflow.sdk] loc=dag.py:1534
2026-12-07T14:00:34.000000Z [info     ] [DAG TEST] Trigger completed [airflow.sdk] loc=dag.py:1546
2026-12-07T14:00:36.000000Z [info     ] [DAG TEST] end task task_id=match map_index=0 [airflow.sdk] loc=dag.py:1563
2026-12-07T14:00:37.000000Z [info     ] [DAG TEST] starting task_id=wave_2 map_index=-1 [airflow.sdk] loc=dag.py:1501
2026-12-07T14:00:38.000000Z [info     ] [DAG TEST] end task task_id=wave_2 map_index=-1 [airflow.sdk] loc=dag.py:1563
"""

T0 = 1796652000.0  # 2026-12-07T14:00:00Z


def test_task_runs_take_deferred_time_out_of_slot_time() -> None:
    runs = task_runs(LOG.splitlines())
    assert [(r.task_id, r.map_index) for r in runs] == [("inventory", 0), ("match", 0), ("wave_2", -1)]
    inventory, match, _ = runs
    assert inventory.slot_seconds == 2.0
    assert match.deferred_seconds == 30.0
    assert match.slot_seconds == 3.0  # 33 s from start to end, 30 of them in the trigger


def test_stages_follow_the_dag() -> None:
    assert stage_of("plan_install") == "plan"
    assert stage_of("wave_3") == "wave 3"
    assert stage_of("publish_metrics") == "publish"
    assert stage_of("bake_images") == "images"
    assert stage_of("verify_replacements") == "refresh"
    assert stage_of("something_new") == "something_new"


def test_stage_figures_attribute_calls_and_memory_to_the_running_task() -> None:
    samples = [
        Sample(T0 - 1, 100, {}),
        Sample(T0 + 1, 300, {"ec2:DescribeInstances": 2}),
        Sample(T0 + 2, 300, {"ec2:DescribeInstances": 2}),
        Sample(T0 + 2.5, 900, {"ec2:DescribeInstances": 2, "sts:GetCallerIdentity": 1}),  # between tasks
        Sample(T0 + 3, 200, {"ec2:DescribeInstances": 2, "sts:GetCallerIdentity": 1}),
        Sample(T0 + 20, 500, {"ec2:DescribeInstances": 2, "sts:GetCallerIdentity": 1, "ssm:ListCommands": 7}),
        Sample(T0 + 36, 400, {"ec2:DescribeInstances": 2, "sts:GetCallerIdentity": 1, "ssm:ListCommands": 9}),
    ]
    figures = {f.stage: f for f in stage_figures(task_runs(LOG.splitlines()), samples)}
    assert list(figures) == ["inventory", "match", "wave 2"]
    inventory, match = figures["inventory"], figures["match"]
    assert inventory.calls == {"ec2:DescribeInstances": 2}
    assert inventory.peak_rss_bytes == 300  # the 900 was sampled between two tasks
    assert match.calls == {"ssm:ListCommands": 9}
    assert match.peak_rss_bytes == 500
    assert match.wall_seconds == 33.0
    assert match.task_instances == 1
    assert figures["wave 2"].calls == {}  # no sample at or after its end


def test_per_thousand_and_ratio() -> None:
    assert per_thousand(50, 2000) == 25.0
    assert per_thousand(5, 0) == 0.0
    assert ratio(15, 10) == "1.50x"
    assert ratio(3, None) == "-"


def test_automation_calls_are_attributed_apart_from_the_dags() -> None:
    samples = [
        Sample(T0 + 36.5, 100, {"ssm:SendCommand": 1}, {"ec2:DescribeSnapshots": 4}),
        Sample(T0 + 38.5, 100, {"ssm:SendCommand": 3}, {"ec2:DescribeSnapshots": 10, "ssm:SendCommand": 2}),
    ]
    wave = {f.stage: f for f in stage_figures(task_runs(LOG.splitlines()), samples)}["wave 2"]
    assert wave.calls == {"ssm:SendCommand": 2}
    assert wave.automation_calls == {"ec2:DescribeSnapshots": 6, "ssm:SendCommand": 2}


def _row(region: str = "us-east-1", profile: str = "p1", **outcome: Any) -> WaveRow:
    values = {"snapshot": "completed", "sent": True, "validation": "passed", "rollback": ""} | outcome
    return WaveRow("123456789012", region, profile, **values)


def test_wave_minimums_batch_per_target_and_profile() -> None:
    rows = (
        [_row() for _ in range(120)]  # us-east-1, profile p1: 3 executions per phase, 3 commands
        + [_row(profile="p2") for _ in range(10)]  # same target, another profile: a command of its own
        + [_row("eu-west-1", snapshot="failed", sent=False, validation="") for _ in range(2)]
        + [_row("eu-west-1", validation="failed", rollback="rolled_back") for _ in range(3)]
    )
    lows = {api: low for api, (_, low) in wave_minimums(rows).items()}
    # snapshots: 130 in us-east-1 (3), 5 in eu-west-1 (1); validations: 130 (3) and 3 (1); rollbacks: 3 (1)
    assert lows["ssm:StartAutomationExecution"] == 4 + 4 + 1
    assert lows["ssm:DescribeAutomationExecutions"] == lows["ssm:GetAutomationExecution"] == 9
    assert lows["ssm:SendCommand"] == 3 + 1 + 1  # 120 of p1, 10 of p2, 3 in eu-west-1
    assert lows["ssm:ListCommandInvocations"] == lows["ssm:ListCommands"] == 5
    assert lows["ssm:DescribeAutomationStepExecutions"] == 2 + 3  # failed snapshots and validations


def test_wave_minimums_of_an_empty_wave_are_zero() -> None:
    assert all(low == 0 for _, low in wave_minimums([]).values())


def test_call_totals_count_every_call_and_the_minimums() -> None:
    inventory = StageFigures("inventory", calls=Counter({"ec2:DescribeInstances": 4, "s3:PutObject": 3}))
    wave = StageFigures("wave 1", calls=Counter({"ssm:SendCommand": 6}))
    lows = {
        "inventory": {"ec2:DescribeInstances": ("", 2), "ssm:DescribeInstanceInformation": ("", 5)},
        "wave 1": {"ssm:SendCommand": ("", 3)},
    }
    totals = call_totals([inventory, wave], lows)
    assert totals == CallTotals(with_minimum=10, minimum=10, every=13)
    assert call_totals([wave], {}) == CallTotals(0, 0, 6)


def test_patch_read_minimums_of_match_and_verify() -> None:
    per_target = [[0, 3, 1, 0], [2] * 51]
    assert patch_read_minimums("match", per_target)["ssm:DescribeInstancePatches"][1] == 2 + 51
    verify = {api: low for api, (_, low) in patch_read_minimums("verify", per_target).items()}
    assert verify == {"ssm:DescribeInstancePatchStates": 1 + 2, "ssm:DescribeInstancePatches": 4 + 51}
    assert patch_read_minimums("inventory", per_target) == {}
