"""RDS pending maintenance in the sandbox: the query protocol both ways, and the semantics through boto3."""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree as ET

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from include.sandbox import query_protocol, rds_maintenance, server
from include.sandbox.protocol import AwsApiError, operation_model, validate_query_request, validate_query_response
from include.sandbox.scenario import DEFAULT_SCENARIO, load_scenario

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
NAMESPACE = "{http://rds.amazonaws.com/doc/2014-10-31/}"
UTC = dt.UTC


def _apply_seconds(sandbox: Any) -> float:
    """How long applying an action takes in the module's scenario (rds.maintenance_seconds)."""
    return float(sandbox.world.scenario.rds.maintenance_seconds)


def _arn(db_id: str, region: str = "us-east-1", account: str = ACCOUNT) -> str:
    return f"arn:aws:rds:{region}:{account}:db:{db_id}"


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _advance(sandbox: Any, seconds: float) -> dt.datetime:
    return dt.datetime.fromisoformat(_post(f"{sandbox.url}/_sandbox/clock/advance", {"seconds": seconds})["now"])


def _advance_to(sandbox: Any, when: dt.datetime) -> dt.datetime:
    return _advance(sandbox, max(0.0, (when - sandbox.world.now()).total_seconds()))


class Calls:
    """Every RDS response the test's clients received: parsed, raw, and checked against the output shape."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, dict[str, Any], bytes, dict[str, str]]] = []

    def record(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.seen.append(
            (model.name, http_response.status_code, parsed, http_response.content, dict(http_response.headers))
        )

    def problems(self) -> list[str]:
        found = []
        for operation, status, parsed, _, _ in self.seen:
            if status == 200:
                members = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
                found += [f"{operation}: {p}" for p in validate_query_response("rds", operation, members)]
        return found


@pytest.fixture
def calls() -> Iterator[Calls]:
    recorded = Calls()
    yield recorded
    assert recorded.problems() == [], "a response botocore parsed does not fit the output shape"


@pytest.fixture
def rds_client(calls: Calls) -> Callable[..., Any]:
    """rds_client(sandbox, region=..., **client kwargs): an RDS client whose responses are all recorded."""

    def make(sandbox: Any, region: str = "us-east-1", validate: bool = True, **kwargs: Any) -> Any:
        config = Config(retries={"mode": "standard", "max_attempts": 1}, parameter_validation=validate)
        client = boto3.client("rds", region_name=region, endpoint_url=sandbox.url, config=config, **kwargs)
        client.meta.events.register("after-call.rds", calls.record)
        return client

    return make


def _error(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = raised.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]


def _listed(client: Any, **kwargs: Any) -> dict[str, list[dict[str, Any]]]:
    page = client.describe_pending_maintenance_actions(**kwargs)
    return {r["ResourceIdentifier"]: r["PendingMaintenanceActionDetails"] for r in page["PendingMaintenanceActions"]}


def _next_window(window: str, after: dt.datetime) -> dt.datetime:
    """The next start of a "ddd:hh:mm-ddd:hh:mm" window, found by walking the days (independent of the sandbox)."""
    day, hour, minute = window.split("-")[0].split(":")
    for offset in range(8):
        candidate = (after + dt.timedelta(days=offset)).replace(
            hour=int(hour), minute=int(minute), second=0, microsecond=0
        )
        if candidate.strftime("%a").lower() == day and candidate > after:
            return candidate
    raise AssertionError(f"no window start within a week for {window}")


# --- semantics through boto3 ---------------------------------------------------------------


def test_every_instance_with_pending_actions_is_listed_as_the_scenario_says(
    sandbox: Any, rds_client: Callable[..., Any], calls: Calls
) -> None:
    account = next(a for a in sandbox.world.scenario.accounts if a.id == ACCOUNT)
    for region in account.regions:
        listed = _listed(rds_client(sandbox, region=region.name))
        expected = {_arn(db.id, region.name): db for db in region.rds_instances if db.pending_maintenance}
        assert set(listed) == set(expected), region.name
        for arn, db in expected.items():
            details = listed[arn]
            assert [d["Action"] for d in details] == [m.action for m in db.pending_maintenance]
            for detail, action in zip(details, db.pending_maintenance, strict=True):
                assert detail["Description"] == action.description
                dates = [d for d in (action.auto_applied_after, action.forced_apply) if d]
                assert detail["CurrentApplyDate"] == _midnight(min(dates))
                assert detail.get("AutoAppliedAfterDate") == (
                    _midnight(action.auto_applied_after) if action.auto_applied_after else None
                )
                assert detail.get("ForcedApplyDate") == (
                    _midnight(action.forced_apply) if action.forced_apply else None
                )
                assert "OptInStatus" not in detail  # no opt-in received yet
    us_east = _listed(rds_client(sandbox))
    assert _arn("reporting-db-staging") not in us_east  # no pending actions: not listed at all
    assert us_east[_arn("orders-db")][0]["AutoAppliedAfterDate"] == dt.datetime(2026, 12, 15, tzinfo=UTC)
    assert us_east[_arn("storefront-db")][0]["ForcedApplyDate"] == dt.datetime(2027, 1, 31, tzinfo=UTC)
    assert len(calls.seen) == 3


def test_filters_take_identifiers_or_arns(sandbox: Any, rds_client: Callable[..., Any]) -> None:
    rds = rds_client(sandbox)

    def ids(*filters: tuple[str, list[str]], **kwargs: Any) -> set[str]:
        spec = [{"Name": name, "Values": values} for name, values in filters]
        return {arn.rsplit(":", 1)[-1] for arn in _listed(rds, Filters=spec, **kwargs)}

    assert ids(("db-instance-id", ["orders-db"])) == {"orders-db"}
    assert ids(("db-instance-id", [_arn("storefront-db")])) == {"storefront-db"}
    assert ids(("db-instance-id", ["orders-db", _arn("storefront-db")])) == {"orders-db", "storefront-db"}
    assert ids(("db-instance-id", ["ORDERS-DB"])) == {"orders-db"}  # identifiers are case-insensitive
    assert ids(("db-instance-id", ["reporting-db-staging", "no-such-db"])) == set()
    assert ids(("db-instance-id", ["orders-db-eu"])) == set()  # another region
    # db-cluster-id selects clusters' actions only; these are instances.
    assert ids(("db-cluster-id", ["orders-db"])) == set()
    assert ids(("db-instance-id", ["orders-db"]), ("db-cluster-id", ["orders-db"])) == set()
    assert ids() == {"orders-db", "storefront-db"}
    # ResourceIdentifier: that resource only, and an empty list when it has nothing pending.
    assert ids(ResourceIdentifier=_arn("storefront-db")) == {"storefront-db"}
    assert ids(ResourceIdentifier=_arn("reporting-db-staging")) == set()
    assert ids(("db-instance-id", ["orders-db"]), ResourceIdentifier=_arn("storefront-db")) == set()


def _many_databases(count: int, without: int) -> dict[str, Any]:
    dbs: list[dict[str, Any]] = [
        {
            "id": f"db-{i:03d}",
            "engine": "postgres",
            "engine_version": "16.3",
            "pending_maintenance": [
                {"action": "system-update", "description": "OS update", "forced_apply": "2027-03-01"}
            ],
        }
        for i in range(count)
    ]
    dbs += [{"id": f"quiet-{i}", "engine": "postgres", "engine_version": "16.3"} for i in range(without)]
    return {
        "name": "many-databases",
        "clock": {"start": "2026-11-20T03:00:00Z"},
        "accounts": [{"id": ACCOUNT, "regions": {"us-east-1": {"rds_instances": dbs}}}],
    }


def test_pages_follow_the_marker(sandbox_factory: Callable[..., Any], rds_client: Callable[..., Any]) -> None:
    sandbox = sandbox_factory(_many_databases(45, without=3))
    rds = rds_client(sandbox)
    expected = {_arn(f"db-{i:03d}") for i in range(45)}

    pages: list[list[str]] = []
    kwargs: dict[str, Any] = {"MaxRecords": 20}
    while True:
        page = rds.describe_pending_maintenance_actions(**kwargs)
        pages.append([r["ResourceIdentifier"] for r in page["PendingMaintenanceActions"]])
        if "Marker" not in page:
            break
        kwargs["Marker"] = page["Marker"]
    assert [len(p) for p in pages] == [20, 20, 5]
    assert [arn for page in pages for arn in page] == sorted(expected)  # no duplicates, nothing skipped, in order

    whole = rds.describe_pending_maintenance_actions()  # MaxRecords defaults to 100
    assert len(whole["PendingMaintenanceActions"]) == 45
    assert "Marker" not in whole
    paginated = rds.get_paginator("describe_pending_maintenance_actions").paginate(PaginationConfig={"PageSize": 25})
    assert [r["ResourceIdentifier"] for p in paginated for r in p["PendingMaintenanceActions"]] == sorted(expected)


def test_the_marker_survives_actions_applied_between_pages(
    sandbox_factory: Callable[..., Any], rds_client: Callable[..., Any]
) -> None:
    sandbox = sandbox_factory(_many_databases(45, without=0))
    rds = rds_client(sandbox)
    first = rds.describe_pending_maintenance_actions(MaxRecords=20)
    done = first["PendingMaintenanceActions"][3]["ResourceIdentifier"]
    rds.apply_pending_maintenance_action(ResourceIdentifier=done, ApplyAction="system-update", OptInType="immediate")
    _advance(sandbox, _apply_seconds(sandbox) + 1)
    second = rds.describe_pending_maintenance_actions(MaxRecords=20, Marker=first["Marker"])
    ids = [r["ResourceIdentifier"] for r in second["PendingMaintenanceActions"]]
    assert ids == sorted(_arn(f"db-{i:03d}") for i in range(45))[20:40]


def test_immediate_applies_after_the_delay_and_upgrades_the_engine(
    sandbox: Any, rds_client: Callable[..., Any]
) -> None:
    rds = rds_client(sandbox)
    arn = _arn("storefront-db")
    before = sandbox.world.now()
    answer = rds.apply_pending_maintenance_action(
        ResourceIdentifier=arn, ApplyAction="db-upgrade", OptInType="immediate"
    )
    resource = answer["ResourcePendingMaintenanceActions"]
    assert resource["ResourceIdentifier"] == arn
    [detail] = resource["PendingMaintenanceActionDetails"]
    assert detail["OptInStatus"] == "immediate"
    assert before <= detail["CurrentApplyDate"] <= sandbox.world.now()
    assert detail["ForcedApplyDate"] == dt.datetime(2027, 1, 31, tzinfo=UTC)  # the dates stay as they were

    _advance(sandbox, _apply_seconds(sandbox) / 2)
    assert _listed(rds, ResourceIdentifier=arn)[arn][0]["OptInStatus"] == "immediate"  # still being applied
    _advance(sandbox, _apply_seconds(sandbox) / 2 + 1)
    listed = _listed(rds)
    assert arn not in listed
    assert _arn("orders-db") in listed  # the others are untouched
    engines = {db["DBInstanceIdentifier"]: db["EngineVersion"] for db in rds.describe_db_instances()["DBInstances"]}
    assert engines["storefront-db"] == "8.0.40"
    assert engines["orders-db"] == "16.3"

    with pytest.raises(ClientError) as raised:
        rds.apply_pending_maintenance_action(ResourceIdentifier=arn, ApplyAction="db-upgrade", OptInType="immediate")
    assert _error(raised) == ("InvalidParameterCombination", f"There is no pending db-upgrade action for {arn}", 400)


def test_next_maintenance_opt_in_moves_the_apply_date_and_undo_moves_it_back(
    sandbox: Any, rds_client: Callable[..., Any]
) -> None:
    rds = rds_client(sandbox)
    arn = _arn("orders-db")
    [instance] = rds.describe_db_instances(DBInstanceIdentifier="orders-db")["DBInstances"]
    window = _next_window(instance["PreferredMaintenanceWindow"], sandbox.world.now())
    assert window < dt.datetime(2026, 12, 15, tzinfo=UTC)  # earlier than AutoAppliedAfterDate

    answer = rds.apply_pending_maintenance_action(
        ResourceIdentifier=arn, ApplyAction="system-update", OptInType="next-maintenance"
    )
    [detail] = answer["ResourcePendingMaintenanceActions"]["PendingMaintenanceActionDetails"]
    assert (detail["OptInStatus"], detail["CurrentApplyDate"]) == ("next-maintenance", window)
    assert _listed(rds, ResourceIdentifier=arn)[arn] == [detail]

    undone = rds.apply_pending_maintenance_action(
        ResourceIdentifier=arn, ApplyAction="system-update", OptInType="undo-opt-in"
    )
    [detail] = undone["ResourcePendingMaintenanceActions"]["PendingMaintenanceActionDetails"]
    assert "OptInStatus" not in detail
    assert detail["CurrentApplyDate"] == dt.datetime(2026, 12, 15, tzinfo=UTC)

    rds.apply_pending_maintenance_action(
        ResourceIdentifier=arn, ApplyAction="system-update", OptInType="next-maintenance"
    )
    _advance_to(sandbox, window - dt.timedelta(minutes=1))
    assert arn in _listed(rds)
    _advance_to(sandbox, window + dt.timedelta(seconds=_apply_seconds(sandbox) + 1))
    assert arn not in _listed(rds)
    assert _arn("storefront-db") in _listed(rds)


def test_actions_apply_on_their_own_dates_without_an_opt_in(sandbox: Any, rds_client: Callable[..., Any]) -> None:
    rds = rds_client(sandbox)
    orders, storefront = _arn("orders-db"), _arn("storefront-db")
    [instance] = rds.describe_db_instances(DBInstanceIdentifier="orders-db")["DBInstances"]
    # AutoAppliedAfterDate: in the first maintenance window after that date.
    window = _next_window(instance["PreferredMaintenanceWindow"], dt.datetime(2026, 12, 15, tzinfo=UTC))
    _advance_to(sandbox, window - dt.timedelta(minutes=1))
    assert set(_listed(rds)) == {orders, storefront}
    _advance_to(sandbox, window + dt.timedelta(seconds=_apply_seconds(sandbox) + 1))
    assert set(_listed(rds)) == {storefront}
    # ForcedApplyDate: on that date, whatever the window.
    _advance_to(sandbox, dt.datetime(2027, 1, 31, 0, 1, 1, tzinfo=UTC))
    assert _listed(rds) == {}
    [db] = rds.describe_db_instances(DBInstanceIdentifier="storefront-db")["DBInstances"]
    assert db["EngineVersion"] == "8.0.40"


def test_each_account_sees_its_own_instances(
    sandbox_factory: Callable[..., Any], rds_client: Callable[..., Any]
) -> None:
    scenario = _many_databases(2, without=0)
    scenario["accounts"].append(
        {
            "id": OTHER_ACCOUNT,
            "regions": {
                "us-east-1": {
                    "rds_instances": [
                        {
                            "id": "other-db",
                            "engine": "mysql",
                            "engine_version": "8.0.39",
                            "pending_maintenance": [{"action": "db-upgrade", "description": "Upgrade to 8.0.40"}],
                        }
                    ]
                }
            },
        }
    )
    sandbox = sandbox_factory(scenario)
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=sandbox.url)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/PatchCycle", RoleSessionName="rds")[
        "Credentials"
    ]
    other = rds_client(
        sandbox,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    home = rds_client(sandbox)
    other_arn = _arn("other-db", account=OTHER_ACCOUNT)
    [detail] = _listed(other)[other_arn]
    assert "CurrentApplyDate" not in detail  # no dates and no opt-in: AWS leaves it blank
    assert set(_listed(home)) == {_arn("db-000"), _arn("db-001")}
    with pytest.raises(ClientError) as raised:
        home.describe_pending_maintenance_actions(ResourceIdentifier=other_arn)
    assert _error(raised)[0] == "ResourceNotFoundFault"
    other.apply_pending_maintenance_action(
        ResourceIdentifier=other_arn, ApplyAction="db-upgrade", OptInType="immediate"
    )
    _advance(sandbox, _apply_seconds(sandbox) + 1)
    assert _listed(other) == {}
    assert set(_listed(home)) == {_arn("db-000"), _arn("db-001")}


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "code", "status"),
    [
        ({"MaxRecords": 19}, "InvalidParameterValue", 400),
        ({"MaxRecords": 101}, "InvalidParameterValue", 400),
        ({"Filters": [{"Name": "engine", "Values": ["postgres"]}]}, "InvalidParameterValue", 400),
        ({"Filters": [{"Name": "db-instance-id", "Values": ["orders--db"]}]}, "InvalidParameterValue", 400),
        ({"Filters": [{"Name": "db-instance-id", "Values": []}]}, "InvalidParameterValue", 400),
        ({"Marker": "not-a-marker"}, "InvalidParameterValue", 400),
        ({"ResourceIdentifier": _arn("no-such-db")}, "ResourceNotFoundFault", 404),
        ({"ResourceIdentifier": _arn("orders-db", region="eu-west-1")}, "ResourceNotFoundFault", 404),
        ({"ResourceIdentifier": "orders-db"}, "ResourceNotFoundFault", 404),  # an ARN, not an identifier
    ],
)
def test_bad_describe_requests_fail_like_aws(
    sandbox: Any, rds_client: Callable[..., Any], kwargs: dict[str, Any], code: str, status: int
) -> None:
    with pytest.raises(ClientError) as raised:
        rds_client(sandbox).describe_pending_maintenance_actions(**kwargs)
    assert _error(raised)[0::2] == (code, status)


def test_max_records_bounds_are_inclusive(sandbox: Any, rds_client: Callable[..., Any]) -> None:
    rds = rds_client(sandbox)
    for size in (20, 100):
        assert len(rds.describe_pending_maintenance_actions(MaxRecords=size)["PendingMaintenanceActions"]) == 2
    with pytest.raises(ClientError) as raised:
        rds.describe_pending_maintenance_actions(MaxRecords=5)
    assert _error(raised) == (
        "InvalidParameterValue",
        "Invalid value 5 for MaxRecords. Must be between 20 and 100",
        400,
    )


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"ResourceIdentifier": _arn("no-such-db"), "ApplyAction": "system-update"}, "ResourceNotFoundFault"),
        ({"ResourceIdentifier": _arn("orders-db"), "ApplyAction": "db-upgrade"}, "InvalidParameterCombination"),
        (
            {"ResourceIdentifier": _arn("reporting-db-staging"), "ApplyAction": "system-update"},
            "InvalidParameterCombination",
        ),
        (
            {"ResourceIdentifier": _arn("orders-db"), "ApplyAction": "system-update", "OptInType": "later"},
            "InvalidParameterValue",
        ),
    ],
)
def test_bad_apply_requests_fail_like_aws(
    sandbox: Any, rds_client: Callable[..., Any], kwargs: dict[str, Any], code: str
) -> None:
    rds = rds_client(sandbox)
    with pytest.raises(ClientError) as raised:
        rds.apply_pending_maintenance_action(**{"OptInType": "immediate", **kwargs})
    assert _error(raised)[0] == code
    # Nothing changed.
    assert "OptInStatus" not in _listed(rds, ResourceIdentifier=_arn("orders-db"))[_arn("orders-db")][0]


def test_requests_botocore_would_refuse_are_refused_by_the_sandbox_too(
    sandbox: Any, rds_client: Callable[..., Any]
) -> None:
    rds = rds_client(sandbox, validate=False)
    with pytest.raises(ClientError) as raised:
        rds.apply_pending_maintenance_action(ResourceIdentifier=_arn("orders-db"), ApplyAction="system-update")
    assert _error(raised) == ("MissingParameter", "The request must contain the parameter OptInType", 400)
    with pytest.raises(ClientError) as raised:
        rds.describe_pending_maintenance_actions(MaxRecords="twenty")
    assert _error(raised)[0] == "InvalidParameterValue"
    with pytest.raises(ClientError) as raised:
        rds.describe_pending_maintenance_actions(Filters=[{"Name": "db-instance-id"}])
    assert _error(raised) == ("MissingParameter", "The request must contain the parameter Filters.Filter.1.Values", 400)


def test_error_messages_survive_xml_special_characters(sandbox: Any, rds_client: Callable[..., Any]) -> None:
    with pytest.raises(ClientError) as raised:
        rds_client(sandbox).describe_pending_maintenance_actions(Filters=[{"Name": "<a&b>", "Values": ["x"]}])
    assert _error(raised) == ("InvalidParameterValue", "Unrecognized filter name: <a&b>.", 400)


# --- the wire -------------------------------------------------------------------------------


def test_responses_are_the_xml_rds_sends(sandbox: Any, rds_client: Callable[..., Any], calls: Calls) -> None:
    rds = rds_client(sandbox)
    rds.describe_pending_maintenance_actions(Filters=[{"Name": "db-instance-id", "Values": ["orders-db"]}])
    with pytest.raises(ClientError):
        rds.describe_pending_maintenance_actions(MaxRecords=1)
    rds.apply_pending_maintenance_action(
        ResourceIdentifier=_arn("orders-db"), ApplyAction="system-update", OptInType="next-maintenance"
    )
    (describe, _, parsed, raw, headers), (_, status, _, error, _), (apply, _, _, applied, _) = calls.seen

    root = ET.fromstring(raw)
    assert root.tag == f"{NAMESPACE}DescribePendingMaintenanceActionsResponse"
    assert [child.tag for child in root] == [
        f"{NAMESPACE}DescribePendingMaintenanceActionsResult",
        f"{NAMESPACE}ResponseMetadata",
    ]
    request_id = root.findtext(f"{NAMESPACE}ResponseMetadata/{NAMESPACE}RequestId")
    assert request_id == headers["x-amzn-RequestId"] == parsed["ResponseMetadata"]["RequestId"]
    resource = root.find(
        f"{NAMESPACE}DescribePendingMaintenanceActionsResult/{NAMESPACE}PendingMaintenanceActions/"
        f"{NAMESPACE}ResourcePendingMaintenanceActions"
    )
    assert resource is not None
    assert resource.findtext(f"{NAMESPACE}ResourceIdentifier") == _arn("orders-db")
    action = resource.find(f"{NAMESPACE}PendingMaintenanceActionDetails/{NAMESPACE}PendingMaintenanceAction")
    assert action is not None
    assert action.findtext(f"{NAMESPACE}AutoAppliedAfterDate") == "2026-12-15T00:00:00Z"

    assert status == 400
    envelope = ET.fromstring(error)
    assert envelope.tag == "ErrorResponse"
    assert envelope.findtext("Error/Type") == "Sender"
    assert envelope.findtext("Error/Code") == "InvalidParameterValue"

    assert (
        ET.fromstring(applied).find(
            f"{NAMESPACE}ApplyPendingMaintenanceActionResult/{NAMESPACE}ResourcePendingMaintenanceActions"
        )
        is not None
    )
    assert (describe, apply) == ("DescribePendingMaintenanceActions", "ApplyPendingMaintenanceAction")


def test_a_response_that_breaks_the_model_is_a_500_in_strict_mode(
    sandbox: Any, rds_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(world: Any, ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {"PendingMaintenanceActions": [{"ResourceIdentifier": _arn("x"), "Unknown": 1}]}

    monkeypatch.setitem(server.HANDLERS, ("rds", "DescribePendingMaintenanceActions"), broken)
    with pytest.raises(ClientError) as raised:
        rds_client(sandbox).describe_pending_maintenance_actions()
    code, message, status = _error(raised)
    assert (code, status) == ("InternalServerError", 500)
    assert "Unknown" in message


def test_the_handlers_are_routed_and_moto_has_no_such_operations() -> None:
    for operation in rds_maintenance.MOTO_MISSING:
        assert server.HANDLERS[("rds", operation)] is rds_maintenance.HANDLERS[("rds", operation)]
        assert query_protocol.speaks_query("rds", operation)
    assert not query_protocol.speaks_query("ssm", "DescribeInstancePatchStates")


# --- the query protocol on its own -----------------------------------------------------------


def _form(service: str, operation: str, params: dict[str, Any]) -> str:
    """The form botocore's own QuerySerializer sends for ``params``."""
    request = create_serializer("query").serialize_to_request(params, operation_model(service, operation))
    return urlencode(request["body"])


