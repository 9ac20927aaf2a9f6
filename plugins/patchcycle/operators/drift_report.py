"""The watch's report: every target's drift in one drift.json and drift.csv."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowSkipException

from patchcycle.config import WatchConfig
from patchcycle.core.drift import DRIFT_COLUMNS, drift_document
from patchcycle.core.frames import concat_frames
from patchcycle.operators.base import FleetOperator
from patchcycle.readback.match import missing_part
from patchcycle.run_artifacts import CONFIG_SUMMARY, DRIFT, DRIFT_CSV, DRIFT_JSON, WATCH_SUMMARY, Step


class DriftReportOperator(FleetOperator[WatchConfig]):
    """Reads every target's watch artifacts (whatever their tasks' outcome) and writes drift.json and drift.csv."""

    config_class = WatchConfig
    template_fields: Sequence[str] = ("config", "cycle")

    def __init__(self, *, cycle: dict[str, Any] | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cycle = cycle

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.cycle:
            raise AirflowSkipException("no patch_cycle report to compare with (see last_cycle)")
        artifacts, config = self.artifacts(context), self.settings()
        frames, watched, incomplete = [], 0, []
        for target in config.targets:
            frame = artifacts.find(DRIFT, target=target)
            summary = artifacts.find(WATCH_SUMMARY, target=target)
            if frame is None or summary is None:
                incomplete.append({k: str(v) for k, v in missing_part(artifacts, target, Step.WATCH).items()})
                continue
            frames.append(frame)
            watched += summary.instances_watched
            if not artifacts.exists(CONFIG_SUMMARY, target=target):
                # Watched without Config: its CONFIG_NON_COMPLIANT drift is unknown, not absent.
                incomplete.append({k: str(v) for k, v in missing_part(artifacts, target, Step.CONFIG).items()})
        drift = concat_frames(frames, DRIFT_COLUMNS)
        document = drift_document(
            context["run_id"], self.cycle or {}, drift, watched, incomplete, datetime.now(UTC).isoformat()
        )
        uris = {
            "json": artifacts.write(DRIFT_JSON, document),
            "csv": artifacts.write(DRIFT_CSV, drift.to_csv(index=False)),
        }
        self.log.info("Drift: %s; %s", uris["json"], document["summary"])
        return {"report": uris, **document["summary"], "incomplete": len(incomplete)}
