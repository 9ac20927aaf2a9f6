"""Baked AMIs in the sandbox: CreateImage from an instance over simulated time, and what an instance launched
from such an image runs.

moto 5.2.5's CreateImage makes the image ``available`` at once with one synthetic snapshot (a fixed 15 GiB
``standard`` root that DescribeImages reports whatever was asked), ignores NoReboot and BlockDeviceMappings, checks
no instance state and refuses snapshot TagSpecifications (NotImplementedError). Here
``CreateImage`` is the sandbox's (moto still creates and keeps the image, so DescribeImages, CreateTags,
DescribeTags and RunInstances stay moto's and agree):

- The instance must exist (InvalidInstanceID.Malformed / InvalidInstanceID.NotFound) and be ``running``,
  ``stopping`` or ``stopped``, else InvalidParameterValue "Invalid value 'i-...' for instanceId. Instance is not
  in state 'running' or 'stopping' or 'stopped'" (what EC2 answers for a pending, shutting-down or terminated
  one). The Name is 3-128 characters of letters, digits, ``( ) [ ] . / - ' @ _`` and spaces
  (InvalidAMIName.Malformed) and unique among the account's images in the Region (InvalidAMIName.Duplicate).
  TagSpecifications take ResourceType ``image`` (the image) and ``snapshot`` (its snapshot); another type, or a
  key starting ``aws:``, is InvalidParameterValue.
- The image (and its snapshot) is ``pending`` for the scenario's ``images.create_seconds``, then ``available``
  (its snapshot ``completed``). Completions are applied lazily by ``settle`` (the server calls it before serving
  any request), so DescribeImages (moto's) shows the state as of the simulated clock.
- The image records the source instance's OS and OS version, the AMI it was launched from (``source_ami``) and
  its patch state at that moment, with the meaning ebs.py's root volume snapshots give it (``ebs.PatchState``:
  installed, pending-reboot and failed patches; Run Command's installs that finished by then included). Unless
  ``NoReboot`` is true, EC2 reboots a running instance to take the image: patches installed pending a reboot then
  take effect on the instance (unless it has the ``reboot_required`` fault).
- ``BlockDeviceMappings`` are recorded on the image, as EC2 does, and DescribeImages reports them: a mapping of the
  root device changes its VolumeSize (not below the source instance's root volume: InvalidBlockDeviceMapping),
  VolumeType, DeleteOnTermination, Iops, Throughput or Encrypted; another device adds an EBS mapping (or an instance
  store one with VirtualName), ``NoDevice`` leaves one out. Without them the root mapping is the source instance's
  root volume's size and type, DeleteOnTermination true.
- ``DeregisterImage`` (moto's) forgets the image; instances already launched from it keep what they got.

An instance launched later from a baked image (RunInstances, a CloudFormation stack's AWS::EC2::Instance, an Auto
Scaling group: anything that makes moto launch an instance with that ImageId) becomes a managed instance of the
image's OS, registered and Online, with the image's installed and failed patches in effect (a fresh boot: nothing
pending a reboot) and no Patch Manager report until its first Scan or Install, as on AWS: a new instance id has no
compliance data. Inspector scans it after its first delay and sees the baked patches' CVEs closed. If the image
was baked from an instance of a scenario AMI with ``bake_breaks_health_checks: true`` (or from an instance of an
image that was), every instance launched from it has the ``script_fails`` fault: its health-check scripts
(AWS-RunShellScript / AWS-RunPowerShellScript) fail.

Public API for other sandbox modules (World._launched_later uses it; so can the Auto Scaling code when it makes
instances itself):

- ``launch_state(world, account_id, region, image_id) -> LaunchState | None``: what an instance launched from
  ``image_id`` runs, or None if it is not an image baked in the sandbox (scenario AMIs are the World's).
- ``LaunchState.apply(instance)``: put that state on a new ``ManagedInstance`` (patches and faults).
- ``LaunchState.os``, ``.os_version``, ``.image_id``, ``.source_ami``: the OS the new ManagedInstance runs.

State lives in ``world.extra["images"]``.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami

from include.sandbox import ebs
from include.sandbox.api import Handler, RequestContext
from include.sandbox.protocol import AwsApiError

if TYPE_CHECKING:
    from include.sandbox.cloudformation import AfterMoto
    from include.sandbox.world import ManagedInstance, World

STATE_KEY = "images"
PENDING, AVAILABLE = "pending", "available"
_IMAGEABLE_STATES = frozenset({"running", "stopping", "stopped"})
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
_IMAGE_NAME = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}")
_TAGGABLE = frozenset({"image", "snapshot"})


# -- state -------------------------------------------------------------------------------------


@dataclass
class BakedImage:
    """An image CreateImage made in the sandbox: when it is available, and what it holds."""

    image_id: str
    account_id: str
    region: str
    name: str
    source_instance: str
    source_ami: str  # the AMI the source instance was launched from
    os: str
    os_version: str
    patch_state: ebs.PatchState
    breaks_health_checks: bool
    created: datetime
    available_at: datetime
    snapshot_id: str | None

    def state(self, now: datetime) -> str:
        return PENDING if now < self.available_at else AVAILABLE


@dataclass(frozen=True)
class LaunchState:
    """What an instance launched from a baked image runs: its OS, patches and injected health-check failure."""

    image_id: str
    source_ami: str
    os: str
    os_version: str
    installed: dict[str, datetime]
    failed: frozenset[str]
    script_fails: bool

    def apply(self, instance: ManagedInstance) -> None:
        """Put the image's state on a newly launched instance: a fresh boot, so nothing is pending a reboot, and no
        Patch Manager report until the new instance's first Scan or Install."""
        instance.installed = dict(self.installed)
        instance.pending_reboot = set()
        instance.failed = set(self.failed)
        instance.report = None
        instance.faults.script_fails |= self.script_fails


