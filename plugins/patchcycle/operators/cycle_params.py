"""The first task of a cycle: validate the run's params before any AWS call."""

from __future__ import annotations

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import CycleConfig


class CycleParamsOperator(BaseOperator):
    """Validates the run's params (CycleConfig) and returns the (connection, region) targets to fan out over."""

    def execute(self, context: Context) -> list[dict[str, str]]:
        try:
            config = CycleConfig.from_params(context["params"])
        except ValueError as error:
            raise AirflowFailException(f"invalid params: {error}") from error
        self.log.info("Cycle in %s mode over %d (connection, region) targets", config.mode, len(config.targets))
        return [target.as_kwargs() for target in config.targets]