@pytest.mark.parametrize(
    ("service", "operation", "params"),
    [
        (
            "rds",
            "DescribePendingMaintenanceActions",
            {
                "ResourceIdentifier": _arn("a"),
                "Filters": [
                    {"Name": "db-instance-id", "Values": ["a", "b"]},
                    {"Name": "db-cluster-id", "Values": ["c"]},
                ],
                "Marker": "m",
                "MaxRecords": 20,
            },
        ),
        ("rds", "DescribePendingMaintenanceActions", {"Filters": []}),
        ("rds", "ApplyPendingMaintenanceAction", {"ResourceIdentifier": "r", "ApplyAction": "a", "OptInType": "x"}),
        (
            "rds",
            "DescribeEvents",
            {
                "StartTime": dt.datetime(2026, 1, 1, tzinfo=UTC),
                "EndTime": dt.datetime(2026, 1, 2, 12, 30, tzinfo=UTC),
                "EventCategories": ["backup", "maintenance"],
            },
        ),
        (
            "cloudformation",
            "CreateStack",
            {
                "StackName": "s",
                "Parameters": [{"ParameterKey": "a", "ParameterValue": "b", "UsePreviousValue": True}],
                "Tags": [{"Key": "k", "Value": "v & w"}],
                "DisableRollback": False,
                "TimeoutInMinutes": 5,
            },
        ),
        (
            "sns",
            "Publish",
            {
                "Message": "m",
                "MessageAttributes": {
                    "k": {"DataType": "String", "StringValue": "v"},
                    "n": {"DataType": "Number", "StringValue": "1"},
                },
            },
        ),
        (
            "sdb",  # flattened lists
            "BatchPutAttributes",
            {
                "DomainName": "d",
                "Items": [
                    {
                        "Name": "i",
                        "Attributes": [{"Name": "a", "Value": "1", "Replace": True}, {"Name": "b", "Value": "2"}],
                    }
                ],
            },
        ),
    ],
)
def test_decoding_inverts_botocores_query_serializer(service: str, operation: str, params: dict[str, Any]) -> None:
    assert query_protocol.decode_request(service, operation, _form(service, operation, params)) == params


