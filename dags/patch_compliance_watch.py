"""patch_compliance_watch: drift since the last patch cycle, daily and after every cycle.

last_cycle (validates the params; finds the latest patch_cycle_report event) -> config (AWS Config evaluates
now) -> watch (Patch Manager, Config and Inspector against the cycle's report) -> drift_report -> Security Hub
findings and CloudWatch metrics -> conclude. Tasks fan out by (connection, region).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, chain
from airflow.timetables.trigger import CronTriggerTimetable

from patchcycle.assets import PATCH_CYCLE_REPORT
from patchcycle.config import WatchConfig
from patchcycle.dag_params import params_of
from patchcycle.operators.compliance_watch import DriftWatchOperator
from patchcycle.operators.config_compliance import ConfigComplianceOperator
from patchcycle.operators.cycle_outcome import CycleOutcomeOperator
from patchcycle.operators.drift_report import DriftReportOperator
from patchcycle.operators.last_cycle import LastCycleOperator
from patchcycle.operators.publish_drift import PublishDriftOperator
from patchcycle.run_artifacts import DRIFT_CSV, DRIFT_JSON

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
    params=params_of(WatchConfig),
) as dag:
    last_cycle = LastCycleOperator(task_id="last_cycle", retries=0)
    targets, config, cycle = last_cycle.output, last_cycle.output["config"], last_cycle.output["cycle"]

    config_check = ConfigComplianceOperator.partial(task_id="config", config=config).expand_kwargs(targets)
    # all_done: a region whose Config could not be read is still watched.
    watch = DriftWatchOperator.partial(
        task_id="watch", config=config, cycle=cycle, trigger_rule="all_done"
    ).expand_kwargs(targets)
    drift_report = DriftReportOperator(task_id="drift_report", config=config, cycle=cycle, trigger_rule="all_done")
    publish = PublishDriftOperator.partial(task_id="publish_drift", config=config).expand_kwargs(targets)
    conclude = CycleOutcomeOperator(
        task_id="conclude", config=config, report=DRIFT_JSON, readable=DRIFT_CSV, title="Compliance watch", retries=0
    )

    chain(last_cycle, config_check, watch, drift_report, publish, conclude)
