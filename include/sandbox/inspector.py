"""Amazon Inspector (botocore service "inspector2") in the sandbox: ListCoverage and ListFindings.

moto 5.2.5 has no ListCoverage, and its ListFindings returns only seeded findings, ignoring the
filters. Here Inspector sees each managed EC2 instance's package state, derived from its patch
state in the World (patching.py), as of the instance's last scan:

- A CVE is vulnerable on an instance while a released catalog patch of its OS carrying it is not
  in effect: not installed (Patch Manager's MISSING or FAILED), or installed pending a reboot (the
  old kernel or library still runs). Inspector knows no patch baselines, so an unapproved patch
  that is not installed counts too. A CVE is fixed once any patch carrying it is in effect
  (INSTALLED, INSTALLED_OTHER, INSTALLED_REJECTED).
- A scan makes each vulnerable CVE an ACTIVE finding (type PACKAGE_VULNERABILITY on the
  AWS_EC2_INSTANCE), and closes the ACTIVE ones it no longer sees (CLOSED, kept and listed); a
  CLOSED finding seen again is reopened (same ARN). The scenario's ``inspector.unpatched_findings``
  are ACTIVE on every scan of their instances, with fixAvailable NO.
- Scans: the scenario's own instances were scanned when the sandbox started (registration time),
  as their group's ``patched_through`` left them; a finding's firstObservedAt is then the day after
  its patch's release, as if the instance had been scanned all along. An instance launched later
  is PENDING_INITIAL_SCAN until ``inspector.rescan_delay_seconds`` after launch. Afterwards an
  instance is rescanned ``rescan_delay_seconds`` after any change to its patch state (installed,
  pending-reboot or failed patches), and the scan sees the state at that moment. Only an instance
  with a working SSM agent is scanned: an unregistered or ConnectionLost one is INACTIVE /
  UNMANAGED_EC2_INSTANCE, a stopped one INACTIVE / EC2_INSTANCE_STOPPED; both keep the findings
  of their last scan.

Everything is computed lazily from the simulated clock when an API call looks at an instance,
and only for the instances a call can match (a resourceId EQUALS filter narrows them first):
a change is dated by the latest install time or Patch Manager report since Inspector last looked
at the instance, else by the time of the call. Several changes between two looks count as one.
State lives in ``world.extra["inspector"]``.

Filters (FilterCriteria, CoverageFilterCriteria) follow AWS: the filters of one key are ORed
(EQUALS, PREFIX) except NOT_EQUALS, which excludes each of its values; different keys are ANDed;
a date filter matches when any of its ranges holds the value. A key the sandbox cannot evaluate
for an EC2 package finding (ECR, Lambda, code, scores) reads as an absent attribute. botocore's
model already limits each filter list to 10 entries, maxResults to 1-100 (ListFindings) and 1-200
(ListCoverage) and answers ValidationException. Page sizes when maxResults is absent: 25 findings,
50 coverage items. Package versions, sources and remediation commands are made up but stable.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from include.sandbox.api import Handler, RequestContext
from include.sandbox.catalog import content_url
from include.sandbox.paging import decode_token, encode_token
from include.sandbox.patching import released_at
from include.sandbox.protocol import AwsApiError, operation_model
from include.sandbox.scenario import Patch, UnpatchedFinding

if TYPE_CHECKING:
    from include.sandbox.world import ManagedInstance, World

STATE_KEY = "inspector"
# What moto 5.2.5 lacks (500 NotImplemented) and what it gets wrong (seeded findings only, filters ignored).
MOTO_MISSING: list[str] = ["ListCoverage"]
MOTO_WRONG: list[str] = ["ListFindings"]

ACTIVE, CLOSED = "ACTIVE", "CLOSED"
RESOURCE_TYPE = "AWS_EC2_INSTANCE"
FINDING_TYPE = "PACKAGE_VULNERABILITY"
SCAN_TYPE = "PACKAGE"
SCAN_MODE = "EC2_SSM_AGENT_BASED"
UNTRIAGED = "UNTRIAGED"
NOT_AVAILABLE = "NotAvailable"  # fixedInVersion when no fix exists, as Inspector writes it

# Patch Manager's severities (Amazon Linux, Red Hat, Ubuntu priorities, MSRC) as Inspector's.
SEVERITIES: Mapping[str, str] = {
    "Critical": "CRITICAL",
    "Important": "HIGH",
    "High": "HIGH",
    "Medium": "MEDIUM",
    "Moderate": "MEDIUM",
    "Low": "LOW",
}
_SEVERITY_RANK = {name: rank for rank, name in enumerate(("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"))}

DEFAULT_FINDINGS_PAGE, DEFAULT_COVERAGE_PAGE = 25, 50

# Per OS family: vulnerability source, Inspector's platform name, package version suffix, update command.
_SOURCES = {
    "AMAZON_LINUX_2023": "AMAZON_CVE",
    "AMAZON_LINUX_2": "AMAZON_CVE",
    "REDHAT_ENTERPRISE_LINUX": "REDHAT_CVE",
    "UBUNTU": "UBUNTU_CVE",
    "WINDOWS": "MSRC",
}
_PLATFORMS = {
    "AMAZON_LINUX_2023": "AMAZON_LINUX_2023",
    "AMAZON_LINUX_2": "AMAZON_LINUX_2",
    "REDHAT_ENTERPRISE_LINUX": "RHEL_9",
    "UBUNTU": "UBUNTU_22_04",
    "WINDOWS": "WINDOWS_SERVER_2022",
}
_RELEASE_SUFFIX = {
    "AMAZON_LINUX_2023": "amzn2023",
    "AMAZON_LINUX_2": "amzn2",
    "REDHAT_ENTERPRISE_LINUX": "el9",
    "UBUNTU": "ubuntu0.22.04.1",
}
_WINDOWS_PACKAGE = "Windows Server 2022"
_STOPPED_STATES = frozenset({"stopping", "stopped", "shutting-down"})


# -- what Inspector remembers of each instance -------------------------------------------------


@dataclass
class _Finding:
    cve: str
    patch_id: str  # the catalog patch that fixes it; "" for a scenario's unpatched finding
    status: str
    first_observed: datetime
    last_observed: datetime
    updated: datetime


_Fingerprint = tuple[frozenset[str], frozenset[str], frozenset[str]]


@dataclass
class _Seen:
    """Inspector's record of one instance: the patch state it last looked at, changes not scanned yet, findings."""

    fingerprint: _Fingerprint
    looked_at: datetime
    pending: list[tuple[datetime, dict[str, str]]] = field(default_factory=list)  # (changed at, CVE -> patch id)
    last_scanned: datetime | None = None
    findings: dict[str, _Finding] = field(default_factory=dict)


