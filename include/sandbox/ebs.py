"""Amazon EBS snapshots and root volume replacement in the sandbox, over simulated time.

moto 5.2.5 completes every snapshot at once, ignores CreateSnapshots' ExcludeDataVolumeIds and
CopyTagsFromSource (and leaves State out of its response), ignores DescribeSnapshots' MaxResults,
answers DeleteSnapshot's InvalidSnapshot.NotFound without a message, and has no root volume
replacement at all. Here, over moto's volumes and snapshots (so DescribeVolumes, CreateTags,
DescribeTags, CreateVolume and the rest stay moto's):

- ``CreateSnapshots`` snapshots every EBS volume attached to the instance (in block device order),
  less the root volume (``ExcludeBootVolume``) and the listed data volumes (``ExcludeDataVolumeIds``:
  volumes of the instance other than its root volume, else InvalidParameterValue), with the
  ``Description``, the volume's tags (``CopyTagsFromSource=volume``, ``aws:`` tags excepted) and
  then the ``TagSpecifications`` of ResourceType ``snapshot``. ``CreateSnapshot`` does the same for
  one volume. A snapshot is ``pending`` (Progress rising from 0%) for the scenario's
  ``ebs.snapshot_seconds``, then ``completed`` (100%), or ``error`` with a StateMessage on an
  instance a ``snapshot_fails`` failure selects. A snapshot is point-in-time: that of an
  instance's root volume keeps the instance's patch state at that moment (installed, pending-reboot
  and failed patches, and its last Patch Manager report), which a root volume restore brings back.
- ``DescribeSnapshots``: SnapshotIds (InvalidSnapshot.NotFound), OwnerIds (``self``, account ids),
  RestorableByUserIds, and the filters AWS documents (description, encrypted, owner-alias, owner-id,
  progress, snapshot-id, start-time, status, storage-tier, transfer-type, volume-id, volume-size,
  kms-key-id, tag:<key>, tag-key; ``*`` and ``?`` wildcards), ANDed, each one's values ORed.
  MaxResults 5-1000 (larger reads as 1000, smaller is InvalidParameterValue, and it cannot go with
  SnapshotIds); without it every snapshot is returned. Pages follow the snapshots' start time, so a
  NextToken stays right while snapshots complete or are deleted.
- ``DeleteSnapshot``: InvalidSnapshot.NotFound, and InvalidSnapshot.InUse while an AMI or an
  unfinished root volume replacement uses it.
- ``CreateReplaceRootVolumeTask`` from a snapshot: the instance must be ``running`` (IncorrectState)
  with no other replacement unfinished; the snapshot must exist (InvalidSnapshot.NotFound), be
  ``completed`` (IncorrectState) and be of a volume that has been the instance's root volume (its
  "lineage", else InvalidParameterValue). ClientToken makes it idempotent (IdempotentParameterMismatch
  on other parameters). Restoring to the launch state, from an AMI or to a given volume is not
  simulated (501). The task is ``pending`` for ``ebs.restore_pending_seconds`` (the new volume is
  created), ``in-progress`` for ``ebs.restore_in_progress_seconds`` (detach, attach, reboot), then
  ``succeeded``; ``failed`` (the original volume stays) or ``failed-detached`` (the instance is left
  without a root volume, its agent unreachable) on an instance a ``restore_fails`` failure selects.
  ``DescribeReplaceRootVolumeTasks``: ReplaceRootVolumeTaskIds, the instance-id filter, MaxResults
  1-50 with NextToken, oldest first.
- On success the root volume is replaced in moto (a new volume from the snapshot, same type, size
  and DeleteOnTermination, in the instance's block device mapping; the old one is deleted with
  DeleteReplacedRootVolume, else left ``available``) and the instance's patch state in the World
  goes back to the snapshot's: installed and failed patches, and the Patch Manager report (so
  DescribeInstancePatchStates / DescribeInstancePatches show the last operation before the
  snapshot, as the agent on the restored disk last reported it). The replacement reboots the
  instance (a failed one too): patches installed pending a reboot then take effect, unless the
  instance has the ``reboot_required`` fault. Inspector notices the change at the task's completion
  and rescans its delay later.

Everything is decided by the simulated clock and the scenario's failures. Completions are applied
lazily, in time order, by ``settle`` (the server calls it before serving any request, the handlers
too): Run Command's events up to each restore are applied first, so an install that finished before
the restore is rolled back and one that finished after it is not. State lives in
``world.extra["ebs"]``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import heapq
import itertools
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from moto.ec2.models import ec2_backends

from include.sandbox import inspector
from include.sandbox.api import Handler, RequestContext
from include.sandbox.protocol import AwsApiError
from include.sandbox.world import PatchReport

if TYPE_CHECKING:
    from include.sandbox.world import ManagedInstance, World

STATE_KEY = "ebs"
# What moto 5.2.5 lacks (500 NotImplementedError) and what it gets wrong (see the module docstring).
MOTO_MISSING: list[str] = ["CreateReplaceRootVolumeTask", "DescribeReplaceRootVolumeTasks"]
MOTO_WRONG: list[str] = ["CreateSnapshots", "CreateSnapshot", "DescribeSnapshots", "DeleteSnapshot"]

PENDING, COMPLETED, ERROR = "pending", "completed", "error"
TASK_PENDING, TASK_IN_PROGRESS, SUCCEEDED = "pending", "in-progress", "succeeded"
FAILED, FAILED_DETACHED = "failed", "failed-detached"
SNAPSHOT_ERROR = "The snapshot could not be created: reading the volume failed (injected by the scenario)."
MIN_SNAPSHOT_RESULTS, MAX_SNAPSHOT_RESULTS = 5, 1000

_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
_VOLUME_ID = re.compile(r"vol-[0-9a-f]{8,17}")
_SNAPSHOT_ID = re.compile(r"snap-[0-9a-f]{8,17}")
_TASK_ID = re.compile(r"replacevol-[0-9a-f]{17}")
_STOPPED_OR_GONE = frozenset({"stopping", "stopped", "shutting-down", "terminated"})


# -- state -------------------------------------------------------------------------------------


@dataclass
class PatchState:
    """An instance's patch state as its root volume held it: what a restore from that volume brings back."""

    installed: dict[str, datetime]
    pending_reboot: set[str]
    failed: set[str]
    report: PatchReport | None

    @classmethod
    def of(cls, instance: ManagedInstance) -> PatchState:
        return cls(
            dict(instance.installed), set(instance.pending_reboot), set(instance.failed), copy.deepcopy(instance.report)
        )

    def restore(self, instance: ManagedInstance) -> None:
        instance.installed = dict(self.installed)
        instance.pending_reboot = set(self.pending_reboot)
        instance.failed = set(self.failed)
        instance.report = copy.deepcopy(self.report)


