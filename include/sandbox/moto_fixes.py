"""Fixes to moto's internals the sandbox needs (moto is pinned exactly for this reason)."""

from __future__ import annotations

import copy
from typing import Any

from moto.autoscaling.models import ASG_NAME_TAG, FakeAutoScalingGroup, InstanceState
from moto.cloudformation import parsing as cloudformation_parsing
from moto.cloudformation.models import Stack
from moto.core.common_models import CloudFormationModel
from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError, InvalidLaunchTemplateVersionNotFound, InvalidParameterCombination
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateVersion
from moto.ec2.responses.instances import InstanceResponse
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.iam import models as iam_models
from moto.rds.models import DBCluster, DBInstance, rds_backends

from include.sandbox import paging, rds_endpoints
from include.sandbox.protocol import AwsApiError


def _get_tags(self: Any) -> list[dict[str, str]]:
    """One resource's tags by dict lookup.

    moto 5.2.5 answers it with describe_tags filtered by resource id, which walks every tag
    of the region: DescribeInstances over 5,000 instances then takes about 80 s, longer than
    botocore's read timeout. Same result, in constant time.
    """
    resource_id = getattr(self, "id", None)
    if not resource_id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    tags = self.ec2_backend.tags.get(resource_id, {})
    return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]


_MOTO_STACK_DELETE = Stack.delete


def _stack_delete(self: Stack) -> None:
    """Delete a stack's resources, and keep the (deleted) resource objects for describing it.

    moto 5.2.5's ResourceMap creates a resource whenever it is looked up and not parsed, and
    its deletion un-parses every resource: DescribeStackResources (or DescribeStacks with
    outputs) on a deleted stack's id launched its instances again, running and SSM-managed.
    With the objects kept, a deleted stack lists its resources as DELETE_COMPLETE, as on AWS.
    """
    resource_map = self.resource_map
    created = {
        logical_id: resource
        for logical_id, resource in resource_map._parsed_resources.items()
        if logical_id in resource_map._resource_json_map
    }
    _MOTO_STACK_DELETE(self)
    resource_map._parsed_resources.update(created)


# -- launch templates and Auto Scaling instances --------------------------------------------------------------------


def _get_version(self: LaunchTemplate, num: Any) -> LaunchTemplateVersion:
    """A version by number, `$Latest` or `$Default`.

    moto 5.2.5 indexes its list with int(num) - 1, so version 0 (or -1) answered the latest version and a
    non-number was a 500; both are InvalidLaunchTemplateId.VersionNotFound here.
    """
    text = str(num)
    if text.lower() == "$latest":
        return self.versions[-1]
    if text.lower() == "$default":
        return self.default_version()
    if not text.isdigit() or not 1 <= int(text) <= len(self.versions):
        raise InvalidLaunchTemplateVersionNotFound(template_id=self.id, version=text)
    return self.versions[int(text) - 1]


def _create_launch_template_version(self: Any) -> ActionResult:
    """CreateLaunchTemplateVersion with SourceVersion: the new version inherits the source version's launch
    parameters, and those given in LaunchTemplateData replace them (top-level parameters, as AWS documents).

    moto 5.2.5 ignores SourceVersion: a version given only an ImageId had no InstanceType, tags or anything else.
    An unknown source version is InvalidLaunchTemplateId.VersionNotFound. It also ignores ClientToken: here a
    request repeating a token with the same parameters answers the version the first one created (a retry makes
    no second version), and with other parameters is IdempotentParameterMismatch, as on AWS.
    """
    name = self._get_param("LaunchTemplateName")
    template_id = self._get_param("LaunchTemplateId")
    template = (
        self.ec2_backend.get_launch_template(template_id)
        if template_id
        else self.ec2_backend.get_launch_template_by_name(name)
    )
    data = self._get_param("LaunchTemplateData", {})
    source = self._get_param("SourceVersion")
    token = self._get_param("ClientToken")
    request = repr((data, source, self._get_param("VersionDescription")))
    tokens: dict[str, tuple[str, LaunchTemplateVersion]] = template.__dict__.setdefault("_client_tokens", {})
    if token and token in tokens:
        first_request, version = tokens[token]
        if first_request != request:
            raise IdempotentParameterMismatch(token)
        return _version_result(self, template, version)
    if source is not None:
        data = {**copy.deepcopy(template.get_version(source).data), **data}
    self.error_on_dryrun()
    version = template.create_version(data, self._get_param("VersionDescription"))
    if token:
        tokens[token] = (request, version)
    return _version_result(self, template, version)


