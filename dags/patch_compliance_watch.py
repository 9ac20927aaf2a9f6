"""patch_compliance_watch: drift since the last patch cycle, daily and after every cycle.

last_cycle (the latest patch_cycle_report event) -> config (AWS Config evaluates now) -> watch (Patch Manager,
Config and Inspector against the cycle's report) -> drift_report -> Security Hub findings and CloudWatch
metrics -> conclude. Tasks fan out by (connection, region).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, Param, chain
from airflow.timetables.trigger import CronTriggerTimetable

from patchcycle.assets import PATCH_CYCLE_REPORT
from patchcycle.config import FINDING_SEVERITIES
from patchcycle.dag_params import artifact_params, targets_param
from patchcycle.operators.compliance_watch import DriftWatchOperator
from patchcycle.operators.config_compliance import ConfigComplianceOperator
from patchcycle.operators.cycle_outcome import CycleOutcomeOperator
from patchcycle.operators.drift_report import STAGE as DRIFT_STAGE
from patchcycle.operators.drift_report import DriftReportOperator
from patchcycle.operators.last_cycle import LastCycleOperator
from patchcycle.operators.publish_drift import PublishDriftOperator

with DAG(
    dag_id="patch_compliance_watch",
    description="Daily drift detection since the last patch cycle: patch persistence, Config, new critical CVEs.",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=[PATCH_CYCLE_REPORT]
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["patching", "aws", "compliance", "drift"],
    default_args={
        "owner": "cloud-operations",
        "retries": 3,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={
        "targets": targets_param("watch"),
        "finding_severities": Param(
            ["CRITICAL"],
            type="array",
            items={"enum": list(FINDING_SEVERITIES)},
            minItems=1,
            title="Finding severities",
            description="Active Inspector findings of these severities that the cycle did not know count as drift.",
        ),
        "config_rule_name": Param(
            "patchcycle-ec2-managedinstance-patch-compliance",
            type="string",
            title="AWS Config rule",
            description="The EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK rule (created when missing).",
        ),
        **artifact_params(),
        "poll_seconds": Param(15, type="number", minimum=1, title="Seconds between AWS Config status polls"),
    },
) as dag:
    last_cycle = LastCycleOperator(task_id="last_cycle", retries=0)
    targets, cycle = last_cycle.output, last_cycle.output["cycle"]

    artifacts = {"artifact_root": "{{ params.artifact_root }}", "artifact_conn_id": "{{ params.artifact_conn_id }}"}
    config = ConfigComplianceOperator.partial(
        task_id="config",
        rule_name="{{ params.config_rule_name }}",
        poll_seconds="{{ params.poll_seconds }}",
        **artifacts,
    ).expand_kwargs(targets)
    watch = DriftWatchOperator.partial(
        task_id="watch",
        cycle=cycle,
        finding_severities="{{ params.finding_severities }}",
        trigger_rule="all_done",  # a region whose Config could not be read is still watched
        **artifacts,
    ).expand_kwargs(targets)
    drift_report = DriftReportOperator(
        task_id="drift_report", targets=targets, cycle=cycle, trigger_rule="all_done", **artifacts
    )
    publish = PublishDriftOperator.partial(task_id="publish_drift", **artifacts).expand_kwargs(targets)
    conclude = CycleOutcomeOperator(
        task_id="conclude", report=(DRIFT_STAGE, "drift.json"), readable="drift.csv", retries=0, **artifacts
    )

    chain(last_cycle, config, watch, drift_report, publish, conclude)
