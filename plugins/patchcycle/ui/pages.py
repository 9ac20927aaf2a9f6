"""The plugin's pages as HTML: a patch_cycle run's page and the fleet page.

Pure: what a page shows comes in as plain data (the report document, the staging table, the approval records,
the drift report) and goes out as one self-contained page. The charts are the report's own (inline SVG from
core/report_html); the only script sorts, filters and downloads the resources table. Every link is relative,
so the pages work under any prefix a reverse proxy puts in front of the API server. Every piece of text from
the run (tag values, reasons, errors) is escaped.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any, Final
from urllib.parse import quote

import pandas as pd

from patchcycle.core.report_html import (
    _CSS as REPORT_CSS,
)
from patchcycle.core.report_html import (
    COMPLIANCE_COLORS,
    DEFAULT_COLOR,
    auto_scaling_section,
    bar_chart,
    rds_section,
    stacked_bar_chart,
)
from patchcycle.core.verdicts import VERDICTS, ComplianceState, ReasonCode, Verdict

COMPLIANCE_BEFORE_AFTER_TITLE: Final = "Compliance before and after the run"
VERDICTS_BY_WAVE_TITLE: Final = "Verdicts by wave"
FAILURES_BY_CAUSE_TITLE: Final = "Failures by cause"
CVE_TITLE: Final = "CVE remediation (Amazon Inspector)"
FLEET_COMPLIANCE_TITLE: Final = "Compliance after each cycle"
FLEET_SUCCESS_TITLE: Final = "Install success rate per cycle (%)"
DRIFT_TITLE: Final = "Drift since the last cycle, by kind"

# The verdicts' colors: green when the resource ends compliant, amber pending, red failed, grey skipped.
VERDICT_COLORS: Final[Mapping[str, str]] = {
    Verdict.ALREADY_COMPLIANT: "#1b5e20",
    Verdict.PATCHED: "#43a047",
    Verdict.PATCHED_PENDING_REBOOT: "#9ccc65",
    Verdict.REPLACED: "#2e7d32",
    Verdict.MAINTENANCE_APPLIED: "#43a047",
    Verdict.MAINTENANCE_SCHEDULED: "#f9a825",
    Verdict.NON_COMPLIANT: "#c62828",
    Verdict.MAINTENANCE_PENDING: "#f9a825",
    Verdict.FAILED: "#c62828",
    Verdict.ROLLED_BACK: "#ef6c00",
    Verdict.ROLLBACK_FAILED: "#6a1b9a",
    Verdict.SCAN_FAILED: "#ad1457",
    Verdict.NO_DATA: "#f9a825",
    Verdict.AWS_MANAGED: "#9e9e9e",
    **{verdict: "#78909c" for verdict in Verdict if verdict.value.startswith("SKIPPED_")},
}
CVE_COLORS: Final[Mapping[str, str]] = {
    "Remediated": "#2e7d32",
    "Still active": "#c62828",
    "Not found": "#9e9e9e",
    "Unverified": "#f9a825",
}
# The resources table: (column key, header). The CSV download writes the same columns, filtered as shown.
RESOURCE_COLUMNS: Final = (
    ("resource_id", "Resource"),
    ("name", "Name"),
    ("resource_type", "Type"),
    ("account_id", "Account"),
    ("region", "Region"),
    ("environment", "Environment"),
    ("auto_scaling_group", "Auto Scaling group"),
    ("wave", "Wave"),
    ("verdict", "Verdict"),
    ("reason", "Reason"),
    ("missing", "Missing patches"),
    ("cves", "CVEs"),
)
STAGING_COLUMNS: Final = (
    ("instance_id", "Staging instance"),
    ("profile_id", "Profile"),
    ("account_id", "Account"),
    ("region", "Region"),
    ("platform_name", "Platform"),
    ("patch_group", "Patch group"),
    ("installed", "Installed"),
    ("install_status", "Install"),
    ("health_status", "Health check"),
    ("passed", "Result"),
    ("reason", "Reason"),
)

_PAGE_CSS: Final = (
    REPORT_CSS
    + """
