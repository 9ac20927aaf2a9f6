"""patch_cycle: inventory -> match -> [install mode] staging -> approval -> production waves -> verify
-> inspect (Amazon Inspector) and config (AWS Config) -> report -> Security Hub findings and CloudWatch KPIs
-> conclude.

Tasks fan out by (connection, region); the waves span every target. Scan mode skips staging, approval,
the waves, verify and inspect; it still reads Config, reports and publishes. The report updates the
patch_cycle_report asset (patch_compliance_watch runs on it); conclude fails the run when the report says
the cycle did not run its course.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, chain

from patchcycle.assets import PATCH_CYCLE_REPORT
from patchcycle.config import MAX_WAVES
from patchcycle.dag_params import artifact_params, targets_param
from patchcycle.operators.approval import PatchApprovalOperator
from patchcycle.operators.config_compliance import ConfigComplianceOperator
from patchcycle.operators.cycle_outcome import CycleOutcomeOperator
from patchcycle.operators.cycle_params import CycleParamsOperator
from patchcycle.operators.cycle_report import CycleReportOperator
from patchcycle.operators.inspect_cves import InspectCvesOperator
from patchcycle.operators.install_plan import InstallPlanOperator
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.patch_scan import PatchScanOperator
from patchcycle.operators.patch_wave import PatchWaveOperator
from patchcycle.operators.publish_findings import PublishFindingsOperator
from patchcycle.operators.publish_metrics import PublishMetricsOperator
from patchcycle.operators.staging_checks import StagingHealthCheckOperator, StagingPatchOperator
from patchcycle.operators.staging_stack import StagingStackOperator, StagingTeardownOperator
from patchcycle.operators.verify_install import VerifyInstallOperator
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
    render_template_as_native_obj=True,  # params such as scope reach operators as objects, not strings
    tags=["patching", "aws", "compliance"],
    default_args={
        "owner": "cloud-operations",
        "retries": 3,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={
        "mode": Param(
            "default",
            enum=["default", "scan", "install"],
            title="Mode",
            description=(
                "scan: report what is missing, install nothing. install: stage, approve, roll out in waves, verify. "
                "default: install on the monthly schedule, scan on a run triggered by hand."
            ),
        ),
        "approval_mode": Param(
            "manual",
            enum=["manual", "auto"],
            title="Approval",
            description="manual: a person approves in the UI. auto: approve only if staging passed every check.",
        ),
        "approval_timeout_hours": Param(
            24, type="number", exclusiveMinimum=0, title="Approval timeout (hours)", description="No answer: Reject."
        ),
        "staging_max_instances": Param(
            10,
            type="integer",
            minimum=1,
            title="Staging instances per region (at most)",
            description="One per distinct OS, AMI, instance family and patch group; profiles beyond it are skipped.",
        ),
        "staging_instance_profile": Param(
            "",
            type="string",
            title="Staging instance profile",
            description="IAM instance profile for staging instances (needs AmazonSSMManagedInstanceCore).",
        ),
        "staging_subnet_id": Param("", type="string", title="Staging subnet", description="Empty: the default VPC."),
        "staging_timeout_minutes": Param(
            30, type="number", exclusiveMinimum=0, title="Staging instances must be Online in SSM within (minutes)"
        ),
        "canary": Param("5%", type="string", title="Canary wave", description="A count or a % of the production set."),
        "wave_percentages": Param(
            [25, 25, 50],
            type="array",
            items={"type": "integer", "minimum": 1, "maximum": 100},
            minItems=1,
            maxItems=MAX_WAVES - 1,
            title="Waves after the canary (% of the rest, adding up to 100)",
        ),
        "halt_threshold": Param(
            "10%",
            type="string",
            title="Halt threshold",
            description="A wave with more failed instances than this (a count or a % of the wave) halts the rest.",
        ),
        "reboot_option": Param("RebootIfNeeded", enum=["RebootIfNeeded", "NoReboot"], title="RebootOption"),
        "targets": targets_param("cover"),
        "scope": Param(
            {"include_tags": {}, "exclude_ids": [], "exclude_tags": {}},
            type="object",
            title="Scope",
            description=(
                "include_tags: {tag: [values]}, every tag must match; exclude_ids: [ids]; "
                "exclude_tags: {tag: [values]}."
            ),
        ),
        **artifact_params(),
        "max_concurrency": Param("50", type="string", title="SSM MaxConcurrency", description="A count or a %."),
        "max_errors": Param("10%", type="string", title="SSM MaxErrors", description="A count or a %."),
        "poll_seconds": Param(
            30,
            type="number",
            minimum=1,
            title="Seconds between status polls",
            description="How often commands, staging stacks, Inspector rescans and Config evaluations are checked.",
        ),
        "inspector_wait_minutes": Param(
            120,
            type="number",
            exclusiveMinimum=0,
            title="Inspector rescan wait (minutes)",
            description=(
                "How long inspect waits (in the triggerer) for Amazon Inspector to rescan each patched instance; "
                "CVEs of an instance not rescanned by then are UNVERIFIED."
            ),
        ),
        "config_rule_name": Param(
            "patchcycle-ec2-managedinstance-patch-compliance",
            type="string",
            title="AWS Config rule",
            description=(
                "The EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK rule to evaluate; created under this name "
                "when the region has none."
            ),
        ),
        "dashboard_name": Param(
            "patchcycle",
            type="string",
            pattern="^(patchcycle[A-Za-z0-9_-]*)?$",
            title="CloudWatch dashboard",
            description="The KPI dashboard each target's account gets (must start with patchcycle); empty: none.",
        ),
        "command_timeout_minutes": Param(
            60,
            type="number",
            exclusiveMinimum=0,
            title="Command time limit (minutes)",
            description="Commands still running after this are cancelled; their instances are reported as failed.",
        ),
    },
) as dag:
    cycle = CycleParamsOperator(task_id="validate_params", retries=0)
    targets, mode, settings = cycle.output, cycle.output["mode"], cycle.output["install"]

    artifacts = {"artifact_root": "{{ params.artifact_root }}", "artifact_conn_id": "{{ params.artifact_conn_id }}"}
    commands = {
        "max_concurrency": "{{ params.max_concurrency }}",
        "max_errors": "{{ params.max_errors }}",
        "poll_seconds": "{{ params.poll_seconds }}",
        "command_timeout_minutes": "{{ params.command_timeout_minutes }}",
    }
    inventory = InventoryOperator.partial(task_id="inventory", scope="{{ params.scope }}", **artifacts).expand_kwargs(
        targets
    )
    match = PatchScanOperator.partial(
        task_id="match",
        trigger_rule="all_done",  # one failed region's inventory must not stop the others' match
        **commands,
        **artifacts,
    ).expand_kwargs(targets)

    plan_install = InstallPlanOperator(
        task_id="plan_install", targets=targets, mode=mode, settings=settings, retries=0, **artifacts
    )
    create_staging = StagingStackOperator.partial(
        task_id="create_staging", settings=settings, mode=mode, poll_seconds="{{ params.poll_seconds }}", **artifacts
    ).expand_kwargs(targets)
    patch_staging = StagingPatchOperator.partial(
        task_id="patch_staging", settings=settings, **commands, **artifacts
    ).expand_kwargs(targets)
    check_staging = StagingHealthCheckOperator.partial(
        task_id="check_staging", settings=settings, **commands, **artifacts
    ).expand_kwargs(targets)
    delete_staging = StagingTeardownOperator.partial(
        task_id="delete_staging", poll_seconds="{{ params.poll_seconds }}", **artifacts
    ).expand_kwargs(targets)
    approve = PatchApprovalOperator(
        task_id="approve_production", targets=targets, settings=settings, retries=0, **artifacts
    )
    waves = [
        PatchWaveOperator(task_id=f"wave_{n}", wave=n, targets=targets, settings=settings, **commands, **artifacts)
        for n in range(1, MAX_WAVES + 1)
    ]
    verify = VerifyInstallOperator.partial(
        task_id="verify", mode=mode, trigger_rule="all_done", **artifacts
    ).expand_kwargs(targets)
    report = CycleReportOperator(
        task_id="report",
        targets=targets,
        mode=mode,
        settings=settings,
        trigger_rule="all_done",
        outlets=[PATCH_CYCLE_REPORT],
        **artifacts,
    )
    inspect = InspectCvesOperator.partial(
        task_id="inspect",
        mode=mode,
        wait_minutes="{{ params.inspector_wait_minutes }}",
        poll_seconds="{{ params.poll_seconds }}",
        trigger_rule="all_done",
        **artifacts,
    ).expand_kwargs(targets)
    config = ConfigComplianceOperator.partial(
        task_id="config",
        rule_name="{{ params.config_rule_name }}",
        poll_seconds="{{ params.poll_seconds }}",
        trigger_rule="all_done",  # after verify in install mode; straight after match in scan mode
        **artifacts,
    ).expand_kwargs(targets)
    publish_findings = PublishFindingsOperator.partial(task_id="publish_findings", **artifacts).expand_kwargs(targets)
    publish_metrics = PublishMetricsOperator.partial(
        task_id="publish_metrics", targets=targets, dashboard_name="{{ params.dashboard_name }}", **artifacts
    ).expand_kwargs(targets)
    conclude = CycleOutcomeOperator(task_id="conclude", retries=0, **artifacts)

    inventory >> match >> plan_install >> create_staging >> patch_staging >> check_staging
    check_staging >> delete_staging.as_teardown(setups=create_staging, on_failure_fail_dagrun=True)
    chain(
        check_staging, approve, *waves, verify, [inspect, config], report, [publish_findings, publish_metrics], conclude
    )
    match >> report
