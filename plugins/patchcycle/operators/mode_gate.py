"""The one place the cycle's mode is checked: in scan mode the install branch is skipped here."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.python import ShortCircuitOperator

from patchcycle.operators.cycle_params import installs


class InstallModeGate(ShortCircuitOperator):
    """Skips its direct downstream tasks (the install branch's first task, and verify) unless the run installs.

    Tasks further down follow their own trigger rules, so config, report and the publishing tasks still run
    in scan mode.
    """

    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        super().__init__(
            python_callable=installs, op_kwargs={"config": config}, ignore_downstream_trigger_rules=False, **kwargs
        )
