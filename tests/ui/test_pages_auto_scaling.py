"""The run page of a run on the immutable path: its Auto Scaling groups in words, their instances in the chart of
verdicts by wave under the refresh (not "not rolled out"), and a color for every verdict."""

from __future__ import annotations

from patchcycle.core.verdicts import Verdict
from patchcycle.ui import pages
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
