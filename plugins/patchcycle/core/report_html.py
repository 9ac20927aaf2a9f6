"""The run report as one self-contained HTML page: inline CSS and SVG charts, no scripts, no CDN.

The presentation lives here, for this page and for the UI's run page alike: labels in words (KPI_LABELS,
verdict_label, failure_causes), numbers as people read them (percent, minutes), compliance before and after the
run side by side (compliance_before_after), and the charts (bar_chart, stacked_bar_chart). Those public
functions return plain text; render_html escapes it.

Every piece of text from the report (tag values, reasons, errors) is escaped with html.escape:
tag values are user input.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any, Final

from patchcycle.core.verdicts import INSTALL, REASON_CODES, VERDICTS, ReasonCode, Verdict

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
MAX_ONE_LINE_ID: Final = 24

_LABEL_WIDTH, _BAR_WIDTH, _ROW_HEIGHT, _VALUE_WIDTH = 220, 420, 26, 60
# A generous average advance of a 12 px sans-serif character: a label area sized with it holds the label whole.
_CHAR_WIDTH = 7.2

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
.id{white-space:nowrap}
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


def _label_width(labels: Sequence[str]) -> int:
    """The label column: wide enough for the longest label (a right-aligned label never runs off the left)."""
    return max(_LABEL_WIDTH, math.ceil(_CHAR_WIDTH * max((len(label) for label in labels), default=0)) + 16)


def _svg(title: str, height: int, body: list[str], label_width: int = _LABEL_WIDTH) -> str:
    width = label_width + _BAR_WIDTH + _VALUE_WIDTH
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
    left = _label_width([label for label, _ in bars])
    body = []
    for row, (label, value) in enumerate(bars):
        y = row * _ROW_HEIGHT
        width = _BAR_WIDTH * value / top
        color = (colors or {}).get(label, DEFAULT_COLOR)
        body.append(_svg_text(left - 8, y + _ROW_HEIGHT / 2, label, anchor="end"))
        body.append(
            f'<rect x="{left}" y="{y + 4}" width="{width:.1f}" height="{_ROW_HEIGHT - 8}" fill="{color}">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
        body.append(_svg_text(left + width + 6, y + _ROW_HEIGHT / 2, str(value)))
    return _chart_box(title, _svg(title, len(bars) * _ROW_HEIGHT, body, left))


def stacked_bar_chart(
    title: str, rows: Sequence[tuple[str, Mapping[str, int]]], order: Sequence[str], colors: Mapping[str, str]
) -> str:
    """A titled horizontal stacked bar chart (inline SVG): one bar per row, one segment per key of `order`."""
    if not rows:
        return _chart_box(title, _svg(title, _ROW_HEIGHT, [_svg_text(0, _ROW_HEIGHT / 2, "no data")]))
    top = max(sum(parts.values()) for _, parts in rows) or 1
    left = _label_width([label for label, _ in rows])
    body = []
    for row, (label, parts) in enumerate(rows):
        y, x = row * _ROW_HEIGHT, float(left)
        body.append(_svg_text(left - 8, y + _ROW_HEIGHT / 2, label, anchor="end"))
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
        f'<span><i style="background:{colors.get(key, DEFAULT_COLOR)}"></i>{escape(_word(key).capitalize())}</span>'
        for key in order
    )
    return _chart_box(title, _svg(title, len(rows) * _ROW_HEIGHT, body, left) + f'<div class="legend">{legend}</div>')


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
    headers = [_PART_LABELS.get(column, _word(column).capitalize()) for column in columns]
    return (
        f'<div class="banner bad" id="incomplete">INCOMPLETE: {_count(len(parts), "part", "parts")} of the fleet '
        f"could not be read; the resources there are missing from every number below.{_table(headers, rows)}</div>"
    )


# The columns of a part of the fleet that could not be read, in words.
_PART_LABELS: Final[Mapping[str, str]] = {
    "aws_conn_id": "Connection",
    "region": "Region",
    "stage": "Stage",
    "error": "Error",
}


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
    ]
    inner = "".join(f'<div class="card"><div class="n">{int(n)}</div>{escape(label)}</div>' for label, n in cards)
    return f'<div class="cards">{inner}</div>'


def _cves_cell(cve_ids: Sequence[str]) -> str:
    shown = ", ".join(f'<span class="id">{escape(cve)}</span>' for cve in cve_ids[:MAX_CVES_SHOWN])
    more = len(cve_ids) - MAX_CVES_SHOWN
    return shown + (f" (+{more} more)" if more > 0 else "")


def _resources_section(resources: Sequence[Mapping[str, Any]], with_waves: bool) -> str:
    # The name under the id and the account over the region: two columns fewer keeps the reason readable.
    headers = ["Resource", "Type", "Account / region", "Environment", "Responsibility"]
    headers += ["Wave"] if with_waves else []
    # The plan's patches: what the scan found missing (an install may have installed them since).
    headers += ["Verdict", "Reason", "Missing at scan" if with_waves else "Missing", "CVEs"]
    rows = []
    for entry in resources:
        color = COMPLIANCE_COLORS.get(str(entry["compliance_state"]), DEFAULT_COLOR)
        name = "" if entry["name"] == entry["resource_id"] else str(entry["name"])
        # An instance id stays on one line; a long name-like id (an S3 bucket) may wrap at its hyphens.
        one_line = ' class="id"' if len(str(entry["resource_id"])) <= MAX_ONE_LINE_ID else ""
        resource_id = f"<code{one_line}>{escape(str(entry['resource_id']))}</code>"
        account, region = _cells(entry, ("account_id", "region"))
        rows.append(
            [
                resource_id + (f'<br><span class="meta">{escape(name)}</span>' if name else ""),
                escape(str(entry["resource_type"])),
                f"{account}<br>{region}",
                escape(str(entry["environment"])),
                escape(str(entry["responsibility"])),
                *([f'<span class="id">{escape(wave_text(entry))}</span>'] if with_waves else []),
                f'<span class="badge" style="background:{color}" title="{escape(str(entry["verdict"]))}">'
                f"{escape(verdict_label(str(entry['verdict'])))}</span>",
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
    return f"yes, {_time_html(timestamp(at))}" if done and at else "yes" if done else "no"


def _staging_section(staging: Mapping[str, Any], facts: str) -> str:
    summary = staging["summary"]
    counts = (
        f"{summary['passed']} of {_count(int(summary['instances']), 'staging instance', 'staging instances')} passed, "
        f"{summary['failed']} failed, {_count(int(summary['patches']), 'planned patch', 'planned patches')}"
    )
    headline = (
        f'<div class="banner {"good" if staging["passed"] else "bad"}" id="staging">'
        f"Staging {'passed' if staging['passed'] else 'FAILED'}: {escape(counts)}.</div>"
    )
    stack_rows = [
        [
            f"<code>{escape(str(stack['stack_name']))}</code>",
            *_cells(stack, ("account_id", "region")),
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
            f'<code class="id">{escape(str(row["instance_id"]))}</code>',
            escape(str(row["profile_id"])),
            "<br>".join(_cells(row, ("account_id", "region"))),
            escape(str(row["platform_name"])),
            escape(str(row["patch_group"])),
            f"{int(row['installed'])} of {len(row['patch_ids'])}"
            + (f"<br>not: {escape(', '.join(str(p) for p in row['not_installed']))}" if row["not_installed"] else ""),
            escape(f"{row['install_status'] or 'not sent'} / {row['health_status'] or 'not run'}"),
            _badge(bool(row["passed"])),
            escape(str(row["reason"])),
        ]
        for row in staging["instances"]
    ]
    headers = ["Instance", "Profile", "Account / region", "Platform", "Patch group", "Patches installed"]
    headers += ["Install / health check", "Result", "Reason"]
    return (
        f'<h2>Staging</h2><p class="meta">{escape(facts)}</p>{headline}<h3>Stacks ({len(stack_rows)})</h3>{stacks}'
        f"<h3>Staging instances ({len(instance_rows)})</h3>{_table(headers, instance_rows)}"
    )


def _approval_section(approval: Mapping[str, Any]) -> str:
    decision = str(approval["decision"]) or ("none (timed out)" if approval["timed_out"] else "none")
    rows = [
        ["Decision", escape(decision)],
        ["By", escape(str(approval["by"]))],
        ["At", escape(timestamp(str(approval["at"])))],
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
        why = str(halted["halt_reason"]) if halted is not None and halted.get("halt_reason") else ""
        if not why and halted is not None:
            why = (
                f"halted after wave {int(halted_after)}: {halted['failed']} of {halted['sent']} failed, "
                f"threshold {halted['threshold']} ({halted['allowed_failures']} allowed)"
            )
        banner = (
            f'<div class="banner bad" id="halted">HALTED: {escape(why or f"after wave {int(halted_after)}")}; '
            "the waves it stopped never ran (their instances are SKIPPED_HALTED).</div>"
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
            *_cells(wave, ("started_at", "finished_at")),
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
        f"{_count(int(install['pinned_patches']), 'pinned patch', 'pinned patches')} · staging cap "
        f"{_count(int(settings['staging_max_instances']), 'instance', 'instances')} per account and region"
    )
    wave_facts = (
        f"canary {settings['canary']} · then {percentages or 'no further waves'} · "
        f"halt threshold {settings['halt_threshold']} · reboot {settings['reboot_option']}"
    )
    return (
        _staging_section(install["staging"], staging_facts)
        + _approval_section(install["approval"])
        + _waves_section(install, wave_facts)
        + _rollback_section(install["rollback"])
        + auto_scaling_section(install.get("auto_scaling_groups") or [])
        + rds_section(install.get("rds"))
    )


def _where(row: Mapping[str, Any]) -> list[str]:
    """Where an instance is: account, region and id (never wrapped at their hyphens), and its wave."""
    return [*_cells(row, ("account_id", "region", "resource_id")), str(int(row["wave"]))]


_RESTORE_RESULTS = {"rolled_back": "rolled back", "failed": "restore failed"}


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def _rollback_section(rollback: Mapping[str, Any]) -> str:
    """The way back: what was snapshotted, validated and rolled back, with the failures listed (every instance's
    snapshot ids are in the resources table)."""
    settings, summary = rollback["settings"], rollback["summary"]
    alarms = ", ".join(settings["health_alarms"]) or "none"
    snapshots = "taken before each install" if settings["snapshot"] else "off"
    rolls_back = "instances whose install or validation failed" if settings["rollback"] == "failed" else "nothing"
    facts = (
        f"Pre-patch snapshots: {snapshots}, kept {settings['snapshot_retention_days']} days · rolls back: "
        f"{rolls_back} · change calendar: {settings['change_calendar'] or 'none'} · health alarms: {alarms}"
    )
    counts = "; ".join(
        [
            f"{_count(summary['snapshotted'], 'instance', 'instances')} snapshotted"
            + (f" ({summary['snapshot_failures']} failed)" if summary["snapshot_failures"] else ""),
            f"{summary['validated']} validated"
            + (f" ({summary['validation_failures']} failed)" if summary["validation_failures"] else ""),
            f"{summary['rolled_back']} rolled back"
            + (f" ({summary['rollback_failures']} could not be restored)" if summary["rollback_failures"] else ""),
            f"{_count(summary['snapshots_deleted'], 'expired snapshot', 'expired snapshots')} deleted",
        ]
    )
    where = ["Account", "Region", "Instance", "Wave"]
    sections = [
        f'<h2 id="rollback">Snapshots and rollback</h2><p class="meta">{escape(facts)}</p><p>{escape(counts)}</p>'
    ]
    if rollback["restores"]:
        rows = [
            [*_where(r), escape(_RESTORE_RESULTS.get(str(r["status"]), str(r["status"]))), escape(str(r["detail"]))]
            for r in rollback["restores"]
        ]
        sections.append("<h3>Restores</h3>" + _table([*where, "Result", "Detail"], rows))
    if rollback["validations"]:
        rows = [[*_where(v), escape(str(v["detail"]))] for v in rollback["validations"]]
        sections.append("<h3>Failed validations</h3>" + _table([*where, "Why"], rows))
    failed = [s for s in rollback["snapshots"] if s["status"] != "completed"]
    if failed:
        rows = [[*_where(s), escape(str(s["detail"]))] for s in failed]
        sections.append("<h3>Failed snapshots (not patched)</h3>" + _table([*where, "Why"], rows))
    retention = [r for r in rollback["retention"] if r["deleted"] or r["error"]]
    if retention:
        rows = [
            [escape(r["account_id"]), escape(r["region"]), escape(", ".join(r["deleted"]) or r["error"])]
            for r in retention
        ]
        sections.append(
            "<h3>Expired snapshots deleted</h3>" + _table(["Account", "Region", "Deleted (or error)"], rows)
        )
    return "".join(sections)


# A group's refresh as it ended, in words, and its color: (state, status) -> (words, color).
_REFRESH_WORDS: Final[Mapping[str, tuple[str, str]]] = {
    "Successful": ("Replaced", COMPLIANCE_COLORS["COMPLIANT"]),
    "RollbackSuccessful": ("Rolled back", "#ef6c00"),
    "RollbackFailed": ("Failed to roll back", COMPLIANCE_COLORS["NON_COMPLIANT"]),
    "Failed": ("Failed", COMPLIANCE_COLORS["NON_COMPLIANT"]),
    "Cancelled": ("Cancelled", COMPLIANCE_COLORS["NON_COMPLIANT"]),
    "halted": ("Not refreshed: halted", DEFAULT_COLOR),
    "refused": ("Not refreshed: refused", DEFAULT_COLOR),
    "not run": ("Not refreshed", DEFAULT_COLOR),
}
AUTO_SCALING_TITLE: Final = "Auto Scaling groups"


def refresh_outcome(group: Mapping[str, Any]) -> str:
    """A group's refresh in words: "Replaced", "Rolled back", "Not refreshed: halted", "Did not finish", ..."""
    key = str(group["status"]) if group["state"] == "done" else str(group["state"])
    return _REFRESH_WORDS.get(key, ("Did not finish", ""))[0]


