"""The patchcycle Airflow plugin: the one file Airflow scans in plugins/."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from patchcycle.timetables import PatchTuesdayTimetable
from patchcycle.ui.urls import UI_PREFIX, fleet_page_href, run_page_template


class _PagesApp:
    """The pages' FastAPI app, imported when read: it imports the API server's modules (about 10 s), and only
    the API server (and its plugin listing) reads `fastapi_apps`; the scheduler, the dag-processor and the task
    processes that load this plugin never pay for it."""

    def __get__(self, instance: object, owner: type) -> list[dict[str, Any]]:
        from patchcycle.ui.app import app

        return [{"app": app, "url_prefix": UI_PREFIX, "name": "Patch cycle pages"}]


class PatchCyclePlugin(AirflowPlugin):
    name = "patchcycle"
    timetables = [PatchTuesdayTimetable]  # registered, so the scheduler can rebuild it from the serialized DAG
    # The run page and the fleet page, served by the API server under UI_PREFIX (docs/architecture.md#the-ui).
    fastapi_apps = _PagesApp()
    external_views = [
        {
            "name": "Patch cycle",
            "href": run_page_template(),
            "destination": "dag_run",
            "url_route": "patchcycle-run",
        },
        {
            "name": "Patch fleet",
            "href": fleet_page_href(),
            "destination": "nav",
            "url_route": "patchcycle-fleet",
            "category": "browse",
        },
    ]
