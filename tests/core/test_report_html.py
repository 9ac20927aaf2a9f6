"""The HTML report: self-contained, charts titled, incomplete parts and halts prominent, every text escaped."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from patchcycle.core.kpis import compute_kpis
from patchcycle.core.report_evidence import inspection_section
from patchcycle.core.report_html import (
    REGION_CHART_TITLE,
    SEVERITY_CHART_TITLE,
    bar_chart,
    compliance_before_after,
    failure_causes,
    kpi_rows,
    minutes,
    percent,
    render_html,
    stacked_bar_chart,
    verdict_label,
)
from tests.core.test_report import install_report, sample_report

EVIL = '<script>alert("pwned")</script>'


def test_html_has_both_charts_and_the_resources() -> None:
    report = sample_report()
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert f"<h3>{SEVERITY_CHART_TITLE}</h3>" in page
    assert f"<h3>{REGION_CHART_TITLE}</h3>" in page
    assert page.count("<svg") >= 2
    for resource in report["resources"]:
        assert resource["resource_id"] in page


def test_html_escapes_a_malicious_tag_value() -> None:
    page = render_html(sample_report(name_of_ok=EVIL))
    assert EVIL not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert "<script" not in page


def test_html_is_self_contained() -> None:
    page = render_html(sample_report())
    for external in ("<script", "<link", "src=", "@import", "url("):
        assert external not in page


def test_incomplete_parts_are_shown_prominently() -> None:
    report = sample_report()
    report["incomplete"] = [{"aws_conn_id": "aws_prod", "region": "ap-south-1", "stage": "inventory", "error": EVIL}]
    page = render_html(report)
    banner = page.index('class="banner bad" id="incomplete"')
    assert banner < page.index(f"<h3>{SEVERITY_CHART_TITLE}</h3>")  # before any number
    assert "INCOMPLETE: 1 part of the fleet could not be read" in page and "ap-south-1" in page
    assert "<th>Connection</th>" in page and "aws_conn_id" not in page  # columns in words
    assert EVIL not in page
    report["incomplete"] = []
    assert 'id="incomplete"' not in render_html(report)


def test_broken_accounting_is_flagged() -> None:
    page = render_html(sample_report(drop="i-nodata"))
    assert "Accounting FAILED" in page and "i-nodata" in page
    assert "Accounting holds" in render_html(sample_report())


def test_bar_chart_scales_to_the_largest_value() -> None:
    svg = bar_chart("t", [("a", 10), ("b", 5)])
    assert 'width="420.0"' in svg and 'width="210.0"' in svg
    assert "no data" in bar_chart("empty", [])


def _header_cells(page: str, table_after: str) -> list[str]:
    """The header cells of the first table after `table_after`."""
    start = page.index("<thead>", page.index(table_after))
    head = page[start : page.index("</thead>", start)]
    return [cell.split("</th>")[0] for cell in head.split("<th>")[1:]]


def test_install_sections_come_before_the_resources() -> None:
    report = install_report()
    page = render_html(report)
    resources = page.index("<h2>Resources (")
    for section in ("<h2>Staging</h2>", "<h2>Approval</h2>", "<h2>Waves (2)</h2>"):
        assert page.index(section) < resources, section
    install = report["install"]
    assert install["staging"]["stacks"][0]["stack_name"] in page
    assert install["staging"]["stacks"][0]["deleted_at"] == "2026-11-20T03:20:00Z"
    # Times read to the second, in UTC; the date and the time each kept on one line.
    assert 'yes, <span class="id">2026-11-20</span> <span class="id">03:20:00 UTC</span>' in page
    for row in install["staging"]["instances"]:
        assert row["instance_id"] in page
    assert 'id="staging"' in page and "Staging FAILED: 1 of 2 staging instances passed" in page
    assert "<td>1 of 1</td><td>Success / Failed</td>" in page  # install / health check side by side
    assert install["approval"]["at"] == "2026-11-20T03:30:00Z"
    assert install["approval"]["by"] in page and "<td>At</td><td>2026-11-20 03:30:00 UTC</td>" in page
    assert "Wave" in _header_cells(page, "<h2>Resources (")


def test_halted_banner_only_when_halted() -> None:
    assert 'id="halted"' not in render_html(install_report(halted=False))
    page = render_html(install_report(halted=True))
    banner = page.index('class="banner bad" id="halted"')
    assert page.index("<h2>Waves (2)</h2>") < banner < page.index("<h2>Resources (")
    assert "HALTED: halted after wave 1: 1 of 1 failed, more than the 0 allowed by halt_threshold 0" in page


def test_rollback_section_says_what_was_rolled_back_and_lists_the_failures() -> None:
    report = install_report(halted=True)
    page = render_html(report)
    section = page[page.index('<h2 id="rollback">') : page.index("<h2>Resources (")]
    assert (
        "Pre-patch snapshots: taken before each install, kept 7 days · rolls back: instances whose install or "
        "validation failed · change calendar: none · health alarms: none"
    ) in section
    assert "2 instances snapshotted; 0 validated; 1 rolled back; 0 expired snapshots deleted" in section
    assert "<h3>Restores</h3>" in section and "root volume restored from snap-1" in section
    assert "<td>rolled back</td>" in section and "rolled_back" not in section
    assert "<h3>Failed validations</h3>" not in section  # none failed
    assert "<h3>Failed snapshots" not in section and "snap-2" not in section  # completed ones: in the resources
    assert "<h3>Restores</h3>" not in render_html(install_report(halted=False))
    rollback = report["install"]["rollback"]
    rollback["snapshots"][0].update(status="failed", snapshot_ids=[], detail="Failed at step waitForSnapshots: error")
    rollback["summary"].update(snapshot_failures=1, rollback_failures=1)
    section = render_html(report)
    assert "2 instances snapshotted (1 failed)" in section and "1 rolled back (1 could not be restored)" in section
    assert "<h3>Failed snapshots (not patched)</h3>" in section and "Failed at step waitForSnapshots" in section


def test_html_escapes_a_malicious_install_reason() -> None:
    page = render_html(install_report(reason=EVIL))
    assert EVIL not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert "<script" not in page


def test_scan_page_has_no_install_sections_and_no_wave_column() -> None:
    page = render_html(sample_report())
    for section in ("<h2>Staging</h2>", "<h2>Approval</h2>", "<h2>Waves", 'id="halted"'):
        assert section not in page
    assert "Wave" not in _header_cells(page, "<h2>Resources (")


def test_inspection_config_and_outcome_sections() -> None:
    report = install_report()
    report["inspection"] = {
        "cves": [
            {"resource_id": "i-1", "cve_id": "CVE-2026-1", "status": "STILL_ACTIVE", "reason": EVIL},
            {"resource_id": "i-2", "cve_id": "CVE-2026-2", "status": "REMEDIATED", "reason": ""},
            {"resource_id": "i-2", "cve_id": "CVE-2026-1", "status": "REMEDIATED", "reason": "", "patch_ids": "KB1"},
        ],
        "residual": [{"resource_id": "i-1", "cve_id": "CVE-2026-9", "severity": "CRITICAL", "title": "t"}],
        "by_status": {"REMEDIATED": 2, "STILL_ACTIVE": 1},
        "residual_by_severity": {"CRITICAL": 1},
    }
    report["config"] = {
        "resources": [
            {"resource_id": "i-1", "compliance": "NON_COMPLIANT", "annotation": "2 missing"},
            {"resource_id": "i-2", "compliance": "COMPLIANT", "annotation": ""},
        ],
        "by_compliance": {"COMPLIANT": 1, "NON_COMPLIANT": 1},
        "targets": [
            {
                "region": "us-east-1",
                "status": "evaluated",
                "rule": {"name": "patchcycle-rule", "created": True},
                "evaluation": {"evaluated_at": "2026-11-27T06:00:00Z"},
                "message": "",
            }
        ],
    }
    report["outcome"] = {"ok": False, "problems": ["the install did not finish: the rollout halted after wave 1"]}
    page = render_html(report)
    inspection = page[page.index('id="inspection"') : page.index('id="config"')]
    assert "2 CVEs on 3 instance-CVE pairs: 2 remediated, 1 still active" in inspection
    # One row per CVE, the worst first: CVE-2026-1 is still active on one of its two instances.
    assert (
        '<td><span class="id">CVE-2026-1</span></td><td></td><td>KB1</td><td>1 still active, 1 remediated</td>'
        "<td>Still active</td>" in inspection
    )
    assert inspection.index(">CVE-2026-1<") < inspection.index(">CVE-2026-2<")
    # Only the pairs not proven closed are listed one by one.
    assert "<h3>Not proven closed (1)</h3>" in inspection and inspection.count(">i-2<") == 0
    assert "Residual critical and high findings (1)" in inspection and "CVE-2026-9" in inspection
    assert EVIL not in page
    config = page[page.index('id="config"') :]
    assert "1 compliant, 1 non-compliant" in config
    assert "Not compliant (1)" in config and "patchcycle-rule" in config and "2026-11-27 06:00:00 UTC" in config
    assert "{" not in config  # summaries are shown as fields, not as Python dicts
    assert page.index('id="outcome"') < page.index("<h2>Charts</h2>")  # before any number
    assert "rollout halted after wave 1" in page
    report["outcome"] = {"ok": True, "problems": []}
    report["inspection"] = None
    quiet = render_html(report)
    assert 'id="outcome"' not in quiet and 'id="inspection"' not in quiet


def test_kpis_are_labelled_for_people_with_the_failures_by_cause() -> None:
    page = render_html(install_report(halted=True))
    section = page[page.index('<h2 id="kpis">') : page.index("<h2>Charts")]
    assert "<td>Success rate (patched / attempted)</td><td>0.0%</td>" in section
    assert "<td>Installs attempted</td><td>1</td>" in section
    assert "failures_by_reason" not in section and "success_rate" not in section and "in_scope" not in section
    # Only the causes that occurred, each with its meaning.
    assert "<h3>Failures by cause (3)</h3>" in section
    assert (
        '<td>The install command ended other than Success</td><td><code class="id">INSTALL_FAILED</code></td><td>1</td>'
        in (section)
    )
    assert "INSTALL_TIMEOUT" not in section


def test_kpis_of_a_scan_leave_out_the_install_figures() -> None:
    section = render_html(sample_report())
    section = section[section.index('<h2 id="kpis">') : section.index("<h2>Charts")]
    assert "<td>Resources in scope</td>" in section and "Success rate" not in section and "Rolled back" not in section


def test_resource_ids_regions_and_cves_do_not_break_across_lines() -> None:
    page = render_html(install_report(halted=True))
    table = page[page.index("<h2>Resources (") :]
    assert '<code class="id">i-scanfail</code>' in table
    assert '<span class="id">us-east-1</span>' in table and '<span class="id">CVE-2026-0001</span>' in table
    assert '<code class="id">i-ok</code><br><span class="meta">web-1</span>' in table


def test_a_long_label_widens_the_chart_instead_of_running_off_its_left_edge() -> None:
    label = "Microsoft Windows Server 2022 Datacenter"
    chart = stacked_bar_chart(
        "By OS", [(label, {"COMPLIANT": 3}), ("Amazon Linux", {"COMPLIANT": 1})], ["COMPLIANT"], {}
    )
    x = float(re.search(r'<text x="(\d+)"[^>]*text-anchor="end"[^>]*>' + label, chart).group(1))  # type: ignore[union-attr]
    assert x >= 7 * len(label)  # room for every character to the left of its right-aligned end
    width = int(re.search(r'<svg [^>]*width="(\d+)"', chart).group(1))  # type: ignore[union-attr]
    assert width > 220 + 420 + 60  # the label column grew; the bars kept their length
    legend = stacked_bar_chart("By region", [("us-east-1", {"NON_COMPLIANT": 1})], ["NON_COMPLIANT"], {})
    assert "</i>Non-compliant</span>" in legend and "NON_COMPLIANT</span>" not in legend  # words in the legend
    short = bar_chart("By verdict", [("PATCHED", 2)])
    assert 'width="700"' in short  # short labels keep the usual width


def test_rates_are_percentages_with_one_decimal_and_durations_minutes() -> None:
    assert [percent(v) for v in (98.91304347826087, 100.0, 0.0, None)] == ["98.9%", "100.0%", "0.0%", "n/a"]
    assert [minutes(s) for s in (239.6, 45, 2220, 7500)] == ["4.0 min", "0.8 min", "37 min", "125 min (2 h 5 min)"]


def test_kpi_rows_are_words_and_numbers_people_read() -> None:
    block = compute_kpis(install_report(halted=False))["fleet"]
    block = {
        **block,
        "attempted": 92,
        "patched": 91,
        "success_rate": 100.0 * 91 / 92,
        "time_to_patch": {
            "count": 91,
            "min_seconds": 239.6,
            "max_seconds": 901.0,
            "mean_seconds": 480.0,
            "samples": [[239.6, 9], [901.0, 82]],
        },
    }
    rows = dict(kpi_rows(block))
    assert rows["Success rate (patched / attempted)"] == "98.9%"
    assert rows["Installs attempted"] == "92"
    assert rows["Time to patch (run start to wave end)"] == "8.0 min on average, 4.0 min to 15 min, over 91 instances"
    text = " ".join(f"{label} {value}" for label, value in kpi_rows(block))
    for raw in ("success_rate", "samples", "[[", "239.6", "failures_by_reason", "98.913"):
        assert raw not in text, raw
    halted = compute_kpis(install_report(halted=True))["fleet"]
    assert failure_causes(halted)[0][1:] == ("INSTALL_FAILED", 1)
    assert all(not meaning.isupper() for meaning, _, _ in failure_causes(halted))


def test_verdicts_read_as_words() -> None:
    assert verdict_label("PATCHED_PENDING_REBOOT") == "Patched, pending reboot"
    assert verdict_label("SKIPPED_HALTED") == "Skipped: halted"
    assert verdict_label("NON_COMPLIANT") == "Non-compliant"
    assert verdict_label("AWS_MANAGED") == "AWS-managed" and verdict_label("ROLLBACK_FAILED") == "Rollback failed"
    page = render_html(install_report(halted=True))
    assert ">Skipped: halted</span>" in page and 'title="SKIPPED_HALTED"' in page


INSPECTED = (("CVE-2026-0001", "REMEDIATED"), ("CVE-2026-0002", "REMEDIATED"), ("CVE-2026-0003", "STILL_ACTIVE"))


def _installed_report() -> dict[str, Any]:
    """The install report with the patched instances' patch state as verify read it after the install, and
    Inspector's verdict on their CVEs."""
    report = install_report(halted=False)
    for entry in report["resources"]:
        if entry["resource_id"] in ("i-missing", "i-reboot"):
            state = entry["patch_state"]
            state.update(missing=0, failed=0, critical_non_compliant=0, security_non_compliant=0)
            state["installed"] += len(entry["missing_patches"])
    cves = pd.DataFrame(
        [
            {"account_id": "111111111111", "region": "us-east-1", "resource_id": "i-missing", "cve_id": cve}
            | {"status": status}
            for cve, status in INSPECTED
        ]
    )
    report["inspection"] = inspection_section(cves, None)
    return report


