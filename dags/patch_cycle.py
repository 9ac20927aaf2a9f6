"""patch_cycle: inventory -> match -> [install mode] staging and the runbooks -> approval -> production waves
(gates, snapshot, install, validation, rollback) -> verify -> inspect (Amazon Inspector), config (AWS Config) and
snapshot retention -> report -> Security Hub findings and CloudWatch KPIs -> conclude.

validate_params checks the params and hands the whole validated config to every other task. Tasks fan out
by (connection, region); the waves span every target. install_mode is the one place the mode is checked:
in scan mode it skips the install branch (plan_install on, and verify with inspect); config, the report,
publishing and conclude run in both modes. The report updates the patch_cycle_report asset
(patch_compliance_watch runs on it); conclude fails the run when the report says the cycle did not run
its course.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, chain

from patchcycle.assets import PATCH_CYCLE_REPORT
from patchcycle.config import MAX_WAVES, CycleConfig
from patchcycle.dag_params import params_of
from patchcycle.operators.approval import PatchApprovalOperator
from patchcycle.operators.bake_images import BakeImagesOperator
from patchcycle.operators.config_compliance import ConfigComplianceOperator
from patchcycle.operators.cycle_outcome import CycleOutcomeOperator
from patchcycle.operators.cycle_params import CycleParamsOperator
from patchcycle.operators.cycle_report import CycleReportOperator
from patchcycle.operators.expire_snapshots import ExpireSnapshotsOperator
from patchcycle.operators.inspect_cves import InspectCvesOperator
from patchcycle.operators.install_plan import InstallPlanOperator
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.mode_gate import InstallModeGate
from patchcycle.operators.patch_scan import PatchScanOperator
from patchcycle.operators.patch_wave import PatchWaveOperator
from patchcycle.operators.prove_images import ProveImagesOperator
from patchcycle.operators.publish_findings import PublishFindingsOperator
from patchcycle.operators.publish_metrics import PublishMetricsOperator
from patchcycle.operators.rds_rollout import RdsRolloutOperator
from patchcycle.operators.rds_staging import RdsRehearsalOperator, RdsStagingOperator, RdsStagingTeardownOperator
from patchcycle.operators.refresh_groups import RefreshGroupsOperator
from patchcycle.operators.register_runbooks import RegisterRunbooksOperator
from patchcycle.operators.staging_checks import StagingHealthCheckOperator, StagingPatchOperator
from patchcycle.operators.staging_stack import StagingStackOperator, StagingTeardownOperator
from patchcycle.operators.verify_install import VerifyInstallOperator
from patchcycle.operators.verify_replacements import VerifyReplacementsOperator
from patchcycle.timetables import PatchTuesdayTimetable

with DAG(
    dag_id="patch_cycle",
    description=(
        "The AWS patch cycle: inventory, matching, staging, approval, production waves, verification, "
        "CVE proof, report, Security Hub and CloudWatch."
    ),
    # A week after Microsoft's and most vendors' monthly releases, so the baselines' approval delays have passed.
    schedule=PatchTuesdayTimetable(days_after=7, at="03:00", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,  # the config reaches operators as a dict, not a string
    tags=["patching", "aws", "compliance"],
    default_args={
        "owner": "cloud-operations",
        "retries": 3,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    params=params_of(CycleConfig),
) as dag:
    validate = CycleParamsOperator(task_id="validate_params", retries=0)
    targets, config = validate.output, validate.output["config"]

    inventory = InventoryOperator.partial(task_id="inventory", config=config).expand_kwargs(targets)
    # all_done: one failed region's inventory must not stop the others' match.
    match = PatchScanOperator.partial(task_id="match", config=config, trigger_rule="all_done").expand_kwargs(targets)
    install_mode = InstallModeGate(task_id="install_mode", config=config, retries=0)

    plan_install = InstallPlanOperator(task_id="plan_install", config=config, retries=0)
    create_staging = StagingStackOperator.partial(task_id="create_staging", config=config).expand_kwargs(targets)
    patch_staging = StagingPatchOperator.partial(task_id="patch_staging", config=config).expand_kwargs(targets)
    check_staging = StagingHealthCheckOperator.partial(task_id="check_staging", config=config).expand_kwargs(targets)
    delete_staging = StagingTeardownOperator.partial(task_id="delete_staging", config=config).expand_kwargs(targets)
    # The runbooks the waves start, registered in every target before anyone is asked to approve.
    register_runbooks = RegisterRunbooksOperator.partial(task_id="register_runbooks", config=config).expand_kwargs(
        targets
    )
    # RDS: restored copies maintained first (setup, rehearsal, teardown); after approval, the waves of DB instances.
    create_rds_staging = RdsStagingOperator.partial(task_id="create_rds_staging", config=config).expand_kwargs(targets)
    rehearse_rds = RdsRehearsalOperator.partial(task_id="rehearse_rds", config=config).expand_kwargs(targets)
    delete_rds_staging = RdsStagingTeardownOperator.partial(task_id="delete_rds_staging", config=config).expand_kwargs(
        targets
    )
    rds_rollout = RdsRolloutOperator(task_id="rds_rollout", config=config)
    # The immutable path: one patched AMI per Auto Scaling group's launch AMI (shared by groups that agree), staged as
    # its own replica (so staging waits for the bakes), then each group refreshed onto it after approval, beside the
    # waves.
    bake_images = BakeImagesOperator.partial(task_id="bake_images", config=config).expand_kwargs(targets)
    # Amazon Inspector on each baked AMI's replica, before the replicas are deleted and anyone is asked to approve.
    prove_images = ProveImagesOperator.partial(task_id="prove_images", config=config).expand_kwargs(targets)
    # Retry-safe: a retried attempt finds the version and the refresh the one before it made (refresh_groups.py).
    refresh_groups = RefreshGroupsOperator(task_id="refresh_groups", config=config)
    # none_skipped: the instances of the groups refreshed before a failure are checked too; nothing to check when
    # the refreshes were skipped (scan mode, a rejected rollout).
    verify_replacements = VerifyReplacementsOperator.partial(
        task_id="verify_replacements", config=config, trigger_rule="none_skipped"
    ).expand_kwargs(targets)
    approve = PatchApprovalOperator(task_id="approve_production", config=config, retries=0)
    waves = [PatchWaveOperator(task_id=f"wave_{n}", wave=n, config=config) for n in range(1, MAX_WAVES + 1)]
    # all_done: the canary instances of a halted rollout are verified too.
    verify = VerifyInstallOperator.partial(task_id="verify", config=config, trigger_rule="all_done").expand_kwargs(
        targets
    )
    # none_skipped: runs after verify, even a failed one, but not when verify was skipped (scan mode).
    inspect = InspectCvesOperator.partial(task_id="inspect", config=config, trigger_rule="none_skipped").expand_kwargs(
        targets
    )
    # none_skipped, as inspect: install mode only, whatever the waves did.
    expire_snapshots = ExpireSnapshotsOperator.partial(
        task_id="expire_snapshots", config=config, trigger_rule="none_skipped"
    ).expand_kwargs(targets)
    # all_done: after verify in install mode; straight after match in scan mode.
    config_check = ConfigComplianceOperator.partial(
        task_id="config", config=config, trigger_rule="all_done"
    ).expand_kwargs(targets)
    report = CycleReportOperator(task_id="report", config=config, trigger_rule="all_done", outlets=[PATCH_CYCLE_REPORT])
    publish_findings = PublishFindingsOperator.partial(task_id="publish_findings", config=config).expand_kwargs(targets)
    publish_metrics = PublishMetricsOperator.partial(task_id="publish_metrics", config=config).expand_kwargs(targets)
    conclude = CycleOutcomeOperator(task_id="conclude", config=config, retries=0)

    chain(inventory, match, install_mode, plan_install, create_staging, patch_staging, check_staging)
    check_staging >> delete_staging.as_teardown(setups=create_staging, on_failure_fail_dagrun=True)
    plan_install >> register_runbooks >> approve
    chain(check_staging, approve, *waves, verify, [inspect, config_check, expire_snapshots], report)
    chain(report, [publish_findings, publish_metrics], conclude)
    install_mode >> verify
    plan_install >> create_rds_staging >> rehearse_rds
    rehearse_rds >> delete_rds_staging.as_teardown(setups=create_rds_staging, on_failure_fail_dagrun=True)
    rehearse_rds >> approve >> rds_rollout >> report
    register_runbooks >> bake_images >> create_staging
    check_staging >> prove_images >> [delete_staging, approve]
    approve >> refresh_groups >> verify_replacements >> verify
    match >> report
