"""The assets the patch-cycle DAGs produce and consume."""

from __future__ import annotations

from airflow.sdk import Asset

# Updated by patch_cycle's report task once a run's report is written; its event's `extra` carries
# {"report": report.json URI, "run_id", "mode", "artifact_root", "artifact_conn_id", "generated_at"}.
# patch_compliance_watch runs on it (and daily), and reads the latest event to find the cycle to compare with.
PATCH_CYCLE_REPORT = Asset(name="patch_cycle_report", uri="patchcycle://patch_cycle/report", group="patchcycle")
