"""The plugin's pages through Airflow's own API server app and test client: who is let in, and what each page
shows for a run's artifacts (written through the run-artifact contract under a file:// root, the runs in
Airflow's database)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from patchcycle.config import Target
from patchcycle.core.drift import DRIFT_COLUMNS, drift_document
from patchcycle.core.outcomes import ApprovalRecord
from patchcycle.core.staging import STAGING_RESULT_COLUMNS
from patchcycle.run_artifacts import (
    APPROVAL_DECISION,
    APPROVAL_REQUEST,
    DRIFT_JSON,
    REPORT_CSV,
    REPORT_HTML,
    REPORT_JSON,
    STAGING_RESULTS,
    RunArtifacts,
)
from patchcycle.run_records import ApprovalRequest
from patchcycle.ui.urls import fleet_page_path, run_artifact_path, run_page_path
from tests.core.test_report import install_report

CYCLE, WATCH = "patch_cycle", "patch_compliance_watch"
DONE_RUN = "manual__2026-12-01T03:00:00+00:00"
GATE_RUN = "manual__2026-12-02T03:00:00+00:00"
WATCH_RUN = "asset_triggered__2026-12-01T04:00:00+00:00"
TARGET = Target("aws_default", "us-east-1")
AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def staging_results() -> pd.DataFrame:
    rows = [
        ["111122223333", "us-east-1", "al2023-t3", "i-stage1", "web", "Amazon Linux 2023", "KB1;KB2", "Success", 2,
         "", "Success", "", True, ""],
        ["111122223333", "us-east-1", "win2022-m5", "i-stage2", "app", "Windows Server 2022 Datacenter", "KB3",
         "Failed", 0, "KB3", "", "", False, "the install command ended Failed"],
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(STAGING_RESULT_COLUMNS)).astype(dict(STAGING_RESULT_COLUMNS))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Airflow's API server app (our plugin mounted by Airflow's plugin manager), its database holding three runs
    whose conf points at a file:// artifact root."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__CORE__AUTH_MANAGER", AUTH_MANAGER)
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    from airflow.api_fastapi.app import create_app
    from airflow.models.dagrun import DagRun
    from airflow.utils.db import initdb
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType
    from fastapi.testclient import TestClient

    root = f"file://{tmp_path_factory.mktemp('artifacts')}"
    done = RunArtifacts(root, CYCLE, DONE_RUN, conn_id=None)
    done.write(REPORT_JSON, install_report())
    done.write(REPORT_HTML, "<!DOCTYPE html><html><body><h1>the report</h1></body></html>")
    done.write(REPORT_CSV, "resource_id\ni-1\n")
    done.write(STAGING_RESULTS, staging_results(), target=TARGET)
    done.write(APPROVAL_REQUEST, ApprovalRequest(mode="manual", staging_passed=False, body="Staging FAILED"))
    done.write(
        APPROVAL_DECISION,
        ApprovalRecord(decision="APPROVE", mode="manual", by="alice", at="2026-12-01T03:40:00Z", staging_passed=False),
    )
    gate = RunArtifacts(root, CYCLE, GATE_RUN, conn_id=None)
    gate.write(STAGING_RESULTS, staging_results().iloc[:1], target=TARGET)
    gate.write(APPROVAL_REQUEST, ApprovalRequest(mode="manual", staging_passed=True, body="Staging passed"))
    drift = pd.DataFrame(
        [["111122223333", "us-east-1", "i-missing", "PATCH_UNINSTALLED", "KB1", "Critical", "MISSING", "KB1 gone"]],
        columns=list(DRIFT_COLUMNS),
    )
    cycle = {"run_id": DONE_RUN, "report": done.uri(REPORT_JSON), "mode": "install", "generated_at": "x"}
    RunArtifacts(root, WATCH, WATCH_RUN, conn_id=None).write(
        DRIFT_JSON, drift_document(WATCH_RUN, cycle, drift, 3, [], "2026-12-01T04:05:00Z")
    )

    initdb()
    start = dt.datetime(2026, 12, 1, 3, tzinfo=dt.UTC)
    targets = [{"aws_conn_id": TARGET.aws_conn_id, "regions": [TARGET.region_name]}]
    conf = {"artifact_root": root, "mode": "install", "targets": targets}
    with create_session() as session:
        for dag_id, run_id, state, day in (
            (CYCLE, DONE_RUN, DagRunState.SUCCESS, 0),
            (CYCLE, GATE_RUN, DagRunState.RUNNING, 1),
            (WATCH, WATCH_RUN, DagRunState.SUCCESS, 0),
        ):
            when = start + dt.timedelta(days=day, hours=1 if dag_id == WATCH else 0)
            session.add(
                DagRun(
                    dag_id=dag_id,
                    run_id=run_id,
                    run_type=DagRunType.MANUAL,
                    state=state,
                    conf=conf,
                    run_after=when,
                    start_date=when,
                )
            )
    with TestClient(create_app()) as test_client:
        yield test_client
    mp.undo()


def bearer(role: str | None) -> dict[str, str]:
    """The header of an authenticated user of the SimpleAuthManager with this role (None: no role at all)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=f"user-{role}", role=role))
    return {"Authorization": f"Bearer {token}"}