def test_compliance_before_and_after_side_by_side() -> None:
    report = _installed_report()
    ec2 = [r for r in report["resources"] if r["resource_type"] == "ec2"]
    before_missing = sum(len(r["missing_patches"]) for r in ec2)
    rows = {label: (before, after) for label, before, after in compliance_before_after(report)}
    assert rows["Missing patches"] == (str(before_missing), "0")
    assert before_missing == 5  # the scan's count, no longer read as the current state
    assert rows["... of which critical"] == ("1", "0")
    assert rows["Distinct CVEs those patches fix"] == (
        "3",
        "2 closed on every instance; 1 still open on some (1 of 3 instance-CVE pairs)",
    )
    before, after = rows["EC2 instances compliant"]
    assert before.split(" of ")[1] == after.split(" of ")[1].split(" (")[0]
    assert int(after.split(" of ")[0]) == int(before.split(" of ")[0]) + 2  # the two patched instances
    page = render_html(report)
    section = page[page.index('<h2 id="compliance">') : page.index('<h2 id="kpis">')]
    assert "<th>Before the run (the scan)</th><th>After the run (verify, Inspector, Config)</th>" in section
    assert f"<td>Missing patches</td><td>{before_missing}</td><td>0</td>" in section
    scan = render_html(sample_report())
    assert "Compliance found by the scan" in scan and "After the run" not in scan