@dataclass
class _State:
    seen: dict[tuple[str, str, str], _Seen] = field(default_factory=dict)
    unpatched: dict[tuple[str, str], dict[str, list[UnpatchedFinding]]] = field(default_factory=dict)
    seeded: dict[str, frozenset[str]] | None = None  # instance group -> the patches it started with


def _state(world: World) -> _State:
    state: _State = world.extra.setdefault(STATE_KEY, _State())
    return state


def _fingerprint(instance: ManagedInstance) -> _Fingerprint:
    return frozenset(instance.installed), frozenset(instance.pending_reboot), frozenset(instance.failed)


def _vulnerable(
    world: World, instance: ManagedInstance, at: datetime, installed: Iterable[str], pending: Iterable[str]
) -> dict[str, str]:
    """CVE -> the (oldest) catalog patch carrying it, for every CVE no patch in effect fixes at `at`."""
    in_effect = set(installed) - set(pending)
    fixed: set[str] = set()
    open_: dict[str, str] = {}
    for patch in world.catalog.for_os(instance.os):
        if not patch.cves or released_at(patch) > at:
            continue
        if patch.id in in_effect:
            fixed.update(patch.cves)
        else:
            for cve in patch.cves:
                open_.setdefault(cve, patch.id)
    return {cve: patch_id for cve, patch_id in open_.items() if cve not in fixed}


