"""The sandbox's state beyond moto: SSM's view of each instance, its patches, and the commands sent.

moto owns EC2, RDS, S3, CloudFormation; the World reads moto's EC2 state so that
instances launched later (for example by a CloudFormation stack) become managed
instances like the scenario's own.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import InstanceState as Ec2InstanceState

from include.sandbox.catalog import Catalog, build_catalog
from include.sandbox.clock import SimulatedClock
from include.sandbox.scenario import Ami, Failure, Scenario

if TYPE_CHECKING:
    from include.sandbox.commands import CommandStore

# SSM's PlatformName / PlatformType per OS family, as DescribeInstanceInformation reports them.
PLATFORMS: dict[str, tuple[str, str, str]] = {
    # os family: (PlatformType, PlatformName, default PlatformVersion)
    "AMAZON_LINUX_2023": ("Linux", "Amazon Linux", "2023"),
    "AMAZON_LINUX_2": ("Linux", "Amazon Linux", "2"),
    "UBUNTU": ("Linux", "Ubuntu", "22.04"),
    "REDHAT_ENTERPRISE_LINUX": ("Linux", "Red Hat Enterprise Linux", "9.4"),
    "WINDOWS": ("Windows", "Microsoft Windows Server 2022 Datacenter", "10.0.20348"),
}


@dataclass
class InstanceFaults:
    """The injected failures that apply to one instance (merged from every matching failure)."""

    install_fails: set[str] = field(default_factory=set)
    scan_fails: bool = False
    reboot_required: bool = False
    command_hangs: bool = False
    script_fails: bool = False
    breaks_after_install: bool = False  # an Install that installs a patch breaks the health checks
    snapshot_fails: bool = False  # its EBS snapshots end in state error (ebs.py)
    restore_fails: str = ""  # "failed" or "failed-detached": how its root volume replacements end (ebs.py)

    def merge(self, failure: Failure) -> None:
        self.install_fails.update(failure.install_fails)
        self.scan_fails |= failure.scan_fails
        self.reboot_required |= failure.reboot_required
        self.command_hangs |= failure.command_hangs
        self.script_fails |= failure.script_fails
        self.breaks_after_install |= failure.breaks_after_install
        self.snapshot_fails |= failure.snapshot_fails
        if failure.restore_fails and self.restore_fails != "failed-detached":
            self.restore_fails = failure.restore_fails


@dataclass
class PatchReport:
    """What an instance last reported to Patch Manager: AWS shows the last operation's results, not live state."""

    operation: str  # "Scan" or "Install"
    start: datetime
    end: datetime
    baseline_id: str
    patch_group: str
    snapshot_id: str
    states: dict[str, str]  # patch id -> INSTALLED, MISSING, FAILED, ... (only applicable patches)
    installed_time: dict[str, datetime]
    install_override_list: str | None = None
    reboot_option: str = "RebootIfNeeded"
    critical_noncompliant: int = 0
    security_noncompliant: int = 0
    other_noncompliant: int = 0


@dataclass
class ManagedInstance:
    """SSM's view of one EC2 instance."""

    instance_id: str
    account_id: str
    region: str
    os: str
    os_version: str
    ami: str
    registered: bool  # False: SSM has never heard of it (no agent, no role)
    online: bool
    agent_version: str
    registration_date: datetime
    ip_address: str
    computer_name: str
    group: str | None  # the scenario's instance group, None for instances launched later
    installed: dict[str, datetime] = field(default_factory=dict)  # patch id -> installed time
    pending_reboot: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    report: PatchReport | None = None
    faults: InstanceFaults = field(default_factory=InstanceFaults)
    # The `breaks_after_install` fault: the patch ids an Install put on the instance (commands.py sets them when
    # the fault applies and the Install installed something). Its health-check scripts fail while any of them is
    # still installed (`health_broken`), so a restore that puts `installed` back to a pre-install snapshot heals
    # it; a restore may also clear this set outright.
    broken_by_install: set[str] = field(default_factory=set)

    @property
    def health_broken(self) -> bool:
        """Whether the instance's health checks fail because of an Install (the breaks_after_install fault)."""
        return any(patch_id in self.installed for patch_id in self.broken_by_install)

    @property
    def platform_type(self) -> str:
        return PLATFORMS[self.os][0]

    @property
    def platform_name(self) -> str:
        return PLATFORMS[self.os][1]


