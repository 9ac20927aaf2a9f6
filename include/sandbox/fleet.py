"""Seeds moto and the World with a scenario's fleet: AMIs, instances, RDS, S3, baselines."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from itertools import cycle
from typing import Any

# Without this moto registers ~1,300 public AMIs per region and scans them all for every
# instance it launches, which makes a 10,000-instance fleet take minutes.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami as MotoAmi
from moto.rds.models import rds_backends
from moto.s3.models import s3_backends

from include.sandbox import patching
from include.sandbox.scenario import Account, InstanceGroup, RdsCluster, RdsInstance, Region
from include.sandbox.world import PLATFORMS, ManagedInstance, World


def seed(world: World) -> None:
    """Create the scenario's resources in moto and SSM's view of its instances in the World."""
    for account in world.scenario.accounts:
        for region in account.regions:
            _seed_region(world, account, region)
    _apply_failures(world)


def _seed_region(world: World, account: Account, region: Region) -> None:
    backend = ec2_backends[account.id][region.name]
    for ami in world.scenario.amis.values():
        if ami.ami_id not in backend.amis:
            backend.amis[ami.ami_id] = MotoAmi(
                backend,
                ami.ami_id,
                name=ami.name,
                description=f"{ami.name} ({ami.os})",
                owner_id="137112412989" if ami.os != "WINDOWS" else "801119661308",
                platform="windows" if ami.os == "WINDOWS" else None,
                region_name=region.name,
            )
    for group in region.instance_groups:
        for instance in _launch(world, account.id, region.name, group):
            world.add_instance(instance)
    from include.sandbox import autoscaling  # it launches its groups' instances through managed_instance below

    for asg in region.auto_scaling_groups:
        for instance in autoscaling.seed_group(world, account.id, region.name, asg):
            world.add_instance(instance)
    patching.register_scenario_baselines(world, account.id, region.name)
    for db in region.rds_instances:
        _seed_db_instance(world, account.id, region.name, db)
    for cluster in region.rds_clusters:
        _seed_db_cluster(world, account.id, region.name, cluster)
    s3 = s3_backends[account.id]["aws"]
    for bucket in region.s3_buckets:
        s3.create_bucket(bucket.name, region.name)
        if bucket.tags:
            s3.put_bucket_tagging(bucket.name, dict(bucket.tags))


def _seed_db_instance(world: World, account_id: str, region: str, db: RdsInstance) -> None:
    """A scenario DB instance in moto (a read replica through moto's CreateDBInstanceReadReplica), `available`,
    with the automated snapshot RDS takes at creation named and dated on the simulated clock."""
    backend = rds_backends[account_id][region]
    tags = [{"Key": k, "Value": v} for k, v in db.tags.items()]
    if db.replica_of is not None:
        backend.create_db_instance_read_replica(
            {
                "db_instance_identifier": db.id,
                "source_db_instance_identifier": db.replica_of,
                "db_instance_class": db.instance_class,
                "multi_az": db.multi_az,
                "tags": tags,
            }
        )
        return
    backend.create_db_instance(
        {
            "db_instance_identifier": db.id,
            "engine": db.engine,
            "engine_version": db.engine_version,
            "db_instance_class": db.instance_class,
            "allocated_storage": 20,
            "master_username": "admin",
            "master_user_password": "sandbox-not-a-secret",
            "region": region,
            "multi_az": db.multi_az,
            "availability_zone": f"{region}a",
            "tags": tags,
        }
    )
    from include.sandbox.rds_maintenance import rename_automated_snapshots

    rename_automated_snapshots(backend, db.id, world.now())


def _seed_db_cluster(world: World, account_id: str, region: str, cluster: RdsCluster) -> None:
    """A scenario Aurora DB cluster in moto, `available`, with its member DB instances (the first the writer)."""
    backend = rds_backends[account_id][region]
    tags = [{"Key": k, "Value": v} for k, v in cluster.tags.items()]
    backend.create_db_cluster(
        {
            "db_cluster_identifier": cluster.id,
            "engine": cluster.engine,
            "engine_version": cluster.engine_version,
            "master_username": "admin",
            "master_user_password": "sandbox-not-a-secret",
            "tags": tags,
        }
    )
    for member in cluster.instances:
        backend.create_db_instance(
            {
                "db_instance_identifier": member,
                "db_cluster_identifier": cluster.id,
                "engine": cluster.engine,
                "engine_version": cluster.engine_version,
                "db_instance_class": cluster.instance_class,
                "region": region,
                "availability_zone": f"{region}a",
                "tags": tags,
            }
        )
    from include.sandbox.rds_maintenance import rename_automated_cluster_snapshots

    rename_automated_cluster_snapshots(backend, cluster.id, world.now())
    if not cluster.automated_snapshot:  # before its first backup: moto takes one at creation
        for key, snapshot in list(backend.cluster_snapshots.items()):
            if snapshot.snapshot_type == "automated" and snapshot.db_cluster_identifier == cluster.id.lower():
                del backend.cluster_snapshots[key]


def _zones(group: InstanceGroup, count: int) -> Iterator[tuple[str, int]]:
    """Spread `count` instances round-robin over the group's zones: (zone, how many)."""
    zones = list(group.availability_zones)
    per_zone = {zone: 0 for zone in zones}
    for _, zone in zip(range(count), cycle(zones), strict=False):
        per_zone[zone] += 1
    return ((zone, n) for zone, n in per_zone.items() if n)


def _launch(world: World, account_id: str, region: str, group: InstanceGroup) -> list[ManagedInstance]:
    backend = ec2_backends[account_id][region]
    tags = {"Name": group.name, **group.tags}
    launched: list[Any] = []
    for zone, count in _zones(group, group.count):
        reservation = backend.run_instances(
            group.ami,
            count,
            None,
            [],
            instance_type=group.instance_type,
            placement=zone,
            region_name=region,
            is_instance_type_default=False,
            tags={"instance": tags},
        )
        launched.extend(reservation.instances)
    return [
        managed_instance(
            world,
            account_id,
            region,
            ec2,
            group.name,
            group.patched_through,
            agent=group.agent,
            agent_version=group.agent_version,
        )
        for ec2 in launched
    ]


def managed_instance(
    world: World,
    account_id: str,
    region: str,
    ec2: Any,
    group: str,
    patched_through: date | None,
    agent: str = "online",
    agent_version: str = "3.3.1142.0",
) -> ManagedInstance:
    """SSM's view of an instance moto launched from a scenario AMI for a group: registered unless the agent is
    `unmanaged`, its catalog patches released through `patched_through` installed (as the scenario's instance
    groups are seeded; autoscaling.py uses it for the instances an Auto Scaling group launches from its AMI)."""
    ami = world.scenario.amis[ec2.image_id]
    instance = ManagedInstance(
        instance_id=ec2.id,
        account_id=account_id,
        region=region,
        os=ami.os,
        os_version=ami.os_version or PLATFORMS[ami.os][2],
        ami=ami.ami_id,
        registered=agent != "unmanaged",
        online=agent == "online",
        agent_version=agent_version,
        registration_date=world.now(),
        ip_address=ec2.private_ip or "",
        computer_name=f"ip-{(ec2.private_ip or '').replace('.', '-')}.{region}.compute.internal",
        group=group,
    )
    if instance.registered:
        patching.seed_installed(world, instance, patched_through)
    return instance


def _apply_failures(world: World) -> None:
    """Attach each injected failure to the instances it selects (group order is launch order)."""
    by_group: dict[str, list[ManagedInstance]] = {}
    everyone: list[ManagedInstance] = []
    for account in world.scenario.accounts:
        for region in account.regions:
            for instance in world.instances(account.id, region.name).values():
                everyone.append(instance)
                if instance.group:
                    by_group.setdefault(instance.group, []).append(instance)
    for failure in world.scenario.failures:
        chosen = by_group.get(failure.group, []) if failure.group else everyone
        if failure.tags:
            chosen = [
                inst
                for inst in chosen
                if all(
                    world.tags(inst.account_id, inst.region, inst.instance_id).get(k) == v
                    for k, v in failure.tags.items()
                )
            ]
        if failure.count is not None:
            chosen = chosen[: failure.count]
        for instance in chosen:
            instance.faults.merge(failure)
            if failure.agent_offline:
                instance.online = False