body{margin:1.2rem}
h1{font-size:1.6rem;overflow-wrap:anywhere}
.scroll{overflow-x:auto}
#resources{font-size:.85rem} #resources td,#resources th{padding:.25rem .35rem}
nav.links a{margin-right:1rem}
.chart svg{max-width:100%;height:auto}
.filters{display:flex;gap:.6rem;align-items:center;flex-wrap:wrap;margin:.6rem 0}
.filters input,.filters select{padding:.3rem .5rem;font-size:.9rem}
th.sortable{cursor:pointer} th.sortable::after{content:" \\2195";color:#9e9e9e}
th[aria-sort=ascending]::after{content:" \\2191";color:#212121}
th[aria-sort=descending]::after{content:" \\2193";color:#212121}
.muted{color:#616161}
.count td.n{text-align:right;font-variant-numeric:tabular-nums}
.button{display:inline-block;padding:.3rem .7rem;border:1px solid #90a4ae;border-radius:4px;background:#fff;
 color:#212121;text-decoration:none;cursor:pointer;font-size:.9rem}
"""
)

# Sorts (click a header), filters (text box, verdict list) and downloads (CSV of the rows shown) the table.
_TABLE_SCRIPT: Final = """
(function () {
  const table = document.getElementById("resources");
  if (!table) return;
  const body = table.tBodies[0], rows = Array.from(body.rows), text = document.getElementById("filter-text");
  const verdict = document.getElementById("filter-verdict"), shown = document.getElementById("shown");
  function visible() { return rows.filter(r => !r.hidden); }
  function apply() {
    const words = text.value.toLowerCase().split(/\\s+/).filter(Boolean), v = verdict.value;
    for (const r of rows) {
      const hay = r.textContent.toLowerCase();
      r.hidden = !(words.every(w => hay.includes(w)) && (!v || r.dataset.verdict === v));
    }
    shown.textContent = visible().length;
  }
  text.addEventListener("input", apply); verdict.addEventListener("change", apply);
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => th.addEventListener("click", () => {
    const down = th.getAttribute("aria-sort") === "ascending";
    for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", down ? "descending" : "ascending");
    const key = r => r.cells[i].dataset.sort ?? r.cells[i].textContent;
    const numeric = rows.every(r => key(r) === "" || !isNaN(Number(key(r))));
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      const c = numeric ? (Number(x) || 0) - (Number(y) || 0) : x.localeCompare(y);
      return down ? -c : c;
    });
    rows.forEach(r => body.appendChild(r));
  }));
  document.getElementById("download").addEventListener("click", () => {
    const cell = s => /[",\\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
    const head = Array.from(table.tHead.rows[0].cells).map(c => cell(c.dataset.key));
    const lines = [head.join(",")].concat(visible().map(r => Array.from(r.cells).map(
      c => cell(c.dataset.csv ?? c.textContent)).join(",")));
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([lines.join("\\n") + "\\n"], {type: "text/csv"}));
    link.download = table.dataset.filename; document.body.appendChild(link); link.click(); link.remove();
  });
})();
"""


def words(key: str) -> str:
    """A key as words: "PATCHED_PENDING_REBOOT" -> "Patched pending reboot", "NON_COMPLIANT" -> "Non-compliant"."""
    text = key.lower().replace("non_", "non-").replace("aws_", "AWS-").replace("_", " ")
    return text[:1].upper() + text[1:]


def percent(part: int, whole: int) -> str:
    return "n/a" if whole == 0 else f"{100 * part / whole:.0f}%"


def part(value: str) -> str:
    """One path segment, quoted as the plugin's URLs spell it (ui/urls.py)."""
    return quote(value, safe="")


@dataclass(frozen=True)
class ArtifactLink:
    """A run file the page links to: its label for people and its path relative to the run page."""

    label: str
    href: str


@dataclass(frozen=True)
class RunView:
    """What a run page shows, read through the run-artifact contract by the app."""

    dag_id: str
    run_id: str
    state: str  # the DAG run's state, as Airflow has it
    report: Mapping[str, Any] | None  # report.json, once the report task wrote it
    staging: pd.DataFrame | None  # every target's staging results (STAGING_RESULT_COLUMNS), None before staging
    approval_request: Mapping[str, Any] | None
    approval_decision: Mapping[str, Any] | None
    links: Sequence[ArtifactLink] = ()
    staging_links: Sequence[ArtifactLink] = ()
    fleet_href: str = ""


@dataclass(frozen=True)
class CycleSummary:
    """One cycle on the fleet page: its run, when, and its report (None while it has none)."""

    run_id: str
    state: str
    when: str  # "2026-12-07 13:05 UTC"
    href: str  # its run page, relative to the fleet page
    report: Mapping[str, Any] | None


@dataclass(frozen=True)
class FleetView:
    cycles: Sequence[CycleSummary]  # newest first
    drift: Mapping[str, Any] | None  # the latest patch_compliance_watch's drift.json
    drift_run_id: str = ""
    drift_link: ArtifactLink | None = None
    limit: int = 0
    notes: Sequence[str] = field(default_factory=tuple)


# ---- chart data (from the report document) ----


def compliance_before(resource: Mapping[str, Any]) -> str:
    """A resource's compliance state before the run: what the scan found (its missing patches), except where
    compliance cannot be told (unknown) or is AWS's (AWS-managed), which the run does not change."""
    after = str(resource["compliance_state"])
    if after in (ComplianceState.UNKNOWN, ComplianceState.NOT_APPLICABLE):
        return after
    if resource["missing_patches"] or resource["verdict"] == Verdict.MAINTENANCE_PENDING:
        return ComplianceState.NON_COMPLIANT.value
    return ComplianceState.COMPLIANT.value


def compliance_rows(report: Mapping[str, Any]) -> list[tuple[str, dict[str, int]]]:
    """(label, compliance state -> resources) before and after the run."""
    resources = report["resources"]
    before = Counter(compliance_before(resource) for resource in resources)
    after = Counter(str(resource["compliance_state"]) for resource in resources)
    return [("Before the run (scan)", dict(before)), ("After the run", dict(after))]


def wave_label(wave: int | None) -> str:
    if wave is None:
        return "Not rolled out"
    return "Wave 1 (canary)" if wave == 1 else f"Wave {wave}"


def rds_wave_label(wave: int) -> str:
    """An RDS database's wave: the RDS waves are their own sequence, beside the EC2 waves."""
    return f"RDS wave {wave}"


# The reason codes of an Auto Scaling instance its group's refresh (or its bake) decided: in no wave, yet rolled out.
_REFRESH_CODES: Final = frozenset(
    {
        ReasonCode.REPLACED,
        ReasonCode.REFRESH_ROLLED_BACK,
        ReasonCode.REFRESH_FAILED,
        ReasonCode.HALTED_BY_REFRESH,
        # A gate before a group's refresh: in no wave (an instance a wave's gate halted has its wave's number).
        ReasonCode.HALTED_BY_CALENDAR,
        ReasonCode.HALTED_BY_ALARM,
        ReasonCode.REFRESH_IRREVERSIBLE,
        ReasonCode.BAKE_FAILED,
    }
)
REFRESH_LABEL: Final = "Auto Scaling refresh"


def verdicts_by_wave(report: Mapping[str, Any]) -> list[tuple[str, dict[str, int]]]:
    """(wave label, verdict -> resources), the EC2 waves in order, then the RDS waves, then the Auto Scaling
    instances of the groups' refreshes, then the resources in no wave."""
    counts: dict[int | str | None, Counter[str]] = {}
    for resource in report["resources"]:
        wave = resource["wave"]
        if wave is None and resource.get("reason_code") in _REFRESH_CODES:
            wave = REFRESH_LABEL
        elif wave is not None and resource.get("resource_type") == "rds":
            wave = rds_wave_label(int(wave))
        counts.setdefault(wave, Counter())[str(resource["verdict"])] += 1
    waves = sorted(wave for wave in counts if isinstance(wave, int))
    rds = sorted((w for w in counts if isinstance(w, str) and w != REFRESH_LABEL), key=lambda w: int(w.split()[-1]))
    order: list[int | str | None] = [*waves, *rds, *(wave for wave in (REFRESH_LABEL, None) if wave in counts)]
    return [(wave if isinstance(wave, str) else wave_label(wave), dict(counts[wave])) for wave in order]


def failures_by_cause(report: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(cause in words, resources) of the KPIs' failures_by_reason, the causes that occurred, most first."""
    kpis = report.get("kpis") or {}
    failures = (kpis.get("fleet") or {}).get("failures_by_reason", {})
    found = [(words(code), int(n)) for code, n in failures.items() if n]
    return sorted(found, key=lambda item: (-item[1], item[0]))


def cve_rows(report: Mapping[str, Any]) -> list[tuple[str, int]] | None:
    """(status in words, (instance, CVE) pairs) from Amazon Inspector; None when the run did not inspect."""
    inspection = report.get("inspection")
    if inspection is None:
        return None
    return [(words(status), int(n)) for status, n in inspection["by_status"].items()]


def _verdict_order(report: Mapping[str, Any]) -> list[str]:
    present = {str(resource["verdict"]) for resource in report["resources"]}
    return [verdict.value for verdict in Verdict if verdict.value in present]


def _colors_in_words(colors: Mapping[str, str]) -> dict[str, str]:
    return {str(key): color for key, color in colors.items()}


def run_charts(report: Mapping[str, Any]) -> list[str]:
    """The run page's charts, each an inline SVG in a titled box."""
    states = list(COMPLIANCE_COLORS)
    charts = [
        stacked_bar_chart(COMPLIANCE_BEFORE_AFTER_TITLE, compliance_rows(report), states, COMPLIANCE_COLORS),
        stacked_bar_chart(
            VERDICTS_BY_WAVE_TITLE, verdicts_by_wave(report), _verdict_order(report), _colors_in_words(VERDICT_COLORS)
        ),
    ]
    failures = failures_by_cause(report)
    if failures:
        charts.append(bar_chart(FAILURES_BY_CAUSE_TITLE, failures, dict.fromkeys((k for k, _ in failures), "#c62828")))
    else:
        charts.append(
            f'<div class="chart"><h3>{FAILURES_BY_CAUSE_TITLE}</h3><p class="muted">No resource failed.</p></div>'
        )
    cves = cve_rows(report)
    if cves is not None:
        charts.append(bar_chart(CVE_TITLE, cves, CVE_COLORS))
    return charts


# ---- page pieces ----


def _page(title: str, body: str, script: str = "") -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_PAGE_CSS}</style></head><body>{body}"
        + (f"<script>{script}</script>" if script else "")
        + "</body></html>"
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], attributes: str = "") -> str:
    """A table whose cells are already-escaped HTML."""
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _links(links: Sequence[ArtifactLink]) -> str:
    return "".join(f'<a href="{escape(link.href)}">{escape(link.label)}</a>' for link in links)


