"""The per-stage figures `make bench` prints for a whole cycle, from a dags-test log and samples."""

from __future__ import annotations

from tests.bench.dag_figures import Sample, per_thousand, ratio, stage_figures, stage_of, task_runs

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
