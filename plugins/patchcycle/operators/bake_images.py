"""bake_images: one patched AMI per planned bake of the target's Auto Scaling groups (core.immutable.bake_plan),
baked by the project's PatchCycle-BakeAmi runbook with exactly the pinned patches (the bake's InstallOverrideList),
waited for in the triggerer. The runbook tags the AMI with the run and the source AMI; its staging replica is launched
from it next."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import CycleConfig
from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable_rollout import BAKE_RESULT_COLUMNS, bake_result
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.runbooks import BAKE_RUNBOOK, RunbookError, bake_parameters, image_name, script_lines
from patchcycle.hooks.automation import AutomationHook
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.links.ssm import AutomationExecutionLink
from patchcycle.operators.base import DEFER_MARGIN, TargetOperator
from patchcycle.operators.run_command import HEALTHCHECKS, SCRIPT_DOCUMENTS
from patchcycle.run_artifacts import BAKE_EXECUTIONS, BAKE_PLAN, BAKE_RESULTS, OVERRIDES, RunArtifacts, Step
from patchcycle.triggers.automation_completion import AutomationCompletionTrigger

# How long a bake may take: launch, install, health checks, stop, image creation (the runbook's own step limits).
BAKE_WAIT_SECONDS = 4 * 3600.0


def health_check_lines(folder: Path = HEALTHCHECKS) -> dict[str, list[str]]:
    """The health check scripts, per platform, as the runbook's StringList parameters."""
    checks = {}
    for platform, (_, script) in SCRIPT_DOCUMENTS.items():
        path = folder / script
        try:
            checks[platform] = script_lines(str(path), path.read_text())
        except RunbookError as error:
            raise AirflowFailException(str(error)) from error
    return checks


class BakeImagesOperator(TargetOperator[AutomationHook, CycleConfig]):
    """Starts PatchCycle-BakeAmi once per planned bake of this target (idempotently: a retry finds its executions),
    waits for them in the triggerer, and records each baked AMI or why there is none. A failed bake is a result,
    not a task failure: its groups are not refreshed, and the report says why."""

    aws_hook_class = AutomationHook
    config_class = CycleConfig
    operator_extra_links = (AutomationExecutionLink(),)

    def __init__(self, *, healthchecks: str | Path = HEALTHCHECKS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.healthchecks = Path(healthchecks)

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.BAKE_IMAGES):
            bakes = self._bakes(artifacts)
            if bakes.empty:
                artifacts.write(BAKE_RESULTS, typed_frame([], BAKE_RESULT_COLUMNS), target=self.target)
                return {**self.target.as_kwargs(), "bakes": 0}
            started = artifacts.find(BAKE_EXECUTIONS, target=self.target) or {}
            overrides = artifacts.read(OVERRIDES)
            checks = health_check_lines(self.healthchecks)
            run_id = str(context["run_id"])
            for bake in bakes.to_dict("records"):
                bake_id = str(bake["bake_id"])
                if bake_id in started:
                    continue
                parameters = bake_parameters(
                    source_ami=str(bake["image_id"]),
                    instance_type=str(bake["instance_type"]),
                    patch_ids=split_cve_ids(str(bake["patch_ids"])),
                    override_list=overrides[bake_id],
                    run_id=run_id,
                    image_name=image_name(run_id, bake_id, str(bake["image_id"])),
                    health_checks=checks,
                    instance_profile=config.install.staging_instance_profile,
                    subnet_id=config.install.staging_subnet_id,
                    assume_role=config.safety.automation_assume_role,
                )
                with aws_call("ssm:StartAutomationExecution", str(bake["account_id"]), str(self.region_name)):
                    started[bake_id] = self.hook.start_runbook(
                        BAKE_RUNBOOK,
                        parameters,
                        client_token=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}/{bake_id}")),
                        tags={"patchcycle:run-id": run_id[:256], "patchcycle:bake": bake_id},
                    )
                artifacts.write(BAKE_EXECUTIONS, started, target=self.target)
                self.log.info("Baking %s from %s: execution %s", bake_id, bake["image_id"], started[bake_id])
            self.persist_link(context, AutomationExecutionLink, execution_id=started[min(started)])
        self.defer(
            trigger=AutomationCompletionTrigger(
                [{**self.target.as_kwargs(), "execution_ids": sorted(started.values())}],
                poll_interval=config.poll_seconds,
                timeout=BAKE_WAIT_SECONDS,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=pd.Timedelta(seconds=BAKE_WAIT_SECONDS).to_pytimedelta() + DEFER_MARGIN,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        account, region = self.account_id(artifacts), str(self.region_name)
        with self.recording_failure(artifacts, Step.BAKE_IMAGES):
            started = artifacts.read(BAKE_EXECUTIONS, target=self.target)
            late = set(event.get("pending", [])) if event.get("status") == "timeout" else set()
            rows = []
            for bake in self._bakes(artifacts).to_dict("records"):
                execution_id = started[str(bake["bake_id"])]
                if execution_id in late:
                    with aws_call("ssm:StopAutomationExecution", account, region):
                        self.hook.stop(execution_id)
                with aws_call("ssm:GetAutomationExecution", account, region):
                    execution = self.hook.execution(execution_id)
                failed = None
                if execution.get("AutomationExecutionStatus") != "Success":
                    with aws_call("ssm:DescribeAutomationStepExecutions", account, region):
                        failed = self.hook.failed_step(execution_id)
                rows.append(bake_result(bake, execution, failed))
            results = typed_frame(rows, BAKE_RESULT_COLUMNS)
            artifacts.write(BAKE_RESULTS, results, target=self.target)
            for row in rows:
                self.log.info(
                    "Bake %s of %s: %s %s",
                    row["bake_id"],
                    row["source_image_id"],
                    row["status"],
                    row["image_id"] or row["reason"],
                )
            return {**self.target.as_kwargs(), "bakes": len(rows), "baked": int(results["baked"].sum())}

    def _bakes(self, artifacts: RunArtifacts) -> pd.DataFrame:
        """This target's planned bakes (none when plan_install found no Auto Scaling instance)."""
        bakes = artifacts.find(BAKE_PLAN)
        if bakes is None:
            return pd.DataFrame(columns=["bake_id"])
        mine = bakes[(bakes["account_id"] == self.account_id(artifacts)) & (bakes["region"] == self.region_name)]
        return mine.reset_index(drop=True)
