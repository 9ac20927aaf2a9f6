"""Patch Manager's semantics over the World: baselines, approval, Scan and Install, and what instances report.

Baselines live where AWS keeps them for the client: in moto's SSM backend (CreatePatchBaseline,
RegisterPatchBaselineForPatchGroup), so baselines a DAG creates through the API count exactly like
the scenario's. An instance uses the baseline registered for its patch group and OS, else AWS's
predefined default baseline for its OS (``DEFAULT_BASELINES``, ids from moto's
default_baselines.json: the region's ARNs, as AWS reports them).

Approval follows AWS's documented rules: a patch is approved when every filter of one approval
rule (and of the baseline's global filters) matches it and the rule's delay has passed (release
date taken as 00:00 UTC; ApproveAfterDays is not applied to Ubuntu, as on AWS), or when it is on
the approved list; a patch on the rejected list is never approved. Filter keys are read by meaning:
CLASSIFICATION and SECTION (Ubuntu) match the classification, SEVERITY, MSRC_SEVERITY and PRIORITY
(Ubuntu) the severity, PRODUCT/PRODUCT_FAMILY/PATCH_ID/ADVISORY_ID/CVE_ID/PATCH_SET what their names
say; keys the catalog has no data for (ARCH, NAME, REPOSITORY, ...) are ignored. A patch's
compliance level is the most severe level among the rules approving it.

A report lists every applicable patch (catalog patches of the instance's OS released by the
operation's start) that is installed, missing (approved, not installed) or failed; applicable
patches that are neither installed nor approved are not reported, as on AWS. Choices where the
sandbox simplifies:

- Every catalog patch of an OS family applies to every instance of it, so ``NOT_APPLICABLE`` is
  never reported and NotApplicableCount / UnreportedNotApplicableCount are always 0.
- An installed rejected patch is INSTALLED_REJECTED only under RejectedPatchesAction BLOCK (under
  AWS's default ALLOW_AS_DEPENDENCY it counts as INSTALLED_OTHER, as AWS documents). Scenario
  baselines that reject patches are created with BLOCK.
- A patch needs a reboot when its catalog entry says so (kernel, cumulative updates) or the
  instance has the ``reboot_required`` fault. Under NoReboot such patches stay
  INSTALLED_PENDING_REBOOT; under RebootIfNeeded the reboot clears every pending patch, unless the
  fault keeps them pending.
- MISSING, FAILED, INSTALLED_PENDING_REBOOT and INSTALLED_REJECTED are non-compliant. Of those,
  CriticalNonCompliantCount counts compliance level CRITICAL, SecurityNonCompliantCount security
  classifications (the two may overlap, as on AWS), OtherNonCompliantCount the rest.
- A Scan reports a patch whose last install failed as MISSING; only the Install that failed
  reports FAILED. Both operations fail (ScanFailed) on an instance with the ``scan_fails`` fault.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from moto.ssm.models import ssm_backends
from moto.utilities.utils import load_resource

from include.sandbox.catalog import PRODUCT_FAMILIES, PRODUCTS, Catalog, is_security
from include.sandbox.scenario import ApprovalRule, Baseline, Patch, ScenarioError
from include.sandbox.world import ManagedInstance, PatchReport, World

INSTALLED = "INSTALLED"
INSTALLED_OTHER = "INSTALLED_OTHER"
INSTALLED_PENDING_REBOOT = "INSTALLED_PENDING_REBOOT"
INSTALLED_REJECTED = "INSTALLED_REJECTED"
MISSING = "MISSING"
FAILED = "FAILED"
NOT_APPLICABLE = "NOT_APPLICABLE"
NON_COMPLIANT_STATES = frozenset({MISSING, FAILED, INSTALLED_PENDING_REBOOT, INSTALLED_REJECTED})

# Most severe first: the order decides a patch's level when several rules approve it.
COMPLIANCE_LEVELS = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNSPECIFIED")

REBOOT_IF_NEEDED = "RebootIfNeeded"
NO_REBOOT = "NoReboot"

# The filter key each OS family uses for a scenario rule's classification and severity.
CLASSIFICATION_KEY = {"UBUNTU": "SECTION"}
SEVERITY_KEY = {"WINDOWS": "MSRC_SEVERITY", "UBUNTU": "PRIORITY"}
_CLASSIFICATION_KEYS = frozenset({"CLASSIFICATION", "SECTION"})
_SEVERITY_KEYS = frozenset({"SEVERITY", "MSRC_SEVERITY", "PRIORITY"})

_SNAPSHOTS = uuid.UUID("5f0c8a52-6d8e-4a53-9a43-4b1f1d1c3e70")  # namespace for deterministic snapshot ids
_CREATED = "patching.baseline_created"  # World.extra key: baseline id -> when the sandbox first saw it
_MODIFIED = "patching.baseline_modified"  # World.extra key: baseline id -> its last UpdatePatchBaseline


class ScanFailed(Exception):
    """The patch scan could not run on the instance (the scenario's ``scan_fails`` fault)."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"patch scan failed on {instance_id}")
        self.instance_id = instance_id


@dataclass(frozen=True)
class PatchFilter:
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """One approval rule of a baseline (AWS's PatchRule)."""

    filters: tuple[PatchFilter, ...]
    compliance_level: str = "UNSPECIFIED"
    approve_after_days: int | None = None
    approve_until: date | None = None


@dataclass(frozen=True)
class BaselineView:
    """What patching needs of a patch baseline, from moto's SSM backend or AWS's predefined ones."""

    baseline_id: str
    name: str
    os: str
    rules: tuple[Rule, ...]
    approved: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    global_filters: tuple[PatchFilter, ...] = ()
    approved_compliance_level: str = "UNSPECIFIED"
    rejected_action: str = "ALLOW_AS_DEPENDENCY"
    description: str = ""
    predefined: bool = False


@dataclass(frozen=True)
class PredefinedBaseline:
    """One of AWS's predefined default baselines; its id is per region (see default_baseline)."""

    name: str
    description: str
    rules: tuple[Rule, ...]


@dataclass
class PatchStateReport(PatchReport):
    """A PatchReport plus what the API needs later: each patch's compliance level in that snapshot."""

    compliance_levels: dict[str, str] = field(default_factory=dict)
    last_no_reboot_install: datetime | None = None


def _f(key: str, *values: str) -> PatchFilter:
    return PatchFilter(key, values)


# Amazon Linux and RHEL: Security patches rated Critical or Important, and all Bugfix patches, 7 days after release.
_SECURITY_AND_BUGFIX_AFTER_7_DAYS = (
    Rule(
        (_f("PRODUCT", "*"), _f("CLASSIFICATION", "Security"), _f("SEVERITY", "Critical", "Important")),
        approve_after_days=7,
    ),
    Rule((_f("PRODUCT", "*"), _f("CLASSIFICATION", "Bugfix")), approve_after_days=7),
)

# AWS's predefined baselines, as documented under "Predefined and custom patch baselines".
DEFAULT_BASELINES: dict[str, PredefinedBaseline] = {
    "AMAZON_LINUX_2023": PredefinedBaseline(
        "AWS-AmazonLinux2023DefaultPatchBaseline",
        "Default Patch Baseline for Amazon Linux 2023 Provided by AWS.",
        _SECURITY_AND_BUGFIX_AFTER_7_DAYS,
    ),
    "AMAZON_LINUX_2": PredefinedBaseline(
        "AWS-AmazonLinux2DefaultPatchBaseline",
        "Default Patch Baseline for Amazon Linux 2 Provided by AWS.",
        _SECURITY_AND_BUGFIX_AFTER_7_DAYS,
    ),
    "REDHAT_ENTERPRISE_LINUX": PredefinedBaseline(
        "AWS-RedHatDefaultPatchBaseline",
        "Default Patch Baseline for Redhat Enterprise Linux Provided by AWS.",
        _SECURITY_AND_BUGFIX_AFTER_7_DAYS,
    ),
    # Ubuntu: every security-related patch, at once (Ubuntu repositories have no reliable release dates).
    "UBUNTU": PredefinedBaseline(
        "AWS-UbuntuDefaultPatchBaseline",
        "Default Patch Baseline for Ubuntu Provided by AWS.",
        (Rule((_f("PRODUCT", "*"), _f("SECTION", "Security"), _f("PRIORITY", "*"))),),
    ),
    # Windows: Microsoft publishes no MSRC severity for CriticalUpdates, so in practice this approves
    # security updates only; the sandbox reproduces that well-known effect.
    "WINDOWS": PredefinedBaseline(
        "AWS-DefaultPatchBaseline",
        "Default Patch Baseline Provided by AWS.",
        (
            Rule(
                (
                    _f("PRODUCT", "*"),
                    _f("CLASSIFICATION", "CriticalUpdates", "SecurityUpdates"),
                    _f("MSRC_SEVERITY", "Critical", "Important"),
                ),
                approve_after_days=7,
            ),
        ),
    ),
}


# -- baselines ---------------------------------------------------------------------------------


@functools.cache
def _default_baseline_arns() -> dict[str, dict[str, str]]:
    arns: dict[str, dict[str, str]] = load_resource("ssm/resources/default_baselines.json")
    return arns


def default_baseline_id(region: str, os: str) -> str:
    """The ARN of AWS's predefined baseline for `os` in `region`, as moto (and AWS) report it."""
    arns = _default_baseline_arns()
    by_os = arns.get(region)
    if by_os is None:  # a region moto's file does not list: same owner account, that region
        return arns["us-east-1"][os].replace(":us-east-1:", f":{region}:")
    return by_os[os]


def default_baseline(os: str, region: str) -> BaselineView:
    spec = DEFAULT_BASELINES[os]
    return BaselineView(
        baseline_id=default_baseline_id(region, os),
        name=spec.name,
        os=os,
        rules=spec.rules,
        description=spec.description,
        predefined=True,
    )


def find_default_baseline(region: str, baseline_id: str) -> BaselineView | None:
    """AWS's predefined baseline with this ARN in this region, if it is one."""
    for os in DEFAULT_BASELINES:
        if default_baseline_id(region, os) == baseline_id:
            return default_baseline(os, region)
    return None


def _filters(raw: Iterable[dict[str, Any]]) -> tuple[PatchFilter, ...]:
    return tuple(PatchFilter(str(f.get("Key", "")), tuple(f.get("Values") or ())) for f in raw)


def _rule_from_api(raw: dict[str, Any]) -> Rule:
    until = raw.get("ApproveUntilDate")
    return Rule(
        filters=_filters((raw.get("PatchFilterGroup") or {}).get("PatchFilters") or ()),
        compliance_level=raw.get("ComplianceLevel") or "UNSPECIFIED",
        approve_after_days=raw.get("ApproveAfterDays"),
        approve_until=date.fromisoformat(until) if until else None,
    )


def baseline_view(fake: Any) -> BaselineView:
    """A moto FakePatchBaseline (stored as the client sent it) read as a BaselineView."""
    rules = (fake.approval_rules or {}).get("PatchRules") or ()
    return BaselineView(
        baseline_id=fake.id,
        name=fake.name,
        os=fake.operating_system,
        rules=tuple(_rule_from_api(rule) for rule in rules),
        approved=tuple(fake.approved_patches or ()),
        rejected=tuple(fake.rejected_patches or ()),
        global_filters=_filters((fake.global_filters or {}).get("PatchFilters") or ()),
        approved_compliance_level=fake.approved_patches_compliance_level or "UNSPECIFIED",
        rejected_action=fake.rejected_patches_action or "ALLOW_AS_DEPENDENCY",
        description=fake.description or "",
    )


def baseline_for_patch_group(account_id: str, region: str, patch_group: str, os: str) -> BaselineView:
    """The baseline registered for (patch group, OS) in moto, else AWS's default for the OS."""
    backend = ssm_backends[account_id][region]
    group = backend.patch_groups.get(patch_group) if patch_group else None
    baseline_id = group.associations.get(os) if group is not None else None
    fake = backend.baselines.get(baseline_id) if baseline_id else None
    return baseline_view(fake) if fake is not None else default_baseline(os, region)


def effective_baseline(world: World, instance: ManagedInstance) -> BaselineView:
    """The baseline Patch Manager would use for the instance now: its patch group's, else the OS default."""
    return baseline_for_patch_group(instance.account_id, instance.region, world.patch_group(instance), instance.os)


def baseline_created(world: World, baseline_id: str) -> datetime:
    """When the sandbox first saw a baseline (moto keeps no dates): its CreatedDate."""
    created: dict[str, datetime] = world.extra.setdefault(_CREATED, {})
    return created.setdefault(baseline_id, world.now())


def baseline_modified(world: World, baseline_id: str) -> datetime:
    """A baseline's ModifiedDate: its last UpdatePatchBaseline (see mark_baseline_modified), else its creation."""
    modified: dict[str, datetime] = world.extra.get(_MODIFIED, {})
    return modified.get(baseline_id) or baseline_created(world, baseline_id)


def mark_baseline_modified(world: World, baseline_id: str) -> None:
    world.extra.setdefault(_MODIFIED, {})[baseline_id] = world.now()


def api_rules(rules: Iterable[Rule]) -> dict[str, Any]:
    """Rules in the API's ApprovalRules shape (GetPatchBaseline of a predefined baseline)."""
    patch_rules = []
    for rule in rules:
        entry: dict[str, Any] = {
            "PatchFilterGroup": {"PatchFilters": [{"Key": f.key, "Values": list(f.values)} for f in rule.filters]},
            "ComplianceLevel": rule.compliance_level,
        }
        if rule.approve_after_days is not None:
            entry["ApproveAfterDays"] = rule.approve_after_days
        if rule.approve_until is not None:
            entry["ApproveUntilDate"] = rule.approve_until.isoformat()
        patch_rules.append(entry)
    return {"PatchRules": patch_rules}


def _scenario_rule(rule: ApprovalRule, os: str) -> Rule:
    filters = []
    if rule.classification:
        filters.append(PatchFilter(CLASSIFICATION_KEY.get(os, "CLASSIFICATION"), rule.classification))
    if rule.severity:
        filters.append(PatchFilter(SEVERITY_KEY.get(os, "SEVERITY"), rule.severity))
    # AWS refuses ApproveAfterDays for Ubuntu: such baselines approve as soon as a patch is available.
    days = None if os == "UBUNTU" else rule.approve_after_days
    return Rule(tuple(filters), rule.compliance_level, days)


def register_scenario_baselines(world: World, account_id: str, region: str) -> None:
    """Create the scenario's baselines in moto's SSM backend of one account/region and register their patch groups.

    Idempotent (a baseline whose name exists is left alone), so seeding may call it more than once.
    """
    backend = ssm_backends[account_id][region]
    existing = {fake.name for fake in backend.baselines.values()}
    for baseline in world.scenario.baselines:
        if baseline.name not in existing:
            _create(world, backend, baseline)


def _create(world: World, backend: Any, baseline: Baseline) -> None:
    rules = [_scenario_rule(rule, baseline.os) for rule in baseline.approval_rules]
    baseline_id: str = backend.create_patch_baseline(
        name=baseline.name,
        operating_system=baseline.os,
        global_filters=None,
        approval_rules=api_rules(rules),
        approved_patches=list(baseline.approved_patches),
        approved_patches_compliance_level="UNSPECIFIED",
        approved_patches_enable_non_security=False,
        rejected_patches=list(baseline.rejected_patches),
        # BLOCK, so an installed rejected patch reports INSTALLED_REJECTED (see the module docstring).
        rejected_patches_action="BLOCK" if baseline.rejected_patches else "ALLOW_AS_DEPENDENCY",
        description=baseline.description or None,
        sources=[],
        tags=None,
    )
    baseline_created(world, baseline_id)
    for patch_group in baseline.patch_groups:
        _associate(backend, baseline_id, patch_group, baseline)


def _associate(backend: Any, baseline_id: str, patch_group: str, baseline: Baseline) -> None:
    group = backend.patch_groups.get(patch_group)
    if group is None:
        backend.register_patch_baseline_for_patch_group(baseline_id, patch_group)
        return
    current = group.associations.get(baseline.os)
    if current in backend.baselines and current != baseline_id:
        other = backend.baselines[current].name
        raise ScenarioError(
            f"scenario {baseline.name!r} and {other!r} both register patch group {patch_group!r} for {baseline.os}"
        )
    # moto 5.2.5 refuses a second OS on an existing patch group (it compares with AWS's default
    # baseline ARN and raises AlreadyExists), which AWS allows: set the association directly.
    group.associations[baseline.os] = baseline_id


# -- approval ----------------------------------------------------------------------------------


def released_at(patch: Patch) -> datetime:
    """A patch's release as an instant: 00:00 UTC of its release date."""
    return datetime(patch.released.year, patch.released.month, patch.released.day, tzinfo=UTC)


def patch_values(patch: Patch, key: str) -> set[str] | None:
    """The patch's values for a filter key; None when the catalog has no data for that key."""
    if key in _CLASSIFICATION_KEYS:
        return {patch.classification}
    if key in _SEVERITY_KEYS:
        return {patch.severity}
    if key == "PRODUCT":
        return {PRODUCTS.get(patch.os, "")}
    if key == "PRODUCT_FAMILY":
        return {PRODUCT_FAMILIES.get(patch.os, "")}
    if key in ("PATCH_ID", "ADVISORY_ID"):
        return {patch.id}
    if key == "CVE_ID":
        return set(patch.cves)
    if key == "PATCH_SET":
        return {"OS"}
    return None


def filter_matches(patch_filter: PatchFilter, patch: Patch) -> bool:
    if "*" in patch_filter.values:
        return True
    values = patch_values(patch, patch_filter.key)
    return values is None or not values.isdisjoint(patch_filter.values)


def _rule_approves(rule: Rule, patch: Patch, baseline: BaselineView, now: datetime) -> bool:
    if not all(filter_matches(f, patch) for f in (*baseline.global_filters, *rule.filters)):
        return False
    if baseline.os == "UBUNTU":
        return True
    if rule.approve_until is not None:
        return patch.released <= rule.approve_until
    return now >= released_at(patch) + timedelta(days=rule.approve_after_days or 0)


def approval_level(patch: Patch, baseline: BaselineView, now: datetime) -> str | None:
    """The compliance level the baseline approves the patch with at `now`, or None if it is not approved."""
    if patch.id in baseline.rejected or patch.os != baseline.os:
        return None
    levels = [rule.compliance_level for rule in baseline.rules if _rule_approves(rule, patch, baseline, now)]
    if patch.id in baseline.approved:
        levels.append(baseline.approved_compliance_level)
    if not levels:
        return None
    return min(levels, key=lambda level: COMPLIANCE_LEVELS.index(level) if level in COMPLIANCE_LEVELS else 99)


def applicable_patches(catalog: Catalog, os: str, now: datetime) -> list[Patch]:
    """Catalog patches of the OS family already released at `now`."""
    return [patch for patch in catalog.for_os(os) if released_at(patch) <= now]


def approval_levels(catalog: Catalog, baseline: BaselineView, now: datetime) -> dict[str, str]:
    """Patch id -> compliance level, for every patch the baseline approves at `now` (catalog order)."""
    levels: dict[str, str] = {}
    for patch in applicable_patches(catalog, baseline.os, now):
        level = approval_level(patch, baseline, now)
        if level is not None:
            levels[patch.id] = level
    return levels


def approved_patches(catalog: Catalog, baseline: BaselineView, now: datetime) -> list[Patch]:
    """The released patches the baseline approves at `now`: by a rule or explicitly, never when rejected."""
    return [patch for patch in applicable_patches(catalog, baseline.os, now) if approval_level(patch, baseline, now)]


# -- scan and install --------------------------------------------------------------------------


def _state(
    patch_id: str, instance: ManagedInstance, baseline: BaselineView, approved: set[str], failed: set[str]
) -> str | None:
    if patch_id in instance.installed:
        if patch_id in instance.pending_reboot:
            return INSTALLED_PENDING_REBOOT
        if patch_id in baseline.rejected and baseline.rejected_action == "BLOCK":
            return INSTALLED_REJECTED
        return INSTALLED if patch_id in approved else INSTALLED_OTHER
    if patch_id in failed:
        return FAILED
    return MISSING if patch_id in approved else None


def _noncompliant(catalog: Catalog, states: dict[str, str], levels: dict[str, str]) -> tuple[int, int, int]:
    """(critical, security, other) non-compliant patch counts, as DescribeInstancePatchStates reports them."""
    critical = security = other = 0
    for patch_id, state in states.items():
        if state not in NON_COMPLIANT_STATES:
            continue
        patch = catalog.get(patch_id)
        is_critical = levels.get(patch_id) == "CRITICAL"
        is_secure_fix = patch is not None and is_security(patch)
        critical += is_critical
        security += is_secure_fix
        other += not (is_critical or is_secure_fix)
    return critical, security, other


@dataclass(frozen=True)
class _Operation:
    name: str  # "Scan" or "Install"
    start: datetime
    end: datetime
    failed: frozenset[str] = frozenset()
    reboot_option: str = REBOOT_IF_NEEDED
    install_override_list: str | None = None


def _report(world: World, instance: ManagedInstance, baseline: BaselineView, op: _Operation) -> PatchStateReport:
    levels = approval_levels(world.catalog, baseline, op.start)
    approved = set(levels)
    states: dict[str, str] = {}
    for patch in applicable_patches(world.catalog, instance.os, op.start):
        state = _state(patch.id, instance, baseline, approved, set(op.failed))
        if state is not None:
            states[patch.id] = state
    critical, security, other = _noncompliant(world.catalog, states, levels)
    previous = instance.report
    last_no_reboot = previous.last_no_reboot_install if isinstance(previous, PatchStateReport) else None
    if op.name == "Install" and op.reboot_option == NO_REBOOT:
        last_no_reboot = op.end
    return PatchStateReport(
        operation=op.name,
        start=op.start,
        end=op.end,
        baseline_id=baseline.baseline_id,
        patch_group=world.patch_group(instance),
        snapshot_id=str(uuid.uuid5(_SNAPSHOTS, f"{instance.instance_id}/{op.name}/{op.start.isoformat()}")),
        states=states,
        installed_time={pid: instance.installed[pid] for pid in states if pid in instance.installed},
        install_override_list=op.install_override_list,
        reboot_option=op.reboot_option,
        critical_noncompliant=critical,
        security_noncompliant=security,
        other_noncompliant=other,
        compliance_levels={pid: levels.get(pid, "UNSPECIFIED") for pid in states},
        last_no_reboot_install=last_no_reboot,
    )


def scan(
    world: World, instance: ManagedInstance, start: datetime, end: datetime, *, baseline: BaselineView | None = None
) -> PatchReport:
    """AWS-RunPatchBaseline Operation=Scan: report the instance's state against its baseline; sets instance.report."""
    if instance.faults.scan_fails:
        raise ScanFailed(instance.instance_id)
    report = _report(world, instance, baseline or effective_baseline(world, instance), _Operation("Scan", start, end))
    instance.report = report
    return report


def install(
    world: World,
    instance: ManagedInstance,
    start: datetime,
    end: datetime,
    *,
    reboot_option: str = REBOOT_IF_NEEDED,
    override_ids: set[str] | None = None,
    baseline: BaselineView | None = None,
    install_override_list: str | None = None,
) -> tuple[PatchReport, bool]:
    """AWS-RunPatchBaseline Operation=Install: install the approved missing patches, reboot as told, report.

    With `override_ids` (an InstallOverrideList) exactly those ids are installed that apply to the
    instance and are not installed yet, approved or not. Returns the report and whether every
    attempted patch installed; `install_override_list` is the list's URL, recorded in the report.
    """
    if instance.faults.scan_fails:
        raise ScanFailed(instance.instance_id)  # Install starts with a scan
    baseline = baseline or effective_baseline(world, instance)
    if override_ids is not None:
        candidates = [p for p in applicable_patches(world.catalog, instance.os, start) if p.id in override_ids]
    else:
        candidates = approved_patches(world.catalog, baseline, start)
    targets = [patch for patch in candidates if patch.id not in instance.installed]
    failed = {patch.id for patch in targets if patch.id in instance.faults.install_fails}
    done = [patch for patch in targets if patch.id not in failed]
    for patch in done:
        instance.installed[patch.id] = end
    _reboot(instance, done, reboot_option)
    instance.failed = failed
    op = _Operation("Install", start, end, frozenset(failed), reboot_option, install_override_list)
    report = _report(world, instance, baseline, op)
    instance.report = report
    return report, not failed


def _reboot(instance: ManagedInstance, done: list[Patch], reboot_option: str) -> None:
    """Apply the RebootOption to the patches just installed (and to those already pending)."""
    if instance.faults.reboot_required:
        instance.pending_reboot.update(patch.id for patch in done)  # the reboot never takes effect
    elif reboot_option == NO_REBOOT:
        instance.pending_reboot.update(patch.id for patch in done if patch.reboot)
    elif instance.pending_reboot or any(patch.reboot for patch in done):
        instance.pending_reboot.clear()  # RebootIfNeeded: the instance reboots and every pending patch takes effect


def seed_installed(world: World, instance: ManagedInstance, patched_through: date | None) -> None:
    """Start an instance patched through a date, with the report a daily scan association would have left.

    Catalog patches of its OS released on or before `patched_through` are installed (3 days after
    release), then the instance is scanned at world.now() against its patch group's baseline.
    """
    # The seeder launches instances before registering baselines: make sure the scan sees them.
    register_scenario_baselines(world, instance.account_id, instance.region)
    now = world.now()
    if patched_through is not None:
        for patch in world.catalog.for_os(instance.os):
            if patch.released <= patched_through:
                instance.installed[patch.id] = min(released_at(patch) + timedelta(days=3), now)
    started = now - timedelta(seconds=world.scenario.commands.scan_seconds)
    try:
        scan(world, instance, started, now)
    except ScanFailed:
        instance.report = None


def report_counts(report: PatchReport) -> dict[str, int]:
    """The count members of an InstancePatchState for a report."""
    tally = Counter(report.states.values())
    return {
        "InstalledCount": tally[INSTALLED],
        "InstalledOtherCount": tally[INSTALLED_OTHER],
        "InstalledPendingRebootCount": tally[INSTALLED_PENDING_REBOOT],
        "InstalledRejectedCount": tally[INSTALLED_REJECTED],
        "MissingCount": tally[MISSING],
        "FailedCount": tally[FAILED],
        "NotApplicableCount": tally[NOT_APPLICABLE],
        "UnreportedNotApplicableCount": 0,
        "CriticalNonCompliantCount": report.critical_noncompliant,
        "SecurityNonCompliantCount": report.security_noncompliant,
        "OtherNonCompliantCount": report.other_noncompliant,
    }


def compliance_level(report: PatchReport, patch_id: str) -> str:
    """The patch's compliance level in the report's baseline snapshot (UNSPECIFIED if not approved)."""
    if isinstance(report, PatchStateReport):
        return report.compliance_levels.get(patch_id, "UNSPECIFIED")
    return "UNSPECIFIED"


def is_compliant(report: PatchReport) -> bool:
    return all(state not in NON_COMPLIANT_STATES for state in report.states.values())