def test_blobs_stay_base64_text() -> None:
    params = {"Message": "m", "MessageAttributes": {"b": {"DataType": "Binary", "BinaryValue": b"\x00hi"}}}
    decoded = query_protocol.decode_request("sns", "Publish", _form("sns", "Publish", params))
    assert decoded["MessageAttributes"]["b"]["BinaryValue"] == base64.b64encode(b"\x00hi").decode()


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ("Action=DescribePendingMaintenanceActions&Filters.Filter.one.Name=x", "MalformedQueryString"),
        ("Action=DescribePendingMaintenanceActions&Filters.member.1.Name=x", "InvalidQueryParameter"),
        ("Action=DescribePendingMaintenanceActions&Filters=x", "MalformedQueryString"),
        ("Action=DescribePendingMaintenanceActions&MaxResults=20", "InvalidQueryParameter"),
        ("Action=DescribePendingMaintenanceActions&MaxRecords=2.5", "InvalidParameterValue"),
        ("Action=DescribePendingMaintenanceActions&MaxRecords=99999999999", "InvalidParameterValue"),
        ("Action=DescribePendingMaintenanceActions&Filters.Filter.1.Values.Value.1=x", "MissingParameter"),
    ],
)
def test_malformed_forms_are_refused(form: str, code: str) -> None:
    with pytest.raises(AwsApiError) as raised:
        query_protocol.decode_request("rds", "DescribePendingMaintenanceActions", form)
    assert raised.value.code == code


