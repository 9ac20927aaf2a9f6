"""The first task of a cycle: validate the run's params before any AWS call."""

from __future__ import annotations

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import CycleConfig


class CycleParamsOperator(BaseOperator):
    """Validates the run's params (CycleConfig) and publishes what later tasks need.

    Returns the (connection, region) targets to fan out over (mapping needs the return value); pushes
    `mode` (scan or install, resolved for the run) and `install` (InstallSettings.as_dict) as XCom keys.
    """

    def execute(self, context: Context) -> list[dict[str, str]]:
        run_type = str(getattr(context["dag_run"], "run_type", "manual"))
        try:
            config = CycleConfig.from_params(context["params"], run_type=run_type)
        except ValueError as error:
            raise AirflowFailException(f"invalid params: {error}") from error
        self.log.info("Cycle in %s mode over %d (connection, region) targets", config.mode, len(config.targets))
        context["ti"].xcom_push(key="mode", value=config.mode)
        context["ti"].xcom_push(key="install", value=config.install.as_dict())
        return [target.as_kwargs() for target in config.targets]
