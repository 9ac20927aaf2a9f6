"""Where the patchcycle pages live in the Airflow UI. One module, so the plugin that serves the pages and the
tasks that link to them (approval body, notifications, report) agree on the paths."""

from __future__ import annotations

from urllib.parse import quote

# The plugin's FastAPI app is mounted here by the API server.
UI_PREFIX = "/patchcycle"


def _part(value: str) -> str:
    return quote(value, safe="")


def run_page_path(dag_id: str, run_id: str) -> str:
    """The run page of one patch_cycle run, relative to the API server's root."""
    return f"{UI_PREFIX}/runs/{_part(dag_id)}/{_part(run_id)}"


def run_artifact_path(dag_id: str, run_id: str, artifact: str) -> str:
    """One artifact of a run (a name from the run-artifact contract), served by the plugin."""
    return f"{run_page_path(dag_id, run_id)}/artifacts/{_part(artifact)}"


def fleet_page_path() -> str:
    """The fleet page: compliance and KPIs across the last cycles."""
    return f"{UI_PREFIX}/fleet"


def absolute(base_url: str, path: str) -> str:
    """`path` under the API server's base URL ([api] base_url); the bare path when no base URL is set."""
    return f"{base_url.rstrip('/')}{path}" if base_url else path


def run_page_template() -> str:
    """The run page as the Airflow UI's external view templates it ({DAG_ID} and {RUN_ID} are filled in, quoted),
    relative (no leading slash) so it resolves under the UI's base URL behind a reverse proxy."""
    return f"{UI_PREFIX.lstrip('/')}/runs/{{DAG_ID}}/{{RUN_ID}}"


def fleet_page_href() -> str:
    """The fleet page as the UI's navigation links it: relative, like run_page_template."""
    return fleet_page_path().lstrip("/")