@dataclass
class _State:
    images: dict[tuple[str, str, str], BakedImage] = field(default_factory=dict)
    queue: list[tuple[datetime, int, tuple[str, str, str]]] = field(default_factory=list)
    seq: Iterator[int] = field(default_factory=itertools.count)


def _state(world: World) -> _State:
    with world.lock:
        state: _State = world.extra.setdefault(STATE_KEY, _State())
        return state


def baked_image(world: World, account_id: str, region: str, image_id: str) -> BakedImage | None:
    """The sandbox's record of an image it baked (None for scenario AMIs, moto's own and deregistered ones)."""
    state: _State | None = world.extra.get(STATE_KEY)
    return None if state is None else state.images.get((account_id, region, image_id))


def launch_state(world: World, account_id: str, region: str, image_id: str) -> LaunchState | None:
    """What an instance launched from `image_id` in this account and Region runs; None if the sandbox did not bake
    it. For World._launched_later and any other code that turns a moto instance into a ManagedInstance."""
    image = baked_image(world, account_id, region, image_id)
    if image is None or not image.os:  # an image of an instance SSM never knew: its instances stay unmanaged
        return None
    return LaunchState(
        image_id=image.image_id,
        source_ami=image.source_ami,
        os=image.os,
        os_version=image.os_version,
        installed=dict(image.patch_state.installed),
        failed=frozenset(image.patch_state.failed),
        script_fails=image.breaks_health_checks,
    )


# -- settling ----------------------------------------------------------------------------------


def settle(world: World, now: datetime | None = None) -> None:
    """Make every image due by `now` available in moto (and its snapshot completed). Cheap when nothing is due."""
    state: _State | None = world.extra.get(STATE_KEY)
    if state is None or not state.queue:
        return
    with world.lock:
        now = now or world.now()
        while state.queue and state.queue[0][0] <= now:
            _, _, key = heapq.heappop(state.queue)
            image = state.images.get(key)
            if image is None:
                continue  # deregistered meanwhile
            backend = ec2_backends[image.account_id][image.region]
            ami = backend.amis.get(image.image_id)
            if ami is not None:
                ami.state = AVAILABLE
            snapshot = backend.snapshots.get(image.snapshot_id) if image.snapshot_id else None
            if snapshot is not None:
                snapshot.status = ebs.COMPLETED


# -- CreateImage -------------------------------------------------------------------------------

VOLUME_TYPES = frozenset({"standard", "io1", "io2", "gp2", "gp3", "sc1", "st1"})
_EBS_FIELDS = ("VolumeSize", "VolumeType", "DeleteOnTermination", "Iops", "Throughput", "Encrypted")


class MappedAmi(Ami):
    """moto's Ami reporting the block device mappings CreateImage recorded (moto's property is a fixed root)."""

    sandbox_mappings: list[dict[str, Any]]

    @property
    def block_device_mappings(self) -> list[dict[str, Any]]:
        return self.sandbox_mappings