def _refresh_badge(group: Mapping[str, Any]) -> str:
    key = str(group["status"]) if group["state"] == "done" else str(group["state"])
    words, color = _REFRESH_WORDS.get(key, ("Did not finish", COMPLIANCE_COLORS["UNKNOWN"]))
    return f'<span class="badge" style="background:{color}">{escape(words)}</span>'


def _verdict_badge(verdict: str) -> str:
    try:
        color = COMPLIANCE_COLORS[VERDICTS[Verdict(verdict)].compliance.value]
    except ValueError:
        color = DEFAULT_COLOR
    label = escape(verdict_label(verdict))
    return f'<span class="badge" style="background:{color}" title="{escape(verdict)}">{label}</span>'


def _arrow(old: str, new: str) -> str:
    """ "old → new" with each side kept on one line ("old → not made" when there is no new one)."""
    return (
        f'<span class="id">{escape(old or "unknown")}</span> &rarr; <span class="id">{escape(new or "not made")}</span>'
    )


def patch_manager_check(new: Mapping[str, Any]) -> str:
    """A new instance's Patch Manager result in words."""
    if not new.get("checked", True):
        return "not checked"
    if new["compliant"]:
        return "compliant: every pinned patch installed"
    missing = list(new.get("not_installed") or [])
    return "NOT compliant" + (f": {', '.join(missing[:5])} not installed" if missing else "")


