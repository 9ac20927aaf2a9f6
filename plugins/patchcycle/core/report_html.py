"""The run report as one self-contained HTML page: inline CSS and SVG charts, no scripts, no CDN.

Every piece of text from the report (tag values, reasons, errors) is escaped with html.escape:
tag values are user input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any, Final

COMPLIANCE_COLORS: Final[Mapping[str, str]] = {
    "COMPLIANT": "#2e7d32",
    "NON_COMPLIANT": "#c62828",
    "UNKNOWN": "#f9a825",
    "NOT_APPLICABLE": "#9e9e9e",
}
SEVERITY_ORDER: Final = ("Critical", "High", "Important", "Medium", "Moderate", "Low", "Informational", "Unspecified")
SEVERITY_COLORS: Final[Mapping[str, str]] = {
    "Critical": "#b71c1c",
    "High": "#e65100",
    "Important": "#e65100",
    "Medium": "#f9a825",
    "Moderate": "#f9a825",
    "Low": "#1565c0",
}
DEFAULT_COLOR: Final = "#607d8b"
SEVERITY_CHART_TITLE: Final = "Missing patches by severity"
REGION_CHART_TITLE: Final = "Compliance by region"
OS_CHART_TITLE: Final = "Compliance by operating system (EC2)"
VERDICT_CHART_TITLE: Final = "Verdicts"
MAX_CVES_SHOWN: Final = 5

_LABEL_WIDTH, _BAR_WIDTH, _ROW_HEIGHT, _VALUE_WIDTH = 220, 420, 26, 60

_CSS: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#212121;background:#fafafa}
h1{margin-bottom:.2rem} .meta{color:#616161;margin-top:0}
.banner{padding:1rem 1.2rem;border-radius:6px;margin:1rem 0;font-weight:600}
.banner.bad{background:#ffebee;border:3px solid #c62828;color:#b71c1c}
.banner.good{background:#e8f5e9;border:1px solid #2e7d32;color:#1b5e20}
.banner table{font-weight:normal;margin-top:.6rem;background:#fff}
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:.8rem 1.2rem;min-width:9rem}
.card .n{font-size:1.8rem;font-weight:700}
.charts{display:flex;gap:2rem;flex-wrap:wrap}
.chart{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:.5rem 1rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #e0e0e0;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eceff1} tr:nth-child(even) td{background:#f5f5f5}
.badge{display:inline-block;padding:.1rem .4rem;border-radius:4px;color:#fff;font-size:.8rem;white-space:nowrap}
.legend span{display:inline-block;margin-right:1rem;font-size:.85rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
code{font-size:.85rem}
"""


def _svg_text(x: float, y: float, text: str, anchor: str = "start", fill: str = "#212121") -> str:
    return (
        f'<text x="{x:.0f}" y="{y:.0f}" text-anchor="{anchor}" fill="{fill}" font-size="12" '
        f'dominant-baseline="middle">{escape(text)}</text>'
    )


