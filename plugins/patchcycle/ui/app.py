"""The plugin's FastAPI app, mounted by the API server under UI_PREFIX: the run page, a run's artifacts, the fleet
page.

Plugin apps are not protected by default: every endpoint here takes the API server's own security dependencies
(the JWT of the UI's session cookie or a bearer token), and needs read access to the runs of the DAG it shows.
Files are read only through the run-artifact contract: a run's artifact is named by its stage/file as the
contract spells it (e.g. STAGING_RESULTS.file(target=...)), and anything the contract does not list is a 404.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Annotated, Any, Final

import pandas as pd
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from patchcycle.config import Target
from patchcycle.run_artifacts import (
    APPROVAL_DECISION,
    APPROVAL_REQUEST,
    CYCLE_ARTIFACTS,
    DRIFT_JSON,
    NEW_INSTANCES_CSV,
    REPORT_CSV,
    REPORT_HTML,
    REPORT_JSON,
    STAGING_RESULTS,
    WATCH_ARTIFACTS,
    Artifact,
    ArtifactError,
    Document,
    Record,
    RunArtifacts,
    Table,
)
from patchcycle.ui import pages
from patchcycle.ui.runs import CYCLE_DAG_ID, WATCH_DAG_ID, AirflowRuns, RunInfo, RunSource

DEFAULT_CYCLES: Final = 12
MAX_CYCLES: Final = 50
# A page of the run's own (report.html) may show no script and load nothing: it is the run's text, not ours.
ARTIFACT_CSP: Final = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_ARTIFACTS: Final = {CYCLE_DAG_ID: CYCLE_ARTIFACTS, WATCH_DAG_ID: WATCH_ARTIFACTS}

app = FastAPI(title="patchcycle pages", docs_url=None, redoc_url=None, openapi_url=None)


def get_runs(session: SessionDep) -> RunSource:
    """The runs the pages show (tests override this dependency)."""
    return AirflowRuns(session)


Runs = Annotated[RunSource, Depends(get_runs)]
READ_RUNS: Final = Depends(requires_access_dag("GET", DagAccessEntity.RUN))
READ_CYCLES: Final = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=CYCLE_DAG_ID))


def _run_or_404(runs: RunSource, dag_id: str, run_id: str) -> RunInfo:
    found = runs.run(dag_id, run_id)
    if found is None:
        raise HTTPException(404, f"no run {run_id!r} of DAG {dag_id!r}")
    return found


def artifact_href(run_id: str, artifact: Artifact[Any], **keys: Any) -> str:
    """An artifact's link relative to its run's page (…/runs/{dag_id}/{run_id})."""
    return f"{pages.part(run_id)}/artifacts/{pages.part(artifact.file(**keys))}"


def _read_staging(run: RunArtifacts, targets: Sequence[Target]) -> tuple[pd.DataFrame | None, list[Target]]:
    frames, found = [], []
    for target in targets:
        frame = run.find(STAGING_RESULTS, target=target)
        if frame is not None:
            frames.append(frame)
            found.append(target)
    return (pd.concat(frames, ignore_index=True) if frames else None), found


def run_view(info: RunInfo) -> pages.RunView:
    """What the run page shows, read through the contract."""
    run = info.artifacts
    report = run.find(REPORT_JSON)
    staging, staged = _read_staging(run, info.config.targets)
    request, decision = run.find(APPROVAL_REQUEST), run.find(APPROVAL_DECISION)
    links = []
    if report is not None:
        links += [
            pages.ArtifactLink("Report (HTML)", artifact_href(info.run_id, REPORT_HTML)),
            pages.ArtifactLink("Report (CSV)", artifact_href(info.run_id, REPORT_CSV)),
            pages.ArtifactLink("Report (JSON)", artifact_href(info.run_id, REPORT_JSON)),
        ]
        if (report.get("install") or {}).get("auto_scaling_groups"):
            links.append(pages.ArtifactLink("New instances (CSV)", artifact_href(info.run_id, NEW_INSTANCES_CSV)))
    if request is not None:
        links.append(pages.ArtifactLink("Approval request", artifact_href(info.run_id, APPROVAL_REQUEST)))
    staging_links = [
        pages.ArtifactLink(
            f"{target.aws_conn_id} {target.region_name}", artifact_href(info.run_id, STAGING_RESULTS, target=target)
        )
        for target in staged
    ]
    return pages.RunView(
        dag_id=info.dag_id,
        run_id=info.run_id,
        state=info.state,
        report=report,
        staging=staging,
        approval_request=None if request is None else {"mode": request.mode, "staging_passed": request.staging_passed},
        approval_decision=None if decision is None else vars(decision),
        links=links,
        staging_links=staging_links,
        fleet_href="../../fleet",
    )


@app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[READ_RUNS])
def run_page(dag_id: str, run_id: str, runs: Runs) -> HTMLResponse:
    """The run page (the Airflow UI shows it in a tab of each DAG run)."""
    if dag_id != CYCLE_DAG_ID:
        return HTMLResponse(pages.not_a_cycle_page(dag_id, "../../fleet"))
    return HTMLResponse(pages.run_page(run_view(_run_or_404(runs, dag_id, run_id))))


Resolved = tuple[Artifact[Any], dict[str, Any]]


def resolve(name: str, artifacts: Sequence[Artifact[Any]], targets: Sequence[Target]) -> Resolved | None:
    """The contract's artifact and keys a stage/file name stands for, or None when it names none of them."""
    by_key = {target.key: target for target in targets}
    patterns = {
        "target": "|".join(re.escape(key) for key in by_key) or "(?!)",
        "wave": r"\d+",
        "profile": r"[A-Za-z0-9_.-]+",
        "step": r"[A-Za-z0-9_]+",
    }
    for artifact in artifacts:
        template = re.escape(f"{artifact.stage}/{artifact.name}")
        for placeholder in artifact.placeholders:
            template = template.replace(
                re.escape("{" + placeholder + "}"), f"(?P<{placeholder}>{patterns[placeholder]})"
            )
        match = re.fullmatch(template, name)
        if match is None:
            continue
        keys: dict[str, Any] = dict(match.groupdict())
        if "target" in keys:
            keys["target"] = by_key[keys["target"]]
        if "wave" in keys:
            keys["wave"] = int(keys["wave"])
        if artifact.file(**keys) == name:
            return artifact, keys
    return None


