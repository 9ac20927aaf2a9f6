"""The run page of a run with RDS maintenance: its RDS databases in words, the databases' RDS waves in the
resources table and in the chart of verdicts by wave, apart from the EC2 waves."""

from __future__ import annotations

from typing import Any

from patchcycle.ui import pages
from tests.core.test_report_rds import _report


def _view(report: dict[str, Any]) -> pages.RunView:
    return pages.RunView(
        dag_id="patch_cycle",
        run_id="manual__rds",
        state="success",
        report=report,
        staging=None,
        approval_request=None,
        approval_decision=None,
        links=[],
        staging_links=[],
        fleet_href="",
    )


def test_the_run_page_shows_the_rds_databases_and_their_rds_waves() -> None:
    report = _report()
    waves = {db["resource_id"]: db["wave"] for db in report["install"]["rds"]["databases"]}
    html = pages.run_page(_view(report))
    section = html[html.index('<h2 id="rds">') : html.index('<h2 id="resources-heading">')]
    assert "RDS databases (5)" in section and "Not applied: its rehearsal failed" in section
    assert "Aurora DB cluster copy" in section and "Multi-AZ: brief failover" in section
    # The resources table names a database's wave as an RDS wave; its CSV keeps the number.
    row = html[html.index('<code class="id">orders-main</code>') :]
    row = row[: row.index("</tr>")]
    assert f"RDS wave {waves['orders-main']}" in row
    assert f'data-csv="{waves["orders-main"]}"' in row


def test_the_databases_count_under_their_rds_waves_not_the_ec2_waves() -> None:
    report = _report()
    expected: dict[str, dict[str, int]] = {}
    for db in report["install"]["rds"]["databases"]:
        label = pages.rds_wave_label(int(db["wave"]))
        expected.setdefault(label, {}).setdefault(db["verdict"], 0)
        expected[label][db["verdict"]] += 1
    rows = pages.verdicts_by_wave(report)
    assert rows[:-1] == sorted(expected.items(), key=lambda item: int(item[0].split()[-1]))
    assert rows[-1] == ("Not rolled out", {"ALREADY_COMPLIANT": 2})  # ledger-1 and quiet-db: nothing planned
    assert not any(label.startswith("Wave ") for label, _ in rows)


def test_ec2_waves_come_first_then_the_rds_waves() -> None:
    resources = [
        {"wave": 2, "resource_type": "rds", "verdict": "MAINTENANCE_APPLIED"},
        {"wave": 1, "resource_type": "ec2", "verdict": "PATCHED"},
        {"wave": 10, "resource_type": "rds", "verdict": "FAILED"},
        {"wave": 1, "resource_type": "rds", "verdict": "MAINTENANCE_APPLIED"},
    ]
    assert [label for label, _ in pages.verdicts_by_wave({"resources": resources})] == [
        pages.wave_label(1),
        "RDS wave 1",
        "RDS wave 2",
        "RDS wave 10",
    ]
