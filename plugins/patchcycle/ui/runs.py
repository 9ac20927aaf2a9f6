"""Which runs the pages show, and where each keeps its artifacts: read from Airflow's metadata database.

A run's artifacts are where its validated config says (the `config` XCom its first task pushes). Before that
task has run, the run's conf with the params' defaults says the same thing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from patchcycle.config import RunConfig
from patchcycle.run_artifacts import RunArtifacts

CYCLE_DAG_ID: Final = "patch_cycle"
WATCH_DAG_ID: Final = "patch_compliance_watch"
# The task of each DAG that pushes the validated config (XCom key CONFIG_KEY).
CONFIG_TASKS: Final = {CYCLE_DAG_ID: "validate_params", WATCH_DAG_ID: "last_cycle"}
CONFIG_KEY: Final = "config"


@dataclass(frozen=True)
class RunInfo:
    """One DAG run as the pages need it."""

    dag_id: str
    run_id: str
    state: str
    started: dt.datetime | None
    config: RunConfig

    @property
    def artifacts(self) -> RunArtifacts:
        return RunArtifacts(self.config.artifact_root, self.dag_id, self.run_id, self.config.artifact_conn_id)

    @property
    def when(self) -> str:
        return self.started.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if self.started else "not started"


class RunSource(Protocol):
    """Where the app finds runs (Airflow's database; tests give their own)."""

    def run(self, dag_id: str, run_id: str) -> RunInfo | None: ...

    def recent(self, dag_id: str, limit: int) -> Sequence[RunInfo]: ...


class AirflowRuns:
    """Runs from Airflow's metadata database (the API server's own session)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, dag_id: str, run_id: str) -> RunInfo | None:
        from airflow.models.dagrun import DagRun
        from sqlalchemy import select

        found = self.session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        return None if found is None else self._info(found)

    def recent(self, dag_id: str, limit: int) -> Sequence[RunInfo]:
        from airflow.models.dagrun import DagRun
        from sqlalchemy import select

        query = select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc()).limit(limit)
        return [self._info(run) for run in self.session.scalars(query)]

    def _info(self, run: Any) -> RunInfo:
        state = str(getattr(run.state, "value", run.state) or "")
        started = run.start_date or run.run_after
        return RunInfo(run.dag_id, run.run_id, state, started, self._config(run))

    def _config(self, run: Any) -> RunConfig:
        from airflow.models.xcom import XComModel
        from sqlalchemy import select

        query = select(XComModel.value).where(
            XComModel.dag_id == run.dag_id,
            XComModel.run_id == run.run_id,
            XComModel.task_id == CONFIG_TASKS.get(run.dag_id, ""),
            XComModel.key == CONFIG_KEY,
        )
        stored = self.session.scalar(query)
        params = XComModel.deserialize_value(_Row(stored)) if stored is not None else None
        if not isinstance(params, dict):
            params = dict(run.conf or {})
        try:
            return RunConfig.from_params(params)
        except ValueError:
            return RunConfig.from_params({})


@dataclass(frozen=True)
class _Row:
    """What XComModel.deserialize_value reads: an object with the stored `value`."""

    value: Any