def inspector_check(new: Mapping[str, Any]) -> str:
    """A new instance's Amazon Inspector result in words."""
    if not new.get("checked", True):
        return "not checked"
    cves = list(new.get("cves") or [])
    if new["cves_closed"]:
        return f"{_count(len(cves), 'CVE', 'CVEs')} closed" if cves else "no CVE to close"
    if not new.get("scanned_at"):
        return "NOT proven: Amazon Inspector did not scan it in time"
    still = list(new.get("still_active") or [])
    return "NOT proven: still active " + ", ".join(still[:5])


def _group_cells(group: Mapping[str, Any]) -> list[str]:
    verdicts = Counter(verdict_label(str(i["verdict"])).lower() for i in group["instances"] if i["verdict"])
    new = list(group["new_instances"])
    checked = [n for n in new if n.get("checked", True)]
    why = str(group.get("rollback_reason") or group.get("status_reason") or group["reason"])
    refresh = _refresh_badge(group)
    if group["refresh_id"]:
        refresh += f"<br><code>{escape(str(group['refresh_id']))}</code>"
    if why:
        refresh += f"<br>{escape(why)}"
    template = f"<code>{escape(str(group['launch_template']))}</code><br>version " + _arrow(
        str(group.get("source_version", "")), str(group["version"])
    )
    if group["default_version_set"]:
        template += "<br>now the default version"
    images = "<br>".join(_arrow(str(source), str(group["image_id"])) for source in group["source_images"])
    ran = minutes(float(group["seconds"])) if float(group["seconds"]) else "did not end"
    ran = ran if group["refresh_id"] else "not run"
    old = f"{len(group['instances'])}: " + ", ".join(f"{n} {label}" for label, n in sorted(verdicts.items()))
    launched = f"{len(new)}" if new else "none"
    if new:
        launched += (
            f": {sum(1 for n in checked if n['compliant'])} compliant, "
            f"{sum(1 for n in checked if n['cves_closed'])} with their CVEs closed"
        )
        launched += f", {len(new) - len(checked)} not checked" if len(checked) < len(new) else ""
    return [
        f'<span class="id">{escape(str(group["group"]))}</span><br>'
        + "<br>".join(_cells(group, ("account_id", "region"))),
        refresh,
        template,
        images,
        escape(ran),
        escape(old.rstrip(": ")),
        escape(launched),
    ]


def auto_scaling_section(groups: Sequence[Mapping[str, Any]]) -> str:
    """The Auto Scaling groups (install.auto_scaling_groups) in words: each group's refresh, launch template version
    and AMI, and below, every instance of them: those of the inventory with their verdicts, and the new ones the
    refreshes launched with Patch Manager's and Amazon Inspector's results ("" when the run refreshed no group)."""
    if not groups:
        return ""
    headers = ["Group", "Instance refresh", "Launch template", "AMI", "Duration", "Instances at inventory"]
    headers += ["New instances"]
    rows = [_group_cells(group) for group in groups]
    instances = []
    for group in groups:
        name = f'<span class="id">{escape(str(group["group"]))}</span>'
        for old in group["instances"]:
            meaning = ""
            if old["reason_code"] in {code.value for code in ReasonCode}:
                meaning = REASON_CODES[ReasonCode(old["reason_code"])][1]
            verdict = _verdict_badge(str(old["verdict"])) if old["verdict"] else "no verdict"
            instances.append(
                [
                    name,
                    f'<code class="id">{escape(str(old["instance_id"]))}</code>',
                    "at inventory",
                    verdict,
                    escape(meaning),
                ]
            )
        for new in group["new_instances"]:
            checks = (
                f"Patch Manager: {escape(patch_manager_check(new))}<br>Amazon Inspector: {escape(inspector_check(new))}"
            )
            instances.append(
                [
                    name,
                    f'<code class="id">{escape(str(new["instance_id"]))}</code>',
                    "launched by the refresh",
                    _badge(bool(new["compliant"] and new["cves_closed"]), "Proven patched", "Not proven")
                    if new.get("checked", True)
                    else "not checked",
                    checks,
                ]
            )
    facts = (
        "Not patched in place: each group got a launch template version on a baked AMI and an instance refresh that "
        "rolls back on its own. Durations are on AWS's clock (in the sandbox, its simulated clock)."
    )
    return (
        f'<h2 id="auto-scaling">{AUTO_SCALING_TITLE} ({len(groups)})</h2><p class="meta">{escape(facts)}</p>'
        f"{_table(headers, rows)}<h3>Their instances ({len(instances)})</h3>"
        f"{_table(['Group', 'Instance', 'When', 'Result', 'Detail'], instances)}"
    )