@dataclass
class SnapshotRecord:
    """A snapshot the sandbox created: when it completes, whether it fails, and the patch state it holds."""

    snapshot_id: str
    account_id: str
    region: str
    volume_id: str
    started: datetime
    completes: datetime
    fails: bool
    root_of: str | None = None  # the instance whose root volume it is a snapshot of
    patch_state: PatchState | None = None

    def state(self, now: datetime) -> str:
        if now < self.completes:
            return PENDING
        return ERROR if self.fails else COMPLETED

    def progress(self, now: datetime) -> str:
        if self.state(now) == COMPLETED:
            return "100%"
        total = (self.completes - self.started).total_seconds()
        done = (min(now, self.completes) - self.started).total_seconds()
        return f"{min(99, int(100 * done / total)) if total > 0 else 99}%"


@dataclass
class RestoreTask:
    """A root volume replacement task and how it ends."""

    task_id: str
    seq: int
    account_id: str
    region: str
    instance_id: str
    snapshot_id: str
    started: datetime
    in_progress_at: datetime
    completes: datetime
    outcome: str  # succeeded, failed or failed-detached
    delete_replaced: bool
    client_token: str | None
    tags: dict[str, str]
    applied: bool = False

    def state(self, now: datetime) -> str:
        if now < self.in_progress_at:
            return TASK_PENDING
        if now < self.completes:
            return TASK_IN_PROGRESS
        return self.outcome


@dataclass
class _State:
    snapshots: dict[tuple[str, str, str], SnapshotRecord] = field(default_factory=dict)
    tasks: dict[tuple[str, str], dict[str, RestoreTask]] = field(default_factory=dict)
    # (account, region, instance) -> the root volumes the instance had before its current one
    lineage: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    queue: list[tuple[datetime, int, str, tuple[str, str, str]]] = field(default_factory=list)
    seq: Iterator[int] = field(default_factory=itertools.count)
    ids: dict[tuple[str, str], random.Random] = field(default_factory=dict)

    def next_seq(self) -> int:
        return next(self.seq)


def _state(world: World) -> _State:
    with world.lock:
        state: _State = world.extra.setdefault(STATE_KEY, _State())
        return state


def _schedule(state: _State, due: datetime, kind: str, key: tuple[str, str, str]) -> None:
    heapq.heappush(state.queue, (due, state.next_seq(), kind, key))


# -- settling: completions due by now, in time order -------------------------------------------


def settle(world: World, now: datetime | None = None) -> None:
    """Apply every snapshot completion and root volume replacement due by `now`, in time order.

    Cheap when nothing is due: the server calls it before every request.
    """
    state: _State | None = world.extra.get(STATE_KEY)
    if state is None or not state.queue:
        return
    with world.lock:
        now = now or world.now()
        while state.queue and state.queue[0][0] <= now:
            due, _, kind, key = heapq.heappop(state.queue)
            if kind == "snapshot":
                _complete_snapshot(state, key)
            else:
                task = state.tasks.get((key[0], key[1]), {}).get(key[2])
                if task is not None and not task.applied:
                    _complete_task(world, state, task, due)


