"""The run page of a run on the immutable path: its Auto Scaling groups in words, their instances in the chart of
verdicts by wave under the refresh (not "not rolled out"), and a color for every verdict."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from patchcycle.config import RunConfig
from patchcycle.core.report import new_instances_csv
from patchcycle.core.verdicts import Verdict
from patchcycle.run_artifacts import CYCLE_ARTIFACTS, NEW_INSTANCES_CSV, REPORT_JSON, RunArtifacts
from patchcycle.ui import app, pages
from patchcycle.ui.runs import RunInfo
from tests.core.test_report_auto_scaling import _report


def test_every_verdict_has_its_color() -> None:
    assert set(pages.VERDICT_COLORS) == set(Verdict)


def test_the_run_page_shows_the_groups_and_counts_their_instances_under_the_refresh() -> None:
    report = _report()
    assert pages.verdicts_by_wave(report) == [
        (pages.REFRESH_LABEL, {"REPLACED": 2, "ROLLED_BACK": 3, "SKIPPED_HALTED": 1}),
        ("Not rolled out", {"NO_DATA": 1}),
    ]
    view = pages.RunView(
        dag_id="patch_cycle",
        run_id="manual__asg",
        state="success",
        report=report,
        staging=None,
        approval_request=None,
        approval_decision=None,
        links=[],
        staging_links=[],
        fleet_href="",
    )
    html = pages.run_page(view)
    section = html[html.index('<h2 id="auto-scaling">') : html.index('<h2 id="resources-heading">')]
    assert "Auto Scaling groups (3)" in section and "Not refreshed: halted" in section
    assert 'data-key="auto_scaling_group">Auto Scaling group</th>' in html
    assert 'data-csv="api"' in html  # the resources table (and its CSV download) names each instance's group


def test_the_run_page_links_the_new_instances_csv_and_the_app_serves_it(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    report = _report()
    run = RunArtifacts(root, "patch_cycle", "manual__asg", conn_id=None)
    run.write(REPORT_JSON, report)
    run.write(NEW_INSTANCES_CSV, new_instances_csv(report))
    config = RunConfig.from_params({"artifact_root": root})
    info = RunInfo(dag_id="patch_cycle", run_id="manual__asg", state="success", started=None, config=config)
    link = next(link for link in app.run_view(info).links if link.label == "New instances (CSV)")
    name = unquote(link.href.split("/artifacts/", 1)[1])
    assert app.resolve(name, CYCLE_ARTIFACTS, config.targets) == (NEW_INSTANCES_CSV, {})
    assert run.read(NEW_INSTANCES_CSV).splitlines()[1].startswith("123456789012,us-east-1,api,i-n1,")


def test_instances_a_gate_halted_before_their_groups_refresh_count_under_the_refresh() -> None:
    resources = [
        {"wave": None, "reason_code": "HALTED_BY_ALARM", "verdict": "SKIPPED_HALTED"},  # a group's gate
        {"wave": None, "reason_code": "HALTED_BY_CALENDAR", "verdict": "SKIPPED_HALTED"},
        {"wave": 2, "reason_code": "HALTED_BY_ALARM", "verdict": "SKIPPED_HALTED"},  # a wave's gate: its wave
    ]
    assert pages.verdicts_by_wave({"resources": resources}) == [
        (pages.wave_label(2), {"SKIPPED_HALTED": 1}),
        (pages.REFRESH_LABEL, {"SKIPPED_HALTED": 2}),
    ]
