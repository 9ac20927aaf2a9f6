"""Security Hub findings in the sandbox: ASFF checks, upserts, GetFindings' filters and paging, BatchUpdateFindings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from include.sandbox.securityhub import default_product_arn
from include.sandbox.server import SandboxServer
from tests.conftest import client_factory

ACCOUNT = "123456789012"
EAST, WEST = "us-east-1", "eu-west-1"
PRODUCT = default_product_arn(ACCOUNT, EAST)
AL2023 = "ami-0a1b2c3d4e5f60001"


def scenario(**securityhub: Any) -> dict[str, Any]:
    return {
        "name": "securityhub",
        "clock": {"start": "2026-11-20T03:00:00Z"},
        "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
        "accounts": [
            {
                "id": ACCOUNT,
                "regions": {
                    EAST: {"instance_groups": [{"name": "web", "count": 1, "ami": AL2023}]},
                    WEST: {"instance_groups": []},
                },
            }
        ],
        "securityhub": securityhub,
    }


@pytest.fixture
def hub(sandbox_factory: Callable[..., SandboxServer]) -> Iterator[Any]:
    server = sandbox_factory(scenario())
    yield client_factory(server.url)("securityhub", region=EAST)


def unchecked(url: str, region: str = EAST) -> Any:
    """A client that sends what it is given, so the sandbox's own limits are what answers."""
    config = Config(parameter_validation=False, retries={"mode": "standard", "max_attempts": 1})
    return boto3.client("securityhub", region_name=region, endpoint_url=url, config=config)


def finding(n: int, **overrides: Any) -> dict[str, Any]:
    """A minimal valid ASFF finding about instance number n."""
    instance = f"i-{n:017x}"
    base: dict[str, Any] = {
        "SchemaVersion": "2018-10-08",
        "Id": f"test/{instance}",
        "ProductArn": PRODUCT,
        "GeneratorId": "test/generator",
        "AwsAccountId": ACCOUNT,
        "Types": ["Software and Configuration Checks/Vulnerabilities/CVE"],
        "CreatedAt": "2026-11-20T03:00:00.000Z",
        "UpdatedAt": "2026-11-20T03:00:00.000Z",
        "FirstObservedAt": "2026-11-20T03:00:00.000Z",
        "Severity": {"Label": "HIGH"},
        "Title": f"Finding {n}",
        "Description": f"Something about {instance}",
        "Resources": [
            {"Type": "AwsEc2Instance", "Id": f"arn:aws:ec2:{EAST}:{ACCOUNT}:instance/{instance}", "Region": EAST}
        ],
        "Compliance": {"Status": "FAILED"},
    }
    base.update(overrides)
    return base


def error(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = raised.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]


