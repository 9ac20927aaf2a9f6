"""The watch's report: every target's drift in one drift.json and drift.csv."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from patchcycle.artifacts import ArtifactStore
from patchcycle.core.drift import DRIFT_COLUMNS, drift_document
from patchcycle.core.inventory import typed_frame
from patchcycle.operators.evidence_tables import CONFIG_STAGE
from patchcycle.operators.match_tables import missing_part, read_frame, read_json, targets_of

WATCH_STAGE = "watch"
STAGE = "drift_report"


class DriftReportOperator(BaseOperator):
    """Reads every target's watch artifacts (whatever their tasks' outcome) and writes drift.json and drift.csv."""

    template_fields: Sequence[str] = ("targets", "cycle", "artifact_root", "artifact_conn_id")

    def __init__(
        self,
        *,
        targets: list[dict[str, str]] | Any,
        cycle: dict[str, Any] | Any,
        artifact_root: str,
        artifact_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.cycle = cycle
        self.artifact_root = artifact_root
        self.artifact_conn_id = artifact_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.cycle:
            raise AirflowSkipException("no patch_cycle report to compare with (see last_cycle)")
        store = ArtifactStore(self.artifact_root, context["dag"].dag_id, context["run_id"], self.artifact_conn_id)
        frames, watched, incomplete = [], 0, []
        for target in targets_of(self.targets):
            frame = read_frame(store, WATCH_STAGE, f"{target.key}.drift.parquet")
            summary = read_json(store, WATCH_STAGE, f"{target.key}.json")
            if frame is None or summary is None:
                incomplete.append({k: str(v) for k, v in missing_part(store, target, WATCH_STAGE).items()})
                continue
            frames.append(frame)
            watched += int(summary["instances_watched"])
            if read_json(store, CONFIG_STAGE, f"{target.key}.json") is None:
                # Watched without Config: its CONFIG_NON_COMPLIANT drift is unknown, not absent.
                incomplete.append({k: str(v) for k, v in missing_part(store, target, CONFIG_STAGE).items()})
        drift = pd.concat(frames, ignore_index=True) if frames else typed_frame([], DRIFT_COLUMNS)
        document = drift_document(
            context["run_id"], self.cycle or {}, drift, watched, incomplete, datetime.now(UTC).isoformat()
        )
        uris = {
            "json": store.write_json(STAGE, "drift.json", document),
            "csv": store.write_bytes(STAGE, "drift.csv", drift.to_csv(index=False).encode()),
        }
        self.log.info("Drift: %s; %s", uris["json"], document["summary"])
        return {"report": uris, **document["summary"], "incomplete": len(incomplete)}