@app.get("/runs/{dag_id}/{run_id}/artifacts/{name:path}", dependencies=[READ_RUNS])
def run_artifact(
    dag_id: str, run_id: str, name: str, runs: Runs, format: Annotated[str, Query(pattern="^(html|csv)$")] = "html"
) -> Response:
    """One of the run's files, by its stage/file name in the contract: tables as a page (or CSV), records and
    documents as JSON, text as itself."""
    info = _run_or_404(runs, dag_id, run_id)
    found = resolve(name, _ARTIFACTS.get(dag_id, ()), info.config.targets)
    if found is None:
        raise HTTPException(404, f"{name!r} is not a file the {dag_id} runs write (see docs/artifacts.md)")
    artifact, keys = found
    try:
        value = info.artifacts.find(artifact, **keys)
    except ArtifactError as error:
        raise HTTPException(502, str(error)) from error
    if value is None:
        raise HTTPException(404, f"{name} was not written (by {artifact.written_by}) in run {run_id}")
    if isinstance(artifact, Table):
        if format == "csv":
            buffer = io.StringIO()
            value.to_csv(buffer, index=False)
            return PlainTextResponse(buffer.getvalue(), media_type="text/csv")
        title = f"{artifact.about[:1].upper()}{artifact.about[1:]} ({name})"
        return HTMLResponse(pages.table_page(title, value, "?format=csv"))
    if isinstance(artifact, Document):
        return JSONResponse(value)
    if isinstance(artifact, Record):
        return Response(artifact.encode(value, name), media_type="application/json")
    media = {".html": "text/html", ".csv": "text/csv"}.get(name[name.rfind(".") :], "text/plain")
    return Response(str(value), media_type=f"{media}; charset=utf-8", headers={"Content-Security-Policy": ARTIFACT_CSP})


def _may_read(user: Any, dag_id: str) -> bool:
    details = DagDetails(id=dag_id)
    return bool(
        get_auth_manager().is_authorized_dag(
            method="GET", access_entity=DagAccessEntity.RUN, details=details, user=user
        )
    )


def _latest_drift(runs: RunSource) -> tuple[RunInfo | None, dict[str, Any] | None]:
    for info in runs.recent(WATCH_DAG_ID, 5):
        drift = info.artifacts.find(DRIFT_JSON)
        if drift is not None:
            return info, drift
    return None, None


@app.get("/fleet", response_class=HTMLResponse, dependencies=[READ_CYCLES])
def fleet_page(
    runs: Runs, user: GetUserDep, cycles: Annotated[int, Query(ge=1, le=MAX_CYCLES)] = DEFAULT_CYCLES
) -> HTMLResponse:
    """Compliance and KPIs across the last cycles, the latest drift, links to each run's page."""
    summaries = []
    for info in runs.recent(CYCLE_DAG_ID, cycles):
        try:
            report = info.artifacts.find(REPORT_JSON)
        except (ArtifactError, OSError):
            report = None
        href = f"runs/{pages.part(info.dag_id)}/{pages.part(info.run_id)}"
        summaries.append(pages.CycleSummary(info.run_id, info.state, info.when, href, report))
    notes: list[str] = []
    drift_info, drift = None, None
    if _may_read(user, WATCH_DAG_ID):
        drift_info, drift = _latest_drift(runs)
    else:
        notes.append("You may not read patch_compliance_watch's runs: its drift is not shown.")
    drift_link = None
    if drift_info is not None:
        href = f"runs/{pages.part(WATCH_DAG_ID)}/{artifact_href(drift_info.run_id, DRIFT_JSON)}"
        drift_link = pages.ArtifactLink("The drift report (JSON)", href)
    view = pages.FleetView(
        summaries, drift, drift_info.run_id if drift_info else "", drift_link, limit=cycles, notes=notes
    )
    return HTMLResponse(pages.fleet_page(view))
