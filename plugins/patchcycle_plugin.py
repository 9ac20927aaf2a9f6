"""The patchcycle Airflow plugin: the one file Airflow scans in plugins/."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class PatchCyclePlugin(AirflowPlugin):
    name = "patchcycle"
