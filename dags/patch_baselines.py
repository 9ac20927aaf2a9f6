"""patch_baselines: patch baselines as code, include/baselines/*.yaml -> SSM patch baselines and patch groups.

validate checks the params and every baseline file (a bad one fails naming the file and the field);
apply[] diffs each (connection, region) against the files, logs the diff, and applies it unless dry_run.
Triggered by hand; the format and the ownership rules are in docs/baselines.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from patchcycle.dag_params import targets_param
from patchcycle.operators.patch_baselines import BaselineParamsOperator, PatchBaselinesOperator

REPO_ROOT = Path(__file__).resolve().parent.parent

with DAG(
    dag_id="patch_baselines",
    description="Patch baselines as code: create, update and register SSM patch baselines from YAML.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two runs applying at once would race on the same baselines
    tags=["patching", "aws", "baselines"],
    default_args={
        "owner": "cloud-operations",
        "retries": 2,  # safe: a retry diffs again from what SSM holds
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
    },
    params={
        "targets": targets_param("apply the baselines"),
        "baselines_dir": Param(
            str(REPO_ROOT / "include" / "baselines"),
            type="string",
            title="Baselines directory",
            description="The *.yaml baseline files (a relative path is taken from the repository root).",
        ),
        "dry_run": Param(True, type="boolean", title="Dry run", description="Log the diff and change nothing."),
        "prune": Param(
            False,
            type="boolean",
            title="Prune",
            description="Delete managed baselines no file declares any more (never an unmanaged one).",
        ),
    },
) as dag:
    validate = BaselineParamsOperator(task_id="validate", relative_to=str(REPO_ROOT), retries=0)
    PatchBaselinesOperator.partial(
        task_id="apply",
        baselines=validate.output["baselines"],
        plan_only=validate.output["dry_run"],
        prune=validate.output["prune"],
    ).expand_kwargs(validate.output)
