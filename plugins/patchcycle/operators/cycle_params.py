"""The first task of a cycle: validate the run's params before any AWS call, and hand the config on."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import CycleConfig


class CycleParamsOperator(BaseOperator):
    """Validates the run's params (CycleConfig, mode "default" resolved by how the run started).

    Returns the (connection, region) targets to fan out over (mapping needs the return value) and pushes the
    whole validated config as XCom key `config`, which every later task takes.
    """

    def execute(self, context: Context) -> list[dict[str, str]]:
        run_type = str(getattr(context["dag_run"], "run_type", "manual"))
        try:
            config = CycleConfig.from_params(context["params"], run_type=run_type)
        except ValueError as error:
            raise AirflowFailException(f"invalid params: {error}") from error
        self.log.info("Cycle in %s mode over %d (connection, region) targets", config.mode, len(config.targets))
        context["ti"].xcom_push(key="config", value=config.as_params())
        return [target.as_kwargs() for target in config.targets]


def installs(config: Any) -> bool:
    """Whether the run installs (its validated config's mode): the install branch's short-circuit condition."""
    return CycleConfig.from_params(config).installs