def _complete_snapshot(state: _State, key: tuple[str, str, str]) -> None:
    """moto's own view of the snapshot (its status) catches up, for the moto APIs that read it."""
    record = state.snapshots.get(key)
    snapshot = ec2_backends[key[0]][key[1]].snapshots.get(key[2])
    if record is not None and snapshot is not None:
        snapshot.status = ERROR if record.fails else COMPLETED


def _complete_task(world: World, state: _State, task: RestoreTask, at: datetime) -> None:
    task.applied = True
    # What the instance did before the replacement (a finished install) happened first.
    world.commands(task.account_id, task.region).advance(until=at)
    ec2_state, ec2 = world.ec2_states(task.account_id, task.region).get(task.instance_id, ("terminated", None))
    if ec2 is None or ec2_state in _STOPPED_OR_GONE:
        task.outcome = FAILED  # the instance went away under it
        return
    instance = world.instance(task.account_id, task.region, task.instance_id)
    if instance is not None:
        inspector.observe(world, instance, at)  # Inspector has seen what happened up to the replacement
    if task.outcome == SUCCEEDED:
        _replace_root_volume(state, task, ec2, at)
        record = state.snapshots.get((task.account_id, task.region, task.snapshot_id))
        if instance is not None and record is not None and record.patch_state is not None:
            record.patch_state.restore(instance)
    elif task.outcome == FAILED_DETACHED:
        _detach_root_volume(state, task, ec2)
        if instance is not None:
            instance.online = False  # no root volume, no agent
    if instance is not None and task.outcome != FAILED_DETACHED:
        _reboot(instance)
        inspector.observe(world, instance, at)


def _reboot(instance: ManagedInstance) -> None:
    """The replacement reboots the instance: what was installed pending a reboot takes effect."""
    if not instance.faults.reboot_required:
        instance.pending_reboot.clear()


def root_volume_id(ec2: Any) -> str | None:
    """The volume at the instance's root device name (moto's instance), if one is attached there."""
    mapping = ec2.block_device_mapping.get(ec2.root_device_name)
    return str(mapping.volume_id) if mapping is not None and mapping.volume_id else None


def _replace_root_volume(state: _State, task: RestoreTask, ec2: Any, at: datetime) -> None:
    backend = ec2_backends[task.account_id][task.region]
    device = ec2.root_device_name
    mapping = ec2.block_device_mapping.get(device)
    old = backend.volumes.get(mapping.volume_id) if mapping is not None else None
    snapshot = backend.snapshots.get(task.snapshot_id)
    kind = old.volume_type if old is not None else "gp2"
    new = backend.create_volume(
        size=old.size if old is not None else snapshot.volume_size if snapshot is not None else 8,
        zone_name=old.zone.name if old is not None and old.zone is not None else ec2.placement,
        snapshot_id=task.snapshot_id if snapshot is not None else None,
        encrypted=bool(old.encrypted) if old is not None else False,
        kms_key_id=old.kms_key_id if old is not None and old.encrypted else None,
        volume_type=kind,
        iops=old.iops if old is not None and kind in ("gp3", "io1", "io2") else None,
        throughput=old.throughput if old is not None and kind == "gp3" else None,
    )
    delete_on_termination = mapping.delete_on_termination if mapping is not None else True
    if old is not None:
        backend.detach_volume(old.id, ec2.id, device)
        state.lineage.setdefault((task.account_id, task.region, task.instance_id), []).append(old.id)
    attachment = backend.attach_volume(new.id, ec2.id, device, delete_on_termination)
    attached_at = at.astimezone(UTC).replace(tzinfo=None)  # moto keeps naive UTC; the simulated time, not the host's
    ec2.block_device_mapping[device].attach_time = attached_at
    if attachment is not None:
        attachment.attach_time = attached_at
    if old is not None and task.delete_replaced:
        backend.delete_volume(old.id)


def _detach_root_volume(state: _State, task: RestoreTask, ec2: Any) -> None:
    volume_id = root_volume_id(ec2)
    if volume_id is not None:
        ec2_backends[task.account_id][task.region].detach_volume(volume_id, ec2.id, ec2.root_device_name)
        state.lineage.setdefault((task.account_id, task.region, task.instance_id), []).append(volume_id)


# -- shared request checks ---------------------------------------------------------------------


def _dry_run(params: dict[str, Any]) -> None:
    if params.get("DryRun"):
        raise AwsApiError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)