def _svg(title: str, height: int, body: list[str]) -> str:
    width = _LABEL_WIDTH + _BAR_WIDTH + _VALUE_WIDTH
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def bar_chart(title: str, bars: Sequence[tuple[str, int]], colors: Mapping[str, str] | None = None) -> str:
    """A titled horizontal bar chart (inline SVG) of (label, value) pairs."""
    if not bars:
        return _chart_box(title, _svg(title, _ROW_HEIGHT, [_svg_text(0, _ROW_HEIGHT / 2, "no data")]))
    top = max(value for _, value in bars) or 1
    body = []
    for row, (label, value) in enumerate(bars):
        y = row * _ROW_HEIGHT
        width = _BAR_WIDTH * value / top
        color = (colors or {}).get(label, DEFAULT_COLOR)
        body.append(_svg_text(_LABEL_WIDTH - 8, y + _ROW_HEIGHT / 2, label, anchor="end"))
        body.append(
            f'<rect x="{_LABEL_WIDTH}" y="{y + 4}" width="{width:.1f}" height="{_ROW_HEIGHT - 8}" fill="{color}">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
        body.append(_svg_text(_LABEL_WIDTH + width + 6, y + _ROW_HEIGHT / 2, str(value)))
    return _chart_box(title, _svg(title, len(bars) * _ROW_HEIGHT, body))


def stacked_bar_chart(
    title: str, rows: Sequence[tuple[str, Mapping[str, int]]], order: Sequence[str], colors: Mapping[str, str]
) -> str:
    """A titled horizontal stacked bar chart (inline SVG): one bar per row, one segment per key of `order`."""
    if not rows:
        return _chart_box(title, _svg(title, _ROW_HEIGHT, [_svg_text(0, _ROW_HEIGHT / 2, "no data")]))
    top = max(sum(parts.values()) for _, parts in rows) or 1
    body = []
    for row, (label, parts) in enumerate(rows):
        y, x = row * _ROW_HEIGHT, float(_LABEL_WIDTH)
        body.append(_svg_text(_LABEL_WIDTH - 8, y + _ROW_HEIGHT / 2, label, anchor="end"))
        for key in order:
            value = parts.get(key, 0)
            if not value:
                continue
            width = _BAR_WIDTH * value / top
            body.append(
                f'<rect x="{x:.1f}" y="{y + 4}" width="{width:.1f}" height="{_ROW_HEIGHT - 8}" '
                f'fill="{colors.get(key, DEFAULT_COLOR)}"><title>{escape(label)} {escape(key)}: {value}</title></rect>'
            )
            x += width
        body.append(_svg_text(x + 6, y + _ROW_HEIGHT / 2, str(sum(parts.values()))))
    legend = "".join(
        f'<span><i style="background:{colors.get(key, DEFAULT_COLOR)}"></i>{escape(key)}</span>' for key in order
    )
    return _chart_box(title, _svg(title, len(rows) * _ROW_HEIGHT, body) + f'<div class="legend">{legend}</div>')


def _chart_box(title: str, content: str) -> str:
    return f'<div class="chart"><h3>{escape(title)}</h3>{content}</div>'


def _severity_bars(by_severity: Mapping[str, int]) -> list[tuple[str, int]]:
    rank = {name: index for index, name in enumerate(SEVERITY_ORDER)}
    names = sorted(by_severity, key=lambda name: (rank.get(name, len(rank)), name))
    return [(name, int(by_severity[name])) for name in names]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _incomplete_section(parts: Sequence[Mapping[str, str]]) -> str:
    if not parts:
        return '<div class="banner good">Complete: every connection, region and stage was read.</div>'
    columns = sorted({key for part in parts for key in part}, key=lambda k: (k == "error", k))
    rows = [[escape(str(part.get(column, ""))) for column in columns] for part in parts]
    return (
        f'<div class="banner bad" id="incomplete">INCOMPLETE: {len(parts)} part(s) of the fleet could not be read; '
        f"the resources there are missing from every number below.{_table(columns, rows)}</div>"
    )


def _accounting_section(accounting: Mapping[str, Any]) -> str:
    text = f"in scope {accounting['in_scope']} = sum of verdicts {accounting['sum_of_verdicts']}"
    if accounting["ok"]:
        return f'<div class="banner good">Accounting holds: {escape(text)}.</div>'
    problems = "".join(f"<li>{escape(str(problem))}</li>" for problem in accounting.get("problems", []))
    return f'<div class="banner bad">Accounting FAILED ({escape(text)} does not hold)<ul>{problems}</ul></div>'


def _cards(totals: Mapping[str, Any]) -> str:
    by_state = totals["by_compliance_state"]
    cards = [
        ("In scope", totals["resources_in_scope"]),
        ("Out of scope", totals["out_of_scope"]),
        ("Compliant", by_state.get("COMPLIANT", 0)),
        ("Non-compliant", by_state.get("NON_COMPLIANT", 0)),
        ("Unknown", by_state.get("UNKNOWN", 0)),
        ("AWS-managed", by_state.get("NOT_APPLICABLE", 0)),
        ("Missing patches", sum(totals["by_severity"].values())),
        ("Distinct CVEs", totals["cves"]["count"]),
    ]
    inner = "".join(f'<div class="card"><div class="n">{int(n)}</div>{escape(label)}</div>' for label, n in cards)
    return f'<div class="cards">{inner}</div>'


def _cves_cell(cve_ids: Sequence[str]) -> str:
    shown = ", ".join(escape(cve) for cve in cve_ids[:MAX_CVES_SHOWN])
    more = len(cve_ids) - MAX_CVES_SHOWN
    return shown + (f" (+{more} more)" if more > 0 else "")


def _resources_section(resources: Sequence[Mapping[str, Any]], with_waves: bool) -> str:
    headers = ["Resource", "Name", "Type", "Account", "Region", "Environment", "Responsibility"]
    headers += ["Wave"] if with_waves else []
    headers += ["Verdict", "Reason", "Missing", "CVEs"]
    rows = []
    for entry in resources:
        color = COMPLIANCE_COLORS.get(str(entry["compliance_state"]), DEFAULT_COLOR)
        wave = entry.get("wave")
        rows.append(
            [
                f"<code>{escape(str(entry['resource_id']))}</code>",
                escape(str(entry["name"])),
                escape(str(entry["resource_type"])),
                escape(str(entry["account_id"])),
                escape(str(entry["region"])),
                escape(str(entry["environment"])),
                escape(str(entry["responsibility"])),
                *([escape(str(wave)) if wave is not None else ""] if with_waves else []),
                f'<span class="badge" style="background:{color}">{escape(str(entry["verdict"]))}</span>',
                escape(str(entry["reason"])),
                str(len(entry["missing_patches"])),
                _cves_cell(list(entry["cve_ids"])),
            ]
        )
    return f"<h2>Resources ({len(resources)})</h2>{_table(headers, rows)}"


def _badge(passed: bool, yes: str = "PASSED", no: str = "FAILED") -> str:
    color = COMPLIANCE_COLORS["COMPLIANT"] if passed else COMPLIANCE_COLORS["NON_COMPLIANT"]
    return f'<span class="badge" style="background:{color}">{escape(yes if passed else no)}</span>'


def _done_at(done: bool, at: str) -> str:
    """E.g. "yes, 2026-11-20T03:05:00Z", "yes" (time unknown) or "no"."""
    return escape(f"yes, {at}" if done and at else "yes" if done else "no")


def _staging_section(staging: Mapping[str, Any], facts: str) -> str:
    summary = staging["summary"]
    counts = (
        f"{summary['passed']} of {summary['instances']} staging instance(s) passed, {summary['failed']} failed, "
        f"{summary['patches']} planned patch(es)"
    )
    headline = (
        f'<div class="banner {"good" if staging["passed"] else "bad"}" id="staging">'
        f"Staging {'passed' if staging['passed'] else 'FAILED'}: {escape(counts)}.</div>"
    )
    stack_rows = [
        [
            f"<code>{escape(str(stack['stack_name']))}</code>",
            escape(str(stack["account_id"])),
            escape(str(stack["region"])),
            _done_at(bool(stack["created"]), str(stack["created_at"])),
            _done_at(bool(stack["deleted"]), str(stack["deleted_at"])),
            escape(str(stack["status"])),
            escape(str(stack["error"])),
        ]
        for stack in staging["stacks"]
    ]
    stacks = _table(["Stack", "Account", "Region", "Created", "Deleted", "Status", "Error"], stack_rows)
    instance_rows = [
        [
            f"<code>{escape(str(row['instance_id']))}</code>",
            escape(str(row["profile_id"])),
            escape(str(row["account_id"])),
            escape(str(row["region"])),
            escape(str(row["platform_name"])),
            escape(str(row["patch_group"])),
            f"{int(row['installed'])} of {len(row['patch_ids'])}",
            escape(", ".join(str(patch) for patch in row["not_installed"])),
            escape(str(row["install_status"])),
            escape(str(row["health_status"])),
            _badge(bool(row["passed"])),
            escape(str(row["reason"])),
        ]
        for row in staging["instances"]
    ]
    headers = ["Instance", "Profile", "Account", "Region", "Platform", "Patch group", "Installed"]
    headers += ["Not installed", "Install", "Health check", "Result", "Reason"]
    return (
        f'<h2>Staging</h2><p class="meta">{escape(facts)}</p>{headline}<h3>Stacks ({len(stack_rows)})</h3>{stacks}'
        f"<h3>Staging instances ({len(instance_rows)})</h3>{_table(headers, instance_rows)}"
    )


def _approval_section(approval: Mapping[str, Any]) -> str:
    decision = str(approval["decision"]) or ("none (timed out)" if approval["timed_out"] else "none")
    rows = [
        ["Decision", escape(decision)],
        ["By", escape(str(approval["by"]))],
        ["At", escape(str(approval["at"]))],
        ["Timed out", "yes" if approval["timed_out"] else "no"],
        ["Mode", escape(str(approval["mode"]))],
        ["Reason", escape(str(approval["reason"]))],
    ]
    return f"<h2>Approval</h2>{_table(['Field', 'Value'], rows)}"


def _waves_section(install: Mapping[str, Any], facts: str) -> str:
    waves = list(install["waves"])
    halted_after = install["halted_after_wave"]
    banner = ""
    if halted_after is not None:
        halted = next((wave for wave in waves if wave["wave"] == halted_after), None)
        detail = (
            f": {halted['failed']} of {halted['sent']} failed, threshold {halted['threshold']} "
            f"({halted['allowed_failures']} allowed)"
            if halted is not None
            else ""
        )
        banner = (
            f'<div class="banner bad" id="halted">HALTED after wave {int(halted_after)}{escape(detail)}; '
            "the later waves never ran (their instances are SKIPPED_HALTED).</div>"
        )
    rows = [
        [
            str(int(wave["wave"])) + (" (canary)" if wave["wave"] == 1 else ""),
            str(int(wave["instances"])),
            str(int(wave["sent"])),
            str(int(wave["succeeded"])),
            str(int(wave["failed"])),
            escape(f"{wave['threshold']} ({wave['allowed_failures']} allowed)"),
            escape(str(wave["status"])),
            escape(str(wave["started_at"])),
            escape(str(wave["finished_at"])),
        ]
        for wave in waves
    ]
    headers = ["Wave", "Instances", "Sent", "Succeeded", "Failed", "Threshold", "Status", "Started", "Finished"]
    return f'<h2>Waves ({len(rows)})</h2><p class="meta">{escape(facts)}</p>{banner}{_table(headers, rows)}'


def _install_sections(install: Mapping[str, Any]) -> str:
    """Staging, approval and waves (install mode), each with the settings the run used for it."""
    settings = install["settings"]
    percentages = ", ".join(f"{int(share)}%" for share in settings["wave_percentages"])
    staging_facts = (
        f"{install['pinned_patches']} pinned patch(es) · staging cap {settings['staging_max_instances']} instance(s)"
    )
    wave_facts = (
        f"canary {settings['canary']} · then {percentages or 'no further waves'} · "
        f"halt threshold {settings['halt_threshold']} · reboot {settings['reboot_option']}"
    )
    return (
        _staging_section(install["staging"], staging_facts)
        + _approval_section(install["approval"])
        + _waves_section(install, wave_facts)
    )


def _outcome_section(outcome: Mapping[str, Any] | None) -> str:
    if outcome is None or outcome["ok"]:
        return ""
    problems = "".join(f"<li>{escape(str(problem))}</li>" for problem in outcome["problems"])
    return f'<div class="banner bad" id="outcome">The cycle did not run its course<ul>{problems}</ul></div>'


_CVE_HEADERS = ("Account", "Region", "Instance", "CVE", "Severity", "Status", "Reason", "Patches", "Last scanned")
_CVE_KEYS = (
    "account_id",
    "region",
    "resource_id",
    "cve_id",
    "severity",
    "status",
    "reason",
    "patch_ids",
    "last_scanned_at",
)
_RESIDUAL_HEADERS = ("Account", "Region", "Instance", "CVE", "Severity", "Title", "Fixed in", "First observed")
_RESIDUAL_KEYS = ("account_id", "region", "resource_id", "cve_id", "severity", "title", "fixed_in", "first_observed_at")


def _cells(row: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    return [escape(str(row.get(key, ""))) for key in keys]


def _inspection_section(inspection: Mapping[str, Any] | None) -> str:
    """Per-CVE remediation proof (Amazon Inspector) and the residual critical/high findings."""
    if inspection is None:
        return ""
    by_status = ", ".join(f"{escape(k)} {int(v)}" for k, v in inspection["by_status"].items()) or "no CVEs to prove"
    cve_rows = [_cells(row, _CVE_KEYS) for row in inspection["cves"]]
    residual_rows = [_cells(row, _RESIDUAL_KEYS) for row in inspection["residual"]]
    return (
        f'<h2 id="inspection">CVE remediation (Amazon Inspector)</h2><p class="meta">{by_status}</p>'
        f"{_table(_CVE_HEADERS, cve_rows)}"
        f"<h3>Residual critical and high findings ({len(residual_rows)})</h3>{_table(_RESIDUAL_HEADERS, residual_rows)}"
    )


def _config_section(config: Mapping[str, Any] | None) -> str:
    """AWS Config's patch-compliance rule: its evaluation per target and the non-compliant instances."""
    if config is None or (not config["targets"] and not config["resources"]):
        return ""
    counts = ", ".join(f"{escape(k)} {int(v)}" for k, v in config["by_compliance"].items()) or "no evaluations"
    columns = ["Region", "Status", "Rule", "Rule created", "Evaluated at", "Message"]
    targets = [
        [
            escape(str(value))
            for value in (
                target.get("region", ""),
                target.get("status", ""),
                (target.get("rule") or {}).get("name", ""),
                "yes" if (target.get("rule") or {}).get("created") else "no",
                (target.get("evaluation") or {}).get("evaluated_at", ""),
                target.get("message", ""),
            )
        ]
        for target in config["targets"]
    ]
    flagged = [
        _cells(row, ("account_id", "region", "resource_id", "compliance", "annotation"))
        for row in config["resources"]
        if row.get("compliance") != "COMPLIANT"
    ]
    return (
        f'<h2 id="config">AWS Config patch compliance</h2><p class="meta">{counts}</p>{_table(columns, targets)}'
        f"<h3>Not compliant ({len(flagged)})</h3>"
        f"{_table(['Account', 'Region', 'Instance', 'Compliance', 'Annotation'], flagged)}"
    )


def _kpi_rows(value: Any, prefix: str = "") -> list[list[str]]:
    """Nested KPI values flattened to (name, value) rows."""
    if isinstance(value, Mapping):
        return [
            row for key, item in value.items() for row in _kpi_rows(item, f"{prefix}{key}." if prefix or key else "")
        ]
    if isinstance(value, list):
        return [[escape(prefix.rstrip(".")), escape(", ".join(str(item) for item in value))]]
    return [[escape(prefix.rstrip(".")), escape("" if value is None else str(value))]]


def _kpis_section(kpis: Mapping[str, Any] | None) -> str:
    if not kpis:
        return ""
    fleet = kpis.get("fleet", kpis)
    return f'<h2 id="kpis">KPIs</h2>{_table(["KPI", "Value"], _kpi_rows(fleet))}'


def render_html(report: Mapping[str, Any]) -> str:
    """The report (report.REPORT_SCHEMA) as a self-contained HTML page."""
    totals = report["totals"]
    states = list(COMPLIANCE_COLORS)
    charts = [
        bar_chart(SEVERITY_CHART_TITLE, _severity_bars(totals["by_severity"]), SEVERITY_COLORS),
        stacked_bar_chart(REGION_CHART_TITLE, list(totals["by_region"].items()), states, COMPLIANCE_COLORS),
        bar_chart(VERDICT_CHART_TITLE, [(str(k), int(v)) for k, v in totals["by_verdict"].items()]),
        stacked_bar_chart(OS_CHART_TITLE, list(totals["by_os"].items()), states, COMPLIANCE_COLORS),
    ]
    meanings = report.get("verdict_meanings", {})
    legend = _table(["Verdict", "Meaning"], [[escape(k), escape(v)] for k, v in meanings.items()]) if meanings else ""
    title = f"Patch cycle report: {report['run_id']}"
    install = report.get("install")
    install_html = _install_sections(install) if install is not None else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">mode {escape(str(report["mode"]))} · generated {escape(str(report["generated_at"]))}</p>'
        f"{_outcome_section(report.get('outcome'))}"
        f"{_incomplete_section(report['incomplete'])}{_accounting_section(report['accounting'])}"
        f"{_cards(totals)}{_kpis_section(report.get('kpis'))}"
        f'<h2>Charts</h2><div class="charts">{"".join(charts)}</div>'
        f"<h2>Verdict meanings</h2>{legend}{install_html}"
        f"{_inspection_section(report.get('inspection'))}{_config_section(report.get('config'))}"
        f"{_resources_section(report['resources'], with_waves=install is not None)}</body></html>"
    )
