"""The run's KPIs (core/kpis.py) as CloudWatch MetricDatum lists, and the CloudWatch dashboard that shows them.

Namespace NAMESPACE. Per-target metrics carry the dimensions AccountId and Region; the fleet-wide ones carry
none (CloudWatch keeps each dimension set as a metric of its own, so they never add up with the per-target
ones). `Failures` adds FailureReason to either set. docs/metrics.md documents every metric.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from patchcycle.core.kpis import FAILURE_REASONS, INSTALL_ONLY_REASONS, target_kpis

NAMESPACE: Final = "PatchCycle"
ACCOUNT_DIMENSION: Final = "AccountId"
REGION_DIMENSION: Final = "Region"
REASON_DIMENSION: Final = "FailureReason"
FAILURES_METRIC: Final = "Failures"
TIME_TO_PATCH_METRIC: Final = "TimeToPatch"
INCOMPLETE_METRIC: Final = "IncompleteParts"

# PutMetricData's documented limits per MetricDatum.
MAX_VALUES_PER_DATUM: Final = 150
MAX_DIMENSIONS_PER_DATUM: Final = 30
# Dashboards: DashboardName is letters, digits, "-" and "_" (1 to 255); a body has at most 500 widgets.
DASHBOARD_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# The IAM policy allows PutDashboard on dashboards named so (arn:aws:cloudwatch::*:dashboard/patchcycle*).
DASHBOARD_PREFIX: Final = "patchcycle"
MAX_WIDGETS: Final = 500
# Lines per graph, kept well under the console's limit so each graph stays readable.
MAX_LINES_PER_WIDGET: Final = 100
DASHBOARD_PERIOD_SECONDS: Final = 86400  # runs are monthly or ad hoc: one point per day
DASHBOARD_START: Final = "-P180D"

Block = Mapping[str, Any]


@dataclass(frozen=True)
class MetricSpec:
    """One KPI published as a metric: its name, CloudWatch unit, value (None: not published) and meaning."""

    name: str
    unit: str
    value: Callable[[Block], float | None]
    meaning: str
    install_only: bool = False


def _field(*path: str) -> Callable[[Block], float | None]:
    def value(block: Block) -> float | None:
        current: Any = block
        for step in path:
            if current is None:
                return None
            current = current[step]
        return None if current is None else float(current)

    return value


def _optional(block_name: str, count: str) -> Callable[[Block], float | None]:
    """A count of an optional block (None: the block is absent or null, e.g. KPIs of a report before it existed)."""

    def value(block: Block) -> float | None:
        inner = block.get(block_name)
        return None if inner is None else float(inner[count])

    return value


# The single-value metrics, in dashboard order. Failures and TimeToPatch are built apart (dimension, values).
METRICS: Final[tuple[MetricSpec, ...]] = (
    MetricSpec("InScope", "Count", _field("in_scope"), "in-scope resources (EC2, RDS, S3)"),
    MetricSpec("AlreadyCompliant", "Count", _field("already_compliant"), "verdict ALREADY_COMPLIANT"),
    MetricSpec("NonCompliant", "Count", _field("non_compliant"), "compliance state NON_COMPLIANT after the run"),
    MetricSpec("Skipped", "Count", _field("skipped"), "any SKIPPED_* verdict"),
    MetricSpec(
        "Patched",
        "Count",
        _field("patched"),
        "PATCHED, PATCHED_PENDING_REBOOT or MAINTENANCE_APPLIED",
        install_only=True,
    ),
    MetricSpec("PendingReboot", "Count", _field("pending_reboot"), "PATCHED_PENDING_REBOOT", install_only=True),
    MetricSpec("Failed", "Count", _field("failed"), "verdict FAILED", install_only=True),
    MetricSpec(
        "InstallAttempted",
        "Count",
        _field("attempted"),
        "Patched + Failed + RolledBack + RollbackFailed",
        install_only=True,
    ),
    MetricSpec("RolledBack", "Count", _field("rolled_back"), "verdict ROLLED_BACK", install_only=True),
    MetricSpec("RollbackFailed", "Count", _field("rollback_failed"), "verdict ROLLBACK_FAILED", install_only=True),
    MetricSpec(
        "SuccessRate",
        "Percent",
        _field("success_rate"),
        "100 * Patched / InstallAttempted; not published when nothing was attempted",
        install_only=True,
    ),
    MetricSpec("CvesRemediated", "Count", _field("cves", "remediated"), "(instance, CVE) rows REMEDIATED"),
    MetricSpec("CvesStillActive", "Count", _field("cves", "still_active"), "(instance, CVE) rows STILL_ACTIVE"),
    MetricSpec("CvesUnverified", "Count", _field("cves", "unverified"), "(instance, CVE) rows UNVERIFIED"),
    MetricSpec("CvesNotFound", "Count", _field("cves", "not_found"), "(instance, CVE) rows NOT_FOUND"),
    MetricSpec(
        "ResidualCriticalFindings", "Count", _field("residual_findings", "critical"), "residual CRITICAL findings"
    ),
    MetricSpec("ResidualHighFindings", "Count", _field("residual_findings", "high"), "residual HIGH findings"),
    # The Auto Scaling groups' new instances (replacements): not resources of the report, so counted apart.
    MetricSpec(
        "NewInstancesLaunched",
        "Count",
        _optional("replacements", "launched"),
        "instances the Auto Scaling groups' refreshes launched",
        install_only=True,
    ),
    MetricSpec(
        "NewInstancesCompliant",
        "Count",
        _optional("replacements", "compliant"),
        "of those, checked with every pinned patch installed",
        install_only=True,
    ),
    MetricSpec(
        "NewInstancesCvesClosed",
        "Count",
        _optional("replacements", "cves_closed"),
        "of those, checked with the run's CVEs closed (Amazon Inspector)",
        install_only=True,
    ),
    MetricSpec(
        "NewInstancesNotChecked",
        "Count",
        _optional("replacements", "not_checked"),
        "of those, not checked (verify_replacements did not reach them)",
        install_only=True,
    ),
)
UNITS: Final[Mapping[str, str]] = {
    **{spec.name: spec.unit for spec in METRICS},
    FAILURES_METRIC: "Count",
    TIME_TO_PATCH_METRIC: "Seconds",
    INCOMPLETE_METRIC: "Count",
}
METRIC_NAMES: Final = tuple(UNITS)


def target_dimensions(account_id: str, region: str) -> list[dict[str, str]]:
    """The dimensions of a target's metrics (CloudWatch rejects empty dimension values)."""
    if not account_id or not region:
        raise ValueError(f"a target's metrics need its account and region, got {account_id!r}, {region!r}")
    return [{"Name": ACCOUNT_DIMENSION, "Value": account_id}, {"Name": REGION_DIMENSION, "Value": region}]


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name}: CloudWatch takes no NaN or infinite values, got {value}")
    return value