def wave_text(entry: Mapping[str, Any]) -> str:
    """A resource's wave in the resources table: "2" for an EC2 instance, "RDS wave 2" for a database (the RDS
    waves are their own sequence, apart from the EC2 waves); "" when it was planned in none."""
    wave = entry.get("wave")
    if wave is None:
        return ""
    return f"RDS wave {int(wave)}" if entry.get("resource_type") == "rds" else str(int(wave))


# A planned database's outcome (core.rds_rollout.RolloutOutcome) in words, and its color.
_RDS_OUTCOMES: Final[Mapping[str, tuple[str, str]]] = {
    "applied": ("Applied", COMPLIANCE_COLORS["COMPLIANT"]),
    "scheduled": ("Scheduled for its next maintenance window", "#f9a825"),
    "failed": ("Failed", COMPLIANCE_COLORS["NON_COMPLIANT"]),
    "timeout": ("Did not finish in time", COMPLIANCE_COLORS["NON_COMPLIANT"]),
    "halted": ("Not applied: the rollout halted", DEFAULT_COLOR),
    "halted_by_alarm": ("Not applied: a health alarm", DEFAULT_COLOR),
    "halted_by_calendar": ("Not applied: change calendar closed", DEFAULT_COLOR),
    "not_rehearsed": ("Not applied: not rehearsed", DEFAULT_COLOR),
    "staging_failed": ("Not applied: its rehearsal failed", DEFAULT_COLOR),
    "rejected": ("Not applied: rejected at the gate", DEFAULT_COLOR),
    "not_run": ("Not applied: the rollout did not reach it", DEFAULT_COLOR),
}
RDS_TITLE: Final = "RDS databases"
_KINDS: Final[Mapping[str, str]] = {"db-instance": "DB instance", "db-cluster": "Aurora DB cluster"}


def rds_outcome(database: Mapping[str, Any]) -> str:
    """A planned database's outcome in words: "Applied", "Failed", "Not applied: its rehearsal failed", ..."""
    return _RDS_OUTCOMES.get(str(database["outcome"]), (_word(str(database["outcome"])).capitalize(), ""))[0]


def _rds_outcome_badge(database: Mapping[str, Any]) -> str:
    words, color = _RDS_OUTCOMES.get(str(database["outcome"]), (rds_outcome(database), DEFAULT_COLOR))
    return f'<span class="badge" style="background:{color}">{escape(words)}</span>'


def rds_role(database: Mapping[str, Any]) -> str:
    """A planned database's role in words: "primary", "read replica of orders-main", "Aurora DB cluster (members
    ledger-1, ledger-2)", "Aurora cluster member (its own action, not rehearsed)"."""
    role = str(database["role"])
    if role == "replica":
        return f"read replica of {database['replica_of']}"
    if role == "cluster":
        members = ", ".join(database["members"])
        return f"Aurora DB cluster (members {members})" if members else "Aurora DB cluster"
    if role == "cluster member":
        return "Aurora cluster member (its own action, not rehearsed)"
    return "primary"


def day(text: str) -> str:
    """An AWS maintenance date as people read it: "2026-12-15" at midnight UTC, else to the minute
    ("2026-12-15 10:30 UTC"); "none" when AWS gave none."""
    match = _ISO.match(str(text).strip())
    if not match:
        return str(text) or "none"
    time = match.group(2)
    return match.group(1) if time == "00:00:00" else f"{match.group(1)} {time[:5]} UTC"


def _lines(values: Sequence[str]) -> str:
    """Values one per line, each kept whole (a date, an action)."""
    return "<br>".join(f'<span class="id">{escape(value)}</span>' for value in values)


def rds_pending_after(report: Mapping[str, Any]) -> tuple[int, int, int]:
    """(pending maintenance actions before the run, those the run applied, those it opted in for the next window),
    over the report's RDS resources: before is what the scan read (each RDS entry's missing_patches); an applied
    action is one the rollout saw leave DescribePendingMaintenanceActions."""
    before = sum(len(entry["missing_patches"]) for entry in report["resources"] if entry["resource_type"] == "rds")
    databases = ((report.get("install") or {}).get("rds") or {}).get("databases") or []
    applied = sum(len(db["actions"]) for db in databases if db["outcome"] == "applied")
    scheduled = sum(len(db["actions"]) for db in databases if db["outcome"] == "scheduled")
    return before, applied, scheduled


def _rehearsal_cells(rehearsal: Mapping[str, Any], stacks: Sequence[Mapping[str, Any]]) -> list[str]:
    kind = "Aurora DB cluster copy" if rehearsal["kind"] == "db-cluster" else "DB instance copy"
    if not rehearsal["ran"]:
        result = f'<span class="badge" style="background:{COMPLIANCE_COLORS["UNKNOWN"]}">Did not run</span>'
    else:
        result = _badge(bool(rehearsal["passed"]), "Passed", "Failed")
    if rehearsal["detail"]:
        result += f"<br>{escape(str(rehearsal['detail']))}"
    stack = next(
        (s for s in stacks if s["region"] == rehearsal["region"] and s["account_id"] in (rehearsal["account_id"], "")),
        None,
    )
    if stack is None or not stack["stack_name"]:
        deleted = "no stack"
    else:
        deleted = _done_at(bool(stack["deleted"]), str(stack["deleted_at"]))
        if not stack["deleted"] and stack["created"]:
            deleted = "NO: left behind, delete it by hand"
        deleted += f'<br><code class="id">{escape(str(stack["stack_name"]))}</code>'
        if stack["error"]:
            deleted += f"<br>{escape(str(stack['error']))}"
    engine = " ".join(f'<span class="id">{escape(str(rehearsal[k]))}</span>' for k in ("engine", "engine_version"))
    after = str(rehearsal.get("engine_version_after") or "")
    if after and after != str(rehearsal["engine_version"]):
        engine += f' &rarr; <span class="id">{escape(after)}</span>'
    return [
        f'<code class="id">{escape(str(rehearsal["staging_db"]))}</code><br>{escape(kind)}',
        f'<span class="id">{escape(str(rehearsal["source_db"]))}</span><br>'
        + "<br>".join(_cells(rehearsal, ("account_id", "region"))),
        f'<code class="id">{escape(str(rehearsal["snapshot_id"]))}</code>' if rehearsal["snapshot_id"] else "none",
        engine
        + (
            f'<br><span class="id">{escape(str(rehearsal["instance_class"]))}</span>'
            if rehearsal["instance_class"]
            else ""
        ),
        _lines(list(rehearsal["actions"])),
        result,
        deleted,
    ]