def every(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    return [f for page in client.get_paginator("get_findings").paginate(**kwargs) for f in page["Findings"]]


def ids(findings: list[dict[str, Any]]) -> set[str]:
    return {f["Id"] for f in findings}


def test_imported_findings_come_back_with_what_security_hub_adds(hub: Any) -> None:
    sent = [finding(1), finding(2, FindingProviderFields={"Severity": {"Label": "LOW"}, "Types": ["TTPs"]})]
    response = hub.batch_import_findings(Findings=sent)
    assert (response["SuccessCount"], response["FailedCount"], response["FailedFindings"]) == (2, 0, [])
    stored = {f["Id"]: f for f in every(hub)}
    assert set(stored) == ids(sent)
    first, second = stored[sent[0]["Id"]], stored[sent[1]["Id"]]
    assert (first["Region"], first["RecordState"], first["Workflow"]) == (EAST, "ACTIVE", {"Status": "NEW"})
    assert first["FindingProviderFields"] == {"Severity": {"Label": "HIGH"}, "Types": sent[0]["Types"]}
    assert second["Severity"] == {"Label": "LOW"} and second["Types"] == ["TTPs"]  # provider fields win


def test_a_reimport_updates_in_place_and_keeps_what_it_must(hub: Any) -> None:
    hub.batch_import_findings(Findings=[finding(1)])
    hub.batch_update_findings(
        FindingIdentifiers=[{"Id": finding(1)["Id"], "ProductArn": PRODUCT}],
        Note={"Text": "looking", "UpdatedBy": "analyst"},
        Workflow={"Status": "NOTIFIED"},
        Severity={"Label": "CRITICAL"},
    )
    again = finding(
        1,
        CreatedAt="2026-11-21T00:00:00.000Z",
        FirstObservedAt="2026-11-21T00:00:00.000Z",
        UpdatedAt="2026-11-21T00:00:00.000Z",
        Title="Finding 1, again",
        Workflow={"Status": "NEW"},
        FindingProviderFields={"Severity": {"Label": "LOW"}, "Types": finding(1)["Types"]},
    )
    assert hub.batch_import_findings(Findings=[again])["SuccessCount"] == 1
    (stored,) = every(hub)
    assert stored["Title"] == "Finding 1, again" and stored["UpdatedAt"] == again["UpdatedAt"]
    assert (stored["CreatedAt"], stored["FirstObservedAt"]) == (finding(1)["CreatedAt"], finding(1)["FirstObservedAt"])
    assert stored["Workflow"] == {"Status": "NOTIFIED"} and stored["Note"]["Text"] == "looking"
    assert stored["Severity"]["Label"] == "CRITICAL"  # the customer's change outlives the provider's
    assert stored["FindingProviderFields"]["Severity"] == {"Label": "LOW"}


def test_resolved_findings_reopen_only_as_aws_documents(hub: Any) -> None:
    passed = finding(1, Compliance={"Status": "PASSED"})
    failing = finding(2)
    hub.batch_import_findings(Findings=[passed, failing])
    hub.batch_update_findings(
        FindingIdentifiers=[{"Id": f["Id"], "ProductArn": PRODUCT} for f in (passed, failing)],
        Workflow={"Status": "RESOLVED"},
    )
    hub.batch_import_findings(Findings=[finding(1), finding(2)])  # both now FAILED
    workflow = {f["Id"]: f["Workflow"]["Status"] for f in every(hub)}
    assert workflow == {passed["Id"]: "NEW", failing["Id"]: "RESOLVED"}


def test_findings_that_break_the_asff_are_reported_and_the_rest_imported(hub: Any) -> None:
    bad = {
        "empty title": finding(1, Title=" "),
        "long title": finding(2, Title="x" * 257),
        "long description": finding(3, Description="x" * 1025),
        "no severity": {k: v for k, v in finding(4).items() if k not in ("Severity", "Types")},
        "schema": finding(5, SchemaVersion="2020-01-01"),
        "types": finding(6, Types=["Bad Namespace/x/y"]),
        "account": finding(7, AwsAccountId="210987654321"),
        "time": finding(8, CreatedAt="yesterday"),
        "resources": finding(9, Resources=[]),
    }
    good = finding(10)
    response = hub.batch_import_findings(Findings=[*bad.values(), good])
    assert (response["SuccessCount"], response["FailedCount"]) == (1, len(bad))
    failed = {f["Id"]: f for f in response["FailedFindings"]}
    assert set(failed) == {f["Id"] for f in bad.values()}
    for failure in failed.values():
        assert failure["ErrorCode"] == "InvalidInput"
        assert failure["ErrorMessage"].startswith("Finding does not adhere to Amazon Finding Format.")
    assert "data.Title should NOT be longer than 256 characters" in failed[bad["long title"]["Id"]]["ErrorMessage"]
    assert "'FindingProviderFields'" in failed[bad["no severity"]["Id"]]["ErrorMessage"]
    assert ids(every(hub)) == {good["Id"]}


def test_import_limits(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(scenario())
    hub = client_factory(server.url)("securityhub", region=EAST)
    with pytest.raises(ClientError) as raised:
        hub.batch_import_findings(Findings=[finding(1, ProductArn=default_product_arn(ACCOUNT, WEST))])
    assert error(raised)[0] == "InvalidInputException"
    with pytest.raises(ClientError) as raised:
        unchecked(server.url).batch_import_findings(Findings=[finding(n) for n in range(101)])
    assert "less than or equal to 100" in error(raised)[1]
    huge = finding(1, ProductFields={f"k{n}": "x" * 2000 for n in range(50)})
    huge["Resources"] = [
        dict(huge["Resources"][0], Id=f"r{n}", Details={"Other": {"x": "y" * 7000}}) for n in range(32)
    ]
    response = hub.batch_import_findings(Findings=[huge])
    assert response["FailedCount"] == 1 and "larger than the maximum" in response["FailedFindings"][0]["ErrorMessage"]


def test_get_findings_pages_within_max_results(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(scenario())
    hub = client_factory(server.url)("securityhub", region=EAST)
    sent = [finding(n, UpdatedAt=f"2026-11-20T03:00:{n:02d}.000Z") for n in range(7)]
    hub.batch_import_findings(Findings=sent)
    page = hub.get_findings(MaxResults=3)
    assert len(page["Findings"]) == 3 and "NextToken" in page
    assert [f["Id"] for f in page["Findings"]] == [f["Id"] for f in sent[::-1][:3]]  # newest UpdatedAt first
    listed = every(hub, PaginationConfig={"PageSize": 3})
    assert [f["Id"] for f in listed] == [f["Id"] for f in sent[::-1]]
    ascending = every(hub, SortCriteria=[{"Field": "Id", "SortOrder": "asc"}])
    assert [f["Id"] for f in ascending] == sorted(ids(sent))
    for bad in (0, 101):
        with pytest.raises(ClientError) as raised:
            unchecked(server.url).get_findings(MaxResults=bad)
        assert error(raised)[0] == "ValidationException"


def test_string_filters_or_positives_and_negatives(hub: Any) -> None:
    sent = [
        finding(1, GeneratorId="patchcycle/cve", Severity={"Label": "CRITICAL"}),
        finding(2, GeneratorId="patchcycle/patch-compliance", Severity={"Label": "LOW"}),
        finding(3, GeneratorId="other/cve", Severity={"Label": "HIGH"}, Compliance={"Status": "PASSED"}),
        finding(4, GeneratorId="patchcycle/cve", RecordState="ARCHIVED", Severity={"Label": "MEDIUM"}),
    ]
    hub.batch_import_findings(Findings=sent)
    by_id = {n: sent[n - 1]["Id"] for n in range(1, 5)}

    def matching(**filters: list[tuple[str, str]]) -> set[str]:
        spec = {name: [{"Value": v, "Comparison": c} for c, v in values] for name, values in filters.items()}
        return ids(every(hub, Filters=spec))

    assert matching(GeneratorId=[("PREFIX", "patchcycle/")]) == {by_id[1], by_id[2], by_id[4]}
    assert matching(GeneratorId=[("EQUALS", "other/cve"), ("EQUALS", "patchcycle/patch-compliance")]) == {
        by_id[2],
        by_id[3],
    }
    assert matching(GeneratorId=[("NOT_EQUALS", "other/cve"), ("PREFIX_NOT_EQUALS", "patchcycle/p")]) == {
        by_id[1],
        by_id[4],
    }
    assert matching(GeneratorId=[("PREFIX", "patchcycle/"), ("NOT_EQUALS", "patchcycle/cve")]) == {by_id[2]}
    assert matching(GeneratorId=[("PREFIX", "patchcycle/")], RecordState=[("EQUALS", "ACTIVE")]) == {by_id[1], by_id[2]}
    assert matching(SeverityLabel=[("EQUALS", "CRITICAL"), ("EQUALS", "HIGH")]) == {by_id[1], by_id[3]}
    assert matching(ComplianceStatus=[("EQUALS", "PASSED")]) == {by_id[3]}
    assert matching(WorkflowStatus=[("NOT_EQUALS", "RESOLVED")]) == set(by_id.values())
    instance = sent[1]["Resources"][0]["Id"]
    assert matching(ResourceId=[("EQUALS", instance)], ResourceType=[("EQUALS", "AwsEc2Instance")]) == {by_id[2]}
    assert matching(Id=[("EQUALS", by_id[3])], ProductArn=[("EQUALS", PRODUCT)]) == {by_id[3]}
    assert matching(AwsAccountId=[("EQUALS", ACCOUNT)], Region=[("EQUALS", WEST)]) == set()


def test_filter_combinations_and_sizes_aws_refuses(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(scenario())
    hub = client_factory(server.url)("securityhub", region=EAST)
    refused = [
        {"Id": [{"Value": "a", "Comparison": "EQUALS"}, {"Value": "b", "Comparison": "NOT_EQUALS"}]},
        {"Id": [{"Value": "a", "Comparison": "EQUALS"}, {"Value": "b", "Comparison": "PREFIX_NOT_EQUALS"}]},
        {"Id": [{"Value": "a", "Comparison": "CONTAINS"}, {"Value": "b", "Comparison": "PREFIX"}]},
        {"Id": [{"Value": str(n), "Comparison": "EQUALS"} for n in range(21)]},
        {
            name: [{"Value": "x", "Comparison": "EQUALS"}]
            for name in (
                "Id",
                "ProductArn",
                "GeneratorId",
                "AwsAccountId",
                "Region",
                "Title",
                "RecordState",
                "WorkflowStatus",
                "ComplianceStatus",
                "SeverityLabel",
                "ResourceId",
            )
        },
    ]
    for filters in refused:
        with pytest.raises(ClientError) as raised:
            hub.get_findings(Filters=filters)
        assert error(raised)[0] == "InvalidInputException", filters
    with pytest.raises(ClientError) as raised:
        hub.get_findings(Filters={"Criticality": [{"Eq": 5}]})
    assert error(raised)[2] == 501  # not implemented here: never silently ignored


def test_batch_update_findings(hub: Any) -> None:
    sent = [finding(1), finding(2)]
    hub.batch_import_findings(Findings=sent)
    known = [{"Id": f["Id"], "ProductArn": PRODUCT} for f in sent]
    unknown = {"Id": "test/nope", "ProductArn": PRODUCT}
    response = hub.batch_update_findings(
        FindingIdentifiers=[*known, known[0], unknown],
        Workflow={"Status": "RESOLVED"},
        Note={"Text": "patched in run 7", "UpdatedBy": "patchcycle"},
    )
    assert response["ProcessedFindings"] == known
    codes = [(u["FindingIdentifier"]["Id"], u["ErrorCode"]) for u in response["UnprocessedFindings"]]
    assert codes == [(sent[0]["Id"], "DuplicatedFindingIdentifier"), ("test/nope", "FindingNotFound")]
    for stored in every(hub):
        assert stored["Workflow"] == {"Status": "RESOLVED"}
        assert stored["Note"]["Text"] == "patched in run 7" and stored["Note"]["UpdatedAt"].startswith("2026-11-20")
        assert stored["UpdatedAt"] == sent[0]["UpdatedAt"]  # BatchUpdateFindings leaves UpdatedAt alone
    with pytest.raises(ClientError) as raised:
        hub.batch_update_findings(FindingIdentifiers=known)
    assert error(raised)[0] == "InvalidInputException"
    many = [{"Id": f"test/{n}", "ProductArn": PRODUCT} for n in range(101)]
    with pytest.raises(ClientError) as raised:
        hub.batch_update_findings(FindingIdentifiers=many, Workflow={"Status": "RESOLVED"})
    assert error(raised)[0] == "InvalidInputException" and "100" in error(raised)[1]


def test_security_hub_must_be_enabled(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(scenario(disabled_regions=[WEST]))
    west = client_factory(server.url)("securityhub", region=WEST)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_findings", {}),
        ("batch_import_findings", {"Findings": [finding(1)]}),
        ("batch_update_findings", {"FindingIdentifiers": [{"Id": "x", "ProductArn": PRODUCT}], "Note": _note()}),
    ]
    for method, kwargs in calls:
        with pytest.raises(ClientError) as raised:
            getattr(west, method)(**kwargs)
        assert error(raised)[0] == "InvalidAccessException" and ACCOUNT in error(raised)[1], method
    assert client_factory(server.url)("securityhub", region=EAST).get_findings()["Findings"] == []


def _note() -> dict[str, str]:
    return {"Text": "x", "UpdatedBy": "y"}
