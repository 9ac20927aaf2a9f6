"""CloudWatch PutMetricData, batched to the API's limits, and PutDashboard."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from patchcycle.core.cloudwatch_metrics import MAX_DIMENSIONS_PER_DATUM, MAX_VALUES_PER_DATUM

# PutMetricData's documented limits: at most 1,000 metrics (MetricDatum) and 1 MB per request.
MAX_DATUMS_PER_CALL: Final = 1000
MAX_REQUEST_BYTES: Final = 1_000_000  # 1 MB read as 10^6 bytes, the smaller reading
# What a request carries besides its datums (Action, Version, Namespace, headers left aside), rounded up.
REQUEST_OVERHEAD_BYTES: Final = 1_000
# The widest member index a request can have ("member.1000"): sizes are counted with it.
_INDEX_WIDTH: Final = len(str(MAX_DATUMS_PER_CALL))


def _form_pairs(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    """The (key, value) pairs of a value in the query protocol's form encoding."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _form_pairs(f"{prefix}.{key}", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value, 1):
            yield from _form_pairs(f"{prefix}.member.{index}", item)
    elif isinstance(value, dt.datetime):
        yield prefix, value.isoformat()
    else:
        yield prefix, str(value)


def encoded_size(datum: Mapping[str, Any]) -> int:
    """Bytes a datum takes in a PutMetricData request, in the query protocol's form encoding (the most verbose of
    CloudWatch's wire protocols, so an upper bound for the CBOR or JSON botocore may send), at the widest index."""
    prefix = "MetricData.member." + "9" * _INDEX_WIDTH
    return sum(len(quote(key)) + len(quote(value, safe="")) + 2 for key, value in _form_pairs(prefix, datum))


def check_datum(datum: Mapping[str, Any]) -> None:
    """ValueError for a datum PutMetricData would refuse: too many values or dimensions, NaN or infinite values."""
    name = datum.get("MetricName")
    if not name:
        raise ValueError(f"a MetricDatum needs a MetricName: {dict(datum)}")
    values = list(datum.get("Values", []))
    if len(values) > MAX_VALUES_PER_DATUM:
        raise ValueError(f"{name}: {len(values)} values in one datum, more than {MAX_VALUES_PER_DATUM}")
    if "Counts" in datum and len(datum["Counts"]) != len(values):
        raise ValueError(f"{name}: Counts must have one entry per value")
    if len(datum.get("Dimensions", [])) > MAX_DIMENSIONS_PER_DATUM:
        raise ValueError(f"{name}: more than {MAX_DIMENSIONS_PER_DATUM} dimensions")
    numbers = [*values, *datum.get("Counts", []), *([datum["Value"]] if "Value" in datum else [])]
    if not all(math.isfinite(float(number)) for number in numbers):
        raise ValueError(f"{name}: CloudWatch takes no NaN or infinite values")


def metric_batches(
    data: Sequence[Mapping[str, Any]],
    max_datums: int = MAX_DATUMS_PER_CALL,
    max_bytes: int = MAX_REQUEST_BYTES - REQUEST_OVERHEAD_BYTES,
) -> Iterator[list[Mapping[str, Any]]]:
    """Consecutive batches of at most `max_datums` datums and `max_bytes` encoded bytes (encoded_size), in order."""
    batch: list[Mapping[str, Any]] = []
    size = 0
    for datum in data:
        check_datum(datum)
        datum_size = encoded_size(datum)
        if datum_size > max_bytes:
            raise ValueError(f"{datum['MetricName']}: one datum of {datum_size} bytes exceeds {max_bytes}")
        if batch and (len(batch) == max_datums or size + datum_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(datum)
        size += datum_size
    if batch:
        yield batch


class CloudWatchMetricsHook(AwsBaseHook):
    """PutMetricData in batches within its limits, and PutDashboard."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "cloudwatch"
        super().__init__(*args, **kwargs)

    def put_metrics(self, namespace: str, data: Sequence[Mapping[str, Any]]) -> int:
        """Publish every datum in `namespace`, as few PutMetricData calls as the limits allow; returns the calls.

        The datums are checked before the first call, so a bad one fails the lot before anything is sent.
        """
        batches = list(metric_batches(data))
        for batch in batches:
            self.conn.put_metric_data(Namespace=namespace, MetricData=[dict(datum) for datum in batch])
        return len(batches)

    def put_dashboard(self, name: str, body: str) -> list[dict[str, Any]]:
        """Create or replace the dashboard (dashboards belong to the account, not to a region).

        Returns PutDashboard's DashboardValidationMessages: warnings about parts that may not render; a body
        CloudWatch cannot accept fails the call.
        """
        response = self.conn.put_dashboard(DashboardName=name, DashboardBody=body)
        return [dict(message) for message in response.get("DashboardValidationMessages", [])]