def _malformed(kind: str, value: str, prefix: str) -> AwsApiError:
    return AwsApiError(f"{kind}.Malformed", f'Invalid id: "{value}" (expecting "{prefix}-...")')


def _ec2_instance(world: World, ctx: RequestContext, instance_id: str) -> tuple[str, Any]:
    """(EC2 state name, moto's instance), or EC2's InvalidInstanceID error."""
    if not _INSTANCE_ID.fullmatch(instance_id):
        raise _malformed("InvalidInstanceID", instance_id, "i")
    found = world.ec2_states(ctx.account_id, ctx.region).get(instance_id)
    if found is None:
        raise AwsApiError("InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist")
    return found


def _volume(backend: Any, volume_id: str) -> Any:
    if not _VOLUME_ID.fullmatch(volume_id):
        raise _malformed("InvalidVolumeID", volume_id, "vol")
    volume = backend.volumes.get(volume_id)
    if volume is None:
        raise AwsApiError("InvalidVolume.NotFound", f"The volume '{volume_id}' does not exist.")
    return volume


def _snapshot(backend: Any, snapshot_id: str) -> Any:
    if not _SNAPSHOT_ID.fullmatch(snapshot_id):
        raise _malformed("InvalidSnapshotID", snapshot_id, "snap")
    snapshot = backend.snapshots.get(snapshot_id)
    if snapshot is None:
        raise AwsApiError("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist.")
    return snapshot


def _tag_specifications(params: dict[str, Any], resource_type: str) -> dict[str, str]:
    """The tags of the TagSpecifications, which may only name `resource_type`."""
    tags: dict[str, str] = {}
    for spec in params.get("TagSpecifications", []):
        kind = spec.get("ResourceType", "")
        if kind != resource_type:
            raise AwsApiError(
                "InvalidParameterValue", f"'{kind}' is not a valid taggable resource type for this operation."
            )
        for tag in spec.get("Tags", []):
            key = tag.get("Key", "")
            if key.lower().startswith("aws:"):
                raise AwsApiError(
                    "InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use"
                )
            tags[key] = tag.get("Value", "")
    return tags


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


# -- snapshots ---------------------------------------------------------------------------------


def _create_snapshot(
    world: World,
    ctx: RequestContext,
    volume: Any,
    description: str,
    tags: dict[str, str],
    now: datetime,
    instance: ManagedInstance | None,
    root_of: str | None,
) -> tuple[Any, SnapshotRecord]:
    """A snapshot in moto, pending, and the sandbox's record of it (with the patch state of a root volume)."""
    backend = ec2_backends[ctx.account_id][ctx.region]
    snapshot = backend.create_snapshot(volume.id, description)
    snapshot.start_time = now.astimezone(UTC).replace(tzinfo=None)  # moto keeps naive UTC
    snapshot.status = PENDING
    if tags:
        backend.create_tags([snapshot.id], tags)
    seconds = world.scenario.ebs.snapshot_seconds
    record = SnapshotRecord(
        snapshot_id=snapshot.id,
        account_id=ctx.account_id,
        region=ctx.region,
        volume_id=volume.id,
        started=now,
        completes=now + timedelta(seconds=seconds),
        fails=instance is not None and instance.faults.snapshot_fails,
        root_of=root_of,
        patch_state=PatchState.of(instance) if instance is not None and root_of is not None else None,
    )
    state = _state(world)
    key = (ctx.account_id, ctx.region, snapshot.id)
    state.snapshots[key] = record
    _schedule(state, record.completes, "snapshot", key)
    return snapshot, record


def _snapshot_tags(backend: Any, volume: Any, params: dict[str, Any], specified: dict[str, str]) -> dict[str, str]:
    """CopyTagsFromSource=volume first (AWS's own aws: tags stay with the volume), then the TagSpecifications."""
    tags: dict[str, str] = {}
    if params.get("CopyTagsFromSource") == "volume":
        tags.update({k: v for k, v in backend.tags.get(volume.id, {}).items() if not k.lower().startswith("aws:")})
    tags.update(specified)
    return tags


def _created_view(snapshot: Any, record: SnapshotRecord, tags: dict[str, str]) -> dict[str, Any]:
    """A new snapshot as CreateSnapshot(s) answer it: pending, with no progress yet."""
    view: dict[str, Any] = {
        "Description": snapshot.description or "",
        "Tags": _tag_list(tags),
        "Encrypted": bool(snapshot.encrypted),
        "VolumeId": record.volume_id,
        "State": PENDING,
        "VolumeSize": int(snapshot.volume_size),
        "StartTime": record.started,
        "Progress": "",
        "OwnerId": snapshot.owner_id,
        "SnapshotId": snapshot.id,
    }
    return view