def _unpatched(world: World, account_id: str, region: str) -> dict[str, list[UnpatchedFinding]]:
    """Instance id -> the scenario's unpatched findings on it (a group's first `count`, in launch order)."""
    cache = _state(world).unpatched
    key = (account_id, region)
    if key not in cache:
        by_group: dict[str, list[str]] = {}
        for instance in world.instances(account_id, region).values():
            if instance.group:
                by_group.setdefault(instance.group, []).append(instance.instance_id)
        chosen: dict[str, list[UnpatchedFinding]] = {}
        for spec in world.scenario.inspector.unpatched_findings:
            members = by_group.get(spec.group, [])
            for instance_id in members[: spec.count] if spec.count is not None else members:
                chosen.setdefault(instance_id, []).append(spec)
        cache[key] = chosen
    return cache[key]


def _scan(seen: _Seen, vulnerable: Mapping[str, str], unpatched: Sequence[UnpatchedFinding], at: datetime) -> None:
    """One Inspector scan at `at` that sees `vulnerable` (CVE -> patch id): open, reopen, refresh and close findings."""
    active = dict(vulnerable)
    for spec in unpatched:
        active.setdefault(spec.cve, "")
    for cve, patch_id in active.items():
        finding = seen.findings.get(cve)
        if finding is None:
            seen.findings[cve] = _Finding(cve, patch_id, ACTIVE, at, at, at)
        else:
            finding.status, finding.patch_id, finding.last_observed, finding.updated = ACTIVE, patch_id, at, at
    for cve, finding in seen.findings.items():
        if finding.status == ACTIVE and cve not in active:
            finding.status, finding.updated = CLOSED, at
    seen.last_scanned = at


def _seeded(world: World, instance: ManagedInstance) -> frozenset[str]:
    """What a scenario instance started with: its OS's catalog patches released by its group's patched_through."""
    state = _state(world)
    if state.seeded is None:
        state.seeded = {}
        for _, _, group in world.scenario.groups():
            os = world.scenario.amis[group.ami].os
            through = group.patched_through
            state.seeded[group.name] = frozenset(
                patch.id for patch in world.catalog.for_os(os) if through is not None and patch.released <= through
            )
    return state.seeded.get(instance.group or "", frozenset())


def _first_look(world: World, instance: ManagedInstance, unpatched: Sequence[UnpatchedFinding]) -> _Seen:
    """The instance as Inspector first saw it, at registration: as seeded, or if launched later, with what it
    launched with (bare from a scenario AMI; a baked image's patches, installed before its registration)."""
    registered = instance.registration_date
    installed = _seeded(world, instance)
    if instance.group is None:
        # Not bare when launched from a baked image: Inspector's first look may come after its first scan was due,
        # and that scan must see the image's patches, not none.
        installed = frozenset(patch for patch, when in instance.installed.items() if when <= registered)
    seen = _Seen(fingerprint=(installed, frozenset(), frozenset()), looked_at=registered)
    vulnerable = _vulnerable(world, instance, registered, installed, ())
    if instance.group is None:  # launched while the sandbox runs: scanned once the delay has passed
        seen.pending.append((registered, vulnerable))
        return seen
    _scan(seen, vulnerable, unpatched, registered)
    # The scenario's instances have been running for a while: Inspector found each CVE after its release.
    for finding in seen.findings.values():
        patch = world.catalog.get(finding.patch_id)
        if patch is not None:
            finding.first_observed = min(registered, released_at(patch) + timedelta(days=1))
    return seen


def _changed_at(instance: ManagedInstance, since: datetime, now: datetime) -> datetime:
    """When the patch state changed after `since`: the latest install or Patch Manager report since, else now."""
    stamps = [when for when in instance.installed.values() if when > since]
    if instance.report is not None and instance.report.end > since:
        stamps.append(instance.report.end)
    return max(stamps) if stamps else now