def _role_html(database: Mapping[str, Any]) -> str:
    """rds_role as HTML, a cluster's member identifiers each kept on one line."""
    if database["role"] == "cluster" and database["members"]:
        members = ", ".join(f'<span class="id">{escape(str(member))}</span>' for member in database["members"])
        return f"Aurora DB cluster (members {members})"
    return escape(rds_role(database))


def _database_cells(database: Mapping[str, Any]) -> list[str]:
    actions = list(database["actions"])
    impacts = list(dict.fromkeys(str(action["impact_words"]) for action in actions))
    outcome = _rds_outcome_badge(database)
    if database["reason"]:
        outcome += f"<br>{escape(str(database['reason']))}"
    where = "<br>".join(_cells(database, ("account_id", "region")))
    return [
        f'<span class="id">{escape(str(database["resource_id"]))}</span><br>{where}',
        escape(_KINDS.get(str(database["kind"]), str(database["kind"]))),
        _role_html(database),
        str(int(database["wave"])),
        _lines([str(action["action"]) for action in actions]),
        _lines([day(str(action["auto_applied_after"])) for action in actions]),
        _lines([day(str(action["forced_apply_date"])) for action in actions]),
        "<br>".join(escape(words) for words in impacts),
        outcome,
    ]


def rds_section(rds: Mapping[str, Any] | None) -> str:
    """The RDS databases (install.rds) in words: each staging rehearsal on a restored copy (its source, snapshot,
    actions, result and whether its stack was deleted), the RDS waves, and each planned database with its actions,
    their dates and impact, its role, wave and outcome ("" when the run planned no RDS maintenance)."""
    if not rds or not rds["databases"]:
        return ""
    databases, rehearsals = list(rds["databases"]), list(rds["rehearsals"])
    when = (
        "applied now, wave by wave"
        if rds["apply"] == "immediate"
        else "opted in for each database's next maintenance window"
    )
    facts = (
        f"Pending maintenance actions {when}, after a rehearsal on a copy restored from a snapshot. The RDS waves "
        "are their own, beside the EC2 waves: read replicas before their sources, planned cluster members before "
        "their cluster. Dates are AWS's: after the first, AWS applies the action in a maintenance window; on the "
        "second, it forces it."
    )
    passed = sum(1 for r in rehearsals if r["passed"])
    outcomes = Counter(rds_outcome(db).lower() for db in databases)
    counts = (
        f"{passed} of {_count(len(rehearsals), 'rehearsal', 'rehearsals')} passed · "
        f"{_count(len(databases), 'database', 'databases')}: "
        + ", ".join(f"{n} {words}" for words, n in sorted(outcomes.items(), key=lambda item: -item[1]))
    )
    good = passed == len(rehearsals) and all(db["outcome"] in ("applied", "scheduled") for db in databases)
    banner = f'<div class="banner {"good" if good else "bad"}" id="rds-summary">{escape(counts)}.</div>'
    rehearsal_rows = [_rehearsal_cells(r, rds["stacks"]) for r in rehearsals]
    rehearsal_headers = ["Staging copy", "Restored from", "Snapshot", "Engine", "Actions", "Result", "Stack deleted"]
    waves: dict[int, Counter[str]] = {}
    for db in databases:
        waves.setdefault(int(db["wave"]), Counter())[str(db["outcome"])] += 1
    wave_rows = []
    for wave, by_outcome in sorted(waves.items()):
        failed = by_outcome["failed"] + by_outcome["timeout"]
        rest = sum(by_outcome.values()) - by_outcome["applied"] - by_outcome["scheduled"] - failed
        counts_of = [by_outcome["applied"], by_outcome["scheduled"], failed, rest]
        wave_rows.append([str(wave), str(sum(by_outcome.values())), *(str(n) for n in counts_of)])
    wave_headers = ["RDS wave", "Databases", "Applied", "Scheduled", "Failed", "Not applied"]
    database_headers = ["Database", "Kind", "Role", "RDS wave", "Actions", "Auto-applied after", "Forced on"]
    database_headers += ["Impact", "Outcome"]
    return (
        f'<h2 id="rds">{RDS_TITLE} ({len(databases)})</h2><p class="meta">{escape(facts)}</p>{banner}'
        f"<h3>Staging rehearsals ({len(rehearsal_rows)})</h3>{_table(rehearsal_headers, rehearsal_rows)}"
        f"<h3>RDS waves ({len(wave_rows)})</h3>{_table(wave_headers, wave_rows)}"
        f"<h3>Databases ({len(databases)})</h3>"
        f"{_table(database_headers, [_database_cells(db) for db in databases])}"
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


_ID_KEYS = frozenset({"account_id", "region", "resource_id", "cve_id", "instance_id"})
_STATE_KEYS = frozenset({"status", "severity", "compliance"})
_KEY_WORDS = re.compile(r"^[A-Z][A-Z_]*$")
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(?:Z|[+-]00:00)$")


def timestamp(text: str) -> str:
    """An ISO 8601 UTC time as people read it, to the second: "2026-12-07T13:02:58.470995+00:00" ->
    "2026-12-07 13:02:58 UTC"; other text unchanged."""
    match = _ISO.match(text.strip())
    return f"{match.group(1)} {match.group(2)} UTC" if match else text


def _time_html(text: str) -> str:
    """A time (timestamp's text) as HTML: the date and the time each on one line, a break allowed between."""
    if " " not in text:
        return f'<span class="id">{escape(text)}</span>' if text else ""
    date, time = text.split(" ", 1)
    return f'<span class="id">{escape(date)}</span> <span class="id">{escape(time)}</span>'


def _cells(row: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """The row's values as cells: identifiers and times kept on one line, times to the second, states in words
    ("STILL_ACTIVE" -> "Still active", "CRITICAL" -> "Critical")."""
    cells = []
    for key in keys:
        value = str(row.get(key, ""))
        if key.endswith("_at"):
            value = timestamp(value)  # to the second: a reader compares times, not microseconds
        elif key in _STATE_KEYS and _KEY_WORDS.match(value):
            value = _word(value).capitalize()
        text = escape(value)
        if key.endswith("_at"):
            cells.append(_time_html(value))
            continue
        one_line = key in _ID_KEYS or key.endswith("_at") or (" " not in text and len(text) <= 40)
        cells.append(f'<span class="id">{text}</span>' if one_line and text else text)
    return cells


def _word(key: str) -> str:
    """A state key as words: "NON_COMPLIANT" -> "non-compliant", "STILL_ACTIVE" -> "still active"."""
    return key.lower().replace("non_", "non-").replace("_", " ")


def _in_words(counts: Mapping[str, int]) -> str:
    """{"STILL_ACTIVE": 2, "NON_COMPLIANT": 1} as "2 still active, 1 non-compliant"."""
    return ", ".join(f"{int(n)} {escape(_word(key))}" for key, n in counts.items())


# A CVE's status over every instance it was targeted on: the worst one wins.
_CVE_STATUS_ORDER: Final = ("STILL_ACTIVE", "UNVERIFIED", "NOT_FOUND", "REMEDIATED")


def cves_by_id(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Inspector's per-(instance, CVE) rows as one row per CVE: its severity, the patches that fix it, the
    instances by status ({status: n}) and its overall status (the worst of its instances'), worst first."""
    by_cve: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_cve.setdefault(
            str(row["cve_id"]), {"cve_id": str(row["cve_id"]), "severity": "", "patches": set(), "instances": {}}
        )
        entry["severity"] = entry["severity"] or str(row.get("severity", ""))
        entry["patches"].update(p for p in str(row.get("patch_ids", "")).split(";") if p)
        status = str(row.get("status", ""))
        entry["instances"][status] = entry["instances"].get(status, 0) + 1
    rank = {status: n for n, status in enumerate(_CVE_STATUS_ORDER)}
    result = []
    for entry in by_cve.values():
        worst = min(entry["instances"], key=lambda status: rank.get(status, -1))
        result.append({**entry, "patches": sorted(entry["patches"]), "status": worst})
    return sorted(result, key=lambda e: (rank.get(e["status"], -1), -sum(e["instances"].values()), e["cve_id"]))


def _inspection_section(inspection: Mapping[str, Any] | None) -> str:
    """Per-CVE remediation proof (Amazon Inspector): one row per CVE, then the (instance, CVE) pairs not proven
    closed, and the residual critical/high findings. Every pair is in report.json and report.csv."""
    if inspection is None:
        return ""
    cves = cves_by_id(inspection["cves"])
    pairs = sum(int(n) for n in inspection["by_status"].values())
    summary = f"{_count(len(cves), 'CVE', 'CVEs')} on {_count(pairs, 'instance-CVE pair', 'instance-CVE pairs')}: "
    summary += _in_words(inspection["by_status"]) or "no CVEs to prove"
    rows = [
        [
            f'<span class="id">{escape(cve["cve_id"])}</span>',
            escape(str(cve["severity"]).capitalize()),
            escape(", ".join(cve["patches"])),
            escape(_in_words(cve["instances"])),
            escape(_word(cve["status"]).capitalize()),
        ]
        for cve in cves
    ]
    headers = ["CVE", "Severity", "Fixed by", "Instances", "Overall"]
    open_rows = [_cells(row, _CVE_KEYS) for row in inspection["cves"] if row.get("status") != "REMEDIATED"]
    residual_rows = [_cells(row, _RESIDUAL_KEYS) for row in inspection["residual"]]
    return (
        f'<h2 id="inspection">CVE remediation (Amazon Inspector)</h2><p class="meta">{escape(summary)}</p>'
        f"{_table(headers, rows)}"
        f"<h3>Not proven closed ({len(open_rows)})</h3>{_table(_CVE_HEADERS, open_rows)}"
        f"<h3>Residual critical and high findings ({len(residual_rows)})</h3>{_table(_RESIDUAL_HEADERS, residual_rows)}"
    )


def _config_section(config: Mapping[str, Any] | None) -> str:
    """AWS Config's patch-compliance rule: its evaluation per target and the non-compliant instances."""
    if config is None or (not config["targets"] and not config["resources"]):
        return ""
    counts = _in_words(config["by_compliance"]) or "no evaluations"
    columns = ["Region", "Status", "Rule", "Rule created", "Evaluated at", "Message"]
    targets = [
        [
            escape(str(value))
            for value in (
                target.get("region", ""),
                target.get("status", ""),
                (target.get("rule") or {}).get("name", ""),
                "yes" if (target.get("rule") or {}).get("created") else "no",
                timestamp(str((target.get("evaluation") or {}).get("evaluated_at", ""))),
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


def percent(value: float | None) -> str:
    """A rate in percent as people read it, one decimal: 98.91304347826087 -> "98.9%"; None -> "n/a"."""
    return "n/a" if value is None else f"{value:.1f}%"


def minutes(seconds: float) -> str:
    """A duration in minutes: "4.0 min" (one decimal under ten minutes), "37 min", "125 min (2 h 5 min)"."""
    value = seconds / 60
    if value < 10:
        return f"{value:.1f} min"
    whole = round(value)
    return f"{whole} min" + (f" ({whole // 60} h {whole % 60} min)" if whole >= 120 else "")


# Every KPI of a kpis block (core.kpis), in words.
KPI_LABELS: Final[Mapping[str, str]] = {
    "in_scope": "Resources in scope",
    "already_compliant": "Already compliant",
    "non_compliant": "Non-compliant",
    "skipped": "Skipped (a precondition or a decision)",
    "attempted": "Installs attempted",
    "patched": "Patched",
    "pending_reboot": "... of which pending a reboot",
    "success_rate": "Success rate (patched / attempted)",
    "failed": "Failed",
    "rolled_back": "Rolled back",
    "rollback_failed": "Rollback failed",
    "time_to_patch": "Time to patch (run start to wave end)",
    "cves": "Targeted CVEs (instance, CVE)",
    "residual_findings": "Residual critical and high findings",
    "failures_by_reason": "Failures by cause",
    "replacements": "New instances from Auto Scaling refreshes",
}
_INSTALL_KPIS: Final = ("attempted", "patched", "pending_reboot", "success_rate", "failed", "rolled_back")


def _counted(counts: Mapping[str, int] | None) -> str:
    """{"still_active": 2, "not_found": 0} as "2 still active, 0 not found"."""
    if counts is None:
        return "not inspected"
    return ", ".join(f"{int(n)} {name.replace('_', ' ')}" for name, n in counts.items())


def time_to_patch(ttp: Mapping[str, Any]) -> str:
    """A time_to_patch block as "4.0 min on average, 3.9 min to 4.1 min, over 92 instances"."""
    spread = f"{minutes(ttp['min_seconds'])} to {minutes(ttp['max_seconds'])}"
    over = _count(int(ttp["count"]), "instance", "instances")
    return f"{minutes(ttp['mean_seconds'])} on average, {spread}, over {over}"


def kpi_rows(block: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A kpis block (the fleet's or a target's) as (label, value) text; the install figures only when the run
    installed (attempted > 0), rates in percent and times in minutes."""
    names = ["in_scope", "already_compliant", "non_compliant", "skipped"]
    if block["attempted"]:
        names += [*_INSTALL_KPIS, "rollback_failed"]
    rows = []
    for name in names:
        value = block[name]
        rows.append((KPI_LABELS[name], percent(value) if name == "success_rate" else str(int(value))))
    if block["time_to_patch"] is not None:
        rows.append((KPI_LABELS["time_to_patch"], time_to_patch(block["time_to_patch"])))
    if block["cves"] is not None:
        rows.append((KPI_LABELS["cves"], _counted(block["cves"])))
        rows.append((KPI_LABELS["residual_findings"], _counted(block["residual_findings"])))
    if block.get("replacements") is not None:
        rows.append((KPI_LABELS["replacements"], replacements(block["replacements"])))
    return rows


def replacements(counts: Mapping[str, int]) -> str:
    """A replacements block as "4 launched: 4 compliant, 3 with their CVEs closed" (", 1 not checked")."""
    text = (
        f"{int(counts['launched'])} launched: {int(counts['compliant'])} compliant, "
        f"{int(counts['cves_closed'])} with their CVEs closed"
    )
    return text + (f", {int(counts['not_checked'])} not checked" if counts["not_checked"] else "")


def failure_causes(block: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """The causes that occurred: (what it means, its reason code, how many resources), most frequent first."""
    causes = [(REASON_CODES[ReasonCode(code)][1], code, int(n)) for code, n in block["failures_by_reason"].items() if n]
    return sorted(causes, key=lambda cause: -cause[2])


# Verdicts whose words need more than their key's (verdicts.Verdict); the rest read as their key in words.
_VERDICT_WORDS: Final[Mapping[str, str]] = {
    "PATCHED_PENDING_REBOOT": "Patched, pending reboot",
    "SKIPPED_STAGING_FAILED": "Skipped: staging failed",
    "SKIPPED_NO_SNAPSHOT": "Skipped: no snapshot",
    "MAINTENANCE_PENDING": "Maintenance pending",
    "AWS_MANAGED": "AWS-managed",
}


def verdict_label(verdict: str) -> str:
    """A verdict in words: "PATCHED_PENDING_REBOOT" -> "Patched, pending reboot", "SKIPPED_HALTED" ->
    "Skipped: halted", "AWS_MANAGED" -> "AWS-managed"."""
    if verdict in _VERDICT_WORDS:
        return _VERDICT_WORDS[verdict]
    words = _word(verdict)
    if words.startswith("skipped "):
        words = "skipped: " + words.removeprefix("skipped ")
    return words.capitalize()


RDS_PENDING_LABEL: Final = "RDS pending maintenance actions"


def compliance_before_after(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(measure, before the run, after it) text rows: what the scan found, beside what verify, Amazon Inspector
    and AWS Config show after the install. In scan mode the run changed nothing: "after" is "".

    Before: EC2 instances with no outstanding patch, the outstanding patches (critical ones apart) and their
    distinct CVEs, as the scan read them. After: each instance's latest patch state (verify's after the install,
    else the scan's), Inspector's verdict on each targeted CVE (the worst over its instances, cves_by_id), and
    AWS Config's rule. With RDS databases in the report, their pending maintenance actions: as the scan read them,
    and after the run those it did not apply (rds_pending_after).
    """
    ec2 = [entry for entry in report["resources"] if entry["resource_type"] == "ec2"]
    scanned = [entry for entry in ec2 if entry["patch_state"] is not None or entry["missing_patches"]]
    before_missing = sum(len(entry["missing_patches"]) for entry in ec2)
    before_critical = sum(
        1 for entry in ec2 for patch in entry["missing_patches"] if str(patch["severity"]).lower() == "critical"
    )
    before_compliant = sum(1 for entry in scanned if not entry["missing_patches"])
    rows = [
        (
            "EC2 instances compliant",
            f"{before_compliant} of {len(scanned)}",
            "",
        ),
        ("Missing patches", str(before_missing), ""),
        ("... of which critical", str(before_critical), ""),
        ("Distinct CVEs those patches fix", str(report["totals"]["cves"]["count"]), ""),
    ]
    rds = [entry for entry in report["resources"] if entry["resource_type"] == "rds"]
    pending, applied, scheduled = rds_pending_after(report)
    rds_before = f"{pending} on {_count(len(rds), 'database', 'databases')}"
    if report["mode"] != INSTALL:
        return rows + ([(RDS_PENDING_LABEL, rds_before, "")] if rds else [])
    states = [entry["patch_state"] for entry in scanned]
    known = [state for state in states if state is not None]
    after_missing = sum(int(state["missing"]) + int(state["failed"]) for state in known)
    after_critical = sum(int(state["critical_non_compliant"]) for state in known)
    after_compliant = sum(1 for state in known if not int(state["missing"]) + int(state["failed"]))
    unknown = len(states) - len(known)
    suffix = f" ({unknown} without a patch state)" if unknown else ""
    inspection = report.get("inspection")
    cves = "not inspected"
    if inspection is not None:
        cves = _cves_after(inspection)
    after = [
        f"{after_compliant} of {len(scanned)}{suffix}",
        str(after_missing),
        str(after_critical),
        cves,
    ]
    rows = [(label, before, now) for (label, before, _), now in zip(rows, after, strict=True)]
    if rds:
        how = [f"{applied} applied by the run"]
        how += [f"{scheduled} opted in for the next maintenance window"] if scheduled else []
        rows.append((RDS_PENDING_LABEL, rds_before, f"{pending - applied} ({', '.join(how)})"))
    config = report.get("config") or {}
    if config.get("by_compliance"):
        rows.append(("AWS Config patch compliance", "", _in_words(config["by_compliance"])))
    return rows


def _cves_after(inspection: Mapping[str, Any]) -> str:
    """Inspector's verdict on the targeted CVEs: "13 closed on every instance; 2 not proven closed on every
    instance (23 of 1243 instance-CVE pairs)"."""
    cves = cves_by_id(inspection["cves"])
    if not cves:
        return "no CVE to prove"
    closed = sum(1 for cve in cves if cve["status"] == "REMEDIATED")
    pairs = sum(sum(cve["instances"].values()) for cve in cves)
    open_pairs = sum(n for cve in cves for status, n in cve["instances"].items() if status != "REMEDIATED")
    text = f"{closed} closed on every instance"
    if closed < len(cves):
        text += f"; {len(cves) - closed} still open on some ({open_pairs} of {pairs} instance-CVE pairs)"
    return text


def _compliance_section(report: Mapping[str, Any]) -> str:
    """Before and after side by side, so the scan's counts never read as the fleet's state after the install."""
    rows = compliance_before_after(report)
    if report["mode"] != INSTALL:
        cells = [[escape(label), escape(before)] for label, before, _ in rows]
        return f'<h2 id="compliance">Compliance found by the scan</h2>{_table(["Measure", "The scan"], cells)}'
    cells = [[escape(label), escape(before or "-"), escape(after)] for label, before, after in rows]
    headers = ["Measure", "Before the run (the scan)", "After the run (verify, Inspector, Config)"]
    return f'<h2 id="compliance">Compliance before and after the run</h2>{_table(headers, cells)}'


def _kpis_section(kpis: Mapping[str, Any] | None) -> str:
    """The fleet's KPIs, each target's, then the failures by cause (what each means, with its code)."""
    if not kpis:
        return ""
    fleet = kpis["fleet"]
    rows = [[escape(label), escape(value)] for label, value in kpi_rows(fleet)]
    causes = failure_causes(fleet)
    failures = ""
    if causes:
        cells = [
            [escape(meaning[:1].upper() + meaning[1:]), f'<code class="id">{escape(code)}</code>', str(n)]
            for meaning, code, n in causes
        ]
        failures = (
            f"<h3>Failures by cause ({sum(n for _, _, n in causes)})</h3>"
            f"{_table(['Cause', 'Code', 'Resources'], cells)}"
        )
    return f'<h2 id="kpis">KPIs</h2>{_table(["KPI", "Value"], rows)}{_targets_table(kpis)}{failures}'


def _targets_table(kpis: Mapping[str, Any]) -> str:
    """The KPIs per account and region, when there is more than one."""
    targets = kpis["targets"]
    if len(targets) < 2:
        return ""
    install = any(target["attempted"] for target in targets)
    headers = ["Account", "Region", KPI_LABELS["in_scope"], KPI_LABELS["already_compliant"]]
    headers += [KPI_LABELS["non_compliant"]]
    if install:
        headers += [KPI_LABELS["patched"], KPI_LABELS["failed"], "Success rate", "Time to patch (average)"]
    rows = []
    for target in targets:
        row = [*_cells(target, ("account_id", "region"))]
        row += [str(int(target[name])) for name in ("in_scope", "already_compliant", "non_compliant")]
        if install:
            ttp = target["time_to_patch"]
            row += [str(int(target["patched"])), str(int(target["failed"])), escape(percent(target["success_rate"]))]
            row += [escape(minutes(ttp["mean_seconds"])) if ttp else ""]
        rows.append(row)
    return f"<h3>Per account and region ({len(rows)})</h3>{_table(headers, rows)}"


def render_html(report: Mapping[str, Any]) -> str:
    """The report (report.REPORT_SCHEMA) as a self-contained HTML page."""
    totals = report["totals"]
    states = list(COMPLIANCE_COLORS)
    charts = [
        bar_chart(SEVERITY_CHART_TITLE, _severity_bars(totals["by_severity"]), SEVERITY_COLORS),
        stacked_bar_chart(REGION_CHART_TITLE, list(totals["by_region"].items()), states, COMPLIANCE_COLORS),
        bar_chart(VERDICT_CHART_TITLE, [(verdict_label(str(k)), int(v)) for k, v in totals["by_verdict"].items()]),
        stacked_bar_chart(OS_CHART_TITLE, list(totals["by_os"].items()), states, COMPLIANCE_COLORS),
    ]
    meanings = report.get("verdict_meanings", {})
    legend_rows = [
        [escape(verdict_label(k)), f'<code class="id">{escape(k)}</code>', escape(v)] for k, v in meanings.items()
    ]
    legend = _table(["Verdict", "Code", "Meaning"], legend_rows) if meanings else ""
    after = "after the run" if report["mode"] == INSTALL else "as the scan found it"
    charts_note = (
        "Missing patches: as the scan found them, before the run. Verdicts and compliance by region and "
        "operating system: after the run."
        if report["mode"] == INSTALL
        else "As the scan found them."
    )
    title = f"Patch cycle report: {report['run_id']}"
    install = report.get("install")
    install_html = _install_sections(install) if install is not None else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">{escape(str(report["mode"]).capitalize())} run · generated '
        f"{escape(timestamp(str(report['generated_at'])))}</p>"
        f"{_outcome_section(report.get('outcome'))}"
        f"{_incomplete_section(report['incomplete'])}{_accounting_section(report['accounting'])}"
        f'<p class="meta">Each in-scope resource by its compliance {after}:</p>{_cards(totals)}'
        f"{_compliance_section(report)}{_kpis_section(report.get('kpis'))}"
        f'<h2>Charts</h2><p class="meta">{escape(charts_note)}</p><div class="charts">{"".join(charts)}</div>'
        f"<h2>Verdict meanings</h2>{legend}{install_html}"
        f"{_inspection_section(report.get('inspection'))}{_config_section(report.get('config'))}"
        f"{_resources_section(report['resources'], with_waves=install is not None)}</body></html>"
    )
