"""The patchcycle Airflow plugin: the one file Airflow scans in plugins/."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from patchcycle.timetables import PatchTuesdayTimetable


class PatchCyclePlugin(AirflowPlugin):
    name = "patchcycle"
    timetables = [PatchTuesdayTimetable]  # registered, so the scheduler can rebuild it from the serialized DAG