def _look(world: World, instance: ManagedInstance, ec2_state: str, now: datetime) -> _Seen:
    """Bring Inspector's record of a registered instance up to `now`: note changes, run the scans now due."""
    key = (instance.account_id, instance.region, instance.instance_id)
    records = _state(world).seen
    unpatched = _unpatched(world, instance.account_id, instance.region).get(instance.instance_id, [])
    seen = records.get(key)
    if seen is None:
        seen = records[key] = _first_look(world, instance, unpatched)
    fingerprint = _fingerprint(instance)
    if fingerprint != seen.fingerprint:
        changed = _changed_at(instance, seen.looked_at, now)
        vulnerable = _vulnerable(world, instance, changed, instance.installed, instance.pending_reboot)
        seen.pending.append((changed, vulnerable))
        seen.fingerprint = fingerprint
    seen.looked_at = max(seen.looked_at, now)
    if not _scannable(instance, ec2_state):
        return seen  # no agent, no inventory, no scan: the last scan's findings stay
    delay = timedelta(seconds=world.scenario.inspector.rescan_delay_seconds)
    while seen.pending and seen.pending[0][0] + delay <= now:
        scan_at = seen.pending[0][0] + delay
        vulnerable = seen.pending[0][1]
        while seen.pending and seen.pending[0][0] <= scan_at:  # the scan sees the latest change before it
            vulnerable = seen.pending.pop(0)[1]
        _scan(seen, vulnerable, unpatched, scan_at)
    return seen


def observe(world: World, instance: ManagedInstance, at: datetime) -> None:
    """Let Inspector look at a registered instance as it is at `at`, running the scans due by then.

    For a change to the patch state that leaves no newer install time or report to date it by (a
    root volume restored from a snapshot, ebs.py): looked at just before and just after it, the
    change counts from `at` rather than from Inspector's next look.
    """
    if instance.registered:
        ec2_state = world.ec2_states(instance.account_id, instance.region).get(instance.instance_id, ("", None))[0]
        _look(world, instance, ec2_state, at)


def _scannable(instance: ManagedInstance, ec2_state: str) -> bool:
    return instance.registered and instance.online and ec2_state not in _STOPPED_STATES


def _scan_status(instance: ManagedInstance, ec2_state: str, seen: _Seen | None) -> tuple[str, str]:
    """(statusCode, reason) of the instance's package scanning, as ListCoverage reports it."""
    if ec2_state in _STOPPED_STATES:
        return "INACTIVE", "EC2_INSTANCE_STOPPED"
    if not instance.registered or not instance.online:  # no agent Systems Manager can reach: no inventory
        return "INACTIVE", "UNMANAGED_EC2_INSTANCE"
    if seen is None or seen.last_scanned is None:
        return "ACTIVE", "PENDING_INITIAL_SCAN"
    return "ACTIVE", "SUCCESSFUL"


# -- filters -----------------------------------------------------------------------------------

_Getter = Callable[[Any], Any]


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _string_matches(value: str, spec: Mapping[str, Any]) -> bool:
    wanted = str(spec["value"])
    return value.startswith(wanted) if spec["comparison"] == "PREFIX" else value == wanted


def _string_check(specs: Sequence[Mapping[str, Any]], getter: _Getter) -> Callable[[Any], bool]:
    """EQUALS and PREFIX filters of one key are alternatives; each NOT_EQUALS excludes its value."""
    positive = [spec for spec in specs if spec["comparison"] != "NOT_EQUALS"]
    negative = [str(spec["value"]) for spec in specs if spec["comparison"] == "NOT_EQUALS"]

    def check(item: Any) -> bool:
        values = _values(getter(item))
        if positive and not any(_string_matches(v, spec) for spec in positive for v in values):
            return False
        return not any(v in negative for v in values)

    return check


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v) for v in value]
    return [str(value)]


def _date_check(specs: Sequence[Mapping[str, Any]], getter: _Getter) -> Callable[[Any], bool]:
    ranges = [
        (
            _as_datetime(spec["startInclusive"]) if spec.get("startInclusive") is not None else None,
            _as_datetime(spec["endInclusive"]) if spec.get("endInclusive") is not None else None,
        )
        for spec in specs
    ]

    def check(item: Any) -> bool:
        value = getter(item)
        if value is None:
            return False
        return any((start is None or value >= start) and (end is None or value <= end) for start, end in ranges)

    return check


