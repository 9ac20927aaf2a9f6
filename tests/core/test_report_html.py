"""The HTML report: self-contained, charts titled, incomplete parts prominent, every text escaped."""

from __future__ import annotations

from patchcycle.core.report_html import REGION_CHART_TITLE, SEVERITY_CHART_TITLE, bar_chart, render_html
from tests.core.test_report import sample_report

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
    assert "INCOMPLETE: 1 part(s)" in page and "ap-south-1" in page
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
