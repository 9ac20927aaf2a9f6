"""patch_baselines: patch baselines as code, include/baselines/*.yaml -> SSM patch baselines and patch groups.

validate checks the params and every baseline file (a bad one fails naming the file and the field);
apply[] diffs each (connection, region) against the files, logs the diff, and applies it unless dry_run.
Triggered by hand; the format and the ownership rules are in docs/baselines.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from patchcycle.config import BaselinesConfig
from patchcycle.dag_params import params_of
from patchcycle.operators.patch_baselines import BaselineParamsOperator, PatchBaselinesOperator

with DAG(
    dag_id="patch_baselines",
    description="Patch baselines as code: create, update and register SSM patch baselines from YAML.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two runs applying at once would race on the same baselines
    render_template_as_native_obj=True,
    tags=["patching", "aws", "baselines"],
    default_args={
        "owner": "cloud-operations",
        "retries": 2,  # safe: a retry diffs again from what SSM holds
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
    },
    params=params_of(BaselinesConfig),
) as dag:
    validate = BaselineParamsOperator(task_id="validate", retries=0)
    PatchBaselinesOperator.partial(
        task_id="apply", config=validate.output["config"], baselines=validate.output["baselines"]
    ).expand_kwargs(validate.output)