def _map_check(specs: Sequence[Mapping[str, Any]], getter: _Getter) -> Callable[[Any], bool]:
    def check(item: Any) -> bool:
        tags: Mapping[str, str] = getter(item) or {}
        return any(tags.get(str(spec["key"])) == str(spec.get("value", "")) for spec in specs)

    return check


def _package_check(specs: Sequence[Mapping[str, Any]], getter: _Getter) -> Callable[[Any], bool]:
    """A finding matches when one of its packages matches every member of one PackageFilter."""

    def one(package: Mapping[str, str], spec: Mapping[str, Any]) -> bool:
        for member, string_filter in spec.items():
            value = package.get(member)
            if value is None:
                return False
            if string_filter["comparison"] == "NOT_EQUALS":
                if value == str(string_filter["value"]):
                    return False
            elif not _string_matches(value, string_filter):
                return False
        return True

    def check(item: Any) -> bool:
        packages: list[Mapping[str, str]] = getter(item) or []
        return any(one(package, spec) for spec in specs for package in packages)

    return check


def _number_check(specs: Sequence[Mapping[str, Any]], getter: _Getter) -> Callable[[Any], bool]:
    def check(item: Any) -> bool:
        value = getter(item)
        if value is None:
            return False
        return any(
            (spec.get("lowerInclusive") is None or value >= spec["lowerInclusive"])
            and (spec.get("upperInclusive") is None or value <= spec["upperInclusive"])
            for spec in specs
        )

    return check


def _checks(
    criteria: Mapping[str, Sequence[Mapping[str, Any]]], getters: Mapping[str, _Getter], kinds: Mapping[str, str]
) -> list[Callable[[Any], bool]]:
    """One predicate per filter key; a key without a getter reads as an attribute the resource does not have."""
    builders = {
        "string": _string_check,
        "date": _date_check,
        "map": _map_check,
        "package": _package_check,
        "number": _number_check,
    }
    checks = []
    for key, specs in criteria.items():
        getter = getters.get(key, lambda _item: None)
        checks.append(builders[kinds.get(key, "string")](specs, getter))
    return checks


@functools.cache
def _filter_kinds(operation: str) -> dict[str, str]:
    """Filter key -> kind, from botocore's model of the operation's filterCriteria (StringFilterList, ...)."""
    criteria = operation_model("inspector2", operation).input_shape.members["filterCriteria"]
    kinds = {}
    for key, member in criteria.members.items():
        name = member.member.name
        if "Date" in name:
            kinds[key] = "date"
        elif "Map" in name:
            kinds[key] = "map"
        elif "Package" in name:
            kinds[key] = "package"
        elif "Number" in name:
            kinds[key] = "number"
        elif "PortRange" in name:
            kinds[key] = "number"  # never evaluated: EC2 package findings have no port range
        else:
            kinds[key] = "string"
    return kinds


def _resource_ids(criteria: Mapping[str, Sequence[Mapping[str, Any]]], key: str) -> set[str] | None:
    """The only instance ids a request can match, when its resource id filter is EQUALS only (else None)."""
    specs = criteria.get(key) or []
    if specs and all(spec["comparison"] == "EQUALS" for spec in specs):
        return {str(spec["value"]) for spec in specs}
    return None


def _page(items: Sequence[Any], params: Mapping[str, Any], default: int) -> tuple[list[Any], dict[str, Any]]:
    size = int(params.get("maxResults") or default)
    try:
        start = decode_token(str(params["nextToken"])) if params.get("nextToken") else 0
    except AwsApiError as exc:
        raise AwsApiError("ValidationException", "The nextToken is not valid.") from exc
    more = start + size < len(items)
    return list(items[start : start + size]), ({"nextToken": encode_token(start + size)} if more else {})


# -- the instances a request looks at ----------------------------------------------------------


