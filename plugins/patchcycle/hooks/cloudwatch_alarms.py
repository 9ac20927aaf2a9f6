"""CloudWatch alarms: which of the named alarms (or alarms of a name prefix) are in ALARM, every page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

# DescribeAlarms takes at most 100 AlarmNames and MaxRecords 1..100.
MAX_ALARMS_PER_CALL = 100


class CloudWatchAlarmsHook(AwsBaseHook):
    """The alarm reads of the wave gates."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "cloudwatch"
        super().__init__(*args, **kwargs)

    def alarms_in_alarm(self, names: Sequence[str], prefixes: Sequence[str]) -> list[dict[str, Any]]:
        """The metric and composite alarms in state ALARM among `names` and those whose name starts with one of
        `prefixes` (one call per 100 names and one per prefix, every page)."""
        found: dict[str, dict[str, Any]] = {}
        queries: list[dict[str, Any]] = [
            {"AlarmNames": list(names[start : start + MAX_ALARMS_PER_CALL])}
            for start in range(0, len(names), MAX_ALARMS_PER_CALL)
        ]
        queries += [{"AlarmNamePrefix": prefix} for prefix in prefixes]
        paginator = self.conn.get_paginator("describe_alarms")
        for query in queries:
            pages = paginator.paginate(
                **query,
                StateValue="ALARM",
                AlarmTypes=["MetricAlarm", "CompositeAlarm"],
                PaginationConfig={"PageSize": MAX_ALARMS_PER_CALL},
            )
            for page in pages:
                for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                    found[str(alarm["AlarmName"])] = dict(alarm)
        return [found[name] for name in sorted(found)]

    def metric_alarm_names(self, prefixes: Sequence[str]) -> list[str]:
        """The names of the metric alarms whose name starts with one of `prefixes`, whatever their state (one call
        per prefix, every page): what an instance refresh's AlarmSpecification takes for a prefix."""
        paginator = self.conn.get_paginator("describe_alarms")
        names: set[str] = set()
        for prefix in prefixes:
            pages = paginator.paginate(
                AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm"], PaginationConfig={"PageSize": MAX_ALARMS_PER_CALL}
            )
            names |= {str(alarm["AlarmName"]) for page in pages for alarm in page.get("MetricAlarms", [])}
        return sorted(names)