def _block_data(
    block: Block, mode: str, dimensions: list[dict[str, str]], timestamp: dt.datetime
) -> list[dict[str, Any]]:
    """The datums of one KPI block under one dimension set."""
    common = {"Timestamp": timestamp}
    data: list[dict[str, Any]] = []
    for spec in METRICS:
        value = spec.value(block)
        if value is None or (spec.install_only and mode != "install"):
            continue
        data.append(
            {"MetricName": spec.name, "Dimensions": dimensions, "Value": _finite(spec.name, value), "Unit": spec.unit}
            | common
        )
    for reason in FAILURE_REASONS:
        count = block["failures_by_reason"].get(reason)
        if count is None or (reason in INSTALL_ONLY_REASONS and mode != "install"):
            continue
        data.append(
            {
                "MetricName": FAILURES_METRIC,
                "Dimensions": [*dimensions, {"Name": REASON_DIMENSION, "Value": reason}],
                "Value": float(count),
                "Unit": "Count",
            }
            | common
        )
    samples = (block["time_to_patch"] or {}).get("samples", [])
    # Values/Counts keep the distribution (CloudWatch computes percentiles from it), at most 150 values a datum.
    for start in range(0, len(samples), MAX_VALUES_PER_DATUM):
        chunk = samples[start : start + MAX_VALUES_PER_DATUM]
        data.append(
            {
                "MetricName": TIME_TO_PATCH_METRIC,
                "Dimensions": dimensions,
                "Values": [_finite(TIME_TO_PATCH_METRIC, float(seconds)) for seconds, _ in chunk],
                "Counts": [float(count) for _, count in chunk],
                "Unit": "Seconds",
            }
            | common
        )
    return data