VIEWER = "viewer"
PAGES = [
    run_page_path(CYCLE, DONE_RUN),
    run_artifact_path(CYCLE, DONE_RUN, REPORT_HTML.file()),
    fleet_page_path(),
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_refuses_anonymous_and_users_without_dag_access_and_serves_a_reader(client: Any, path: str) -> None:
    assert client.get(path).status_code in (401, 403)
    assert client.get(path, headers={"Authorization": "Bearer not-a-token"}).status_code in (401, 403)
    # Authenticated, but the auth manager grants this user no DAG access.
    assert client.get(path, headers=bearer(None)).status_code == 403
    answer = client.get(path, headers=bearer(VIEWER))
    assert answer.status_code == 200, answer.text


def test_the_plugin_registers_the_app_and_the_views(client: Any) -> None:
    answer = client.get("/api/v2/plugins", headers=bearer(VIEWER))
    (plugin,) = [p for p in answer.json()["plugins"] if p["name"] == "patchcycle"]
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == ["/patchcycle"]
    views = {view["destination"]: view["href"] for view in plugin["external_views"]}
    assert views == {"dag_run": "patchcycle/runs/{DAG_ID}/{RUN_ID}", "nav": "patchcycle/fleet"}


def cells(page: str, table_id: str) -> list[list[str]]:
    """The text of each body row's cells of a table."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, re.S)
    assert table, f"no table {table_id}"
    body = table.group(0).split("<tbody>", 1)[1]
    return [
        [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


def test_the_run_page_shows_the_report_s_numbers(client: Any) -> None:
    report = install_report()
    page = client.get(run_page_path(CYCLE, DONE_RUN), headers=bearer(VIEWER)).text
    in_scope = report["totals"]["resources_in_scope"]
    assert f"{in_scope} resources in scope" in page
    shown = {m[0]: int(m[1]) for m in re.findall(r'data-verdict="([A-Z_]+)">(\d+)</td>', page)}
    assert shown == {k: v for k, v in report["totals"]["by_verdict"].items() if v}
    assert len(cells(page, "resources")) == len(report["resources"])
    for title in ("Compliance before and after the run", "Verdicts by wave", "Failures by cause"):
        assert f"<h3>{title}</h3>" in page
    assert page.count("<svg") >= 2
    # Before the run, the instances the install patched were missing patches; after it they are compliant.
    before = re.search(r"Before the run \(scan\) NON_COMPLIANT: (\d+)", page)
    assert before and int(before.group(1)) >= 2
    # The staging results read from the staging table, and the approval record.
    staging = cells(page, "staging-table")
    assert [row[0] for row in staging] == ["i-stage1", "i-stage2"]
    assert "Windows Server 2022 Datacenter" in page and "1 of 2 staging instance(s) passed" in page
    assert ["Decision", "Approved"] in cells(page, "approval-record")
    assert ["By", "alice"] in cells(page, "approval-record")


def test_the_run_page_links_resolve_to_the_run_s_files(client: Any) -> None:
    page = client.get(run_page_path(CYCLE, DONE_RUN), headers=bearer(VIEWER)).text
    base = run_page_path(CYCLE, DONE_RUN).rsplit("/", 1)[0]
    hrefs = re.findall(r'href="([^"]+/artifacts/[^"]+)"', page)
    assert len(hrefs) == 5, hrefs  # the report's three files, the approval request, one target's staging
    for href in hrefs:
        answer = client.get(f"{base}/{href.replace('&amp;', '&')}", headers=bearer(VIEWER))
        assert answer.status_code == 200, (href, answer.text)
    html = client.get(run_artifact_path(CYCLE, DONE_RUN, REPORT_HTML.file()), headers=bearer(VIEWER))
    assert "<h1>the report</h1>" in html.text and "sandbox" in html.headers["content-security-policy"]
    staging_path = run_artifact_path(CYCLE, DONE_RUN, STAGING_RESULTS.file(target=TARGET))
    table = client.get(f"{staging_path}?format=csv", headers=bearer(VIEWER))
    assert table.headers["content-type"].startswith("text/csv")
    assert [row["instance_id"] for row in csv.DictReader(io.StringIO(table.text))] == ["i-stage1", "i-stage2"]


@pytest.mark.parametrize(
    "name", ["report/secrets.txt", "../../etc/passwd", "staging/aws_other.us-east-1.results.parquet"]
)
def test_a_file_the_contract_does_not_list_is_not_served(client: Any, name: str) -> None:
    answer = client.get(run_artifact_path(CYCLE, DONE_RUN, name), headers=bearer(VIEWER))
    assert answer.status_code == 404


def test_a_run_at_the_gate_shows_its_staging_and_that_it_waits(client: Any) -> None:
    page = client.get(run_page_path(CYCLE, GATE_RUN), headers=bearer(VIEWER)).text
    assert "No report yet: it waits at the approval gate" in page
    assert len(cells(page, "staging-table")) == 1
    assert "Waiting for a person to approve or reject" in page
    assert client.get(run_page_path(CYCLE, "manual__nope"), headers=bearer(VIEWER)).status_code == 404


def test_the_fleet_page_lists_the_cycles_with_their_figures_and_the_latest_drift(client: Any) -> None:
    report = install_report()
    page = client.get(fleet_page_path(), headers=bearer(VIEWER)).text
    rows = cells(page, "cycles-table")
    assert [row[1] for row in rows] == [GATE_RUN, DONE_RUN]  # newest first
    totals = report["totals"]
    compliant = totals["by_compliance_state"].get("COMPLIANT", 0)
    assert rows[1][4] == str(totals["resources_in_scope"])
    assert rows[1][5] == f"{100 * compliant / totals['resources_in_scope']:.0f}%"
    links = re.findall(r'<a href="(runs/[^"]+)">', page)
    assert links[:2] == [run_page_path(CYCLE, run).removeprefix("/patchcycle/") for run in (GATE_RUN, DONE_RUN)]
    assert "<h3>Compliance after each cycle</h3>" in page
    assert "1 of 3 watched instance(s) drifted" in page
    assert cells(page, "drift-table")[0] == [
        "111122223333",
        "us-east-1",
        "i-missing",
        "Patch uninstalled",
        "KB1",
        "KB1 gone",
    ]
    drift = re.search(r'href="(runs/patch_compliance_watch/[^"]+)"', page)
    assert drift and client.get(f"/patchcycle/{drift.group(1)}", headers=bearer(VIEWER)).json()["run_id"] == WATCH_RUN


def test_pages_link_relatively_so_a_proxy_prefix_keeps_working(client: Any) -> None:
    for path in (run_page_path(CYCLE, DONE_RUN), fleet_page_path()):
        page = client.get(path, headers=bearer(VIEWER)).text
        assert not re.findall(r'(?:href|src)="/', page), path


def test_every_page_is_readable_from_an_install_report_on_disk(tmp_path: Path) -> None:
    """The page module alone (no app): an install report with no failures says so instead of an empty chart."""
    from patchcycle.ui import pages

    report = install_report()
    view = pages.RunView(CYCLE, DONE_RUN, "success", report, None, None, None)
    page = pages.run_page(view)
    assert "Not staged" in page and "No approval" in page
    assert ("No resource failed." in page) == (not pages.failures_by_cause(report))