def _badge(text: str, color: str) -> str:
    return f'<span class="badge" style="background:{color}">{escape(text)}</span>'


def _outcome_banner(view: RunView) -> str:
    """Where the run stands: its outcome when the report is written, else how far it got."""
    report = view.report
    if report is None:
        waiting = view.approval_request is not None and view.approval_decision is None
        what = "it waits at the approval gate" if waiting else f"the run is {view.state or 'not started'}"
        return (
            f'<div class="banner bad" id="outcome">No report yet: {escape(what)}. '
            "The charts and the resources appear once the report task has run.</div>"
        )
    totals = report["totals"]
    in_scope = int(totals["resources_in_scope"])
    compliant = int(totals["by_compliance_state"].get(ComplianceState.COMPLIANT, 0))
    fleet = (report.get("kpis") or {}).get("fleet") or {}
    facts = [f"{in_scope} resources in scope, {percent(compliant, in_scope)} compliant after the run"]
    if fleet.get("attempted"):
        rate = percent(int(fleet["patched"]), int(fleet["attempted"]))
        facts.append(f"{fleet['patched']} of {fleet['attempted']} installs succeeded ({rate})")
    outcome, accounting = report["outcome"], report["accounting"]
    problems = list(outcome["problems"]) + list(accounting["problems"])
    incomplete = report["incomplete"]
    good = outcome["ok"] and accounting["ok"] and not incomplete
    head = "The cycle ran its course" if outcome["ok"] else "The cycle did not run its course"
    if incomplete:
        problems.append(f"{len(incomplete)} part(s) of the fleet could not be read: their resources are missing here")
    items = "".join(f"<li>{escape(str(problem))}</li>" for problem in problems)
    return (
        f'<div class="banner {"good" if good else "bad"}" id="outcome">{escape(head)}: {escape("; ".join(facts))}.'
        + (f"<ul>{items}</ul>" if items else "")
        + "</div>"
    )