def _candidates(world: World, ctx: RequestContext, wanted: set[str] | None) -> list[tuple[ManagedInstance, str]]:
    """(instance, EC2 state) of the account/region's instances, by id; only `wanted` ones when given."""
    instances = world.instances(ctx.account_id, ctx.region)
    states = world.ec2_states(ctx.account_id, ctx.region)
    ids = sorted(instances if wanted is None else wanted & set(instances))
    return [(instances[iid], states.get(iid, ("running", None))[0]) for iid in ids]


def _instance_type(world: World, instance: ManagedInstance) -> str:
    ec2 = world.ec2_states(instance.account_id, instance.region).get(instance.instance_id, ("", None))[1]
    return str(getattr(ec2, "instance_type", "") or "")


# -- ListCoverage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Covered:
    instance: ManagedInstance
    status: str
    reason: str
    last_scanned: datetime | None


_COVERAGE_GETTERS: dict[str, _Getter] = {
    "accountId": lambda c: c.instance.account_id,
    "resourceId": lambda c: c.instance.instance_id,
    "resourceType": lambda c: RESOURCE_TYPE,
    "scanType": lambda c: SCAN_TYPE,
    "scanMode": lambda c: SCAN_MODE,
    "scanStatusCode": lambda c: c.status,
    "scanStatusReason": lambda c: c.reason,
    "lastScannedAt": lambda c: c.last_scanned,
}


