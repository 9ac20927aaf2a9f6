"""CloudWatchMetricsHook against the sandbox: PutMetricData batched to its limits, values read back, dashboards."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from typing import Any

import pytest
from botocore.exceptions import ClientError

from patchcycle.hooks.cloudwatch_metrics import (
    MAX_DATUMS_PER_CALL,
    MAX_REQUEST_BYTES,
    CloudWatchMetricsHook,
    encoded_size,
    metric_batches,
)
from tests.conftest import client_factory, sandbox_calls

ACCOUNT, REGION = "123456789012", "eu-west-1"
SCENARIO = {"name": "cloudwatch", "accounts": [{"id": ACCOUNT, "regions": {REGION: {}}}]}
NAMESPACE = "PatchCycleTest"
SANDBOX_MAX_ATTEMPTS = 2


def hook() -> CloudWatchMetricsHook:
    return CloudWatchMetricsHook(aws_conn_id="aws_default", region_name=REGION)


def request_sizes(cloudwatch: CloudWatchMetricsHook) -> list[int]:
    """The body size of every PutMetricData request the hook's client sends from now on."""
    sizes: list[int] = []

    def record(request: Any, **_: Any) -> None:
        sizes.append(len(request.body or b""))

    cloudwatch.conn.meta.events.register("before-send.cloudwatch.PutMetricData", record)
    return sizes


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def test_2500_datums_take_three_calls_and_read_back(fresh_server: Any) -> None:
    stamp = now()
    count = 2500
    data = [
        {
            "MetricName": f"Kpi{n % 50}",
            "Dimensions": [{"Name": "Shard", "Value": str(n // 50)}],
            "Value": float(n),
            "Unit": "Count",
            "Timestamp": stamp,
        }
        for n in range(count)
    ]
    cloudwatch = hook()
    sizes = request_sizes(cloudwatch)
    calls = cloudwatch.put_metrics(NAMESPACE, data)
    assert calls == math.ceil(count / MAX_DATUMS_PER_CALL) == 3
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutMetricData") == calls == len(sizes)
    assert all(size <= MAX_REQUEST_BYTES for size in sizes)

    client = client_factory(fresh_server.url)("cloudwatch", region=REGION)
    names = {
        (m["MetricName"], m["Dimensions"][0]["Value"])
        for page in client.get_paginator("list_metrics").paginate(Namespace=NAMESPACE)
        for m in page["Metrics"]
    }
    assert len(names) == count  # each datum is its own metric
    shard, name = 37, "Kpi12"
    statistics = client.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": "Shard", "Value": str(shard)}],
        StartTime=stamp - dt.timedelta(minutes=5),
        EndTime=stamp + dt.timedelta(minutes=5),
        Period=60,
        Statistics=["Maximum"],
    )
    assert [p["Maximum"] for p in statistics["Datapoints"]] == [float(shard * 50 + 12)]


def test_large_datums_are_batched_by_request_size(fresh_server: Any) -> None:
    stamp = now()
    values = [float(10_000 + n) for n in range(150)]
    data = [
        {"MetricName": "TimeToPatch", "Dimensions": [{"Name": "Shard", "Value": str(n)}], "Unit": "Seconds"}
        | {"Values": values, "Counts": [1.0] * len(values), "Timestamp": stamp}
        for n in range(200)
    ]
    total = sum(encoded_size(datum) for datum in data)
    assert total > MAX_REQUEST_BYTES  # one call could not carry them all in the query encoding
    cloudwatch = hook()
    sizes = request_sizes(cloudwatch)
    calls = cloudwatch.put_metrics(NAMESPACE, data)
    assert calls >= math.ceil(total / MAX_REQUEST_BYTES) and calls == len(sizes)
    assert all(size <= MAX_REQUEST_BYTES for size in sizes)
    client = client_factory(fresh_server.url)("cloudwatch", region=REGION)
    statistics = client.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName="TimeToPatch",
        Dimensions=[{"Name": "Shard", "Value": "199"}],  # in the last batch
        StartTime=stamp - dt.timedelta(minutes=5),
        EndTime=stamp + dt.timedelta(minutes=5),
        Period=60,
        Statistics=["SampleCount", "Maximum"],
    )
    assert [(p["SampleCount"], p["Maximum"]) for p in statistics["Datapoints"]] == [(len(values), max(values))]


def test_batches_keep_order_and_respect_both_limits() -> None:
    data = [
        {"MetricName": f"M{n}", "Value": float(n), "Dimensions": [{"Name": "X", "Value": "y" * n}]} for n in range(60)
    ]
    budget = 2_000
    batches = list(metric_batches(data, max_datums=7, max_bytes=budget))
    assert [d for batch in batches for d in batch] == data
    assert all(len(batch) <= 7 and sum(encoded_size(d) for d in batch) <= budget for batch in batches)
    # Each batch is full: adding the next datum would break a limit.
    for batch, following in itertools.pairwise(batches):
        assert len(batch) == 7 or sum(encoded_size(d) for d in batch) + encoded_size(following[0]) > budget


@pytest.mark.parametrize(
    ("datum", "message"),
    [
        ({"MetricName": "V", "Values": [1.0] * 151}, "151 values"),
        ({"MetricName": "V", "Values": [1.0, 2.0], "Counts": [1.0]}, "one entry per value"),
        ({"MetricName": "D", "Value": 1.0, "Dimensions": [{"Name": f"d{n}", "Value": "v"} for n in range(31)]}, "30"),
        ({"MetricName": "N", "Value": math.nan}, "NaN"),
        ({"Value": 1.0}, "MetricName"),
    ],
)
def test_invalid_datums_fail_before_any_call(fresh_server: Any, datum: dict[str, Any], message: str) -> None:
    good = [{"MetricName": "Ok", "Value": 1.0}] * 5
    with pytest.raises(ValueError, match=message):
        hook().put_metrics(NAMESPACE, [*good, datum])
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutMetricData") == 0


def test_put_dashboard_and_read_it_back(fresh_server: Any) -> None:
    body = json.dumps(
        {"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6, "height": 2, "properties": {"markdown": "hi"}}]}
    )
    assert hook().put_dashboard("patchcycle-test", body) == []
    # On AWS a dashboard belongs to the account; moto keeps dashboards per region, so read it where it was put.
    client = client_factory(fresh_server.url)("cloudwatch", region=REGION)
    dashboard = client.get_dashboard(DashboardName="patchcycle-test")
    assert json.loads(dashboard["DashboardBody"]) == json.loads(body)
    assert dashboard["DashboardArn"] == f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/patchcycle-test"
    with pytest.raises(ClientError, match="invalid"):
        hook().put_dashboard("patchcycle-test", "{not json")