def _verdict_table(report: Mapping[str, Any]) -> str:
    counts = report["totals"]["by_verdict"]
    rows = [
        f"<tr><td>{_badge(words(verdict), VERDICT_COLORS.get(verdict, DEFAULT_COLOR))}</td>"
        f'<td class="n" data-verdict="{escape(verdict)}">{int(n)}</td>'
        f"<td>{escape(VERDICTS[Verdict(verdict)].meaning)}</td></tr>"
        for verdict, n in sorted(counts.items(), key=lambda item: -int(item[1]))
        if n
    ]
    return (
        '<table class="count" id="verdicts"><thead><tr><th>Verdict</th><th>Resources</th><th>Meaning</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _kpi_cards(report: Mapping[str, Any]) -> str:
    totals = report["totals"]
    in_scope = int(totals["resources_in_scope"])
    states = totals["by_compliance_state"]
    fleet = (report.get("kpis") or {}).get("fleet") or {}
    cards = [
        ("Resources in scope", str(in_scope)),
        ("Compliant after the run", percent(int(states.get(ComplianceState.COMPLIANT, 0)), in_scope)),
    ]
    if fleet.get("attempted"):
        cards.append(("Install success rate", percent(int(fleet["patched"]), int(fleet["attempted"]))))
        cards.append(("Patched", str(fleet["patched"])))
    cards.append(("Failures (any cause)", str(sum(int(n) for n in fleet.get("failures_by_reason", {}).values()))))
    inner = "".join(f'<div class="card"><div class="n">{escape(n)}</div>{escape(label)}</div>' for label, n in cards)
    return f'<div class="cards">{inner}</div>'


def _staging_section(view: RunView) -> str:
    staging = view.staging
    if staging is None:
        return '<h2 id="staging">Staging</h2><p class="muted">Not staged (scan mode, or staging has not run yet).</p>'
    passed = int(staging["passed"].sum()) if len(staging) else 0
    banner_class = "good" if len(staging) and passed == len(staging) else "bad"
    headline = f"{passed} of {len(staging)} staging instance(s) passed"
    rows = []
    for record in staging.to_dict("records"):
        planned = [patch for patch in str(record["patch_ids"]).split(";") if patch]
        cells = {key: escape(str(record.get(key, ""))) for key, _ in STAGING_COLUMNS}
        cells["instance_id"] = f'<code class="id">{cells["instance_id"]}</code>'
        cells["region"] = f'<span class="id">{cells["region"]}</span>'
        cells["installed"] = f"{int(record['installed'])} of {len(planned)}"
        good = bool(record["passed"])
        cells["passed"] = _badge("Passed" if good else "Failed", "#2e7d32" if good else "#c62828")
        rows.append([cells[key] for key, _ in STAGING_COLUMNS])
    links = f'<p class="links">Staging results: {_links(view.staging_links)}</p>' if view.staging_links else ""
    return (
        f'<h2 id="staging">Staging</h2><div class="banner {banner_class}">{escape(headline)}.</div>'
        + _table([header for _, header in STAGING_COLUMNS], rows, ' id="staging-table"')
        + links
    )


def _approval_section(view: RunView) -> str:
    decision, request = view.approval_decision, view.approval_request
    if decision is None and request is None:
        return '<h2 id="approval">Approval</h2><p class="muted">No approval: scan mode, or the gate has not opened.</p>'
    if decision is None:
        return (
            '<h2 id="approval">Approval</h2><div class="banner bad">Waiting for a person to approve or reject '
            "(open the approve_production task's Required Actions in the grid).</div>"
        )
    answer = {"APPROVE": "Approved", "REJECT": "Rejected"}.get(str(decision["decision"]), str(decision["decision"]))
    if decision.get("timed_out"):
        answer += " (no answer in time)"
    rows = [
        ["Decision", escape(answer)],
        ["By", escape(str(decision.get("by") or ("the auto policy" if decision["mode"] == "auto" else "")))],
        ["At", escape(str(decision.get("at", "")))],
        ["Approval mode", escape(str(decision["mode"]))],
        ["Staging had passed", "yes" if decision.get("staging_passed") else "no"],
    ]
    return '<h2 id="approval">Approval</h2>' + _table(["Field", "Value"], rows, ' id="approval-record"')


def _resource_cells(resource: Mapping[str, Any]) -> dict[str, tuple[str, str, str]]:
    """column -> (cell HTML, CSV value, sort key)."""
    cves = [str(cve) for cve in resource["cve_ids"]]
    missing = len(resource["missing_patches"])
    wave = resource["wave"]
    verdict = str(resource["verdict"])
    cells: dict[str, tuple[str, str, str]] = {}
    for key in ("resource_id", "name", "resource_type", "account_id", "region", "environment", "reason"):
        value = str(resource[key])
        html = escape(value)
        if key == "resource_id":
            html = f'<code class="id">{html}</code>'
        elif key in ("account_id", "region"):
            html = f'<span class="id">{html}</span>'
        cells[key] = (html, value, value)
    cells["resource_type"] = (escape(str(resource["resource_type"]).upper()), str(resource["resource_type"]), "")
    group = str(resource.get("auto_scaling_group", ""))  # reports before the immutable path have none
    cells["auto_scaling_group"] = (f'<span class="id">{escape(group)}</span>' if group else "", group, group)
    label = rds_wave_label(wave) if wave and resource["resource_type"] == "rds" else wave_label(wave) if wave else ""
    wave_html = f'<span class="id">{escape(label)}</span>' if label else ""
    cells["wave"] = (wave_html, "" if wave is None else str(wave), str(wave or ""))
    color = VERDICT_COLORS.get(verdict, DEFAULT_COLOR)
    cells["verdict"] = (_badge(words(verdict), color), verdict, verdict)
    cells["missing"] = (str(missing), str(missing), str(missing))
    shown = "<br>".join(f'<span class="id">{escape(cve)}</span>' for cve in cves[:2])
    shown += f"<br>(+{len(cves) - 2} more)" if len(cves) > 2 else ""
    cells["cves"] = (shown, ";".join(cves), str(len(cves)))
    return cells


def _resources_section(view: RunView, report: Mapping[str, Any]) -> str:
    resources = report["resources"]
    head = "".join(f'<th class="sortable" data-key="{key}">{escape(header)}</th>' for key, header in RESOURCE_COLUMNS)
    body = []
    for resource in resources:
        cells = _resource_cells(resource)
        tds = "".join(
            f'<td data-csv="{escape(cells[key][1])}" data-sort="{escape(cells[key][2])}">{cells[key][0]}</td>'
            for key, _ in RESOURCE_COLUMNS
        )
        body.append(f'<tr data-verdict="{escape(str(resource["verdict"]))}">{tds}</tr>')
    options = "".join(
        f'<option value="{escape(verdict)}">{escape(words(verdict))}</option>' for verdict in _verdict_order(report)
    )
    filename = f"{view.dag_id}-{view.run_id}-resources.csv".replace(":", "_").replace("+", "_")
    return (
        f'<h2 id="resources-heading">Resources ({len(resources)})</h2>'
        '<div class="filters"><input id="filter-text" type="search" placeholder="Filter: id, name, reason ..." '
        'aria-label="Filter the resources" size="32">'
        f'<select id="filter-verdict" aria-label="Verdict"><option value="">Every verdict</option>{options}</select>'
        f'<span class="muted"><span id="shown">{len(resources)}</span> shown</span>'
        '<button class="button" id="download" type="button">Download CSV (rows shown)</button></div>'
        f'<div class="scroll"><table id="resources" data-filename="{escape(filename)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def run_page(view: RunView) -> str:
    """The run page of one patch_cycle run."""
    report = view.report
    title = f"Patch cycle run {view.run_id}"
    mode = f"{report['mode']} mode · " if report else ""
    nav = _links(view.links) + (f'<a href="{escape(view.fleet_href)}">Fleet page</a>' if view.fleet_href else "")
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(mode)}run state: {escape(view.state or "unknown")}</p>',
        f'<nav class="links">{nav}</nav>',
        _outcome_banner(view),
    ]
    if report is not None:
        parts += [
            _kpi_cards(report),
            '<h2 id="charts">Charts</h2><div class="charts">' + "".join(run_charts(report)) + "</div>",
            f'<h2 id="verdict-counts">Verdicts</h2>{_verdict_table(report)}',
        ]
    parts += [_staging_section(view), _approval_section(view)]
    if report is not None:
        groups = (report.get("install") or {}).get("auto_scaling_groups") or []
        parts.append(f'<div class="scroll">{auto_scaling_section(groups)}</div>' if groups else "")
        rds = rds_section((report.get("install") or {}).get("rds"))
        parts.append(f'<div class="scroll">{rds}</div>' if rds else "")
        parts.append(_resources_section(view, report))
    return _page(title, "".join(parts), _TABLE_SCRIPT if report is not None else "")