def list_coverage(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Inspector's package-scan coverage of the region's EC2 instances (SSM's managed and unmanaged ones)."""
    criteria = params.get("filterCriteria") or {}
    getters = {**_COVERAGE_GETTERS, "ec2InstanceTags": lambda c: _tags(world, c.instance)}
    checks = _checks(criteria, getters, _filter_kinds("ListCoverage"))
    now = world.now()
    covered = []
    for instance, ec2_state in _candidates(world, ctx, _resource_ids(criteria, "resourceId")):
        seen = _look(world, instance, ec2_state, now) if instance.registered else None
        status, reason = _scan_status(instance, ec2_state, seen)
        item = _Covered(instance, status, reason, seen.last_scanned if seen else None)
        if all(check(item) for check in checks):
            covered.append(item)
    page, more = _page(covered, params, DEFAULT_COVERAGE_PAGE)
    return {"coveredResources": [_covered_resource(world, item) for item in page], **more}


def _tags(world: World, instance: ManagedInstance) -> dict[str, str]:
    return world.tags(instance.account_id, instance.region, instance.instance_id)


def _covered_resource(world: World, item: _Covered) -> dict[str, Any]:
    instance = item.instance
    resource: dict[str, Any] = {
        "resourceType": RESOURCE_TYPE,
        "resourceId": instance.instance_id,
        "accountId": instance.account_id,
        "scanType": SCAN_TYPE,
        "scanStatus": {"statusCode": item.status, "reason": item.reason},
        "resourceMetadata": {
            "ec2": {
                "tags": _tags(world, instance),
                "amiId": instance.ami,
                "platform": "WINDOWS" if instance.platform_type == "Windows" else "LINUX",
            }
        },
        "scanMode": SCAN_MODE,
    }
    if item.last_scanned is not None:
        resource["lastScannedAt"] = item.last_scanned
    return resource


# -- ListFindings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    """One finding as filters and the response see it."""

    instance: ManagedInstance
    finding: _Finding
    patch: Patch | None
    unpatched: UnpatchedFinding | None
    catalog_package: str  # the package the patch updates, when the catalog says ("" otherwise)

    @property
    def arn(self) -> str:
        instance = self.instance
        digest = hashlib.md5(  # a stable id, not a secret
            f"{instance.account_id}/{instance.region}/{instance.instance_id}/{self.finding.cve}".encode()
        ).hexdigest()
        return f"arn:aws:inspector2:{instance.region}:{instance.account_id}:finding/{digest}"

    @property
    def severity(self) -> str:
        if self.unpatched is not None:
            return self.unpatched.severity
        return SEVERITIES.get(self.patch.severity, UNTRIAGED) if self.patch else UNTRIAGED

    @property
    def package(self) -> str:
        if self.unpatched is not None:
            return self.unpatched.package
        if self.instance.os == "WINDOWS":
            return _WINDOWS_PACKAGE
        if self.catalog_package:
            return self.catalog_package
        return self.patch.id.split("_", 1)[0] if self.patch else "unknown"

    @property
    def title(self) -> str:
        return f"{self.finding.cve} - {self.package}"

    @property
    def source(self) -> str:
        return "NVD" if self.unpatched is not None else _SOURCES.get(self.instance.os, "NVD")

    @property
    def vendor_severity(self) -> str:
        if self.unpatched is not None:
            return self.unpatched.severity.capitalize()
        return self.patch.severity if self.patch else "Unknown"

    @property
    def fix_available(self) -> str:
        return "NO" if self.unpatched is not None else "YES"

    def packages(self) -> list[dict[str, str]]:
        return [_vulnerable_package(self)]


def _vulnerable_package(view: _View) -> dict[str, str]:
    if view.unpatched is not None:
        return {
            "name": view.unpatched.package,
            "version": view.unpatched.version or "1.0.0",
            "fixedInVersion": NOT_AVAILABLE,
            "packageManager": "OS",
        }
    patch = view.patch
    assert patch is not None
    if view.instance.os == "WINDOWS":
        build = int("".join(ch for ch in patch.id if ch.isdigit()) or "1") % 100000
        return {
            "name": _WINDOWS_PACKAGE,
            "version": f"10.0.20348.{max(build - 1, 1)}",
            "fixedInVersion": f"10.0.20348.{build}",
            "packageManager": "OS",
            "remediation": f"Install {patch.id}",
        }
    suffix = _RELEASE_SUFFIX.get(view.instance.os, "1")
    before = patch.released - timedelta(days=90)
    package = view.package
    if view.instance.os == "UBUNTU":
        command = f"apt-get install --only-upgrade {package}"
    elif view.instance.os == "AMAZON_LINUX_2":
        command = f"yum update --advisory={patch.id}"
    else:
        command = f"dnf update --advisory={patch.id}"
    return {
        "name": package,
        "version": f"0:{before:%Y.%m.%d}-1.{suffix}",
        "fixedInVersion": f"0:{patch.released:%Y.%m.%d}-1.{suffix}",
        "packageManager": "OS",
        "remediation": command,
    }


_FINDING_GETTERS: dict[str, _Getter] = {
    "findingArn": lambda v: v.arn,
    "awsAccountId": lambda v: v.instance.account_id,
    "findingType": lambda v: FINDING_TYPE,
    "severity": lambda v: v.severity,
    "findingStatus": lambda v: v.finding.status,
    "title": lambda v: v.title,
    "resourceType": lambda v: RESOURCE_TYPE,
    "resourceId": lambda v: v.instance.instance_id,
    "ec2InstanceImageId": lambda v: v.instance.ami,
    "vulnerabilityId": lambda v: v.finding.cve,
    "vulnerabilitySource": lambda v: v.source,
    "vendorSeverity": lambda v: v.vendor_severity,
    "fixAvailable": lambda v: v.fix_available,
    "exploitAvailable": lambda v: "NO",
    "firstObservedAt": lambda v: v.finding.first_observed,
    "lastObservedAt": lambda v: v.finding.last_observed,
    "updatedAt": lambda v: v.finding.updated,
    "vulnerablePackages": lambda v: v.packages(),
}

_SORT_KEYS: dict[str, Callable[[_View], Any]] = {
    "AWS_ACCOUNT_ID": lambda v: v.instance.account_id,
    "FINDING_TYPE": lambda v: FINDING_TYPE,
    "SEVERITY": lambda v: _SEVERITY_RANK.get(v.severity, -1),
    "FIRST_OBSERVED_AT": lambda v: v.finding.first_observed,
    "LAST_OBSERVED_AT": lambda v: v.finding.last_observed,
    "FINDING_STATUS": lambda v: v.finding.status,
    "RESOURCE_TYPE": lambda v: RESOURCE_TYPE,
    "VULNERABILITY_ID": lambda v: v.finding.cve,
    "VULNERABILITY_SOURCE": lambda v: v.source,
    "VENDOR_SEVERITY": lambda v: v.vendor_severity,
}


def list_findings(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Package-vulnerability findings on the region's managed EC2 instances, as of each one's last scan."""
    criteria = params.get("filterCriteria") or {}
    getters = {**_FINDING_GETTERS, "resourceTags": lambda v: _tags(world, v.instance)}
    checks = _checks(criteria, getters, _filter_kinds("ListFindings"))
    now = world.now()
    views = []
    for instance, ec2_state in _candidates(world, ctx, _resource_ids(criteria, "resourceId")):
        if not instance.registered:
            continue  # never scanned: Inspector has no inventory of it
        seen = _look(world, instance, ec2_state, now)
        on_instance = _unpatched(world, ctx.account_id, ctx.region).get(instance.instance_id, [])
        unpatched = {spec.cve: spec for spec in on_instance}
        for cve in sorted(seen.findings):
            finding = seen.findings[cve]
            view = _View(
                instance,
                finding,
                world.catalog.get(finding.patch_id),
                None if finding.patch_id else unpatched.get(cve),
                world.catalog.package(finding.patch_id) or "",
            )
            if all(check(view) for check in checks):
                views.append(view)
    sort = params.get("sortCriteria")
    if sort and sort.get("field") in _SORT_KEYS:
        views.sort(key=_SORT_KEYS[sort["field"]], reverse=sort.get("sortOrder") == "DESC")
    page, more = _page(views, params, DEFAULT_FINDINGS_PAGE)
    return {"findings": [_finding(world, view) for view in page], **more}


def _finding(world: World, view: _View) -> dict[str, Any]:
    instance, finding, patch = view.instance, view.finding, view.patch
    if patch is not None:
        description = (
            f"{finding.cve} in {view.package} on {instance.platform_name}: fixed by {patch.id} ({patch.title})."
        )
        recommendation = {"text": f"Install {patch.id}: {patch.title}", "Url": content_url(patch)}
        source_url = content_url(patch)
        vendor_created = released_at(patch)
    else:
        description = f"{finding.cve} in {view.package} on {instance.platform_name}: no fix is available yet."
        recommendation = {"text": "None Provided"}
        source_url = f"https://nvd.nist.gov/vuln/detail/{finding.cve}"
        vendor_created = finding.first_observed
    details: dict[str, Any] = {
        "type": _instance_type(world, instance) or "unknown",
        "imageId": instance.ami,
        "platform": _PLATFORMS.get(instance.os, instance.os),
        "launchedAt": instance.registration_date,
    }
    if instance.ip_address:
        details["ipV4Addresses"] = [instance.ip_address]
    return {
        "findingArn": view.arn,
        "awsAccountId": instance.account_id,
        "type": FINDING_TYPE,
        "title": view.title,
        "description": description,
        "remediation": {"recommendation": recommendation},
        "severity": view.severity,
        "firstObservedAt": finding.first_observed,
        "lastObservedAt": finding.last_observed,
        "updatedAt": finding.updated,
        "status": finding.status,
        "resources": [
            {
                "type": RESOURCE_TYPE,
                "id": instance.instance_id,
                "partition": "aws",
                "region": instance.region,
                "tags": _tags(world, instance),
                "details": {"awsEc2Instance": details},
            }
        ],
        "packageVulnerabilityDetails": {
            "vulnerabilityId": finding.cve,
            "source": view.source,
            "sourceUrl": source_url,
            "vendorSeverity": view.vendor_severity,
            "vendorCreatedAt": vendor_created,
            "vulnerablePackages": view.packages(),
            "referenceUrls": [f"https://nvd.nist.gov/vuln/detail/{finding.cve}"],
        },
        "fixAvailable": view.fix_available,
        "exploitAvailable": "NO",
    }


HANDLERS: dict[tuple[str, str], Handler] = {
    ("inspector2", "ListCoverage"): list_coverage,
    ("inspector2", "ListFindings"): list_findings,
}
