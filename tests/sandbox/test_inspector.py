"""Amazon Inspector in the sandbox through boto3: findings follow the patch state as of the last scan, rescans come
`rescan_delay_seconds` after a change, coverage as AWS reports it, filters, paging and limits."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from include.sandbox import patching
from include.sandbox.catalog import build_catalog
from include.sandbox.patching import released_at
from include.sandbox.scenario import ScenarioError, parse_scenario
from include.sandbox.server import SandboxServer
from tests.conftest import advance_clock, client_factory

ACCOUNT, REGION = "123456789012", "us-east-1"
AL2023, UBUNTU = "ami-0a1b2c3d4e5f60001", "ami-0a1b2c3d4e5f60002"
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
PATCHED_THROUGH = "2026-09-30"
DELAY = 300.0
UNPATCHED = {"group": "web", "count": 1, "cve": "CVE-2026-40117", "severity": "HIGH", "package": "libssh2"}
# The catalog's severities on Inspector's scale (include/sandbox/README.md, "Inspector").
SEVERITY = {"Critical": "CRITICAL", "Important": "HIGH", "High": "HIGH", "Medium": "MEDIUM", "Low": "LOW"}
SCENARIO: dict[str, Any] = {
    "name": "inspector",
    "seed": 5,
    "clock": {"start": START.isoformat(), "speed": 1.0},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}, UBUNTU: {"os": "UBUNTU"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [
                        {"name": "web", "count": 4, "ami": AL2023, "patched_through": PATCHED_THROUGH},
                        {"name": "app", "count": 2, "ami": UBUNTU, "patched_through": "2026-10-15"},
                        {"name": "offline", "count": 1, "ami": AL2023, "agent": "offline"},
                        {"name": "unmanaged", "count": 1, "ami": AL2023, "agent": "unmanaged"},
                    ]
                }
            },
        }
    ],
    "inspector": {"rescan_delay_seconds": DELAY, "unpatched_findings": [UNPATCHED]},
}

Inspector = Any


@pytest.fixture
def inspector(fresh_server: SandboxServer) -> Inspector:
    return client_factory(fresh_server.url)("inspector2", region=REGION)


def group(server: SandboxServer, name: str) -> list[str]:
    return [i.instance_id for i in server.world.instances(ACCOUNT, REGION).values() if i.group == name]


def eq(*values: str) -> list[dict[str, str]]:
    return [{"comparison": "EQUALS", "value": value} for value in values]


def all_findings(inspector: Inspector, **criteria: Any) -> list[dict[str, Any]]:
    pages = inspector.get_paginator("list_findings").paginate(filterCriteria=criteria)
    return [finding for page in pages for finding in page["findings"]]


def findings_of(inspector: Inspector, instance_id: str) -> dict[str, dict[str, Any]]:
    """CVE -> finding on one instance."""
    found = all_findings(inspector, resourceId=eq(instance_id))
    return {f["packageVulnerabilityDetails"]["vulnerabilityId"]: f for f in found}


def coverage_of(inspector: Inspector, instance_id: str) -> dict[str, Any]:
    (item,) = inspector.list_coverage(filterCriteria={"resourceId": eq(instance_id)})["coveredResources"]
    return dict(item)


def vulnerable(os: str, patched_through: str) -> dict[str, str]:
    """CVE -> the catalog patch carrying it, for an instance seeded through `patched_through` (no patch carrying
    the CVE is installed)."""
    catalog = build_catalog(parse_scenario(SCENARIO))
    in_effect = {p.id for p in catalog.for_os(os) if p.released <= date.fromisoformat(patched_through)}
    cves: dict[str, str] = {}
    fixed = {cve for p in catalog.for_os(os) if p.id in in_effect for cve in p.cves}
    for patch in catalog.for_os(os):
        if patch.id not in in_effect:
            for cve in patch.cves:
                cves.setdefault(cve, patch.id)
    return {cve: pid for cve, pid in cves.items() if cve not in fixed}


def install(server: SandboxServer, instance_id: str, patch_ids: set[str], reboot: str = "NoReboot") -> datetime:
    """Install patches on an instance as Patch Manager does (no command): returns when the install ended."""
    world = server.world
    with world.request():
        instance = world.instance(ACCOUNT, REGION, instance_id)
        assert instance is not None
        end = world.now()
        patching.install(
            world, instance, end - timedelta(seconds=20), end, reboot_option=reboot, override_ids=set(patch_ids)
        )
    return end


def registered(server: SandboxServer, instance_id: str) -> datetime:
    """When the instance registered: the scenario's instances' first Inspector scan."""
    instance = server.world.instance(ACCOUNT, REGION, instance_id)
    assert instance is not None
    return instance.registration_date


def at(finding: dict[str, Any], member: str) -> datetime:
    return finding[member].astimezone(UTC)  # type: ignore[no-any-return]


def test_findings_follow_the_seeded_patch_state(fresh_server: SandboxServer, inspector: Inspector) -> None:
    catalog = fresh_server.world.catalog
    web, app = group(fresh_server, "web"), group(fresh_server, "app")
    for instance_id, os, through in [(web[1], "AMAZON_LINUX_2023", PATCHED_THROUGH), (app[0], "UBUNTU", "2026-10-15")]:
        want = vulnerable(os, through)
        found = findings_of(inspector, instance_id)
        assert want, "the scenario should leave CVEs open"
        assert set(found) == set(want)
        for cve, finding in found.items():
            patch = catalog.get(want[cve])
            assert patch is not None
            assert finding["status"] == "ACTIVE" and finding["type"] == "PACKAGE_VULNERABILITY"
            assert finding["severity"] == SEVERITY.get(patch.severity, "UNTRIAGED")
            assert finding["fixAvailable"] == "YES"
            assert patch.id in finding["remediation"]["recommendation"]["text"]
            (package,) = finding["packageVulnerabilityDetails"]["vulnerablePackages"]
            assert package["name"] == catalog.package(patch.id) and package["fixedInVersion"]
            (resource,) = finding["resources"]
            assert (resource["type"], resource["id"], resource["region"]) == ("AWS_EC2_INSTANCE", instance_id, REGION)
            assert finding["findingArn"].startswith(f"arn:aws:inspector2:{REGION}:{ACCOUNT}:finding/")
            # Seeded instances have been scanned all along: found the day after the patch's release.
            assert at(finding, "firstObservedAt") == released_at(patch) + timedelta(days=1)
            assert at(finding, "lastObservedAt") == registered(fresh_server, instance_id)
        covered = coverage_of(inspector, instance_id)
        assert covered["scanStatus"] == {"statusCode": "ACTIVE", "reason": "SUCCESSFUL"}
        assert (covered["scanType"], covered["resourceType"]) == ("PACKAGE", "AWS_EC2_INSTANCE")
        assert covered["lastScannedAt"].astimezone(UTC) == registered(fresh_server, instance_id)
    # The same finding every time: a stable ARN per (instance, CVE).
    assert findings_of(inspector, web[1]) == findings_of(inspector, web[1])


def test_unpatched_findings_stay_active_without_a_fix(fresh_server: SandboxServer, inspector: Inspector) -> None:
    first, other = group(fresh_server, "web")[:2]
    finding = findings_of(inspector, first)[UNPATCHED["cve"]]
    assert (finding["status"], finding["severity"], finding["fixAvailable"]) == ("ACTIVE", "HIGH", "NO")
    (package,) = finding["packageVulnerabilityDetails"]["vulnerablePackages"]
    assert (package["name"], package["fixedInVersion"]) == (UNPATCHED["package"], "NotAvailable")
    assert UNPATCHED["cve"] not in findings_of(inspector, other)  # count 1: the group's first instance only
    every_patch = {p.id for p in fresh_server.world.catalog.for_os("AMAZON_LINUX_2023")}
    install(fresh_server, first, every_patch, reboot="RebootIfNeeded")
    advance_clock(fresh_server.url, DELAY + 1)
    active = {cve for cve, f in findings_of(inspector, first).items() if f["status"] == "ACTIVE"}
    assert active == {UNPATCHED["cve"]}


def test_an_install_closes_findings_only_once_inspector_rescans(
    fresh_server: SandboxServer, inspector: Inspector
) -> None:
    catalog = fresh_server.world.catalog
    instance_id = group(fresh_server, "web")[1]
    before = findings_of(inspector, instance_id)
    # One patch that needs no reboot and one kernel update, installed without rebooting.
    open_patches = [p for p in catalog.for_os("AMAZON_LINUX_2023") if p.cves and set(p.cves) <= set(before)]
    plain = next(p for p in open_patches if not p.reboot)
    kernel = next(p for p in open_patches if p.reboot)
    installed_at = install(fresh_server, instance_id, {plain.id, kernel.id})

    advance_clock(fresh_server.url, DELAY / 2)
    halfway = findings_of(inspector, instance_id)
    assert {c: f["status"] for c, f in halfway.items()} == {c: f["status"] for c, f in before.items()}
    assert coverage_of(inspector, instance_id)["lastScannedAt"].astimezone(UTC) == registered(fresh_server, instance_id)

    advance_clock(fresh_server.url, DELAY / 2 + 1)
    after = findings_of(inspector, instance_id)
    rescan = installed_at + timedelta(seconds=DELAY)
    assert coverage_of(inspector, instance_id)["lastScannedAt"].astimezone(UTC) == rescan
    for cve in plain.cves:
        assert after[cve]["status"] == "CLOSED" and at(after[cve], "updatedAt") == rescan
        assert after[cve]["findingArn"] == before[cve]["findingArn"]
    for cve in kernel.cves:  # pending a reboot: the old kernel still runs
        assert after[cve]["status"] == "ACTIVE" and at(after[cve], "lastObservedAt") == rescan
    untouched = set(before) - set(plain.cves) - set(kernel.cves)
    assert {after[c]["status"] for c in untouched} == {"ACTIVE"}

    # The reboot (an install with RebootIfNeeded) puts the kernel in effect: closed at the next rescan.
    rebooted_at = install(fresh_server, instance_id, set(), reboot="RebootIfNeeded")
    advance_clock(fresh_server.url, DELAY + 1)
    rebooted = findings_of(inspector, instance_id)
    assert {rebooted[c]["status"] for c in kernel.cves} == {"CLOSED"}
    assert at(rebooted[kernel.cves[0]], "updatedAt") == rebooted_at + timedelta(seconds=DELAY)

    # The patch goes missing again (drift): the same finding is ACTIVE again after the next rescan.
    world = fresh_server.world
    with world.request():
        instance = world.instance(ACCOUNT, REGION, instance_id)
        assert instance is not None
        del instance.installed[plain.id]
        patching.scan(world, instance, world.now() - timedelta(seconds=5), world.now())
    advance_clock(fresh_server.url, DELAY + 1)
    reopened = findings_of(inspector, instance_id)
    assert {reopened[c]["status"] for c in plain.cves} == {"ACTIVE"}
    assert reopened[plain.cves[0]]["findingArn"] == before[plain.cves[0]]["findingArn"]
    assert at(reopened[plain.cves[0]], "firstObservedAt") == at(before[plain.cves[0]], "firstObservedAt")


def test_coverage_of_instances_without_a_working_agent(fresh_server: SandboxServer, inspector: Inspector) -> None:
    offline, unmanaged = group(fresh_server, "offline")[0], group(fresh_server, "unmanaged")[0]
    assert coverage_of(inspector, offline)["scanStatus"] == {
        "statusCode": "INACTIVE",
        "reason": "UNMANAGED_EC2_INSTANCE",
    }
    bare = coverage_of(inspector, unmanaged)
    assert bare["scanStatus"] == {"statusCode": "INACTIVE", "reason": "UNMANAGED_EC2_INSTANCE"}
    assert "lastScannedAt" not in bare and findings_of(inspector, unmanaged) == {}

    stopped = group(fresh_server, "web")[2]
    client_factory(fresh_server.url)("ec2", region=REGION).stop_instances(InstanceIds=[stopped])
    install(fresh_server, stopped, {p.id for p in fresh_server.world.catalog.for_os("AMAZON_LINUX_2023")})
    advance_clock(fresh_server.url, DELAY + 1)
    covered = coverage_of(inspector, stopped)
    assert covered["scanStatus"] == {"statusCode": "INACTIVE", "reason": "EC2_INSTANCE_STOPPED"}
    assert covered["lastScannedAt"].astimezone(UTC) == registered(fresh_server, stopped)  # no rescan: old findings stay
    assert {f["status"] for f in findings_of(inspector, stopped).values()} == {"ACTIVE"}


def test_an_instance_launched_later_is_pending_its_initial_scan(
    fresh_server: SandboxServer, inspector: Inspector
) -> None:
    ec2 = client_factory(fresh_server.url)("ec2", region=REGION)
    (launched,) = [i["InstanceId"] for i in ec2.run_instances(ImageId=AL2023, MinCount=1, MaxCount=1)["Instances"]]
    first = coverage_of(inspector, launched)
    assert first["scanStatus"] == {"statusCode": "ACTIVE", "reason": "PENDING_INITIAL_SCAN"}
    assert "lastScannedAt" not in first and findings_of(inspector, launched) == {}
    advance_clock(fresh_server.url, DELAY + 1)
    assert coverage_of(inspector, launched)["scanStatus"]["reason"] == "SUCCESSFUL"
    bare = vulnerable("AMAZON_LINUX_2023", "2000-01-01")
    assert set(findings_of(inspector, launched)) == set(bare)


def test_finding_filters_or_within_a_key_and_across_keys(fresh_server: SandboxServer, inspector: Inspector) -> None:
    web = group(fresh_server, "web")
    everything = all_findings(inspector)
    assert {f["resources"][0]["id"] for f in everything} == {
        i.instance_id for i in fresh_server.world.instances(ACCOUNT, REGION).values() if i.registered
    }

    two = all_findings(inspector, resourceId=eq(web[0], web[1]))
    assert {f["resources"][0]["id"] for f in two} == {web[0], web[1]}
    assert len(two) == len(findings_of(inspector, web[0])) + len(findings_of(inspector, web[1]))

    critical_on_web0 = all_findings(inspector, resourceId=eq(web[0]), severity=eq("CRITICAL"))
    assert critical_on_web0 and all(f["severity"] == "CRITICAL" for f in critical_on_web0)
    assert len(critical_on_web0) == sum(f["severity"] == "CRITICAL" for f in findings_of(inspector, web[0]).values())

    not_web0 = all_findings(inspector, resourceId=[{"comparison": "NOT_EQUALS", "value": web[0]}])
    assert len(not_web0) == len(everything) - len(findings_of(inspector, web[0]))

    kernel_2026_22 = all_findings(inspector, vulnerabilityId=[{"comparison": "PREFIX", "value": "CVE-2026-22"}])
    assert kernel_2026_22 and all(
        f["packageVulnerabilityDetails"]["vulnerabilityId"].startswith("CVE-2026-22") for f in kernel_2026_22
    )
    assert all_findings(inspector, awsAccountId=[{"comparison": "NOT_EQUALS", "value": ACCOUNT}]) == []
    assert all_findings(inspector, findingStatus=eq("CLOSED")) == []
    assert len(
        all_findings(inspector, findingType=eq("PACKAGE_VULNERABILITY"), resourceType=eq("AWS_EC2_INSTANCE"))
    ) == len(everything)
    assert all_findings(inspector, resourceType=eq("AWS_LAMBDA_FUNCTION")) == []

    # Dates: only what the rescan after an install changed.
    every_patch = {p.id for p in fresh_server.world.catalog.for_os("AMAZON_LINUX_2023")}
    installed_at = install(fresh_server, web[1], every_patch, reboot="RebootIfNeeded")
    advance_clock(fresh_server.url, DELAY + 1)
    rescan = installed_at + timedelta(seconds=DELAY)
    window = [{"startInclusive": rescan - timedelta(seconds=1), "endInclusive": rescan + timedelta(seconds=1)}]
    updated = all_findings(inspector, updatedAt=window)
    assert updated and {f["resources"][0]["id"] for f in updated} == {web[1]}
    assert {f["status"] for f in updated} == {"CLOSED"}
    assert all_findings(inspector, lastObservedAt=[{"endInclusive": START - timedelta(seconds=1)}]) == []
    before_install = all_findings(inspector, lastObservedAt=[{"startInclusive": START, "endInclusive": installed_at}])
    assert len(before_install) == len(everything)  # a CLOSED finding keeps the time it was last seen
    assert all_findings(inspector, lastObservedAt=[{"startInclusive": rescan}]) == []


def test_coverage_filters(fresh_server: SandboxServer, inspector: Inspector) -> None:
    web = group(fresh_server, "web")
    installed_at = install(fresh_server, web[3], {p.id for p in fresh_server.world.catalog.for_os("AMAZON_LINUX_2023")})
    advance_clock(fresh_server.url, DELAY + 1)

    def ids(**criteria: Any) -> set[str]:
        pages = inspector.get_paginator("list_coverage").paginate(filterCriteria=criteria)
        return {item["resourceId"] for page in pages for item in page["coveredResources"]}

    everyone = {i.instance_id for i in fresh_server.world.instances(ACCOUNT, REGION).values()}
    assert ids() == everyone
    assert ids(resourceType=eq("AWS_EC2_INSTANCE"), scanType=eq("PACKAGE")) == everyone
    assert ids(scanStatusCode=eq("INACTIVE")) == {*group(fresh_server, "offline"), *group(fresh_server, "unmanaged")}
    assert ids(scanStatusCode=[{"comparison": "NOT_EQUALS", "value": "INACTIVE"}]) == {
        *web,
        *group(fresh_server, "app"),
    }
    assert ids(lastScannedAt=[{"startInclusive": installed_at}]) == {web[3]}
    assert ids(resourceId=eq(web[0], web[3]), scanType=eq("NETWORK")) == set()


def test_paging_and_limits(fresh_server: SandboxServer, inspector: Inspector) -> None:
    everything = all_findings(inspector)
    pages, token = [], None
    while True:
        page = inspector.list_findings(maxResults=7, **({"nextToken": token} if token else {}))
        pages.append(page["findings"])
        token = page.get("nextToken")
        if not token:
            break
    assert all(len(p) == 7 for p in pages[:-1]) and len(pages) > 2
    assert [f["findingArn"] for p in pages for f in p] == [f["findingArn"] for f in everything]

    def refused(call: Callable[[], Any]) -> str:
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        return str(caught.value.response["Error"]["Message"])

    assert "less than or equal to 100" in refused(lambda: inspector.list_findings(maxResults=101))
    assert "less than or equal to 200" in refused(lambda: inspector.list_coverage(maxResults=201))
    # botocore checks the minimum itself: ask without its validation, as another SDK might.
    unchecked = boto3.client(
        "inspector2",
        region_name=REGION,
        endpoint_url=fresh_server.url,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    refused(lambda: unchecked.list_findings(maxResults=0))
    refused(lambda: unchecked.list_coverage(maxResults=0))
    eleven = eq(*(f"i-{n:017x}" for n in range(11)))
    assert "length less than or equal to 10" in refused(
        lambda: inspector.list_findings(filterCriteria={"resourceId": eleven})
    )
    refused(lambda: inspector.list_coverage(filterCriteria={"resourceId": eleven}))
    refused(lambda: inspector.list_findings(nextToken="not-a-token"))
    assert inspector.list_coverage(maxResults=200, filterCriteria={"resourceId": eleven[:10]})["coveredResources"] == []


def test_the_inspector_section_is_optional_and_checked() -> None:
    bare = {key: value for key, value in SCENARIO.items() if key != "inspector"}
    assert parse_scenario(bare).inspector.rescan_delay_seconds == 300
    assert parse_scenario(bare).inspector.unpatched_findings == ()
    parsed = parse_scenario(SCENARIO).inspector
    assert parsed.rescan_delay_seconds == DELAY
    assert [(u.group, u.count, u.cve, u.severity, u.package) for u in parsed.unpatched_findings] == [
        (UNPATCHED["group"], UNPATCHED["count"], UNPATCHED["cve"], UNPATCHED["severity"], UNPATCHED["package"])
    ]
    for change, message in [
        ({"group": "nope"}, "inspector.unpatched_findings[0].group: no instance group is named 'nope'"),
        ({"severity": "SEVERE"}, "inspector.unpatched_findings[0].severity: 'SEVERE' is not one of"),
        ({"cve": "2026-1"}, "inspector.unpatched_findings[0].cve: '2026-1' does not match"),
    ]:
        broken = {**SCENARIO, "inspector": {"unpatched_findings": [{**UNPATCHED, **change}]}}
        with pytest.raises(ScenarioError, match=re.escape(message)):
            parse_scenario(broken, source="bad.yaml")