class IdempotentParameterMismatch(EC2ClientError):
    def __init__(self, token: str) -> None:
        super().__init__(
            "IdempotentParameterMismatch",
            f"The client token {token} was used before with different parameters for CreateLaunchTemplateVersion.",
        )


def _version_result(self: Any, template: LaunchTemplate, version: LaunchTemplateVersion) -> ActionResult:
    return ActionResult(
        {
            "LaunchTemplateVersion": {
                "CreateTime": version.create_time,
                "CreatedBy": f"arn:{self.partition}:iam::{self.current_account}:root",
                "DefaultVersion": template.is_default(version),
                "LaunchTemplateData": version.data,
                "LaunchTemplateId": template.id,
                "LaunchTemplateName": template.name,
                "VersionDescription": version.description,
                "VersionNumber": version.number,
            },
        }
    )


_MOTO_INSTANCE_STATE_INIT = InstanceState.__init__


def _instance_state_init(self: InstanceState, *args: Any, **kwargs: Any) -> None:
    """Remember the launch template version the instance was launched from (the group's version at the time)."""
    _MOTO_INSTANCE_STATE_INIT(self, *args, **kwargs)
    group = self.auto_scaling_group
    template = getattr(group, "ec2_launch_template", None)
    self.launch_template_version = (  # type: ignore[attr-defined]
        str(template.get_version(group.launch_template_version).number) if template is not None else None
    )


def _instance_launch_template(self: InstanceState) -> dict[str, Any] | None:
    """The instance's launch template and the version it was launched from (moto 5.2.5: the template's default)."""
    template = getattr(self.auto_scaling_group, "ec2_launch_template", None)
    if template is None:
        return None
    version = getattr(self, "launch_template_version", None) or str(template.default_version_number)
    return {"LaunchTemplateId": template.id, "LaunchTemplateName": template.name, "Version": version}


def _replace_instances(self: FakeAutoScalingGroup, count_needed: int, propagated_tags: dict[str, str]) -> None:
    """Launch instances for the group from its launch template version (moto 5.2.5 launched them with the
    template's default version's tags, and tagged them aws:ec2launchtemplate:version with it).

    Groups with a launch configuration or a mixed instances policy keep moto's own launch.
    """
    template = self.ec2_launch_template
    if template is None or self.mixed_instances_policy:
        _MOTO_REPLACE_INSTANCES(self, count_needed, propagated_tags)
        return
    version = template.get_version(self.launch_template_version)
    tags = {**propagated_tags, ASG_NAME_TAG: self.name, **version.instance_tags}
    subnet_id = self.vpc_zone_identifier.split(",")[0] if self.vpc_zone_identifier else None
    zones = list(self.availability_zones)
    for index in range(count_needed):
        # Spread over the group's zones in turn (moto picks one at random for the whole batch).
        zone = zones[(len(self.instance_states) + index) % len(zones)] if zones else None
        reservation = self.autoscaling_backend.ec2_backend.run_instances(
            version.image_id,
            1,
            version.user_data,
            version.security_groups,
            instance_type=version.instance_type or "m1.small",
            tags={"instance": dict(tags)},
            placement=zone,
            launch_template={"LaunchTemplateId": template.id, "Version": str(version.number)},
            is_instance_type_default=False,
            subnet_id=subnet_id,
        )
        for instance in reservation.instances:
            instance.autoscaling_group = self  # type: ignore[attr-defined]
            self.instance_states.append(
                InstanceState(instance, protected_from_scale_in=self.new_instances_protected_from_scale_in)
            )