def not_a_cycle_page(dag_id: str, fleet_href: str) -> str:
    """What a run of another DAG shows in the run view's tab."""
    body = (
        f"<h1>Patch cycle</h1><p>This page shows patch_cycle runs; {escape(dag_id)} is another DAG.</p>"
        f'<p><a href="{escape(fleet_href)}">The fleet page</a> lists the cycles.</p>'
    )
    return _page("Patch cycle", body)


# ---- the fleet page ----


def _cycle_figures(report: Mapping[str, Any]) -> dict[str, Any]:
    totals = report["totals"]
    in_scope = int(totals["resources_in_scope"])
    compliant = int(totals["by_compliance_state"].get(ComplianceState.COMPLIANT, 0))
    fleet = (report.get("kpis") or {}).get("fleet") or {}
    attempted, patched = int(fleet.get("attempted", 0)), int(fleet.get("patched", 0))
    failed = sum(int(n) for n in fleet.get("failures_by_reason", {}).values())
    return {
        "mode": str(report["mode"]),
        "in_scope": in_scope,
        "compliant": compliant,
        "compliant_pct": percent(compliant, in_scope),
        "attempted": attempted,
        "patched": patched,
        "success": percent(patched, attempted) if attempted else "no installs",
        "success_value": round(100 * patched / attempted) if attempted else None,
        "failed": failed,
        "ok": bool(report["outcome"]["ok"]) and bool(report["accounting"]["ok"]) and not report["incomplete"],
    }