class _Ec2Changes:
    """How many times moto set an attribute of an EC2 instance's state (a launch's new state included): moto
    changes instance states only that way, so while this count stands still, a region's states read before
    still hold, whoever changed what (a client, a runbook step, CloudFormation, a test poking moto)."""

    count = 0


def _counted_setattr(self: Ec2InstanceState, name: str, value: Any) -> None:
    _Ec2Changes.count += 1
    object.__setattr__(self, name, value)


if Ec2InstanceState.__setattr__ is not _counted_setattr:
    Ec2InstanceState.__setattr__ = _counted_setattr  # type: ignore[method-assign,assignment]

Ec2States = dict[str, tuple[str, Any]]
T = TypeVar("T")


class World:
    """Everything the sandbox adds to moto, for every account and region of a scenario."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.clock = SimulatedClock(scenario.clock_start, scenario.clock_speed)
        self.rng = random.Random(scenario.seed)
        self.catalog: Catalog = build_catalog(scenario)
        self.lock = threading.RLock()
        self._instances: dict[tuple[str, str], dict[str, ManagedInstance]] = {}
        self._commands: dict[tuple[str, str], CommandStore] = {}
        self.extra: dict[str, Any] = {}  # per-API state of later additions (RDS maintenance, Inspector, ...)
        # (account, region) -> (what the states were read at, moto's backend, the states): valid while both hold.
        self._ec2_cache: dict[tuple[str, str], tuple[tuple[int, int], Any, Ec2States]] = {}
        # instances(): the states last applied, SSM's count of instances then, the instances found unmanaged
        self._reconciled: dict[tuple[str, str], tuple[Ec2States, int, tuple[str, ...]]] = {}
        self._derived: dict[tuple[str, str, str], tuple[Ec2States, Any]] = {}  # ec2_derived()

    def now(self) -> datetime:
        return self.clock.now()

    # -- instances ---------------------------------------------------------------------------
    def add_instance(self, instance: ManagedInstance) -> None:
        self._instances.setdefault((instance.account_id, instance.region), {})[instance.instance_id] = instance

    @contextmanager
    def request(self) -> Iterator[None]:
        """Serve one API request under the World's lock."""
        with self.lock:
            yield

    def ec2_states(self, account_id: str, region: str) -> Ec2States:
        """Instance id -> (EC2 state name, moto's instance) for every instance moto holds in the region (read
        from moto again only after an instance state changed anywhere: every request needs them, and reading
        10,000 instances for each made the sandbox's time grow with the square of the fleet). Read-only."""
        key = (account_id, region)
        backend = ec2_backends[account_id][region]
        read_at = (_Ec2Changes.count, len(backend.reservations))
        cached = self._ec2_cache.get(key)
        if cached is not None and cached[0] == read_at and cached[1] is backend:
            return cached[2]
        # Reading moto's _state directly: the `state` property costs as much again on 10,000 instances.
        states = {
            ec2.id: (ec2._state.name, ec2)
            for reservation in list(backend.reservations.values())
            for ec2 in reservation.instances
        }
        self._ec2_cache[key] = (read_at, backend, states)
        return states

    def ec2_changed(self, account_id: str, region: str) -> None:
        """Instances were launched or terminated in moto: read its EC2 state again."""
        self._ec2_cache.pop((account_id, region), None)

    def ec2_derived(self, account_id: str, region: str, name: str, derive: Callable[[Ec2States], T]) -> T:
        """derive(the region's EC2 states), computed again only when those states were read again."""
        live = self.ec2_states(account_id, region)
        cached = self._derived.get((account_id, region, name))
        if cached is not None and cached[0] is live:
            return cast(T, cached[1])
        value = derive(live)
        self._derived[(account_id, region, name)] = (live, value)
        return value

    def instances(self, account_id: str, region: str) -> dict[str, ManagedInstance]:
        """SSM's instances in one account and region, brought up to date with moto's EC2 state."""
        key = (account_id, region)
        known = self._instances.setdefault(key, {})
        live = self.ec2_states(account_id, region)
        last = self._reconciled.get(key)
        # While neither moto's states nor SSM's list changed, only the instances found unmanaged last time need
        # another look (an image baked since may make them managed): no walk over every instance.
        unchanged = last is not None and last[0] is live and last[1] == len(known)
        if last is not None and unchanged:
            candidates: Iterable[str] = last[2]
        else:
            candidates = [iid for iid in live.keys() - known.keys() if live[iid][0] != "terminated"]
        unmanaged = []
        for instance_id in candidates:
            launched = self._launched_later(account_id, region, live[instance_id][1])
            if launched is None:
                unmanaged.append(instance_id)
            else:
                known[instance_id] = launched
        if not unchanged:  # terminated instances leave SSM
            for gone in [iid for iid in known if live.get(iid, ("terminated",))[0] == "terminated"]:
                del known[gone]
        self._reconciled[key] = (live, len(known), tuple(unmanaged))
        return known

    def instance(self, account_id: str, region: str, instance_id: str) -> ManagedInstance | None:
        return self.instances(account_id, region).get(instance_id)

    def tags(self, account_id: str, region: str, instance_id: str) -> dict[str, str]:
        return dict(ec2_backends[account_id][region].tags.get(instance_id, {}))

    def patch_group(self, instance: ManagedInstance) -> str:
        """The instance's patch group: its 'Patch Group' or 'PatchGroup' tag, as Patch Manager reads it."""
        tags = self.tags(instance.account_id, instance.region, instance.instance_id)
        return tags.get("Patch Group") or tags.get("PatchGroup") or ""

    def _launched_later(self, account_id: str, region: str, ec2: Any) -> ManagedInstance | None:
        """An instance moto launched after seeding (e.g. CloudFormation): managed if its AMI is a known OS, a
        scenario AMI (an empty patch state) or an image the sandbox baked (its OS and patches: images.py)."""
        from include.sandbox import images

        ami: Ami | None = self.scenario.amis.get(ec2.image_id)
        baked = None if ami is not None else images.launch_state(self, account_id, region, ec2.image_id)
        if ami is not None:
            os, os_version = ami.os, ami.os_version or PLATFORMS[ami.os][2]
        elif baked is not None:
            os, os_version = baked.os, baked.os_version or PLATFORMS[baked.os][2]
        else:
            return None
        instance = ManagedInstance(
            instance_id=ec2.id,
            account_id=account_id,
            region=region,
            os=os,
            os_version=os_version,
            ami=ec2.image_id,
            registered=True,
            online=True,
            agent_version="3.3.1142.0",
            registration_date=self.now(),
            ip_address=ec2.private_ip or "",
            computer_name=f"ip-{(ec2.private_ip or '').replace('.', '-')}.ec2.internal",
            group=None,
        )
        tags = dict(ec2_backends[account_id][region].tags.get(ec2.id, {}))
        for failure in self.scenario.failures:
            # A failure naming a group selects among the scenario's own instances only.
            if failure.group is None and failure.tags and all(tags.get(k) == v for k, v in failure.tags.items()):
                if failure.agent_offline:
                    instance.online = False
                instance.faults.merge(failure)
        if baked is not None:
            baked.apply(instance)
        return instance

    # -- commands ----------------------------------------------------------------------------
    def commands(self, account_id: str, region: str) -> CommandStore:
        from include.sandbox.commands import CommandStore

        store = self._commands.get((account_id, region))
        if store is None:
            store = self._commands[(account_id, region)] = CommandStore(self, account_id, region)
        return store