_MOTO_REPLACE_INSTANCES = FakeAutoScalingGroup.replace_autoscaling_group_instances


# DescribeInstances' MaxResults bounds (the EC2 API reference); a page without MaxResults holds at most the most.
MIN_INSTANCES_PER_PAGE, MAX_INSTANCES_PER_PAGE = 5, 1000


def _describe_instances(self: InstanceResponse) -> ActionResult:
    """DescribeInstances paged by instance, at most 1,000 a page, as on AWS.

    moto 5.2.5 pages by reservation (100 a page by default): a scenario's group is one reservation, so one page
    held thousands of instances and the calls a large fleet's inventory makes were not AWS's. A reservation
    that does not fit the page is split and continues on the next page under the same ReservationId.
    """
    self.error_on_dryrun()
    if "InstanceId.1" in self.data and "MaxResults" in self.data:
        raise InvalidParameterCombination("The parameter instancesSet cannot be used with the parameter maxResults")
    filters = self._filters_from_querystring()
    instance_ids = self._get_param("InstanceIds", [])
    if instance_ids:
        reservations = self.ec2_backend.get_reservations_by_instance_ids(instance_ids, filters=filters)
    else:
        reservations = self.ec2_backend.describe_instances(filters=filters)
    size = int(self._get_param("MaxResults", MAX_INSTANCES_PER_PAGE))
    if not MIN_INSTANCES_PER_PAGE <= size <= MAX_INSTANCES_PER_PAGE:
        raise EC2ClientError(
            "InvalidParameterValue",
            f"Value ( {size} ) for parameter maxResults is invalid. Expecting a value between "
            f"{MIN_INSTANCES_PER_PAGE} and {MAX_INSTANCES_PER_PAGE}.",
        )
    token = self._get_param("NextToken")
    try:
        start = paging.decode_token(token) if token else 0
    except AwsApiError as exc:
        raise EC2ClientError("InvalidParameterValue", f"Invalid value '{token}' for nextToken") from exc
    # (reservation, instance) in order; the page is a slice of it, regrouped by reservation.
    flat = [(reservation, instance) for reservation in reservations for instance in reservation.instances]
    page: list[Any] = []
    for reservation, instance in flat[start : start + size]:
        if not page or page[-1].id != reservation.id:
            part = copy.copy(reservation)  # moto's describe already hands out copies; this one is the page's
            part.instances = []
            page.append(part)
        page[-1].instances.append(instance)
    more = start + size < len(flat)
    return ActionResult({"Reservations": page, "NextToken": paging.encode_token(start + size) if more else None})


def plain_keys_reach(account_id: str) -> None:
    """Keys that no role session issued land in `account_id` (the scenario's first account).

    moto resolves such keys to its constant default account, 123456789012: a scenario whose first account
    has another id loaded its fleet where plain keys could not see it, and creating the artifact bucket
    failed with BucketAlreadyExists (S3 names are global across moto's accounts). moto's lookup falls back to
    the `DEFAULT_ACCOUNT_ID` of its IAM module, so that name is the one to move.
    """
    iam_models.DEFAULT_ACCOUNT_ID = account_id  # type: ignore[attr-defined]


# -- RDS DB instances created by CloudFormation -------------------------------------------------------------------

_MOTO_DB_FROM_CLOUDFORMATION = DBInstance.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]