def fleet_trend(cycles: Sequence[CycleSummary]) -> list[tuple[str, dict[str, int]]]:
    """(cycle date, compliance state -> resources), oldest first, for the cycles with a report."""
    return [
        (cycle.when, {str(k): int(v) for k, v in cycle.report["totals"]["by_compliance_state"].items()})
        for cycle in reversed(cycles)
        if cycle.report is not None
    ]


def _drift_section(view: FleetView) -> str:
    drift = view.drift
    if drift is None:
        return (
            '<h2 id="drift">Drift</h2><p class="muted">No patch_compliance_watch run has written a drift report '
            "yet: unpaused, it runs daily and after every cycle.</p>"
        )
    summary = drift["summary"]
    meanings = drift.get("kind_meanings", {})
    bars = [(words(kind), int(n)) for kind, n in summary["by_kind"].items()]
    link = f" · {_links([view.drift_link])}" if view.drift_link else ""
    facts = (
        f"patch_compliance_watch run {view.drift_run_id}, generated {drift['generated_at']}, compared with cycle "
        f"{drift['cycle'].get('run_id', '') or 'none'}: {summary['instances_drifted']} of "
        f"{summary['instances_watched']} watched instance(s) drifted ({summary['drift']} drift(s))"
    )
    rows = [
        [
            escape(str(row["account_id"])),
            escape(str(row["region"])),
            f'<code class="id">{escape(str(row["resource_id"]))}</code>',
            escape(words(str(row["kind"]))),
            escape(str(row["subject"])),
            escape(str(row["detail"])),
        ]
        for row in drift["drift"][:50]
    ]
    legend = _table(["Kind", "Meaning"], [[escape(words(k)), escape(str(v))] for k, v in meanings.items()])
    more = f'<p class="muted">The first 50 of {len(drift["drift"])} shown.</p>' if len(drift["drift"]) > 50 else ""
    headers = ["Account", "Region", "Instance", "Kind", "About", "Detail"]
    table = f"<h3>Drift found ({len(drift['drift'])})</h3>" + _table(headers, rows, ' id="drift-table"') if rows else ""
    return (
        f'<h2 id="drift">Drift</h2><p class="meta">{escape(facts)}{link}</p>'
        f'<div class="charts">{bar_chart(DRIFT_TITLE, bars)}</div>{legend}{table}{more}'
    )


