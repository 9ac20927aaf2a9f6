"""The watch's first task: validate its params and find the last patch cycle's report to compare with."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.assets import PATCH_CYCLE_REPORT
from patchcycle.config import WatchConfig


class LastCycleOperator(BaseOperator):
    """Validates the watch's params (WatchConfig) and reads the latest PATCH_CYCLE_REPORT event.

    Returns the (connection, region) targets to fan out over; pushes `config` (the validated WatchConfig) and
    `cycle` (the event's extra: the report's URI, its run id and mode). When no cycle has reported yet there
    is nothing to drift from: it returns no targets (every mapped task is then skipped) and pushes an empty
    `cycle`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(inlets=[PATCH_CYCLE_REPORT], **kwargs)

    def execute(self, context: Context) -> list[dict[str, str]]:
        try:
            config = WatchConfig.from_params(context["params"])
        except ValueError as error:
            raise AirflowFailException(f"invalid params: {error}") from error
        ti = context["ti"]
        ti.xcom_push(key="config", value=config.as_params())
        events = list(context["inlet_events"][PATCH_CYCLE_REPORT])
        if not events:
            # Not a skip: a skipped task leaves no targets to map over, and its downstream would fail. Not None
            # either: Airflow reads a None XCom as missing, which fails every task that takes it.
            self.log.warning("No patch_cycle report yet: run patch_cycle first, then watch for drift")
            ti.xcom_push(key="cycle", value={})
            return []
        cycle = dict(events[-1].extra or {})
        if not cycle.get("report"):
            raise AirflowFailException(f"the latest {PATCH_CYCLE_REPORT.name} event names no report: {cycle}")
        self.log.info("Watching for drift since %s (%s)", cycle.get("run_id"), cycle["report"])
        ti.xcom_push(key="cycle", value=cycle)
        return [target.as_kwargs() for target in config.targets]