def _db_instance_from_cloudformation(
    cls: type[DBInstance],
    resource_name: str,
    cloudformation_json: Any,
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> DBInstance:
    """AWS::RDS::DBInstance as CloudFormation makes it: named by DBInstanceIdentifier, restored from a snapshot.

    moto 5.2.5 names the instance after the logical id and ignores DBSnapshotIdentifier, so a restore in a stack
    made an empty instance of no particular engine. With DBSnapshotIdentifier the instance is restored as
    RestoreDBInstanceFromDBSnapshot restores it (the snapshot's engine, version and storage; the template's class,
    MultiAZ, PubliclyAccessible and tags); rds_maintenance.after_stack_created then gives it a restore's status and
    pending actions.
    """
    properties = cloudformation_json.get("Properties", {})
    identifier = str(properties.get("DBInstanceIdentifier") or resource_name).lower()
    snapshot = properties.get("DBSnapshotIdentifier")
    backend = rds_backends[account_id][region_name]
    cluster_id = properties.get("DBClusterIdentifier")
    if cluster_id and not snapshot:
        # An Aurora member: moto's own creation drops DBClusterIdentifier (a lone instance of no cluster). Its engine
        # is the cluster's (a different Engine is InvalidDBInstanceEngine, as on AWS); storage is the cluster's.
        cluster = backend.clusters.get(str(cluster_id))
        member: DBInstance = backend.create_db_instance(
            {
                "db_instance_identifier": identifier,
                "db_cluster_identifier": str(cluster_id),
                "engine": properties.get("Engine") or (cluster.engine if cluster else None),
                "db_instance_class": properties.get("DBInstanceClass"),
                "availability_zone": properties.get("AvailabilityZone") or f"{region_name}a",
                "publicly_accessible": bool(properties.get("PubliclyAccessible", False)),
                "tags": properties.get("Tags") or [],
            }
        )
        return member
    if not snapshot:
        renamed = copy.deepcopy(cloudformation_json)
        return _MOTO_DB_FROM_CLOUDFORMATION(cls, identifier, renamed, account_id, region_name, **kwargs)  # type: ignore[no-any-return]
    overrides = {
        "db_instance_identifier": identifier,
        "db_instance_class": properties.get("DBInstanceClass"),
        "tags": properties.get("Tags") or [],
    }
    database: DBInstance = backend.restore_db_instance_from_db_snapshot(str(snapshot), overrides)
    database.multi_az = bool(properties.get("MultiAZ", False))
    database.publicly_accessible = bool(properties.get("PubliclyAccessible", False))
    return database


class CloudFormationDBCluster(CloudFormationModel):
    """AWS::RDS::DBCluster, which moto 5.2.5's CloudFormation lacks (the stack made nothing of it).

    With SnapshotIdentifier (a DB cluster snapshot's identifier or ARN) the cluster is restored as
    RestoreDBClusterFromSnapshot restores it: the snapshot's engine and data, Engine / EngineVersion /
    DBClusterIdentifier / Tags from the template when given. Without it a new, empty cluster (Engine required).
    Ref gives the identifier, Fn::GetAtt Endpoint.Address / Endpoint.Port / ReadEndpoint.Address the endpoints;
    the stack's deletion deletes it (after its members: RDS refuses a cluster with members).
    rds_maintenance.after_stack_created then gives a restore its creating status and pending actions.
    """

    @staticmethod
    def cloudformation_name_type() -> str:
        return "DBClusterIdentifier"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::RDS::DBCluster"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in _CLUSTER_ATTRIBUTES

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> DBCluster:
        properties = cloudformation_json.get("Properties", {})
        backend = rds_backends[account_id][region_name]
        identifier = str(properties.get("DBClusterIdentifier") or resource_name).lower()
        settings = {
            "db_cluster_identifier": identifier,
            "engine": properties.get("Engine"),
            "engine_version": properties.get("EngineVersion"),
            "port": properties.get("Port"),
            "deletion_protection": bool(properties.get("DeletionProtection", False)),
        }
        snapshot = properties.get("SnapshotIdentifier")
        if snapshot:
            cluster: DBCluster = backend.restore_db_cluster_from_snapshot(snapshot_identifier(str(snapshot)), settings)
        else:
            master = {"master_username": properties.get("MasterUsername"), "master_user_password": "not-kept"}
            cluster = backend.create_db_cluster({**{k: v for k, v in settings.items() if v is not None}, **master})
        cluster.tags = list(properties.get("Tags") or [])  # the template's, not the snapshot's source's
        cluster.deletion_protection = bool(properties.get("DeletionProtection", False))  # not the source's
        return cluster

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        backend = rds_backends[account_id][region_name]
        if resource_name in backend.clusters:
            backend.delete_db_cluster(resource_name)


_CLUSTER_ATTRIBUTES = ("Endpoint.Address", "Endpoint.Port", "ReadEndpoint.Address", "DBClusterArn")


def snapshot_identifier(identifier: str) -> str:
    """A snapshot's identifier from an identifier or ARN (arn:aws:rds:REGION:ACCOUNT:cluster-snapshot:ID; an
    automated snapshot's ID has a colon too), lower-case as RDS keeps it."""
    if identifier.startswith("arn:"):
        identifier = identifier.split(":", 6)[-1]
    return identifier.lower()


def _cluster_cfn_attribute(self: DBCluster, attribute_name: str) -> Any:
    from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

    values = {
        "Endpoint.Address": self.endpoint,
        "Endpoint.Port": self.port,
        "ReadEndpoint.Address": self.reader_endpoint,
        "DBClusterArn": self.db_cluster_arn,
    }
    if attribute_name not in values:
        raise UnformattedGetAttTemplateException()
    return values[attribute_name]


_MOTO_CLUSTER_STATUS = DBCluster.status


def _cluster_status(self: DBCluster) -> str:
    """moto answers a new cluster's first read with creating and every later one with available; a cluster whose
    creation the sandbox times (a restore, rds_maintenance) stays creating until the simulated clock says."""
    if getattr(self, "sandbox_timed", False):
        return str(self._status)
    return str(_MOTO_CLUSTER_STATUS.fget(self))  # type: ignore[attr-defined]


def apply() -> None:
    """Install the fixes (idempotent)."""
    TaggedEC2Resource.get_tags = _get_tags  # type: ignore[method-assign]
    InstanceResponse.describe_instances = _describe_instances  # type: ignore[method-assign]
    Stack.delete = _stack_delete  # type: ignore[method-assign]
    LaunchTemplate.get_version = _get_version  # type: ignore[method-assign]
    LaunchTemplates.create_launch_template_version = _create_launch_template_version  # type: ignore[method-assign]
    InstanceState.__init__ = _instance_state_init  # type: ignore[method-assign]
    InstanceState.launch_template = property(_instance_launch_template)  # type: ignore[method-assign,assignment]
    FakeAutoScalingGroup.replace_autoscaling_group_instances = _replace_instances  # type: ignore[method-assign]
    DBInstance.create_from_cloudformation_json = classmethod(_db_instance_from_cloudformation)  # type: ignore[method-assign,assignment,arg-type]
    DBCluster.physical_resource_id = property(lambda self: self.db_cluster_identifier)  # type: ignore[attr-defined]
    DBCluster.get_cfn_attribute = _cluster_cfn_attribute  # type: ignore[attr-defined]
    DBCluster.is_created = lambda self: True  # type: ignore[attr-defined]  # CloudFormation waits for nothing
    DBCluster.status = property(_cluster_status, _MOTO_CLUSTER_STATUS.fset)  # type: ignore[method-assign,assignment,attr-defined]
    rds_endpoints.patch_moto()  # endpoints at the sandbox's host, a port per database (rds_endpoints)
    # moto lists its CloudFormation models once (cached): list them again with AWS::RDS::DBCluster
    for cached in (
        cloudformation_parsing.get_model_list,
        cloudformation_parsing.get_model_map,
        cloudformation_parsing.get_name_type_map,
    ):
        cached.cache_clear()