def metric_data(
    kpis: Mapping[str, Any],
    timestamp: dt.datetime,
    *,
    targets: Sequence[tuple[str, str]] | None = None,
    fleet: bool = True,
) -> list[dict[str, Any]]:
    """PutMetricData MetricDatum dicts for compute_kpis' result, all stamped `timestamp` (timezone-aware).

    fleet: the fleet-wide datums (no AccountId/Region), IncompleteParts among them. targets: the (account id,
    region) pairs to publish, each with its own block or, when the report has none of it, zeros; None: every
    target of `kpis`. Install-only metrics appear in install mode only; a None KPI (no success rate when nothing
    was attempted, no CVE counts without an inspection section, no time to patch without samples) is left out
    rather than sent as a misleading number.
    """
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    mode = str(kpis["mode"])
    data: list[dict[str, Any]] = []
    if fleet:
        data.extend(_block_data(kpis["fleet"], mode, [], timestamp))
        incomplete = float(kpis["incomplete_parts"])
        data.append({"MetricName": INCOMPLETE_METRIC, "Dimensions": [], "Value": incomplete, "Unit": "Count"})
        data[-1]["Timestamp"] = timestamp
    chosen = [(t["account_id"], t["region"]) for t in kpis["targets"]] if targets is None else list(targets)
    for account_id, region in chosen:
        block = target_kpis(kpis, account_id, region)
        data.extend(_block_data(block, mode, target_dimensions(account_id, region), timestamp))
    return data


def check_dashboard_name(name: str) -> str:
    """The name, if PutDashboard accepts it (letters, digits, "-" and "_"; 1 to 255 characters) and the IAM
    policy allows it (it starts with DASHBOARD_PREFIX)."""
    if not DASHBOARD_NAME.fullmatch(name):
        raise ValueError(f"dashboard name {name!r}: use 1 to 255 letters, digits, '-' or '_'")
    if not name.startswith(DASHBOARD_PREFIX):
        raise ValueError(
            f"dashboard name {name!r}: must start with {DASHBOARD_PREFIX!r}, the dashboards the IAM policy "
            "(include/iam/patchcycle-policy.json) lets the role write"
        )
    return name


def _line(
    namespace: str, metric: str, region: str, label: str, dimensions: Sequence[str] = (), **options: Any
) -> list[Any]:
    """One line of a metric widget: namespace, name, dimension name/value pairs, then its rendering options."""
    return [namespace, metric, *dimensions, {"region": region, "label": label, **options}]


def _graph(title: str, region: str, lines: list[list[Any]], stat: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "metric",
        "properties": {
            "title": title,
            "view": "timeSeries",
            "region": region,
            "stat": stat,
            "period": DASHBOARD_PERIOD_SECONDS,
            "metrics": lines,
            **properties,
        },
    }


def _graphs(title: str, region: str, lines: list[list[Any]], stat: str, **properties: Any) -> list[dict[str, Any]]:
    """A graph, split into parts when it has more lines than MAX_LINES_PER_WIDGET."""
    parts = [lines[i : i + MAX_LINES_PER_WIDGET] for i in range(0, len(lines), MAX_LINES_PER_WIDGET)]
    if len(parts) == 1:
        return [_graph(title, region, parts[0], stat, **properties)]
    return [
        _graph(f"{title} ({n} of {len(parts)})", region, part, stat, **properties) for n, part in enumerate(parts, 1)
    ]