def create_snapshots(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _dry_run(params)
    now = world.now()
    settle(world, now)
    world.commands(ctx.account_id, ctx.region).advance(until=now)  # the patch state as of now
    spec = params["InstanceSpecification"]
    instance_id = spec["InstanceId"]
    ec2_state, ec2 = _ec2_instance(world, ctx, instance_id)
    if ec2_state == "terminated":
        raise AwsApiError("IncorrectState", f"Instance '{instance_id}' is not in a valid state for this operation.")
    backend = ec2_backends[ctx.account_id][ctx.region]
    specified = _tag_specifications(params, "snapshot")
    root_device = ec2.root_device_name
    attached = {mapping.volume_id: device for device, mapping in ec2.block_device_mapping.items()}
    excluded = list(dict.fromkeys(spec.get("ExcludeDataVolumeIds", [])))
    for volume_id in excluded:
        _volume(backend, volume_id)
        if volume_id not in attached:
            raise AwsApiError(
                "InvalidParameterValue", f"The volume '{volume_id}' is not attached to instance '{instance_id}'."
            )
        if attached[volume_id] == root_device:
            raise AwsApiError(
                "InvalidParameterValue",
                f"The volume '{volume_id}' is the root volume of instance '{instance_id}': "
                "exclude it with ExcludeBootVolume, not ExcludeDataVolumeIds.",
            )
    instance = world.instance(ctx.account_id, ctx.region, instance_id)
    description = params.get("Description", "")
    created = []
    for device, mapping in list(ec2.block_device_mapping.items()):
        is_root = device == root_device
        if (is_root and spec.get("ExcludeBootVolume")) or mapping.volume_id in excluded:
            continue
        volume = backend.volumes.get(mapping.volume_id)
        if volume is None:
            continue
        tags = _snapshot_tags(backend, volume, params, specified)
        root_of = instance_id if is_root else None
        snapshot, record = _create_snapshot(world, ctx, volume, description, tags, now, instance, root_of)
        created.append(_created_view(snapshot, record, tags))
    return {"Snapshots": created}


def create_snapshot(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _dry_run(params)
    now = world.now()
    settle(world, now)
    world.commands(ctx.account_id, ctx.region).advance(until=now)
    backend = ec2_backends[ctx.account_id][ctx.region]
    volume = _volume(backend, params["VolumeId"])
    tags = _tag_specifications(params, "snapshot")
    instance: ManagedInstance | None = None
    root_of: str | None = None
    attachment = volume.attachment
    if attachment is not None:
        ec2 = attachment.instance
        instance = world.instance(ctx.account_id, ctx.region, ec2.id)
        if attachment.device == ec2.root_device_name:
            root_of = ec2.id
    snapshot, record = _create_snapshot(world, ctx, volume, params.get("Description", ""), tags, now, instance, root_of)
    view = _created_view(snapshot, record, tags)
    if snapshot.encrypted and snapshot.kms_key_id:
        view["KmsKeyId"] = snapshot.kms_key_id
    return view


@dataclass(frozen=True)
class _SnapshotView:
    """One snapshot as DescribeSnapshots sees it at `now`."""

    snapshot: Any
    record: SnapshotRecord | None
    tags: dict[str, str]
    state: str
    progress: str

    @property
    def key(self) -> tuple[str, str]:
        """The paging order: start time (fixed width, UTC), then id."""
        return self.start_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"), str(self.snapshot.id)

    @property
    def start_time(self) -> datetime:
        return self.record.started if self.record is not None else _aware(self.snapshot.start_time)

    def render(self) -> dict[str, Any]:
        snapshot = self.snapshot
        view: dict[str, Any] = {
            "SnapshotId": snapshot.id,
            "VolumeId": snapshot.volume.id,
            "State": self.state,
            "StartTime": self.start_time,
            "Progress": self.progress,
            "OwnerId": snapshot.owner_id,
            "Description": snapshot.description or "",
            "VolumeSize": int(snapshot.volume_size),
            "Encrypted": bool(snapshot.encrypted),
            "StorageTier": snapshot.storage_tier,
        }
        if self.state == ERROR:
            view["StateMessage"] = SNAPSHOT_ERROR
        if self.state == COMPLETED and self.record is not None:
            view["CompletionTime"] = self.record.completes
        if snapshot.encrypted and snapshot.kms_key_id:
            view["KmsKeyId"] = snapshot.kms_key_id
        if self.tags:
            view["Tags"] = _tag_list(self.tags)
        return view


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _snapshot_view(world: World, ctx: RequestContext, snapshot: Any, now: datetime) -> _SnapshotView:
    record = _state(world).snapshots.get((ctx.account_id, ctx.region, snapshot.id))
    tags = dict(ec2_backends[ctx.account_id][ctx.region].tags.get(snapshot.id, {}))
    if record is None:  # made by moto itself (CreateImage, CopySnapshot): complete at once
        return _SnapshotView(snapshot, None, tags, str(snapshot.status), "100%")
    return _SnapshotView(snapshot, record, tags, record.state(now), record.progress(now))


def _wildcard(value: str) -> re.Pattern[str]:
    """An EC2 filter value: * any characters, ? one character, a backslash escapes."""
    parts: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            parts.append(re.escape(next(chars, "\\")))
        elif char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


_SNAPSHOT_FILTERS: dict[str, Callable[[_SnapshotView], list[str]]] = {
    "description": lambda v: [v.snapshot.description or ""],
    "encrypted": lambda v: ["true" if v.snapshot.encrypted else "false"],
    "kms-key-id": lambda v: [v.snapshot.kms_key_id] if v.snapshot.kms_key_id else [],
    "owner-alias": lambda v: [],
    "owner-id": lambda v: [str(v.snapshot.owner_id)],
    "progress": lambda v: [v.progress],
    "snapshot-id": lambda v: [str(v.snapshot.id)],
    "start-time": lambda v: [_ec2_time(v.start_time)],
    "status": lambda v: [v.state],
    "storage-tier": lambda v: [str(v.snapshot.storage_tier)],
    "transfer-type": lambda v: ["standard"],
    "volume-id": lambda v: [str(v.snapshot.volume.id)],
    "volume-size": lambda v: [str(v.snapshot.volume_size)],
    "tag-key": lambda v: list(v.tags),
}


def _ec2_time(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}Z"


def _filter(
    filters: list[dict[str, Any]], getters: dict[str, Callable[[Any], list[str]]], tags: Callable[[Any], dict[str, str]]
) -> Callable[[Any], bool]:
    """EC2 filters: ANDed; a filter matches when one of its values matches one of the resource's."""
    checks: list[tuple[Callable[[Any], list[str]], list[re.Pattern[str]]]] = []
    for spec in filters:
        name = str(spec.get("Name", ""))
        if name.startswith("tag:") and len(name) > 4:
            getter = _tag_value(name[4:], tags)
        elif name in getters:
            getter = getters[name]
        else:
            raise AwsApiError("InvalidParameterValue", f"The filter '{name}' is invalid")
        checks.append((getter, [_wildcard(value) for value in spec.get("Values", [])]))

    def match(item: Any) -> bool:
        return all(any(p.fullmatch(value) for p in patterns for value in getter(item)) for getter, patterns in checks)

    return match


def _tag_value(key: str, tags: Callable[[Any], dict[str, str]]) -> Callable[[Any], list[str]]:
    """The tag:<key> filter's attribute: the resource's value of that tag, if it has the tag."""

    def values(item: Any) -> list[str]:
        found = tags(item)
        return [found[key]] if key in found else []

    return values


def _encode_token(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": key}).encode()).decode()


def _decode_token(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise AwsApiError(
            "InvalidPaginationToken", "The specified pagination token is not valid or is expired."
        ) from exc


def describe_snapshots(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _dry_run(params)
    now = world.now()
    settle(world, now)
    snapshot_ids = list(dict.fromkeys(params.get("SnapshotIds", [])))
    max_results = params.get("MaxResults")
    if snapshot_ids and max_results is not None:
        raise AwsApiError(
            "InvalidParameterCombination", "The parameter snapshotSet cannot be used with the parameter maxResults"
        )
    if max_results is not None and max_results < MIN_SNAPSHOT_RESULTS:
        raise AwsApiError(
            "InvalidParameterValue",
            f"Value ( {max_results} ) for parameter maxResults is invalid. "
            f"Expecting a value greater than {MIN_SNAPSHOT_RESULTS - 1}.",
        )
    backend = ec2_backends[ctx.account_id][ctx.region]

    def visible(snapshot: Any) -> bool:
        # The caller's own, public ones and those shared with it (not an AMI owner's snapshot moto keeps here).
        return _restorable_by(snapshot, ["self", "all"], ctx.account_id)

    if snapshot_ids:
        # Looked up by id (a runbook's wait asks for one snapshot at a time; a region may hold 10,000s of them).
        named = [_snapshot(backend, snapshot_id) for snapshot_id in snapshot_ids]
        # "If you specify a snapshot ID for which you do not have access, it is not included in the returned results."
        snapshots = [snapshot for snapshot in named if visible(snapshot)]
    else:
        snapshots = [s for s in list(backend.snapshots.values()) if visible(s)]
    owners = {ctx.account_id if owner == "self" else owner for owner in params.get("OwnerIds", [])}
    if owners:
        snapshots = [s for s in snapshots if s.owner_id in owners]
    restorable = params.get("RestorableByUserIds", [])
    if restorable:
        snapshots = [s for s in snapshots if _restorable_by(s, restorable, ctx.account_id)]
    match = _filter(params.get("Filters", []), _SNAPSHOT_FILTERS, lambda v: v.tags)
    views = sorted(
        (v for v in (_snapshot_view(world, ctx, s, now) for s in snapshots) if match(v)), key=lambda v: v.key
    )
    if params.get("NextToken"):
        after = _decode_token(params["NextToken"])
        if not isinstance(after, list) or len(after) != 2:
            raise AwsApiError("InvalidPaginationToken", "The specified pagination token is not valid or is expired.")
        views = [v for v in views if list(v.key) > after]
    result: dict[str, Any] = {}
    if max_results is not None:
        size = min(max_results, MAX_SNAPSHOT_RESULTS)
        if len(views) > size:
            views = views[:size]
            result["NextToken"] = _encode_token(list(views[-1].key))
    result["Snapshots"] = [v.render() for v in views]
    return result


def _restorable_by(snapshot: Any, users: list[str], account_id: str) -> bool:
    for user in users:
        if user == "all" and "all" in snapshot.create_volume_permission_groups:
            return True
        if user == "self" and (
            snapshot.owner_id == account_id or account_id in snapshot.create_volume_permission_userids
        ):
            return True
        if user in snapshot.create_volume_permission_userids:
            return True
    return False


def delete_snapshot(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _dry_run(params)
    now = world.now()
    settle(world, now)
    backend = ec2_backends[ctx.account_id][ctx.region]
    snapshot = _snapshot(backend, params["SnapshotId"])
    users = [snapshot.from_ami] if snapshot.from_ami and snapshot.from_ami in backend.amis else []
    state = _state(world)
    users += [
        task.task_id
        for task in state.tasks.get((ctx.account_id, ctx.region), {}).values()
        if task.snapshot_id == snapshot.id and task.state(now) in (TASK_PENDING, TASK_IN_PROGRESS)
    ]
    if users:
        raise AwsApiError("InvalidSnapshot.InUse", f"The snapshot {snapshot.id} is currently in use by {users[0]}")
    backend.snapshots.pop(snapshot.id, None)
    backend.tags.pop(snapshot.id, None)
    state.snapshots.pop((ctx.account_id, ctx.region, snapshot.id), None)
    return {}


# -- root volume replacement -------------------------------------------------------------------


def _task_view(task: RestoreTask, now: datetime) -> dict[str, Any]:
    state = task.state(now)
    view: dict[str, Any] = {
        "ReplaceRootVolumeTaskId": task.task_id,
        "InstanceId": task.instance_id,
        "TaskState": state,
        "StartTime": _task_time(task.started),
        "Tags": _tag_list(task.tags),
        "SnapshotId": task.snapshot_id,
        "DeleteReplacedRootVolume": task.delete_replaced,
    }
    if state not in (TASK_PENDING, TASK_IN_PROGRESS):
        view["CompleteTime"] = _task_time(task.completes)
    return view


def _task_time(value: datetime) -> str:
    """StartTime and CompleteTime are strings in the model; AWS writes them like 2022-03-14T15:06:38Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_task_id(state: _State, world: World, ctx: RequestContext) -> str:
    ids = state.ids.get((ctx.account_id, ctx.region))
    if ids is None:
        ids = state.ids[(ctx.account_id, ctx.region)] = random.Random(
            f"{world.scenario.seed}/ebs/{ctx.account_id}/{ctx.region}"
        )
    return f"replacevol-{ids.getrandbits(68):017x}"


def create_replace_root_volume_task(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _dry_run(params)
    now = world.now()
    settle(world, now)
    state = _state(world)
    tasks = state.tasks.setdefault((ctx.account_id, ctx.region), {})
    instance_id = params["InstanceId"]
    snapshot_id = params.get("SnapshotId")
    delete_replaced = bool(params.get("DeleteReplacedRootVolume", False))
    token = params.get("ClientToken")
    if token:
        earlier = next((t for t in tasks.values() if t.client_token == token), None)
        if earlier is not None:
            if (earlier.instance_id, earlier.snapshot_id, earlier.delete_replaced) != (
                instance_id,
                snapshot_id,
                delete_replaced,
            ):
                raise AwsApiError(
                    "IdempotentParameterMismatch",
                    "The client token you have provided is associated with a resource that is already deleted "
                    "or has different parameters. Please use a different client token.",
                )
            return {"ReplaceRootVolumeTask": _task_view(earlier, now)}
    if params.get("ImageId") and snapshot_id:
        raise AwsApiError("InvalidParameterCombination", "SnapshotId and ImageId cannot be specified together.")
    if params.get("VolumeId") and (snapshot_id or params.get("ImageId")):
        raise AwsApiError("InvalidParameterCombination", "VolumeId cannot be specified with SnapshotId or ImageId.")
    ec2_state, ec2 = _ec2_instance(world, ctx, instance_id)
    if ec2_state != "running":
        raise AwsApiError("IncorrectState", f"Instance '{instance_id}' is not 'running'.")
    if snapshot_id is None:
        raise AwsApiError(
            "NotImplemented",
            "The sandbox replaces a root volume only from a snapshot (SnapshotId): restoring the launch state, "
            "an AMI or a given volume is not simulated.",
            501,
        )
    backend = ec2_backends[ctx.account_id][ctx.region]
    snapshot = _snapshot(backend, snapshot_id)
    tags = _tag_specifications(params, "replace-root-volume-task")
    unfinished = next(
        (t for t in tasks.values() if t.instance_id == instance_id and not _finished(t, now)),
        None,
    )
    if unfinished is not None:
        raise AwsApiError(
            "IncorrectState",
            f"Instance '{instance_id}' has a root volume replacement task in progress ({unfinished.task_id}).",
        )
    view = _snapshot_view(world, ctx, snapshot, now)
    if view.state != COMPLETED:
        raise AwsApiError(
            "IncorrectState", f"Snapshot '{snapshot_id}' is in state '{view.state}': it must be 'completed'."
        )
    lineage = [root_volume_id(ec2), *state.lineage.get((ctx.account_id, ctx.region, instance_id), [])]
    if snapshot.volume.id not in lineage:
        raise AwsApiError(
            "InvalidParameterValue",
            f"The snapshot '{snapshot_id}' is not of a root volume of instance '{instance_id}': it must belong "
            "to the lineage of the instance's root volume.",
        )
    instance = world.instance(ctx.account_id, ctx.region, instance_id)
    fails = instance.faults.restore_fails if instance is not None else ""
    timings = world.scenario.ebs
    in_progress_at = now + timedelta(seconds=timings.restore_pending_seconds)
    task = RestoreTask(
        task_id=_new_task_id(state, world, ctx),
        seq=state.next_seq(),
        account_id=ctx.account_id,
        region=ctx.region,
        instance_id=instance_id,
        snapshot_id=snapshot_id,
        started=now,
        in_progress_at=in_progress_at,
        completes=in_progress_at + timedelta(seconds=timings.restore_in_progress_seconds),
        outcome=fails or SUCCEEDED,
        delete_replaced=delete_replaced,
        client_token=token,
        tags=tags,
    )
    tasks[task.task_id] = task
    _schedule(state, task.completes, "task", (ctx.account_id, ctx.region, task.task_id))
    return {"ReplaceRootVolumeTask": _task_view(task, now)}


def _finished(task: RestoreTask, now: datetime) -> bool:
    return task.state(now) not in (TASK_PENDING, TASK_IN_PROGRESS)


_TASK_FILTERS: dict[str, Callable[[RestoreTask], list[str]]] = {"instance-id": lambda t: [t.instance_id]}


def describe_replace_root_volume_tasks(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _dry_run(params)
    now = world.now()
    settle(world, now)
    tasks = list(_state(world).tasks.get((ctx.account_id, ctx.region), {}).values())
    wanted = list(dict.fromkeys(params.get("ReplaceRootVolumeTaskIds", [])))
    if wanted:
        known = {task.task_id: task for task in tasks}
        for task_id in wanted:
            if not _TASK_ID.fullmatch(task_id):
                raise _malformed("InvalidReplaceRootVolumeTaskId", task_id, "replacevol")
            if task_id not in known:
                raise AwsApiError(
                    "InvalidReplaceRootVolumeTaskId.NotFound",
                    f"The root volume replacement task ID '{task_id}' does not exist",
                )
        tasks = [known[task_id] for task_id in wanted]
    match = _filter(params.get("Filters", []), _TASK_FILTERS, lambda t: t.tags)
    listed = sorted((t for t in tasks if match(t)), key=lambda t: t.seq)
    if params.get("NextToken"):
        after = _decode_token(params["NextToken"])
        if not isinstance(after, int):
            raise AwsApiError("InvalidPaginationToken", "The specified pagination token is not valid or is expired.")
        listed = [t for t in listed if t.seq > after]
    result: dict[str, Any] = {}
    max_results = params.get("MaxResults")
    if max_results is not None and len(listed) > max_results:
        listed = listed[:max_results]
        result["NextToken"] = _encode_token(listed[-1].seq)
    result["ReplaceRootVolumeTasks"] = [_task_view(t, now) for t in listed]
    return result


HANDLERS: dict[tuple[str, str], Handler] = {
    ("ec2", "CreateSnapshots"): create_snapshots,
    ("ec2", "CreateSnapshot"): create_snapshot,
    ("ec2", "DescribeSnapshots"): describe_snapshots,
    ("ec2", "DeleteSnapshot"): delete_snapshot,
    ("ec2", "CreateReplaceRootVolumeTask"): create_replace_root_volume_task,
    ("ec2", "DescribeReplaceRootVolumeTasks"): describe_replace_root_volume_tasks,
}
