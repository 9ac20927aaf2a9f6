"""KPIs as MetricDatum dicts (units, dimensions, PutMetricData's limits) and the dashboard body."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from patchcycle.core.cloudwatch_metrics import (
    ACCOUNT_DIMENSION,
    FAILURES_METRIC,
    INCOMPLETE_METRIC,
    MAX_LINES_PER_WIDGET,
    MAX_VALUES_PER_DATUM,
    METRIC_NAMES,
    METRICS,
    NAMESPACE,
    REASON_DIMENSION,
    REGION_DIMENSION,
    TIME_TO_PATCH_METRIC,
    UNITS,
    check_dashboard_name,
    dashboard_body,
    metric_data,
)
from patchcycle.core.kpis import FAILURE_REASONS, INSTALL_ONLY_REASONS, compute_kpis
from tests.core.test_kpis import install_report
from tests.core.test_report import sample_report
from tests.core.test_verdicts import ACCOUNT, EAST, WEST

NOW = dt.datetime(2026, 11, 20, 3, 30, tzinfo=dt.UTC)
INSTALL_ONLY = {spec.name for spec in METRICS if spec.install_only}
PUT_METRIC_DATA = botocore.session.get_session().get_service_model("cloudwatch").operation_model("PutMetricData")


def dims(datum: dict[str, Any]) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in datum["Dimensions"]}


def assert_valid_for_botocore(data: list[dict[str, Any]]) -> None:
    report = ParamValidator().validate({"Namespace": NAMESPACE, "MetricData": data}, PUT_METRIC_DATA.input_shape)
    assert not report.has_errors(), report.generate_report()


def test_install_metric_data_units_dimensions_and_values() -> None:
    kpis = compute_kpis(install_report())
    data = metric_data(kpis, NOW)
    assert_valid_for_botocore(data)
    assert all(d["Unit"] == UNITS[d["MetricName"]] for d in data)
    assert all(d["Timestamp"] == NOW for d in data)
    assert all(len(d["Dimensions"]) <= 30 and len(d.get("Values", [])) <= MAX_VALUES_PER_DATUM for d in data)
    assert all(math.isfinite(v) for d in data for v in [d.get("Value", 0.0), *d.get("Values", [])])

    fleet = [d for d in data if ACCOUNT_DIMENSION not in dims(d)]
    assert {d["MetricName"] for d in fleet} >= {
        spec.name for spec in METRICS if not spec.name.startswith(("Cve", "Res", "NewInstances"))
    }
    fleet_values = {d["MetricName"]: d["Value"] for d in fleet if "Value" in d and not d["Dimensions"]}
    assert fleet_values["InScope"] == kpis["fleet"]["in_scope"]
    assert fleet_values["SuccessRate"] == pytest.approx(kpis["fleet"]["success_rate"])
    assert fleet_values[INCOMPLETE_METRIC] == kpis["incomplete_parts"]
    # No inspection section: no CVE or residual findings metric at all (not zeros).
    assert not [d for d in data if d["MetricName"].startswith(("Cves", "Residual"))]

    for target in kpis["targets"]:
        where = {ACCOUNT_DIMENSION: target["account_id"], REGION_DIMENSION: target["region"]}
        mine = [d for d in data if {k: dims(d).get(k) for k in where} == where]
        single = {d["MetricName"]: d["Value"] for d in mine if set(dims(d)) == set(where) and "Value" in d}
        assert single["InScope"] == target["in_scope"]
        assert single["Patched"] == target["patched"] and single["Failed"] == target["failed"]
        assert ("SuccessRate" in single) == (target["attempted"] > 0)
        failures = {dims(d)[REASON_DIMENSION]: d["Value"] for d in mine if d["MetricName"] == FAILURES_METRIC}
        assert failures == {reason: float(n) for reason, n in target["failures_by_reason"].items()}
        ttp = [d for d in mine if d["MetricName"] == TIME_TO_PATCH_METRIC]
        samples = (target["time_to_patch"] or {}).get("samples", [])
        assert [(v, c) for d in ttp for v, c in zip(d["Values"], d["Counts"], strict=True)] == [
            (float(v), float(c)) for v, c in samples
        ]


def test_scan_mode_sends_no_install_metrics() -> None:
    data = metric_data(compute_kpis(sample_report()), NOW)
    assert_valid_for_botocore(data)
    names = {d["MetricName"] for d in data}
    assert not names & INSTALL_ONLY and TIME_TO_PATCH_METRIC not in names
    reasons = {dims(d)[REASON_DIMENSION] for d in data if d["MetricName"] == FAILURES_METRIC}
    assert reasons == set(FAILURE_REASONS) - INSTALL_ONLY_REASONS


def test_inspection_metrics_appear_with_the_inspection_section() -> None:
    cves = [{"account_id": ACCOUNT, "region": EAST, "status": "STILL_ACTIVE"}]
    residual = [{"account_id": ACCOUNT, "region": WEST, "severity": "CRITICAL"}]
    kpis = compute_kpis(install_report() | {"inspection": {"cves": cves, "residual": residual}})
    data = metric_data(kpis, NOW, targets=[(ACCOUNT, WEST)], fleet=False)
    values = {d["MetricName"]: d["Value"] for d in data if "Value" in d and d["MetricName"] != FAILURES_METRIC}
    assert values["CvesStillActive"] == 0 and values["ResidualCriticalFindings"] == 1
    assert all(dims(d)[REGION_DIMENSION] == WEST for d in data)


def test_the_new_instances_of_refreshed_groups_are_published_per_target_and_for_the_fleet() -> None:
    def new(compliant: bool, cves_closed: bool, checked: bool = True) -> dict[str, Any]:
        return {"compliant": compliant, "cves_closed": cves_closed, "checked": checked}

    groups = [
        {
            "account_id": ACCOUNT,
            "region": EAST,
            "new_instances": [new(True, True), new(True, False), new(False, False)],
        },
        {"account_id": ACCOUNT, "region": WEST, "new_instances": [new(True, True), new(False, False, checked=False)]},
    ]
    report = install_report()
    kpis = compute_kpis(report | {"install": {**report["install"], "auto_scaling_groups": groups}})
    data = metric_data(kpis, NOW)
    assert_valid_for_botocore(data)
    names = ("NewInstancesLaunched", "NewInstancesCompliant", "NewInstancesCvesClosed", "NewInstancesNotChecked")

    def values(where: dict[str, str]) -> tuple[float, ...]:
        found = {d["MetricName"]: d["Value"] for d in data if dims(d) == where and d["MetricName"] in names}
        return tuple(found[name] for name in names)

    assert values({}) == (5, 3, 2, 1)
    assert values({ACCOUNT_DIMENSION: ACCOUNT, REGION_DIMENSION: EAST}) == (3, 2, 1, 0)
    assert values({ACCOUNT_DIMENSION: ACCOUNT, REGION_DIMENSION: WEST}) == (2, 1, 1, 1)
    # A run without Auto Scaling groups (no replacements block) sends none of them, not zeros.
    assert not [d for d in metric_data(compute_kpis(install_report()), NOW) if d["MetricName"] in names]
    # KPIs of a report written before the block existed have no such key at all.
    old = compute_kpis(install_report())
    for block in [old["fleet"], *old["targets"]]:
        del block["replacements"]
    assert not [d for d in metric_data(old, NOW) if d["MetricName"] in names]


def test_selected_targets_and_a_target_without_resources() -> None:
    kpis = compute_kpis(install_report())
    only_east = metric_data(kpis, NOW, targets=[(ACCOUNT, EAST)], fleet=False)
    assert {(dims(d)[ACCOUNT_DIMENSION], dims(d)[REGION_DIMENSION]) for d in only_east} == {(ACCOUNT, EAST)}
    nowhere = metric_data(kpis, NOW, targets=[("210987654321", "ap-south-1")], fleet=False)
    assert nowhere and all(d.get("Value", 0) == 0 for d in nowhere)
    assert "SuccessRate" not in {d["MetricName"] for d in nowhere}  # nothing attempted: no rate
    with pytest.raises(ValueError, match="account and region"):
        metric_data(kpis, NOW, targets=[("", EAST)])
    with pytest.raises(ValueError, match="timezone"):
        metric_data(kpis, NOW.replace(tzinfo=None))


def test_time_to_patch_is_split_at_150_values_per_datum() -> None:
    kpis = copy.deepcopy(compute_kpis(install_report()))
    samples = [[float(60 * n), 1 + n % 3] for n in range(400)]
    kpis["fleet"]["time_to_patch"]["samples"] = samples
    ttp = [d for d in metric_data(kpis, NOW) if d["MetricName"] == TIME_TO_PATCH_METRIC and not d["Dimensions"]]
    assert len(ttp) == math.ceil(len(samples) / MAX_VALUES_PER_DATUM)
    assert all(len(d["Values"]) == len(d["Counts"]) <= MAX_VALUES_PER_DATUM for d in ttp)
    assert sum(c for d in ttp for c in d["Counts"]) == sum(c for _, c in samples)
    assert_valid_for_botocore(ttp)


def lines_of(body: str) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """(namespace, metric, dimensions, options) of every metric line of the dashboard."""
    found = []
    for widget in json.loads(body)["widgets"]:
        for line in widget["properties"].get("metrics", []):
            *head, options = line
            namespace, name, *pairs = head
            found.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)), options))
    return found


def test_dashboard_names_every_metric_and_every_published_series() -> None:
    kpis = compute_kpis(install_report() | {"inspection": {"cves": [], "residual": []}})
    targets = [(t["account_id"], t["region"]) for t in kpis["targets"]]
    body = dashboard_body(NAMESPACE, targets, fleet_region=EAST)
    document = json.loads(body)
    widgets = document["widgets"]
    assert widgets[0]["type"] == "text" and len(widgets) <= 500
    assert all(w["x"] + w["width"] <= 24 and w["y"] >= 0 for w in widgets)
    assert len({(w["x"], w["y"]) for w in widgets}) == len(widgets)  # no two widgets in one place
    for widget in widgets[1:]:
        properties = widget["properties"]
        assert widget["type"] == "metric" and properties["region"] in (EAST, WEST) and properties["period"] > 0
    lines = lines_of(body)
    assert {name for _, name, _, _ in lines} == set(METRIC_NAMES)
    assert {namespace for namespace, *_ in lines} == {NAMESPACE}
    # Every series metric_data publishes (name + dimensions, in its region) has a line on the dashboard.
    shown = {(name, tuple(sorted(d.items())), options["region"]) for _, name, d, options in lines}
    for datum in metric_data(kpis, NOW):
        d = dims(datum)
        region = d.get(REGION_DIMENSION, EAST)  # the fleet's metrics live in the fleet region
        assert (datum["MetricName"], tuple(sorted(d.items())), region) in shown, datum["MetricName"]


def test_dashboard_without_fleet_and_with_many_targets() -> None:
    targets = [("111122223333", f"r-{n:03d}") for n in range(150)]
    body = dashboard_body(NAMESPACE, targets)
    lines = lines_of(body)
    assert not [line for line in lines if ACCOUNT_DIMENSION not in line[2]]  # no fleet line anywhere
    per_widget = [len(w["properties"].get("metrics", [])) for w in json.loads(body)["widgets"]]
    assert max(per_widget) <= MAX_LINES_PER_WIDGET
    in_scope = [line for line in lines if line[1] == "InScope"]
    assert len(in_scope) == len(targets)
    with pytest.raises(ValueError, match="at least one"):
        dashboard_body(NAMESPACE, [])


@pytest.mark.parametrize("name", ["patchcycle", "patchcycle-prod_2"])
def test_dashboard_names_accepted(name: str) -> None:
    assert check_dashboard_name(name) == name


@pytest.mark.parametrize("name", ["", "patchcycle prod", "patchcycle/x", "Patchcycle", "ops", "patchcycle" + "x" * 250])
def test_dashboard_names_refused(name: str) -> None:
    with pytest.raises(ValueError, match="dashboard name"):
        check_dashboard_name(name)