def dashboard_body(
    namespace: str,
    targets: Sequence[tuple[str, str]],
    *,
    fleet_region: str | None = None,
    title: str = "Patch cycle KPIs",
) -> str:
    """The DashboardBody JSON of one account's dashboard (dashboards are per account, not per region).

    targets: the (account id, region) pairs whose metrics this account holds, one line each per graph;
    fleet_region: the region the fleet-wide metrics are published in, when they are published in this account.
    One graph per metric (TimeToPatch twice: median and maximum), then failures by reason per target and for the
    fleet. Graphs show each day's Maximum: a re-published run then counts once.
    """
    pairs = sorted(set(targets))
    if not pairs and fleet_region is None:
        raise ValueError("a dashboard needs at least one target or the fleet's region")
    home = fleet_region or pairs[0][1]

    def lines(metric: str, **options: Any) -> list[list[Any]]:
        found = [] if fleet_region is None else [_line(namespace, metric, fleet_region, "fleet", **options)]
        for account_id, region in pairs:
            dimensions = (ACCOUNT_DIMENSION, account_id, REGION_DIMENSION, region)
            found.append(_line(namespace, metric, region, f"{account_id} {region}", dimensions, **options))
        return found

    header = (
        f"# {title}\n"
        f"Namespace `{namespace}`: one point per run (daily Maximum). Lines: one per account and region"
        + (", and the fleet (published once per run, from the first target)" if fleet_region else "")
        + ". Definitions: docs/metrics.md."
    )
    widgets: list[dict[str, Any]] = [{"type": "text", "width": 24, "height": 2, "properties": {"markdown": header}}]
    count_axis = {"yAxis": {"left": {"min": 0}}}
    for spec in METRICS:
        axis = {"yAxis": {"left": {"min": 0, "max": 100}}} if spec.unit == "Percent" else count_axis
        widgets += _graphs(f"{spec.name} ({spec.unit})", home, lines(spec.name), "Maximum", **axis)
    for stat, label in (("p50", "median"), ("Maximum", "maximum")):
        widgets += _graphs(f"{TIME_TO_PATCH_METRIC}, {label} (Seconds)", home, lines(TIME_TO_PATCH_METRIC), stat)
    scopes: list[tuple[str, str, tuple[str, ...]]] = []
    if fleet_region is not None:
        incomplete = [_line(namespace, INCOMPLETE_METRIC, fleet_region, "fleet")]
        widgets += _graphs(f"{INCOMPLETE_METRIC} (Count)", fleet_region, incomplete, "Maximum", **count_axis)
        scopes.append(("fleet", fleet_region, ()))
    scopes += [
        (f"{account_id} {region}", region, (ACCOUNT_DIMENSION, account_id, REGION_DIMENSION, region))
        for account_id, region in pairs
    ]
    for label, region, dimensions in scopes:
        reason_lines = [
            _line(namespace, FAILURES_METRIC, region, reason, (*dimensions, REASON_DIMENSION, reason))
            for reason in FAILURE_REASONS
        ]
        title_of = f"{FAILURES_METRIC} by reason: {label} (Count)"
        widgets += _graphs(title_of, region, reason_lines, "Maximum", stacked=True, **count_axis)
    if len(widgets) > MAX_WIDGETS:
        raise ValueError(f"the dashboard would have {len(widgets)} widgets, more than CloudWatch's {MAX_WIDGETS}")
    for index, widget in enumerate(widgets[1:]):
        widget.update(x=(index % 3) * 8, y=2 + (index // 3) * 6, width=8, height=6)
    widgets[0].update(x=0, y=0)
    return json.dumps({"start": DASHBOARD_START, "periodOverride": "inherit", "widgets": widgets}, sort_keys=True)