def test_coral_query_services_report_constraints_as_validation_errors() -> None:
    with pytest.raises(AwsApiError) as raised:
        validate_query_request("cloudformation", "DescribeStacks", {"StackName": "s", "NextToken": ""})
    assert raised.value.code == "ValidationError"
    assert "at 'nextToken' failed to satisfy constraint: Member must have length greater than or equal to 1" in (
        raised.value.message
    )
    with pytest.raises(AwsApiError) as missing:
        validate_query_request("cloudformation", "CreateStack", {})
    assert missing.value.code == "ValidationError"  # not RDS's MissingParameter


def _parse(service: str, operation: str, xml: bytes) -> dict[str, Any]:
    shape = operation_model(service, operation).output_shape
    parsed: dict[str, Any] = create_parser("query").parse({"body": xml, "headers": {}, "status_code": 200}, shape)
    return parsed


@pytest.mark.parametrize(
    ("service", "operation", "result"),
    [
        (
            "rds",
            "DescribePendingMaintenanceActions",
            {
                "PendingMaintenanceActions": [
                    {
                        "ResourceIdentifier": _arn("a"),
                        "PendingMaintenanceActionDetails": [
                            {
                                "Action": "system-update",
                                "AutoAppliedAfterDate": dt.datetime(2026, 12, 15, tzinfo=UTC),
                                "CurrentApplyDate": dt.datetime(2026, 11, 20, 3, 0, 1, 250000, tzinfo=UTC),
                                "OptInStatus": "immediate",
                                "Description": "a < b & c",
                            },
                            {"Action": "db-upgrade"},
                        ],
                    },
                    {"ResourceIdentifier": _arn("b"), "PendingMaintenanceActionDetails": []},
                ],
                "Marker": "m",
            },
        ),
        ("rds", "DescribePendingMaintenanceActions", {"PendingMaintenanceActions": []}),
        ("rds", "ApplyPendingMaintenanceAction", {"ResourcePendingMaintenanceActions": {"ResourceIdentifier": "r"}}),
        (
            "cloudformation",
            "DescribeStacks",
            {
                "Stacks": [
                    {
                        "StackName": "s",
                        "CreationTime": dt.datetime(2026, 1, 1, 1, 2, 3, tzinfo=UTC),
                        "StackStatus": "CREATE_COMPLETE",
                        "DisableRollback": True,
                        "Outputs": [{"OutputKey": "k", "OutputValue": "v"}],
                        "Capabilities": ["CAPABILITY_IAM"],
                    }
                ]
            },
        ),
        ("sns", "GetTopicAttributes", {"Attributes": {"a": "1", "b": "2"}}),  # maps
        (
            "sdb",
            "GetAttributes",
            {"Attributes": [{"Name": "a", "Value": "1"}, {"Name": "b", "Value": "2"}]},
        ),  # flattened
        ("rds", "DeleteDBInstance", {}),
    ],
)
def test_botocores_query_parser_reads_back_what_is_serialized(
    service: str, operation: str, result: dict[str, Any]
) -> None:
    assert validate_query_response(service, operation, result) == []
    parsed = _parse(service, operation, query_protocol.serialize_response(service, operation, result, "req-1"))
    assert parsed.pop("ResponseMetadata")["RequestId"] == "req-1"
    assert parsed == result