DEFAULT_ROOT_GIB = 8  # moto's size of a root volume RunInstances made without a mapping


def _root_volume(backend: Any, ec2: Any) -> Any:
    """moto's volume at the instance's root device, if one is attached there."""
    volume_id = ebs.root_volume_id(ec2)
    return backend.volumes.get(volume_id) if volume_id else None


def _mappings(params: dict[str, Any], backend: Any, ec2: Any) -> list[dict[str, Any]]:
    """The image's BlockDeviceMappings: the source's root volume, changed by the request's mappings (checked before
    anything is made: EC2 makes no image for a request it refuses). The root's SnapshotId is added once made."""
    root = str(ec2.root_device_name)
    volume = _root_volume(backend, ec2)
    root_size = int(volume.size) if volume is not None else DEFAULT_ROOT_GIB
    root_ebs: dict[str, Any] = {
        "DeleteOnTermination": True,
        "VolumeSize": root_size,
        "VolumeType": str(volume.volume_type) if volume is not None else "gp2",
        "Encrypted": bool(volume.encrypted) if volume is not None else False,
    }
    found: dict[str, dict[str, Any]] = {root: {"DeviceName": root, "Ebs": root_ebs}}
    for given in params.get("BlockDeviceMappings") or []:
        device = str(given.get("DeviceName") or "")
        if not device:
            raise AwsApiError("InvalidBlockDeviceMapping", "A block device mapping needs a device name.")
        if "NoDevice" in given:
            found.pop(device, None)
            continue
        if given.get("VirtualName"):
            found[device] = {"DeviceName": device, "VirtualName": str(given["VirtualName"])}
            continue
        ebs_given = given.get("Ebs") or {}
        kind = ebs_given.get("VolumeType")
        if kind is not None and kind not in VOLUME_TYPES:
            raise AwsApiError("InvalidParameterValue", f"Value ({kind}) for parameter volumeType is invalid.")
        size = ebs_given.get("VolumeSize")
        if device == root and size is not None and int(size) < root_size:
            raise AwsApiError(
                "InvalidBlockDeviceMapping",
                f"Volume of size {size}GB is smaller than the snapshot of the root volume, expect size >= "
                f"{root_size}GB",
            )
        base = found[device]["Ebs"] if device in found and "Ebs" in found[device] else {"DeleteOnTermination": True}
        merged = {**base, **{key: ebs_given[key] for key in _EBS_FIELDS if key in ebs_given}}
        if device != root and "VolumeSize" not in merged and "SnapshotId" not in merged:
            raise AwsApiError("InvalidBlockDeviceMapping", f"The device {device} needs a VolumeSize or a SnapshotId.")
        found[device] = {"DeviceName": device, "Ebs": merged}
    return list(found.values())


def _tags(params: dict[str, Any]) -> dict[str, dict[str, str]]:
    """ResourceType -> tags of the TagSpecifications (image and snapshot only)."""
    tags: dict[str, dict[str, str]] = {}
    for spec in params.get("TagSpecifications", []):
        kind = spec.get("ResourceType", "")
        if kind not in _TAGGABLE:
            raise AwsApiError(
                "InvalidParameterValue", f"'{kind}' is not a valid taggable resource type for this operation."
            )
        for tag in spec.get("Tags", []):
            key = tag.get("Key", "")
            if key.lower().startswith("aws:"):
                raise AwsApiError(
                    "InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use"
                )
            tags.setdefault(kind, {})[key] = tag.get("Value", "")
    return tags


def _source_ami_breaks(world: World, account_id: str, region: str, ami_id: str) -> bool:
    """Whether images baked from an instance of `ami_id` break their instances' health checks: the scenario AMI's
    `bake_breaks_health_checks`, or inherited from the baked image the source instance was launched from."""
    ami = world.scenario.amis.get(ami_id)
    if ami is not None:
        return ami.bake_breaks_health_checks
    parent = baked_image(world, account_id, region, ami_id)
    return parent is not None and parent.breaks_health_checks