def fleet_page(view: FleetView) -> str:
    """Compliance and KPIs across the last cycles, the latest drift, and links to each run's page."""
    title = "Patch cycles: the fleet"
    reported = [cycle for cycle in view.cycles if cycle.report is not None]
    rows = []
    for cycle in view.cycles:
        link = f'<a href="{escape(cycle.href)}">{escape(cycle.run_id)}</a>'
        if cycle.report is None:
            rows.append([escape(cycle.when), link, escape(cycle.state), "", "", "", "", "", "no report yet"])
            continue
        f = _cycle_figures(cycle.report)
        outcome = _badge("Ran its course" if f["ok"] else "Needs a look", "#2e7d32" if f["ok"] else "#c62828")
        rows.append(
            [
                escape(cycle.when),
                link,
                escape(cycle.state),
                escape(f["mode"]),
                str(f["in_scope"]),
                escape(f["compliant_pct"]),
                escape(f"{f['success']}" + (f" ({f['patched']} of {f['attempted']})" if f["attempted"] else "")),
                str(f["failed"]),
                outcome,
            ]
        )
    headers = ["Started", "Run", "State", "Mode", "In scope", "Compliant after", "Install success", "Failures"]
    headers.append("Outcome")
    trend = fleet_trend(view.cycles)
    success = [
        (cycle.when, _cycle_figures(cycle.report)["success_value"])
        for cycle in reversed(view.cycles)
        if cycle.report is not None and _cycle_figures(cycle.report)["success_value"] is not None
    ]
    charts = [stacked_bar_chart(FLEET_COMPLIANCE_TITLE, trend, list(COMPLIANCE_COLORS), COMPLIANCE_COLORS)]
    if success:
        charts.append(bar_chart(FLEET_SUCCESS_TITLE, [(when, int(value)) for when, value in success]))
    latest = ""
    if reported:
        f = _cycle_figures(reported[0].report or {})
        latest = (
            f'<div class="banner {"good" if f["ok"] else "bad"}" id="latest">Latest cycle with a report '
            f"({escape(reported[0].when)}): {f['in_scope']} resources in scope, {escape(f['compliant_pct'])} "
            f"compliant after it.</div>"
        )
    notes = "".join(f'<p class="muted">{escape(note)}</p>' for note in view.notes)
    body = (
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">The last {len(view.cycles)} patch_cycle run(s)'
        + (f" (at most {view.limit})" if view.limit else "")
        + f", newest first; {len(reported)} with a report.</p>{notes}{latest}"
        f'<h2 id="trend">Trend</h2><div class="charts">{"".join(charts)}</div>'
        + '<h2 id="cycles">Cycles</h2>'
        + _table(headers, rows, ' id="cycles-table"')
        + _drift_section(view)
    )
    return _page(title, body)


def table_page(title: str, frame: pd.DataFrame, csv_href: str) -> str:
    """A table artifact (parquet) as a page, with its CSV."""
    rows = [[escape(str(value)) for value in record] for record in frame.itertuples(index=False)]
    body = (
        f'<h1>{escape(title)}</h1><p class="meta">{len(frame)} row(s) · <a href="{escape(csv_href)}">CSV</a></p>'
        f"{_table([str(column) for column in frame.columns], rows)}"
    )
    return _page(title, body)


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