def test_response_validation_names_each_problem() -> None:
    problems = validate_query_response(
        "rds",
        "DescribePendingMaintenanceActions",
        {
            "PendingMaintenanceActions": [
                {"ResourceIdentifier": 1, "PendingMaintenanceActionDetails": [{"CurrentApplyDate": "2026-12-15"}]}
            ],
            "NextToken": "t",
        },
    )
    assert problems == [
        "NextToken: unknown member (not a member of PendingMaintenanceActionsMessage)",
        "PendingMaintenanceActions[0].ResourceIdentifier: expected string, got int 1",
        "PendingMaintenanceActions[0].PendingMaintenanceActionDetails[0].CurrentApplyDate: "
        "expected timestamp (datetime), got str '2026-12-15'",
    ]


def test_the_state_is_built_lazily_from_the_scenario() -> None:
    from include.sandbox.world import World

    world = World(load_scenario(DEFAULT_SCENARIO))
    assert rds_maintenance.STATE_KEY not in world.extra
    built = rds_maintenance.state(world)
    assert world.extra[rds_maintenance.STATE_KEY] is built
    [action] = built.actions[(ACCOUNT, "us-east-1", "storefront-db")]
    assert (action.action, action.forced_apply, action.opt_in) == (
        "db-upgrade",
        dt.datetime(2027, 1, 31, tzinfo=UTC),
        None,
    )
    assert built.actions[(ACCOUNT, "us-east-1", "reporting-db-staging")] == []


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (dt.datetime(2026, 11, 20, 3, 0, tzinfo=UTC), dt.datetime(2026, 11, 25, 6, 38, tzinfo=UTC)),  # Friday
        (dt.datetime(2026, 11, 25, 6, 0, tzinfo=UTC), dt.datetime(2026, 11, 25, 6, 38, tzinfo=UTC)),  # that Wednesday
        (dt.datetime(2026, 11, 25, 6, 38, tzinfo=UTC), dt.datetime(2026, 12, 2, 6, 38, tzinfo=UTC)),  # at the start
        (dt.datetime(2026, 11, 25, 7, 0, tzinfo=UTC), dt.datetime(2026, 12, 2, 6, 38, tzinfo=UTC)),  # in the window
    ],
)
def test_the_next_maintenance_window_is_strictly_later(after: dt.datetime, expected: dt.datetime) -> None:
    assert rds_maintenance.next_window("wed:06:38-wed:07:08", after) == expected
    assert _next_window("wed:06:38-wed:07:08", after) == expected  # the tests' own reckoning agrees


def test_the_first_of_repeated_keys_counts() -> None:
    form = "Action=DescribePendingMaintenanceActions&MaxRecords=20&MaxRecords=500"
    assert query_protocol.decode_request("rds", "DescribePendingMaintenanceActions", form) == {"MaxRecords": 20}