def create_image(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("DryRun"):
        raise AwsApiError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)
    now = world.now()
    settle(world, now)
    ebs.settle(world, now)
    world.commands(ctx.account_id, ctx.region).advance(until=now)  # the patch state as of now
    instance_id = params["InstanceId"]
    if not _INSTANCE_ID.fullmatch(instance_id):
        raise AwsApiError("InvalidInstanceID.Malformed", f'Invalid id: "{instance_id}" (expecting "i-...")')
    found = world.ec2_states(ctx.account_id, ctx.region).get(instance_id)
    if found is None:
        raise AwsApiError("InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist")
    ec2_state, ec2 = found
    if ec2_state not in _IMAGEABLE_STATES:
        raise AwsApiError(
            "InvalidParameterValue",
            f"Invalid value '{instance_id}' for instanceId. "
            "Instance is not in state 'running' or 'stopping' or 'stopped'",
        )
    name = params["Name"]
    if not _IMAGE_NAME.fullmatch(name):
        raise AwsApiError(
            "InvalidAMIName.Malformed",
            f"AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', "
            f"'.', '-', '/', '_', '[', ']', ' ', '@' and ''': {name!r}",
        )
    backend = ec2_backends[ctx.account_id][ctx.region]
    for other in list(backend.amis.values()):
        if other.name == name and other.owner_id == ctx.account_id:
            raise AwsApiError("InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {other.id}")
    tags = _tags(params)
    mappings = _mappings(params, backend, ec2)
    instance = world.instance(ctx.account_id, ctx.region, instance_id)
    rebooted = ec2_state == "running" and not params.get("NoReboot")
    if instance is not None and rebooted and not instance.faults.reboot_required:
        # EC2 shuts the instance down and reboots it to take a consistent image: pending patches take effect.
        instance.pending_reboot.clear()
    ami = backend.create_image(instance_id, name, params.get("Description", ""), tag_specifications=[])
    ami.__class__ = MappedAmi  # moto's object stays where it is; DescribeImages reads the recorded mappings
    cast("MappedAmi", ami).sandbox_mappings = mappings
    ami.state = PENDING
    ami.creation_date = now.astimezone(UTC).replace(tzinfo=None)  # moto keeps naive UTC
    ami.root_device_name = ec2.root_device_name
    ami.root_device_type = "ebs"
    if tags.get("image"):
        backend.create_tags([ami.id], tags["image"])
    snapshot = getattr(ami, "ebs_snapshot", None)
    if snapshot is not None:
        root = next((m for m in mappings if m["DeviceName"] == ami.root_device_name and "Ebs" in m), None)
        if root is not None:
            root["Ebs"] = {"SnapshotId": snapshot.id, **root["Ebs"]}
        source = _root_volume(backend, ec2)
        # moto's snapshot is of a 15 GiB volume of its own: DescribeSnapshots then gives the source root's size.
        snapshot.volume.size = int(source.size) if source is not None else DEFAULT_ROOT_GIB
        snapshot.status = PENDING
        snapshot.start_time = ami.creation_date
        if tags.get("snapshot"):
            backend.create_tags([snapshot.id], tags["snapshot"])
    image = BakedImage(
        image_id=ami.id,
        account_id=ctx.account_id,
        region=ctx.region,
        name=name,
        source_instance=instance_id,
        source_ami=str(ec2.image_id),
        os=instance.os if instance is not None else "",
        os_version=instance.os_version if instance is not None else "",
        patch_state=ebs.PatchState.of(instance) if instance is not None else ebs.PatchState({}, set(), set(), None),
        breaks_health_checks=_source_ami_breaks(world, ctx.account_id, ctx.region, str(ec2.image_id)),
        created=now,
        available_at=now + timedelta(seconds=world.scenario.images.create_seconds),
        snapshot_id=snapshot.id if snapshot is not None else None,
    )
    state = _state(world)
    key = (ctx.account_id, ctx.region, ami.id)
    state.images[key] = image
    heapq.heappush(state.queue, (image.available_at, next(state.seq), key))
    return {"ImageId": ami.id}


def after_deregister_image(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    """moto deregistered the image: forget it, once the instances already launched from it are known to SSM."""
    image_id = form.get("ImageId", "")
    state: _State | None = world.extra.get(STATE_KEY)
    if state is None or (ctx.account_id, ctx.region, image_id) not in state.images:
        return
    world.instances(ctx.account_id, ctx.region)  # instances launched from it take its state now
    del state.images[(ctx.account_id, ctx.region, image_id)]


HANDLERS: dict[tuple[str, str], Handler] = {("ec2", "CreateImage"): create_image}
AFTER_MOTO: dict[tuple[str, str], AfterMoto] = {("ec2", "DeregisterImage"): after_deregister_image}
