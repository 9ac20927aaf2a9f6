"""include/iam/patchcycle-policy.json allows exactly the AWS calls the patchcycle code makes.

The calls are found statically with `ast`: boto3 client methods, paginators and waiters on
the clients of hooks (`self.conn`, `self.get_conn()`, `hook.get_async_conn()`, `boto3.client(...)`),
plus a short table of indirect calls (`hook.account_id`, ObjectStoragePath on s3://) and the waiters
of the amazon provider's waiter triggers. Each call is mapped to its IAM action through botocore's
service model. CloudFormation creates the staging stack's resources with the caller's permissions,
so the actions that the resources of include/cloudformation/ need (TEMPLATE_RESOURCE_ACTIONS) are
required too. So are the actions of the steps of the project's SSM Automation runbooks
(include/automation/): with an empty AutomationAssumeRole (the default) the steps act with the
permissions of whoever started the execution, the DAGs' role. Each step's action is derived from the
YAML: Service + Api through botocore, aws:runCommand as SendCommand of its DocumentName plus what
Automation calls to follow the command (runbook_calls). The tests fail when code, a template or a
runbook needs AWS access the policy does not allow, when the policy allows what nothing needs, and
when the extractor meets a call, a resource type or a step action it cannot attribute (it never skips
one silently).
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore import xform_name

from patchcycle.core.runbooks import MANAGED_TAG, RUNBOOK_PREFIX, RUNBOOKS
from patchcycle.core.staging import stack_name

REPO = Path(__file__).resolve().parents[1]
POLICY_PATH = REPO / "include" / "iam" / "patchcycle-policy.json"
SOURCE_DIRS = ("plugins", "dags")
TEMPLATE_DIR = Path("include") / "cloudformation"
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".json")
ARTIFACT_BUCKET = "patchcycle-artifacts"

# The amazon provider's hooks and the boto3 service of their client (None: the subclass sets client_type).
PROVIDER_HOOK_SERVICES: dict[str, str | None] = {
    "AwsBaseHook": None,
    "AwsGenericHook": None,
    "SsmHook": "ssm",
    "RdsHook": "rds",
    "S3Hook": "s3",
    "StsHook": "sts",
    "CloudFormationHook": "cloudformation",
}
# Provider hook methods that call AWS inside the provider, where this test cannot see: "Hook.method" -> operations.
PROVIDER_METHOD_CALLS: dict[str, tuple[tuple[str, str], ...]] = {}
# The provider's notifiers, and what sending one calls (a module that names the class sends it).
PROVIDER_NOTIFIER_CALLS: dict[str, tuple[tuple[str, str], ...]] = {"SnsNotifier": (("sns", "Publish"),)}
# Hook members that hand out the boto3 client, and hook methods that make no AWS call.
HOOK_CLIENT_METHODS = frozenset({"get_conn", "get_async_conn", "get_client_type"})
HOOK_CLIENT_ATTRIBUTES = frozenset({"conn", "async_conn"})
HOOK_SAFE_METHODS = frozenset({"get_session", "get_connection"})
# Hooks that are not AWS hooks.
NON_AWS_HOOKS = frozenset({"BaseHook", "DbApiHook", "HttpHook"})
# boto3 client methods that are not API operations.
CLIENT_NON_OPERATIONS = frozenset({"can_paginate", "close", "__aenter__", "__aexit__"})
# boto3's managed-transfer helpers on the S3 client.
S3_TRANSFER_HELPERS: dict[str, tuple[str, ...]] = {
    "upload_file": ("PutObject",),
    "upload_fileobj": ("PutObject",),
    "download_file": ("HeadObject", "GetObject"),
    "download_fileobj": ("HeadObject", "GetObject"),
    "copy": ("HeadObject", "CopyObject"),
}
# Clients the extractor cannot attribute to a service in a given file: "path/relative/to/repo.py" -> service.
FILE_SERVICES: dict[str, str] = {}
# The amazon provider's trigger base classes that run a botocore waiter of their `aws_hook_class`'s client. The
# waiter names are the module's string literals that name a waiter of that client (e.g. a WAITERS tuple).
WAITER_TRIGGER_BASES = frozenset({"AwsBaseWaiterTrigger"})

# CloudFormation creates and deletes a template's resources with the credentials of the stack's caller (the
# staging stack is created without a service role), so the role needs what the resource handlers call for the
# properties the templates set. Every resource Type in include/cloudformation/ needs an entry: a type without one
# fails the tests, naming it.
TEMPLATE_RESOURCE_ACTIONS: dict[str, tuple[str, ...]] = {
    # Create: RunInstances, with the template's and the stack's tags applied on create (ec2:CreateTags on the
    # instance; Tags do not reach the volumes without PropagateTagsToVolumeOnCreation), iam:PassRole for the role of
    # the IamInstanceProfile, DescribeInstances until it runs. Delete: TerminateInstances, DescribeInstances until
    # it is terminated. ImageId is a plain String parameter, so no ssm:GetParameters.
    "AWS::EC2::Instance": (
        "ec2:CreateTags",
        "ec2:DescribeInstances",
        "ec2:RunInstances",
        "ec2:TerminateInstances",
        "iam:PassRole",
    ),
    # Create: RestoreDBInstanceFromDBSnapshot (DBSnapshotIdentifier) with its Tags, DescribeDBInstances until it is
    # available. Delete (DeletionPolicy Delete): DeleteDBInstance, DescribeDBInstances until it is gone.
    # A DB cluster's member instance (DBClusterIdentifier, no snapshot): CreateDBInstance in the cluster.
    "AWS::RDS::DBInstance": (
        "rds:AddTagsToResource",
        "rds:CreateDBInstance",
        "rds:DeleteDBInstance",
        "rds:DescribeDBInstances",
        "rds:RestoreDBInstanceFromDBSnapshot",
    ),
    # Create: RestoreDBClusterFromSnapshot (SnapshotIdentifier) with its Tags, DescribeDBClusters until it is
    # available. Delete: DeleteDBCluster (after its member), DescribeDBClusters until it is gone.
    "AWS::RDS::DBCluster": (
        "rds:AddTagsToResource",
        "rds:DeleteDBCluster",
        "rds:DescribeDBClusters",
        "rds:RestoreDBClusterFromSnapshot",
    ),
}
# IAM actions that are permissions only, with no API operation of their own in botocore.
PERMISSION_ONLY_ACTIONS = frozenset({"iam:PassRole"})

# The project's SSM Automation runbooks. Their steps act with the role in the AutomationAssumeRole parameter; empty
# (the default, the run's automation_assume_role param), they act with the permissions of whoever started the
# execution: the DAGs' role, so the policy must allow every step's calls. Every step's action needs an entry below:
# a step whose action none of them lists fails the tests, naming the runbook, the step and the action.
AUTOMATION_DIR = Path("include") / "automation"
RUNBOOK_SUFFIXES = (".yaml", ".yml", ".json")
# Runbooks kept in include/automation that no DAG registers or starts yet: PatchCycle-BakeAmi (the Auto Scaling
# groups' immutable path) waits for the code that will start it. The DAGs' role needs nothing for them until then;
# their steps must still map to actions (test_unregistered_runbooks_steps_map_to_actions). Registering one means
# moving it to patchcycle.core.runbooks.RUNBOOKS and granting its steps' actions.
UNREGISTERED_RUNBOOKS: frozenset[str] = frozenset()
# Steps that call the one AWS API their inputs name: Service (the boto3 service name) and Api (the operation).
API_STEP_ACTIONS = frozenset({"aws:executeAwsApi", "aws:waitForAwsResourceProperty", "aws:assertAwsResourceProperty"})
# aws:runCommand is ssm:SendCommand of its DocumentName to its instances; Automation then follows the command with
# the same permissions until it ends (its outputs are CommandId, Status, ResponseCode and Output).
RUN_COMMAND_ACTION = "aws:runCommand"
RUN_COMMAND_FOLLOW_UP = (("ssm", "ListCommands"), ("ssm", "ListCommandInvocations"), ("ssm", "GetCommandInvocation"))
# Steps that call no AWS API: flow control inside the execution.
STEP_ACTIONS_WITHOUT_CALLS = frozenset({"aws:branch", "aws:sleep"})

# Create calls that tag what they create (a Tags or TagSpecifications argument): AWS also authorizes those tags as
# the service's tagging action on the new resource. EC2 checks ec2:CreateTags (with the condition key
# ec2:CreateAction naming the create call); Systems Manager checks ssm:AddTagsToResource. A call that passes tags
# without an entry here fails the tests, naming it. The tagging operations themselves are not create calls.
TAG_ARGUMENTS = frozenset({"Tags", "TagSpecifications"})
TAGGING_OPERATIONS = frozenset({"AddTagsToResource", "CreateTags", "TagResource"})
TAG_ON_CREATE: dict[tuple[str, str], tuple[str, ...]] = {
    ("ec2", "CreateSnapshots"): ("ec2:CreateTags",),
    ("ec2", "CreateReplaceRootVolumeTask"): ("ec2:CreateTags",),
    ("ec2", "RunInstances"): ("ec2:CreateTags",),
    ("ec2", "CreateImage"): ("ec2:CreateTags",),
    ("ssm", "CreateDocument"): ("ssm:AddTagsToResource",),
    ("ssm", "StartAutomationExecution"): ("ssm:AddTagsToResource",),
    ("rds", "CreateDBSnapshot"): ("rds:AddTagsToResource",),
    ("rds", "CreateDBClusterSnapshot"): ("rds:AddTagsToResource",),
}
# Permissions a call needs beyond its own action. StartAutomationExecution passes the runbooks' AutomationAssumeRole
# (the run's automation_assume_role param, when set) to Systems Manager, which checks iam:PassRole on that role.
# StartInstanceRefresh with a launch template is authorized as if the caller launched from that template (Auto
# Scaling's "Control Amazon EC2 launch template usage in Auto Scaling groups"): ec2:RunInstances on the template and
# on what it launches, ec2:CreateTags for the tags applied on launch, iam:PassRole for its instance profile's role.
DEPENDENT_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("ssm", "StartAutomationExecution"): ("iam:PassRole",),
    ("autoscaling", "StartInstanceRefresh"): ("ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"),
}

# Indirect calls. The amazon provider's AwsBaseHook.account_id calls sts:GetCallerIdentity.
INDIRECT_ATTRIBUTES: dict[str, tuple[tuple[str, str], ...]] = {"account_id": (("sts", "GetCallerIdentity"),)}
# Airflow's ObjectStoragePath on s3:// goes through s3fs: mkdir probes the bucket (HeadBucket), exists() and
# open("rb") stat the key (HeadObject, then ListObjectsV2 for "directories"), reads are ranged GetObject,
# writes are PutObject (multipart above s3fs's 50 MiB block: still s3:PutObject).
OBJECT_STORAGE_CALLS = (
    ("s3", "HeadBucket"),
    ("s3", "HeadObject"),
    ("s3", "ListObjectsV2"),
    ("s3", "GetObject"),
    ("s3", "PutObject"),
)
OBJECT_STORAGE_METHODS: dict[str, tuple[tuple[str, str], ...]] = {
    "unlink": (("s3", "DeleteObject"),),
    "rmdir": (("s3", "DeleteObject"),),
    "rm": (("s3", "DeleteObject"),),
    "rename": (("s3", "CopyObject"), ("s3", "DeleteObject")),
    "move": (("s3", "CopyObject"), ("s3", "DeleteObject")),
}

# Operations whose IAM action is not "<service>:<OperationName>" (empty: AWS allows the call to everyone).
ACTION_OVERRIDES: dict[tuple[str, str], tuple[str, ...]] = {
    ("sts", "GetCallerIdentity"): (),
    ("s3", "ListBuckets"): ("s3:ListAllMyBuckets",),
    ("s3", "HeadBucket"): ("s3:ListBucket",),
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "ListObjects"): ("s3:ListBucket",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "ListObjectVersions"): ("s3:ListBucketVersions",),
    ("s3", "DeleteObjects"): ("s3:DeleteObject",),
    ("s3", "CopyObject"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
}
# boto3 service names whose IAM prefix differs.
IAM_PREFIXES = {"stepfunctions": "states", "elbv2": "elasticloadbalancing", "elb": "elasticloadbalancing"}

# The resources each action must be allowed on; "*" (the default) means the statement must say Resource "*".
SAMPLE_ACCOUNT, SAMPLE_REGION = "123456789012", "eu-west-1"
SAMPLE_INSTANCE = f"arn:aws:ec2:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:instance/i-0123456789abcdef0"
# The staging stack of a run, named as the code names it; the UUID is CloudFormation's.
SAMPLE_STACK = (
    f"arn:aws:cloudformation:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:stack/"
    f"{stack_name('scheduled__2025-01-07T02:00:00+00:00')}/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
)
# The role of the staging instances' instance profile, named by the convention include/iam/README.md asks for.
SAMPLE_INSTANCE_ROLE = f"arn:aws:iam::{SAMPLE_ACCOUNT}:role/patchcycle-staging-ssm"
# RunInstances is authorized on every resource it touches: the AMI (no account in its ARN), the instance, its root
# volume and network interface, and the subnet and security group (the default VPC's when the template sets none).
SAMPLE_RUN_INSTANCES = (
    f"arn:aws:ec2:{SAMPLE_REGION}::image/ami-0123456789abcdef0",
    SAMPLE_INSTANCE,
    f"arn:aws:ec2:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:network-interface/eni-0123456789abcdef0",
    f"arn:aws:ec2:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:security-group/sg-0123456789abcdef0",
    f"arn:aws:ec2:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:subnet/subnet-0123456789abcdef0",
    f"arn:aws:ec2:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:volume/vol-0123456789abcdef0",
)
# The runbooks' resources: their documents, the automation definitions StartAutomationExecution is authorized on
# (arn:...:automation-definition/NAME:VERSION), an execution, and what the steps snapshot and restore. A snapshot's
# ARN has no account; the role the runbooks act as is named by the convention include/iam/README.md asks for.
RUNBOOK_DOCUMENTS = tuple(f"arn:aws:ssm:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:document/{name}" for name in RUNBOOKS)
RUNBOOK_DEFINITIONS = tuple(
    f"arn:aws:ssm:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:automation-definition/{name}:3" for name in RUNBOOKS
)
SAMPLE_EXECUTION = (
    f"arn:aws:ssm:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:automation-execution/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
)
SAMPLE_CALENDAR = f"arn:aws:ssm:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:document/ProductionChangeFreeze"
SAMPLE_AUTOMATION_ROLE = f"arn:aws:iam::{SAMPLE_ACCOUNT}:role/patchcycle-automation-runbooks"
SAMPLE_VOLUME = f"arn:aws:ec2:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:volume/vol-0123456789abcdef0"
SAMPLE_SNAPSHOT = f"arn:aws:ec2:{SAMPLE_REGION}::snapshot/snap-0123456789abcdef0"
SAMPLE_RESTORE_TASK = (
    f"arn:aws:ec2:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:replace-root-volume-task/replacevol-0123456789abcdef0"
)
SAMPLE_LAUNCH_TEMPLATE = f"arn:aws:ec2:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:launch-template/lt-0123456789abcdef0"
SAMPLE_RDS = f"arn:aws:rds:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:"
# The role of an Auto Scaling group's instance profile, named by the convention include/iam/README.md asks for.
SAMPLE_GROUP_ROLE = f"arn:aws:iam::{SAMPLE_ACCOUNT}:role/patchcycle-asg-web"
SAMPLE_NETWORK_INTERFACE = f"arn:aws:ec2:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:network-interface/eni-0123456789abcdef0"
SAMPLE_RESOURCES: dict[str, tuple[str, ...]] = {
    "cloudformation:CreateStack": (SAMPLE_STACK,),
    "cloudformation:DeleteStack": (SAMPLE_STACK,),
    "cloudformation:DescribeStackEvents": (SAMPLE_STACK,),
    "cloudformation:DescribeStackResources": (SAMPLE_STACK,),
    "cloudformation:DescribeStacks": (SAMPLE_STACK,),
    "ec2:RunInstances": SAMPLE_RUN_INSTANCES,
    "ec2:CreateTags": (SAMPLE_INSTANCE,),
    "ec2:TerminateInstances": (SAMPLE_INSTANCE,),
    "ec2:StopInstances": (SAMPLE_INSTANCE,),
    "ec2:CreateImage": (SAMPLE_INSTANCE, f"arn:aws:ec2:{SAMPLE_REGION}::image/ami-0123456789abcdef0"),
    "iam:PassRole": (SAMPLE_INSTANCE_ROLE,),
    "cloudwatch:PutDashboard": (f"arn:aws:cloudwatch::{SAMPLE_ACCOUNT}:dashboard/patchcycle",),
    "config:PutConfigRule": (f"arn:aws:config:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:config-rule/config-rule-a1b2c3",),
    "config:StartConfigRulesEvaluation": (
        f"arn:aws:config:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:config-rule/config-rule-a1b2c3",
    ),
    "securityhub:BatchImportFindings": (
        f"arn:aws:securityhub:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:product/{SAMPLE_ACCOUNT}/default",
    ),
    "securityhub:BatchUpdateFindings": (f"arn:aws:securityhub:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:hub/default",),
    # RDS: any production DB instance gets its maintenance; the run's own staging copies and snapshots only are
    # created, tagged and deleted (core.rds_plan.STAGING_DB_PREFIX, operators.rds_staging.MANUAL_SNAPSHOT_PREFIX).
    "rds:ApplyPendingMaintenanceAction": (f"{SAMPLE_RDS}db:orders-db",),
    "rds:CreateDBSnapshot": (f"{SAMPLE_RDS}db:orders-db", f"{SAMPLE_RDS}snapshot:patchcycle-patchcycle-stg-0a1b2c3d4e"),
    "rds:DeleteDBSnapshot": (f"{SAMPLE_RDS}snapshot:patchcycle-patchcycle-stg-0a1b2c3d4e",),
    "rds:AddTagsToResource": (
        f"{SAMPLE_RDS}db:patchcycle-stg-0a1b2c3d4e",
        f"{SAMPLE_RDS}snapshot:patchcycle-patchcycle-stg-0a1b2c3d4e",
        f"{SAMPLE_RDS}cluster:patchcycle-stg-0a1b2c3d4e",
        f"{SAMPLE_RDS}cluster-snapshot:patchcycle-patchcycle-stg-0a1b2c3d4e",
    ),
    "rds:RestoreDBInstanceFromDBSnapshot": (
        f"{SAMPLE_RDS}db:patchcycle-stg-0a1b2c3d4e",
        f"{SAMPLE_RDS}snapshot:rds:orders-db-2026-11-20-03-00",
        f"{SAMPLE_RDS}og:default:postgres-16",
        f"{SAMPLE_RDS}pg:default.postgres16",
        f"{SAMPLE_RDS}subgrp:default",
    ),
    "rds:DeleteDBInstance": (f"{SAMPLE_RDS}db:patchcycle-stg-0a1b2c3d4e",),
    # Aurora: the production cluster's manual snapshot, the staging cluster restored from it, its one instance.
    "rds:CreateDBClusterSnapshot": (
        f"{SAMPLE_RDS}cluster:ledger",
        f"{SAMPLE_RDS}cluster-snapshot:patchcycle-patchcycle-stg-0a1b2c3d4e",
    ),
    "rds:DeleteDBClusterSnapshot": (f"{SAMPLE_RDS}cluster-snapshot:patchcycle-patchcycle-stg-0a1b2c3d4e",),
    "rds:RestoreDBClusterFromSnapshot": (
        f"{SAMPLE_RDS}cluster:patchcycle-stg-0a1b2c3d4e",
        f"{SAMPLE_RDS}cluster-snapshot:rds:ledger-2026-11-20-03-00",
        f"{SAMPLE_RDS}cluster-pg:default.aurora-postgresql16",
        f"{SAMPLE_RDS}og:default:aurora-postgresql-16",
        f"{SAMPLE_RDS}subgrp:default",
    ),
    "rds:CreateDBInstance": (
        f"{SAMPLE_RDS}db:patchcycle-stg-0a1b2c3d4e-1",
        f"{SAMPLE_RDS}cluster:patchcycle-stg-0a1b2c3d4e",
        f"{SAMPLE_RDS}pg:default.aurora-postgresql16",
        f"{SAMPLE_RDS}og:default:aurora-postgresql-16",
        f"{SAMPLE_RDS}subgrp:default",
    ),
    "rds:DeleteDBCluster": (f"{SAMPLE_RDS}cluster:patchcycle-stg-0a1b2c3d4e",),
    **dict.fromkeys(
        (
            "ssm:CreatePatchBaseline",
            "ssm:UpdatePatchBaseline",
            "ssm:DeletePatchBaseline",
            "ssm:RegisterPatchBaselineForPatchGroup",
            "ssm:DeregisterPatchBaselineForPatchGroup",
            "ssm:AddTagsToResource",
            "ssm:RemoveTagsFromResource",
        ),
        (f"arn:aws:ssm:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:patchbaseline/pb-0123456789abcdef0",),
    ),
    **dict.fromkeys(
        (
            "ssm:CreateDocument",
            "ssm:DescribeDocument",
            "ssm:GetDocument",
            "ssm:UpdateDocument",
            "ssm:UpdateDocumentDefaultVersion",
        ),
        RUNBOOK_DOCUMENTS,
    ),
    "ssm:StartAutomationExecution": RUNBOOK_DEFINITIONS,
    "ssm:GetAutomationExecution": (SAMPLE_EXECUTION,),
    "ssm:StopAutomationExecution": (SAMPLE_EXECUTION,),
    "ssm:GetCalendarState": (SAMPLE_CALENDAR,),
    "ec2:CreateSnapshots": (SAMPLE_INSTANCE, SAMPLE_VOLUME, SAMPLE_SNAPSHOT),
    "ec2:DeleteSnapshot": (SAMPLE_SNAPSHOT,),
    "ec2:CreateReplaceRootVolumeTask": (SAMPLE_INSTANCE, SAMPLE_VOLUME, SAMPLE_SNAPSHOT, SAMPLE_RESTORE_TASK),
    "sns:Publish": (f"arn:aws:sns:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:patch-ops",),
    "ec2:CreateLaunchTemplateVersion": (SAMPLE_LAUNCH_TEMPLATE,),
    "ec2:ModifyLaunchTemplate": (SAMPLE_LAUNCH_TEMPLATE,),
    **dict.fromkeys(
        ("autoscaling:StartInstanceRefresh", "autoscaling:CancelInstanceRefresh"),
        (
            f"arn:aws:autoscaling:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:autoScalingGroup:0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
            ":autoScalingGroupName/web-asg",
        ),
    ),
    "s3:GetBucketTagging": ("arn:aws:s3:::any-customer-bucket",),
    "s3:ListBucket": (f"arn:aws:s3:::{ARTIFACT_BUCKET}",),
    "s3:GetObject": (f"arn:aws:s3:::{ARTIFACT_BUCKET}/patch_cycle/run/inventory/target.parquet",),
    "s3:PutObject": (f"arn:aws:s3:::{ARTIFACT_BUCKET}/patch_cycle/run/inventory/target.parquet",),
    "s3:DeleteObject": (f"arn:aws:s3:::{ARTIFACT_BUCKET}/patch_cycle/run/inventory/target.parquet",),
}
# Where the resource of an action depends on the call that needs it: (action, the call's operation) -> resources.
CALL_SAMPLE_RESOURCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("ec2:CreateTags", "CreateSnapshots"): (SAMPLE_SNAPSHOT,),
    ("ec2:CreateTags", "CreateReplaceRootVolumeTask"): (SAMPLE_RESTORE_TASK,),
    ("ssm:AddTagsToResource", "CreateDocument"): RUNBOOK_DOCUMENTS,
    ("ssm:AddTagsToResource", "StartAutomationExecution"): (SAMPLE_EXECUTION,),
    ("iam:PassRole", "StartAutomationExecution"): (SAMPLE_AUTOMATION_ROLE,),
    # A refresh launches the group's instances from its launch template, tagged and with the group's role.
    ("ec2:RunInstances", "StartInstanceRefresh"): (SAMPLE_LAUNCH_TEMPLATE, *SAMPLE_RUN_INSTANCES),
    ("ec2:CreateTags", "StartInstanceRefresh"): (SAMPLE_INSTANCE, SAMPLE_VOLUME, SAMPLE_NETWORK_INTERFACE),
    ("iam:PassRole", "StartInstanceRefresh"): (SAMPLE_GROUP_ROLE,),
}
# Write actions that support no resource-level permissions, so only Resource "*" can grant them.
# Actions AWS does not scope by resource (the Service Authorization Reference lists no resource type).
WRITE_ACTIONS_WITHOUT_RESOURCES: frozenset[str] = frozenset({"ssm:CancelCommand", "cloudwatch:PutMetricData"})
READ_ONLY_VERBS = ("Describe", "List", "Get")
ARTIFACT_ACTIONS = frozenset({"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"})

BOTOCORE = botocore.session.get_session()


class ExtractionError(Exception):
    """A call the extractor cannot attribute: the test fails rather than skip it."""


@dataclass(frozen=True)
class AwsCall:
    service: str
    operation: str
    where: str
    document: str | None = None  # SendCommand's DocumentName
    tagged: bool = False  # a create call that tags what it creates (TAG_ON_CREATE)


# --- botocore: method names to operations, operations to IAM actions ------------------------------------


@cache
def operations(service: str) -> dict[str, str]:
    if service not in BOTOCORE.get_available_services():
        raise ExtractionError(f"{service!r} is not a botocore service")
    return {xform_name(name): name for name in BOTOCORE.get_service_model(service).operation_names}


@cache
def waiter_operations(service: str) -> dict[str, str]:
    model = BOTOCORE.get_waiter_model(service)
    return {xform_name(name): model.get_waiter(name).operation for name in model.waiter_names}


def operation_for(service: str, method: str, where: str) -> str:
    try:
        return operations(service)[method]
    except KeyError:
        raise ExtractionError(f"{where}: {method!r} is not an operation of the {service} client") from None


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    if (service, operation) in ACTION_OVERRIDES:
        return ACTION_OVERRIDES[(service, operation)]
    return (f"{IAM_PREFIXES.get(service, service)}:{operation}",)


def call_actions(call: AwsCall) -> tuple[str, ...]:
    """The IAM actions a call needs: its operation's, its dependent permissions, and tagging what it creates."""
    key = (call.service, call.operation)
    tagging = TAG_ON_CREATE[key] if call.tagged else ()
    return iam_actions(*key) + DEPENDENT_ACTIONS.get(key, ()) + tagging


def passes_tags(service: str, operation: str, arguments: Iterable[str], where: str) -> bool:
    """Whether a call tags what it creates; such a call needs its entry in TAG_ON_CREATE."""
    if operation in TAGGING_OPERATIONS or not TAG_ARGUMENTS & set(arguments):
        return False
    if (service, operation) not in TAG_ON_CREATE:
        raise ExtractionError(
            f"{where}: {service}:{operation} tags what it creates: add the tagging action AWS checks for it "
            "to TAG_ON_CREATE"
        )
    return True


# --- the extractor ----------------------------------------------------------------------------------------


@dataclass
class ClassInfo:
    bases: list[str]
    client_type: str | None
    methods: dict[str, ast.FunctionDef | ast.AsyncFunctionDef]


# What an expression is: ("hook", class name, service) or ("client", service, "").
Kind = tuple[str, str, str | None]


def _name_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _client_type_literal(body: Iterable[ast.AST]) -> str | None:
    """`kwargs["client_type"] = "ec2"` or `client_type="ec2"` anywhere in a class body."""
    for node in (n for stmt in body for n in ast.walk(stmt)):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.slice, ast.Constant)
                    and target.slice.value == "client_type"
                ):
                    return str(node.value.value)
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "client_type" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return None


class CallExtractor:
    """The AWS operations in a set of Python sources ({relative path: source})."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.trees = {path: ast.parse(source, filename=path) for path, source in sources.items()}
        self.classes: dict[str, ClassInfo] = {}
        self.constants: dict[str, str] = {}
        for tree in self.trees.values():
            for node in tree.body:
                if isinstance(node, ast.ClassDef):
                    self.classes[node.name] = ClassInfo(
                        bases=[name for name in map(_name_of, node.bases) if name],
                        client_type=_client_type_literal(node.body),
                        methods={
                            item.name: item
                            for item in node.body
                            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                        },
                    )
                elif (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                ):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            self.constants[target.id] = node.value.value

    # classes

    def is_hook(self, name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name in PROVIDER_HOOK_SERVICES:
            return True
        if name in NON_AWS_HOOKS:
            return False
        info = self.classes.get(name)
        if info is None or name in seen:
            if name.endswith("Hook") and info is None:
                raise ExtractionError(f"unknown hook class {name}: add it to PROVIDER_HOOK_SERVICES")
            return False
        return any(self.is_hook(base, seen | {name}) for base in info.bases)

    def hook_service(self, name: str) -> str | None:
        info = self.classes.get(name)
        if info is None:
            return PROVIDER_HOOK_SERVICES.get(name)
        if info.client_type:
            return info.client_type
        for base in info.bases:
            if self.is_hook(base) and (service := self.hook_service(base)):
                return service
        return None

    def hook_chain(self, name: str) -> Iterator[str]:
        """The class and its hook ancestors, nearest first."""
        yield name
        for base in self.classes[name].bases if name in self.classes else ():
            if self.is_hook(base):
                yield from self.hook_chain(base)

    def local_method(self, class_name: str, method: str) -> bool:
        return any(method in self.classes[c].methods for c in self.hook_chain(class_name) if c in self.classes)

    # expressions

    def kind(self, node: ast.expr, cls: str | None, env: dict[str, Kind]) -> Kind | None:
        if isinstance(node, ast.Await):
            return self.kind(node.value, cls, env)
        if isinstance(node, ast.Name):
            if node.id == "self" and cls and self.is_hook(cls):
                return ("hook", cls, None)
            return env.get(node.id)
        if isinstance(node, ast.Attribute) and node.attr in HOOK_CLIENT_ATTRIBUTES:
            owner = self.kind(node.value, cls, env)
            return self._client_of(owner) if owner and owner[0] == "hook" else None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in self.classes | PROVIDER_HOOK_SERVICES:
                if not self.is_hook(func.id):
                    return None
                literals = [k.value for k in node.keywords if k.arg == "client_type"]
                override = str(literals[0].value) if literals and isinstance(literals[0], ast.Constant) else None
                return ("hook", func.id, override)
            if isinstance(func, ast.Attribute):
                if func.attr == "client":  # boto3.client("ssm") / session.client(service_name="ssm")
                    literal = [a for a in node.args[:1] if isinstance(a, ast.Constant)] + [
                        k.value for k in node.keywords if k.arg == "service_name" and isinstance(k.value, ast.Constant)
                    ]
                    if literal and isinstance(literal[0], ast.Constant):
                        return ("client", str(literal[0].value), "")
                owner = self.kind(func.value, cls, env)
                if owner and owner[0] == "hook" and func.attr in HOOK_CLIENT_METHODS:
                    return self._client_of(owner)
                if (
                    isinstance(func.value, ast.Name)
                    and func.value.id == "self"
                    and cls in self.classes
                    and (method := self.classes[cls].methods.get(func.attr))
                    and (returned := _name_of(method.returns) if method.returns else None)
                    and (returned in self.classes or returned in PROVIDER_HOOK_SERVICES)
                    and self.is_hook(returned)
                ):
                    return ("hook", returned, None)  # def hook(self) -> PatchManagerHook
        return None

    def _client_of(self, hook: Kind) -> Kind:
        service = hook[2] or self.hook_service(hook[1])
        if not service:
            raise ExtractionError(f"{hook[1]} sets no client_type the test can read: give it a literal client_type")
        return ("client", service, "")

    @staticmethod
    def looks_like_client(node: ast.expr) -> bool:
        if isinstance(node, ast.Await):
            node = node.value
        if isinstance(node, ast.Call):
            return _name_of(node.func) in HOOK_CLIENT_METHODS
        name = _name_of(node)
        return name is not None and name.endswith(("conn", "client"))

    def bindings(self, scope: ast.AST, cls: str | None) -> dict[str, Kind]:
        env: dict[str, Kind] = {}
        for _ in range(3):  # assignments may refer to one another: settle in a few passes
            for node in ast.walk(scope):
                pairs: list[tuple[ast.expr, ast.expr | None]] = []
                if isinstance(node, ast.Assign):
                    pairs = [(t, node.value) for t in node.targets]
                elif isinstance(node, ast.AnnAssign):
                    pairs = [(node.target, node.value or node.annotation)]
                elif isinstance(node, ast.With | ast.AsyncWith):
                    pairs = [(i.optional_vars, i.context_expr) for i in node.items if i.optional_vars]
                elif isinstance(node, ast.arg) and node.annotation is not None:
                    annotation = _name_of(node.annotation)
                    known = annotation in self.classes or annotation in PROVIDER_HOOK_SERVICES
                    if annotation and known and self.is_hook(annotation):
                        env[node.arg] = ("hook", annotation, None)
                for target, value in pairs:
                    found = self.kind(value, cls, env) if value is not None else None
                    if isinstance(target, ast.Name) and found is not None:
                        env[target.id] = found
        return env

    # calls

    def calls(self) -> list[AwsCall]:
        found: list[AwsCall] = []
        for path, tree in self.trees.items():
            module_level = ast.Module(
                body=[n for n in tree.body if not isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)],
                type_ignores=[],
            )
            scopes: list[tuple[ast.AST, str | None]] = [(module_level, None)]
            for node in tree.body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    scopes.append((node, None))
                elif isinstance(node, ast.ClassDef):
                    scopes.extend((item, node.name) for item in node.body)
            for scope, cls in scopes:
                found.extend(self._scope_calls(path, scope, cls))
            found.extend(self._object_storage_calls(path, tree))
            found.extend(self._notifier_calls(path, tree))
            found.extend(self._waiter_trigger_calls(path, tree))
        return found

    def _waiter_trigger_calls(self, path: str, tree: ast.Module) -> Iterator[AwsCall]:
        """A waiter trigger's waiters run in the provider's base class: `aws_hook_class` names the client."""
        for node in tree.body:
            if not (isinstance(node, ast.ClassDef) and WAITER_TRIGGER_BASES & set(map(_name_of, node.bases))):
                continue
            where = f"{path}:{node.lineno}"
            hook = next(
                (
                    _name_of(item.value)
                    for item in node.body
                    if isinstance(item, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "aws_hook_class" for t in item.targets)
                ),
                None,
            )
            if not hook or not self.is_hook(hook):
                raise ExtractionError(
                    f"{where}: {node.name} runs a waiter but sets no aws_hook_class the test can read"
                )
            service = self._client_of(("hook", hook, None))[1]
            waiters = waiter_operations(service)
            named = sorted(
                {
                    n.value
                    for n in ast.walk(tree)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in waiters
                }
            )
            if not named:
                raise ExtractionError(f"{where}: {node.name} names no {service} waiter literally in its module")
            for waiter in named:
                yield AwsCall(service, waiters[waiter], f"{where} (waiter {waiter})")

    def _scope_calls(self, path: str, scope: ast.AST, cls: str | None) -> Iterator[AwsCall]:
        env = self.bindings(scope, cls)
        for node in ast.walk(scope):
            where = f"{path}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute) and node.attr in INDIRECT_ATTRIBUTES:
                for service, operation in INDIRECT_ATTRIBUTES[node.attr]:
                    yield AwsCall(service, operation, where)
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver, method = node.func.value, node.func.attr
            kind = self.kind(receiver, cls, env)
            if kind is None and self.looks_like_client(receiver):
                if path not in FILE_SERVICES:
                    raise ExtractionError(
                        f"{where}: cannot tell which AWS service {ast.unparse(receiver)} talks to; "
                        "create it from a hook with a client_type, or add the file to FILE_SERVICES"
                    )
                kind = ("client", FILE_SERVICES[path], "")
            if kind is None:
                continue
            if kind[0] == "client":
                yield from self._client_call(kind[1], method, node, where)
            else:
                yield from self._hook_call(kind[1], method, where)

    def _client_call(self, service: str, method: str, node: ast.Call, where: str) -> Iterator[AwsCall]:
        if method in ("get_paginator", "get_waiter"):
            argument = node.args[0] if node.args else None
            if not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
                raise ExtractionError(f"{where}: {method} needs a literal operation name")
            if method == "get_paginator":
                yield AwsCall(service, operation_for(service, argument.value, where), where)
            else:
                waiters = waiter_operations(service)
                if argument.value not in waiters:
                    raise ExtractionError(f"{where}: {argument.value!r} is not a waiter of the {service} client")
                yield AwsCall(service, waiters[argument.value], where)
        elif method in CLIENT_NON_OPERATIONS:
            return
        elif service == "s3" and method in S3_TRANSFER_HELPERS:
            yield from (AwsCall(service, operation, where) for operation in S3_TRANSFER_HELPERS[method])
        else:
            operation = operation_for(service, method, where)
            document = None
            if operation == "SendCommand":
                document = self._document(node, where)
            tagged = passes_tags(service, operation, (k.arg for k in node.keywords if k.arg), where)
            yield AwsCall(service, operation, where, document, tagged)

    def _document(self, node: ast.Call, where: str) -> str:
        value = next((k.value for k in node.keywords if k.arg == "DocumentName"), None)
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
        name = _name_of(value) if value is not None else None
        if name in self.constants:
            return self.constants[name]
        raise ExtractionError(f"{where}: SendCommand's DocumentName must be a literal or a module constant")

    def _hook_call(self, hook: str, method: str, where: str) -> Iterator[AwsCall]:
        if method in HOOK_CLIENT_METHODS or method in HOOK_SAFE_METHODS or self.local_method(hook, method):
            return
        for cls in self.hook_chain(hook):
            if f"{cls}.{method}" in PROVIDER_METHOD_CALLS:
                for service, operation in PROVIDER_METHOD_CALLS[f"{cls}.{method}"]:
                    yield AwsCall(service, operation, where)
                return
        raise ExtractionError(
            f"{where}: {hook}.{method}() is the provider's and calls AWS where this test cannot see: "
            "add what it calls to PROVIDER_METHOD_CALLS"
        )

    def _notifier_calls(self, path: str, tree: ast.Module) -> Iterator[AwsCall]:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name_of(node.func) in PROVIDER_NOTIFIER_CALLS:
                for service, operation in PROVIDER_NOTIFIER_CALLS[str(_name_of(node.func))]:
                    yield AwsCall(service, operation, f"{path}:{node.lineno} ({_name_of(node.func)})")

    def _object_storage_calls(self, path: str, tree: ast.Module) -> Iterator[AwsCall]:
        uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "ObjectStoragePath"]
        if not uses:
            return
        yield from (AwsCall(s, o, f"{path}:{uses[0].lineno} (ObjectStoragePath)") for s, o in OBJECT_STORAGE_CALLS)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                for service, operation in OBJECT_STORAGE_METHODS.get(node.func.attr, ()):
                    yield AwsCall(service, operation, f"{path}:{node.lineno} (ObjectStoragePath.{node.func.attr})")


def package_sources(root: Path = REPO) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text()
        for directory in SOURCE_DIRS
        for path in sorted((root / directory).rglob("*.py"))
    }


def extract_calls(sources: dict[str, str]) -> list[AwsCall]:
    return CallExtractor(sources).calls()


# --- the CloudFormation templates: what CloudFormation does with the caller's permissions -----------------


def template_calls(root: Path = REPO) -> list[AwsCall]:
    """The IAM actions the resources of the templates in include/cloudformation/ need, as calls "made" there.

    The call's service is the action's IAM prefix and its operation the action's name (iam_actions maps it back
    to the same action). A resource type without a TEMPLATE_RESOURCE_ACTIONS entry raises ExtractionError.
    """
    found: list[AwsCall] = []
    paths = sorted(p for p in (root / TEMPLATE_DIR).glob("*") if p.suffix in TEMPLATE_SUFFIXES)
    for path in paths:
        where = str(path.relative_to(root))
        template = yaml.safe_load(path.read_text())  # long-form intrinsics only: plain YAML (or JSON)
        resources = template.get("Resources") if isinstance(template, dict) else None
        if not isinstance(resources, dict) or not resources:
            raise ExtractionError(f"{where}: a CloudFormation template needs a Resources mapping")
        for logical_id, resource in resources.items():
            kind = resource.get("Type") if isinstance(resource, dict) else None
            if kind not in TEMPLATE_RESOURCE_ACTIONS:
                raise ExtractionError(
                    f"{where}: resource {logical_id} has type {kind}, which TEMPLATE_RESOURCE_ACTIONS does not list: "
                    "add the IAM actions CloudFormation needs to create and delete it with the role's permissions"
                )
            for action in TEMPLATE_RESOURCE_ACTIONS[kind]:
                prefix, name = action.split(":")
                found.append(AwsCall(prefix, name, f"{where} ({logical_id}: {kind})"))
    return found


# --- the Automation runbooks: what their steps call, with the DAGs' role when AutomationAssumeRole is empty ----


def runbook_calls(root: Path = REPO, *, unregistered: bool = False) -> list[AwsCall]:
    """The AWS calls the steps of the runbooks in include/automation/ make, as calls "made" there (those of
    UNREGISTERED_RUNBOOKS only with `unregistered`).

    A Service + Api step is mapped through botocore like a call in the code; aws:runCommand is SendCommand of its
    DocumentName plus RUN_COMMAND_FOLLOW_UP. A step whose action is not known raises ExtractionError naming it.
    """
    found: list[AwsCall] = []
    paths = sorted(
        p
        for p in (root / AUTOMATION_DIR).glob("*")
        if p.suffix in RUNBOOK_SUFFIXES and (unregistered or p.stem not in UNREGISTERED_RUNBOOKS)
    )
    for path in paths:
        where = str(path.relative_to(root))
        runbook = yaml.safe_load(path.read_text())
        steps = runbook.get("mainSteps") if isinstance(runbook, dict) else None
        if not isinstance(steps, list) or not steps:
            raise ExtractionError(f"{where}: an Automation runbook needs a mainSteps list")
        for step in steps:
            found.extend(_step_calls(where, step if isinstance(step, dict) else {}))
    return found


def _step_calls(path: str, step: dict[str, Any]) -> Iterator[AwsCall]:
    action, inputs = step.get("action"), step.get("inputs") or {}
    where = f"{path} (step {step.get('name')}: {action})"
    if not isinstance(inputs, dict):
        raise ExtractionError(f"{where}: a step's inputs must be a mapping")
    if action in STEP_ACTIONS_WITHOUT_CALLS:
        return
    if action in API_STEP_ACTIONS:
        service, api = inputs.get("Service"), inputs.get("Api")
        if not (isinstance(service, str) and isinstance(api, str)) or "{{" in service + api:
            raise ExtractionError(f"{where}: Service and Api must be literal names the test can map to an action")
        operation = _runbook_operation(service, api, where)
        yield AwsCall(service, operation, where, tagged=passes_tags(service, operation, inputs, where))
    elif action == RUN_COMMAND_ACTION:
        document = inputs.get("DocumentName")
        if not isinstance(document, str) or "{{" in document:
            raise ExtractionError(f"{where}: aws:runCommand's DocumentName must be a literal document name")
        yield AwsCall("ssm", "SendCommand", where, document)
        yield from (AwsCall(service, operation, where) for service, operation in RUN_COMMAND_FOLLOW_UP)
    else:
        raise ExtractionError(
            f"{where}: step action {action!r} is not one the test knows: add it to API_STEP_ACTIONS, "
            "STEP_ACTIONS_WITHOUT_CALLS or a table of what it calls"
        )


def _runbook_operation(service: str, api: str, where: str) -> str:
    """A step's Api, as botocore names the operation (Automation accepts the API name or the boto3 method name)."""
    known = operations(service)
    if api in known.values():
        return api
    if api in known:
        return known[api]
    raise ExtractionError(f"{where}: {api!r} is not an operation of the {service} API")


def needed_calls(root: Path = REPO) -> list[AwsCall]:
    """Everything the policy must allow: the code's calls, the templates' resources and the runbooks' steps."""
    return extract_calls(package_sources(root)) + template_calls(root) + runbook_calls(root)


# --- the policy -------------------------------------------------------------------------------------------


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _matches(pattern: str, value: str) -> bool:
    """IAM wildcards: * any run of characters (across ARN segments), ? one character."""
    return fnmatch.fnmatchcase(value, pattern)


def allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    return any(
        statement["Effect"] == "Allow"
        and any(_matches(p.lower(), action.lower()) for p in _as_list(statement["Action"]))
        and any(_matches(p, resource) for p in _as_list(statement["Resource"]))
        for statement in policy["Statement"]
    )


def required_actions(calls: Iterable[AwsCall]) -> dict[str, list[AwsCall]]:
    needed: dict[str, list[AwsCall]] = {}
    for call in calls:
        for action in call_actions(call):
            needed.setdefault(action, []).append(call)
    return needed


def document_arn(name: str) -> str:
    owner = "" if name.startswith("AWS-") else SAMPLE_ACCOUNT  # AWS-owned documents have no account
    return f"arn:aws:ssm:{SAMPLE_REGION}:{owner}:document/{name}"


def sample_resources(action: str, calls: list[AwsCall]) -> tuple[str, ...]:
    if action == "ssm:SendCommand":
        return (*sorted({document_arn(c.document) for c in calls if c.document}), SAMPLE_INSTANCE)
    default = SAMPLE_RESOURCES.get(action, ("*",))
    return tuple(dict.fromkeys(r for c in calls for r in CALL_SAMPLE_RESOURCES.get((action, c.operation), default)))


def policy_gaps(policy: dict[str, Any], calls: Iterable[AwsCall]) -> list[str]:
    """What the code calls that the policy does not allow."""
    gaps = []
    for action, by in sorted(required_actions(calls).items()):
        for resource in sample_resources(action, by):
            if not allows(policy, action, resource):
                gaps.append(f"{action} on {resource} (called at {', '.join(sorted({c.where for c in by}))})")
    return gaps


def policy_excess(policy: dict[str, Any], calls: Iterable[AwsCall]) -> list[str]:
    """What the policy allows that no code calls."""
    needed = {action.lower() for action in required_actions(calls)}
    return sorted(
        f"{statement.get('Sid')}: {action}"
        for statement in policy["Statement"]
        for action in _as_list(statement["Action"])
        if action.lower() not in needed
    )


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(POLICY_PATH.read_text())
    return document


@pytest.fixture(scope="module")
def calls() -> list[AwsCall]:
    return extract_calls(package_sources())


@pytest.fixture(scope="module")
def needed(calls: list[AwsCall]) -> list[AwsCall]:
    return calls + template_calls() + runbook_calls()


# --- the policy document ----------------------------------------------------------------------------------


def test_policy_is_a_well_formed_identity_policy(policy: dict[str, Any]) -> None:
    assert_well_formed(policy)


def assert_well_formed(policy: dict[str, Any]) -> None:
    assert set(policy) == {"Version", "Statement"}
    assert policy["Version"] == "2012-10-17"
    assert isinstance(policy["Statement"], list) and policy["Statement"]
    sids = [statement.get("Sid") for statement in policy["Statement"]]
    assert len(set(sids)) == len(sids), f"duplicate Sids: {sids}"
    for statement in policy["Statement"]:
        assert set(statement) - {"Condition"} == {"Sid", "Effect", "Action", "Resource"}, statement
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"]), f"IAM Sids are alphanumeric: {statement['Sid']}"
        assert statement["Effect"] == "Allow"
        assert isinstance(statement["Action"], list) and statement["Action"], statement["Sid"]
        assert statement["Action"] == sorted(statement["Action"]), f"{statement['Sid']}: keep actions sorted"
        assert all(re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", a) for a in statement["Action"]), statement["Action"]
        assert len({a.split(":")[0] for a in statement["Action"]}) == 1, f"{statement['Sid']}: one service each"
        resources = _as_list(statement["Resource"])
        assert resources and all(r == "*" or r.startswith("arn:aws:") for r in resources), statement["Sid"]


def test_policy_has_no_wildcard_actions(policy: dict[str, Any]) -> None:
    wildcards = [a for s in policy["Statement"] for a in _as_list(s["Action"]) if "*" in a or "?" in a]
    assert not wildcards, f"name every action explicitly: {wildcards}"


# --- policy against code ----------------------------------------------------------------------------------


def test_policy_allows_every_call_the_code_makes(policy: dict[str, Any], needed: list[AwsCall]) -> None:
    gaps = policy_gaps(policy, needed)
    assert not gaps, "the code calls AWS beyond include/iam/patchcycle-policy.json:\n" + "\n".join(gaps)


def test_policy_allows_nothing_the_code_does_not_call(policy: dict[str, Any], needed: list[AwsCall]) -> None:
    excess = policy_excess(policy, needed)
    assert not excess, "the policy allows actions nothing needs (least privilege):\n" + "\n".join(excess)


def test_writes_are_scoped_to_resources(policy: dict[str, Any]) -> None:
    broad = [
        f"{s['Sid']}: {action}"
        for s in policy["Statement"]
        for action in _as_list(s["Action"])
        if not action.split(":")[1].startswith(READ_ONLY_VERBS)
        and action not in WRITE_ACTIONS_WITHOUT_RESOURCES
        and "*" in _as_list(s["Resource"])
    ]
    assert not broad, f"write actions granted on Resource '*': {broad}"


def test_send_command_runs_only_the_documents_the_code_sends(policy: dict[str, Any], needed: list[AwsCall]) -> None:
    """The documents the code sends and the runbooks' aws:runCommand steps send, and no other."""
    documents = {c.document for c in needed if c.operation == "SendCommand"}
    assert documents, "the extractor found no SendCommand"
    for statement in policy["Statement"]:
        if "ssm:SendCommand" not in statement["Action"]:
            continue
        for resource in _as_list(statement["Resource"]):
            if ":document/" in resource:
                name = resource.split(":document/")[1]
                assert name in documents, f"{statement['Sid']}: SendCommand allowed for unused document {resource}"
            else:
                assert re.fullmatch(r"arn:aws:ec2:\*:\*:instance/\*", resource), f"unexpected target {resource}"
    for unused in ("AWS-RunShellScript", "AWS-RunPowerShellScript", "AWS-RunRemoteScript"):
        if unused not in documents:
            assert not allows(policy, "ssm:SendCommand", document_arn(unused)), f"{unused} must not be allowed"


def test_artifact_access_is_limited_to_the_artifact_bucket(policy: dict[str, Any]) -> None:
    for statement in policy["Statement"]:
        if ARTIFACT_ACTIONS & set(_as_list(statement["Action"])):
            for resource in _as_list(statement["Resource"]):
                assert resource in (f"arn:aws:s3:::{ARTIFACT_BUCKET}", f"arn:aws:s3:::{ARTIFACT_BUCKET}/*"), (
                    f"{statement['Sid']}: artifact access beyond the artifact bucket: {resource}"
                )
    assert not allows(policy, "s3:GetObject", "arn:aws:s3:::any-customer-bucket/secrets.txt")
    assert not allows(policy, "s3:PutObject", "arn:aws:s3:::any-customer-bucket/x")


def test_every_aws_call_label_names_a_call_the_code_makes(calls: list[AwsCall]) -> None:
    """The operators' aws_call("svc:Operation", ...) labels cross-check the extractor from a second source."""
    made = {f"{c.service}:{c.operation}" for c in calls}
    labels = {
        f"{path}:{node.lineno}": node.args[0].value
        for path, source in package_sources().items()
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and _name_of(node.func) == "aws_call"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert labels, "no aws_call labels found"
    unknown = {where: label for where, label in labels.items() if label not in made}
    assert not unknown, f"aws_call labels naming calls the extractor did not find: {unknown}"


def test_extractor_finds_the_known_calls(calls: list[AwsCall]) -> None:
    """A floor, so an extractor that silently finds nothing cannot pass the policy checks."""
    found = {f"{c.service}:{c.operation}" for c in calls}
    assert {
        "ec2:DescribeInstances",
        "rds:DescribeDBInstances",
        "rds:DescribePendingMaintenanceActions",
        "s3:ListBuckets",
        "s3:GetBucketTagging",
        "ssm:DescribeInstanceInformation",
        "ssm:SendCommand",
        "ssm:ListCommands",
        "ssm:ListCommandInvocations",
        "ssm:DescribeInstancePatchStates",
        "ssm:DescribeInstancePatches",
        "sts:GetCallerIdentity",
        "s3:GetObject",
        "s3:PutObject",
        "cloudformation:CreateStack",
        "cloudformation:DescribeStacks",
        "cloudformation:DescribeStackResources",
        "cloudformation:DescribeStackEvents",
        "cloudformation:DeleteStack",
    } <= found
    trigger_calls = {c.operation for c in calls if c.where.startswith("plugins/patchcycle/triggers/")}
    assert "ListCommands" in trigger_calls, "the triggerer's async client calls must be found too"
    waiter_calls = {c.where.split(" (waiter ")[1] for c in calls if " (waiter " in c.where}
    assert {"stack_create_complete)", "stack_delete_complete)"} <= waiter_calls, "the waiter triggers' waiters"
    documents = {c.document for c in calls if c.operation == "SendCommand"}
    assert documents == {"AWS-RunPatchBaseline", "AWS-RunShellScript", "AWS-RunPowerShellScript"}, documents


# --- the extractor is a guard: it sees new calls and refuses what it cannot attribute ---------------------


def _ops(source: str) -> set[str]:
    return {f"{c.service}:{c.operation}" for c in extract_calls({"example.py": source})}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "class H(AwsBaseHook):\n"
            "    def __init__(self, **kw):\n"
            "        kw['client_type'] = 'ec2'\n"
            "        super().__init__(**kw)\n"
            "    def images(self):\n"
            "        return self.conn.describe_images()\n",
            {"ec2:DescribeImages"},
        ),
        (
            "class H(RdsHook):\n"
            "    def go(self):\n"
            "        self.get_conn().get_paginator('describe_db_clusters').paginate()\n"
            "        self.get_conn().get_waiter('db_instance_available').wait()\n",
            {"rds:DescribeDBClusters", "rds:DescribeDBInstances"},
        ),
        (
            "class T(BaseTrigger):\n"
            "    async def run(self):\n"
            "        hook = SsmHook(aws_conn_id=None)\n"
            "        async with await hook.get_async_conn() as client:\n"
            "            await client.cancel_command(CommandId='x')\n",
            {"ssm:CancelCommand"},
        ),
        (
            "class Op(BaseOperator):\n"
            "    def hook(self) -> S3Hook:\n"
            "        return S3Hook()\n"
            "    def execute(self, context):\n"
            "        self.hook().conn.delete_objects(Bucket='b', Delete={})\n"
            "        boto3.client('inspector2').list_findings()\n"
            "        return AwsBaseHook(client_type='securityhub').conn.batch_import_findings(Findings=[])\n",
            {"s3:DeleteObjects", "inspector2:ListFindings", "securityhub:BatchImportFindings"},
        ),
        (
            "def summary(hook: SsmHook):\n    return hook.account_id\n",
            {"sts:GetCallerIdentity"},
        ),
        (
            "from airflow.sdk import ObjectStoragePath\ndef drop(uri):\n    ObjectStoragePath(uri).unlink()\n",
            {"s3:HeadBucket", "s3:HeadObject", "s3:ListObjectsV2", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
        ),
        (
            "WAITERS = ('stack_create_complete', 'stack_delete_complete')\n"
            "class T(AwsBaseWaiterTrigger):\n"
            "    aws_hook_class = CloudFormationHook\n",
            {"cloudformation:DescribeStacks"},
        ),
        ("def plain(items):\n    return items.count(1)\n", set()),
    ],
)
def test_extractor_on_sources(source: str, expected: set[str]) -> None:
    assert _ops(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("class H(MysteryHook):\n    def f(self):\n        self.conn.describe_images()\n", "unknown hook class"),
        ("class H(SsmHook):\n    def f(self):\n        self.conn.describe_everything()\n", "not an operation"),
        ("def f(client):\n    client.describe_instances()\n", "cannot tell which AWS service"),
        ("def f(hook: SsmHook):\n    hook.get_command_invocation('c', 'i')\n", "PROVIDER_METHOD_CALLS"),
        ("class H(SsmHook):\n    def f(self, d):\n        self.conn.send_command(DocumentName=d)\n", "DocumentName"),
        ("class H(AwsBaseHook):\n    def f(self):\n        self.conn.list_things()\n", "no client_type"),
        ("class T(AwsBaseWaiterTrigger):\n    pass\n", "sets no aws_hook_class"),
        ("class T(AwsBaseWaiterTrigger):\n    aws_hook_class = SsmHook\n", "names no ssm waiter"),
    ],
)
def test_extractor_refuses_what_it_cannot_attribute(source: str, message: str) -> None:
    with pytest.raises(ExtractionError, match=message):
        extract_calls({"example.py": source})


def test_a_new_boto3_call_fails_the_policy_check(policy: dict[str, Any], tmp_path: Path) -> None:
    """Add a call to a copy of the package: the unchanged policy no longer covers the code."""
    for directory in SOURCE_DIRS:
        shutil.copytree(REPO / directory, tmp_path / directory, ignore=shutil.ignore_patterns("__pycache__"))
    hook_file = tmp_path / "plugins" / "patchcycle" / "hooks" / "patch_manager.py"
    hook_file.write_text(
        hook_file.read_text()
        + "\n\nclass InventoryReadingHook(PatchManagerHook):\n"
        + "    def inventory(self) -> None:\n"
        + "        self.conn.get_inventory()\n"
    )
    calls = extract_calls(package_sources(tmp_path)) + template_calls() + runbook_calls()
    assert not policy_excess(policy, calls)
    gaps = policy_gaps(policy, calls)
    assert len(gaps) == 1 and gaps[0].startswith("ssm:GetInventory on *"), gaps


def test_an_unused_action_fails_the_least_privilege_check(policy: dict[str, Any], needed: list[AwsCall]) -> None:
    broader = json.loads(json.dumps(policy))
    broader["Statement"][0]["Action"].append("ec2:RebootInstances")
    assert policy_excess(broader, needed) == [f"{broader['Statement'][0]['Sid']}: ec2:RebootInstances"]


# --- the CloudFormation templates -------------------------------------------------------------------------


def test_template_resources_need_their_actions() -> None:
    """A floor: the staging template's instance brings in what CloudFormation does to launch and delete it."""
    needs = {f"{c.service}:{c.operation}": c.where for c in template_calls()}
    assert set(TEMPLATE_RESOURCE_ACTIONS["AWS::EC2::Instance"]) <= set(needs), needs
    assert needs["ec2:RunInstances"] == "include/cloudformation/staging.yaml (StagingInstance: AWS::EC2::Instance)"


def test_template_resource_actions_are_real_actions() -> None:
    for kind, actions in TEMPLATE_RESOURCE_ACTIONS.items():
        assert list(actions) == sorted(actions), f"{kind}: keep actions sorted"
        for action in actions:
            prefix, name = action.split(":")
            assert action in PERMISSION_ONLY_ACTIONS or name in operations(prefix).values(), f"{kind}: {action}"
            assert iam_actions(prefix, name) == (action,), f"{kind}: {action} must map to itself"


def test_a_template_resource_type_without_actions_fails(tmp_path: Path) -> None:
    templates = tmp_path / TEMPLATE_DIR
    templates.mkdir(parents=True)
    shutil.copy(REPO / TEMPLATE_DIR / "staging.yaml", templates / "staging.yaml")
    (templates / "logs.yaml").write_text(
        "Resources:\n  RunLogs:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: run-logs\n"
    )
    with pytest.raises(ExtractionError, match=r"logs\.yaml: resource RunLogs has type AWS::S3::Bucket"):
        template_calls(tmp_path)


def test_the_staging_permissions_stay_on_staging_resources(policy: dict[str, Any]) -> None:
    """Stacks other than the staging stacks, and roles other than the staging instance role, are out of reach."""
    other_stack = f"arn:aws:cloudformation:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:stack/production-network/0f1e2d3c"
    for action in ("cloudformation:CreateStack", "cloudformation:DeleteStack", "cloudformation:DescribeStacks"):
        assert allows(policy, action, SAMPLE_STACK), action
        assert not allows(policy, action, other_stack), f"{action} on a stack that is not a staging stack"
    assert not allows(policy, "iam:PassRole", f"arn:aws:iam::{SAMPLE_ACCOUNT}:role/OrganizationAccountAccessRole")
    for action in ("ec2:CreateTags", "ec2:TerminateInstances"):
        assert not allows(policy, action, f"arn:aws:ec2:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:security-group/sg-1"), action


def test_provider_hook_table_matches_the_provider() -> None:
    from airflow.providers.amazon.aws.hooks import cloud_formation, rds, s3, ssm, sts

    modules = [ssm, rds, s3, sts, cloud_formation]
    for name, service in PROVIDER_HOOK_SERVICES.items():
        if service is None:
            continue
        hook_class = next(getattr(m, name) for m in modules if hasattr(m, name))
        assert hook_class(aws_conn_id=None).client_type == service, name


# Conditions narrow what resource ARNs cannot: which instances the role may launch, tag and terminate.
# The AMI builders PatchCycle-BakeAmi launches are the other instances the role may stop, image and terminate.
STAGING_CONDITIONS = {
    "ec2:TerminateInstances": [
        {"StringEquals": {"aws:ResourceTag/patchcycle:role": "staging"}},
        {"StringEquals": {"aws:ResourceTag/patchcycle:role": "ami-builder"}},
    ],
    "ec2:StopInstances": [{"StringEquals": {"aws:ResourceTag/patchcycle:role": "ami-builder"}}],
    "ec2:CreateImage": [{"StringEquals": {"aws:ResourceTag/patchcycle:role": "ami-builder"}}],
    "ec2:CreateTags": [{"StringEquals": {"ec2:CreateAction": "RunInstances"}}],
}


def _statements_on(policy: dict[str, Any], action: str, resource: str) -> list[dict[str, Any]]:
    """The statements that allow `action` on `resource` (whatever their conditions)."""
    return [
        s
        for s in policy["Statement"]
        if action in s["Action"] and any(_matches(pattern, resource) for pattern in _as_list(s["Resource"]))
    ]


def test_staging_instances_are_the_only_instances_the_role_can_terminate_or_retag(policy: dict[str, Any]) -> None:
    for action, condition in STAGING_CONDITIONS.items():
        statements = _statements_on(policy, action, SAMPLE_INSTANCE)
        assert statements and all(s.get("Condition") in condition for s in statements), (action, statements)
    tagging = [s for s in policy["Statement"] if "ec2:CreateTags" in s["Action"]]
    assert all(set(s.get("Condition", {}).get("StringEquals", {})) == {"ec2:CreateAction"} for s in tagging), (
        "ec2:CreateTags only as part of a create call: the role never retags an existing resource"
    )
    assert not unconditioned_launches(policy), unconditioned_launches(policy)


# The conditions an instance launch may have: tagged as a staging replica or an AMI builder, or through a launch
# template (an instance refresh launches the group's instances from the group's template; which templates is bounded
# by LAUNCH_TEMPLATE_CONDITION on the template itself).
LAUNCH_ROLE_CONDITIONS = [
    {"StringEquals": {"aws:RequestTag/patchcycle:role": role}} for role in ("staging", "ami-builder")
]
THROUGH_LAUNCH_TEMPLATE = {
    "ArnLike": {"ec2:LaunchTemplate": "arn:aws:ec2:*:*:launch-template/*"},
    "Bool": {"ec2:IsLaunchTemplateResource": "true"},
}
LAUNCH_TEMPLATE_CONDITION = {"Null": {"aws:ResourceTag/PatchGroup": "false"}}


def unconditioned_launches(policy: dict[str, Any]) -> list[str]:
    """The statements that let the role launch an instance other than as a staging replica, an AMI builder, or from a
    launch template tagged PatchGroup."""
    launches = [s for s in policy["Statement"] if "ec2:RunInstances" in s["Action"]]
    wrong = [
        s["Sid"]
        for s in launches
        if any(_matches(r, SAMPLE_INSTANCE) for r in _as_list(s["Resource"]))
        and s.get("Condition") not in [*LAUNCH_ROLE_CONDITIONS, THROUGH_LAUNCH_TEMPLATE]
    ]
    templates = [s for s in launches if any(_matches(r, SAMPLE_LAUNCH_TEMPLATE) for r in _as_list(s["Resource"]))]
    wrong += [s["Sid"] for s in templates if s.get("Condition") != LAUNCH_TEMPLATE_CONDITION]
    instance = [s for s in launches if any(_matches(r, SAMPLE_INSTANCE) for r in _as_list(s["Resource"]))]
    if any(s.get("Condition") == THROUGH_LAUNCH_TEMPLATE for s in instance) and not templates:
        wrong.append("a launch through a launch template with no statement bounding the templates")
    return list(dict.fromkeys(wrong))  # a statement on instances and templates alike is named once


def test_instance_refreshes_launch_only_through_patch_group_launch_templates(
    policy: dict[str, Any], needed: list[AwsCall]
) -> None:
    """A refresh launches the group's instances through the group's launch template: the role may launch from
    templates tagged PatchGroup only, and on the launch's other resources only as the template names them."""
    refresh = [c for c in needed if (c.service, c.operation) == ("autoscaling", "StartInstanceRefresh")]
    assert refresh and "ec2:RunInstances" in call_actions(refresh[0]), "the refresh's launch is derived from the call"
    assert allows(policy, "ec2:RunInstances", SAMPLE_LAUNCH_TEMPLATE)
    through = [s for s in _statements_on(policy, "ec2:RunInstances", SAMPLE_INSTANCE) if "ArnLike" in s["Condition"]]
    assert through and all(s["Condition"] == THROUGH_LAUNCH_TEMPLATE for s in through), through
    passes = _statements_on(policy, "iam:PassRole", SAMPLE_GROUP_ROLE)
    assert passes and all(
        s.get("Condition") == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}} for s in passes
    ), passes
    assert not allows(policy, "iam:PassRole", f"arn:aws:iam::{SAMPLE_ACCOUNT}:role/production-web")


@pytest.mark.parametrize(
    "statement",
    [
        # a launch of any instance, whatever its tags or template
        {"Sid": "Anything", "Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": "arn:aws:ec2:*:*:*"},
        # any launch template, tagged or not
        {"Sid": "AnyTemplate", "Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": SAMPLE_LAUNCH_TEMPLATE},
        # instances launched through a template but free to override what it names
        {
            "Sid": "Overridable",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances"],
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {"ArnLike": {"ec2:LaunchTemplate": "arn:aws:ec2:*:*:launch-template/*"}},
        },
    ],
)
def test_an_unconditioned_launch_fails_the_check(policy: dict[str, Any], statement: dict[str, Any]) -> None:
    widened = {**policy, "Statement": [*policy["Statement"], statement]}
    assert unconditioned_launches(widened) == [statement["Sid"]]


def test_the_staging_template_tags_its_instances_as_the_conditions_expect() -> None:
    template = yaml.safe_load((REPO / "include" / "cloudformation" / "staging.yaml").read_text())
    tags = {t["Key"]: t["Value"] for t in template["Resources"]["StagingInstance"]["Properties"]["Tags"]}
    assert tags["patchcycle:role"] == "staging"


# --- the Automation runbooks ------------------------------------------------------------------------------

IAM_README = REPO / "include" / "iam" / "README.md"
MANAGED = {MANAGED_TAG[0]: MANAGED_TAG[1]}


def _runbook_path(root: Path, name: str) -> Path:
    return root / AUTOMATION_DIR / f"{name}.yaml"


def _copy_runbooks(tmp_path: Path) -> Path:
    shutil.copytree(REPO / AUTOMATION_DIR, tmp_path / AUTOMATION_DIR)
    return tmp_path


def _add_step(root: Path, runbook: str, step: dict[str, Any]) -> None:
    path = _runbook_path(root, runbook)
    document = yaml.safe_load(path.read_text())
    document["mainSteps"].append(step)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_the_runbook_files_are_the_runbooks_the_code_registers() -> None:
    names = {p.stem for p in (REPO / AUTOMATION_DIR).glob("*") if p.suffix in RUNBOOK_SUFFIXES}
    assert names == set(RUNBOOKS) | UNREGISTERED_RUNBOOKS, names
    assert not UNREGISTERED_RUNBOOKS & set(RUNBOOKS)
    assert all(name.startswith(RUNBOOK_PREFIX) for name in names)


def test_the_bake_runbooks_steps_are_derived_like_the_others() -> None:
    """PatchCycle-BakeAmi (the Auto Scaling groups' immutable path) is registered: each of its steps maps to the
    action the DAGs' role needs, the tagged creates included."""
    bake = [c for c in runbook_calls() if "PatchCycle-BakeAmi" in c.where]
    assert {f"{c.service}:{c.operation}" for c in bake} >= {
        "ec2:RunInstances",
        "ec2:DescribeInstances",
        "ec2:StopInstances",
        "ec2:CreateImage",
        "ec2:DescribeImages",
        "ec2:TerminateInstances",
        "ssm:DescribeInstanceInformation",
        "ssm:DescribeInstancePatches",
        "ssm:SendCommand",
    }
    assert {c.operation for c in bake if c.tagged} == {"RunInstances", "CreateImage"}
    assert {c.document for c in bake if c.document} == {
        "AWS-RunPatchBaseline",
        "AWS-RunShellScript",
        "AWS-RunPowerShellScript",
    }


def test_runbook_steps_need_their_actions() -> None:
    """A floor, derived from the YAML: what the wave's three runbooks' steps call with the DAGs' role."""
    calls = [c for c in runbook_calls() if "PatchCycle-BakeAmi" not in c.where]
    assert {f"{c.service}:{c.operation}" for c in calls} == {
        "ec2:CreateSnapshots",
        "ec2:DescribeSnapshots",
        "ec2:DescribeInstances",
        "ec2:DescribeVolumes",
        "ec2:CreateReplaceRootVolumeTask",
        "ec2:DescribeReplaceRootVolumeTasks",
        "ssm:DescribeInstanceInformation",
        "ssm:DescribeInstancePatchStates",
        "ssm:SendCommand",
        "ssm:ListCommands",
        "ssm:ListCommandInvocations",
        "ssm:GetCommandInvocation",
    }
    assert {c.document for c in calls if c.operation == "SendCommand"} == {
        "AWS-RunShellScript",
        "AWS-RunPowerShellScript",
    }
    tagging = {c.operation: c.where for c in calls if c.tagged}
    assert set(tagging) == {"CreateSnapshots", "CreateReplaceRootVolumeTask"}, tagging
    assert "ec2:CreateTags" in required_actions(calls)
    snapshot = "include/automation/PatchCycle-PrePatchSnapshot.yaml (step createSnapshots: aws:executeAwsApi)"
    assert tagging["CreateSnapshots"] == snapshot


def test_tagging_and_dependent_actions_are_real_actions() -> None:
    for key, actions in {**TAG_ON_CREATE, **DEPENDENT_ACTIONS}.items():
        assert key[1] in operations(key[0]).values(), key
        for action in actions:
            prefix, name = action.split(":")
            assert action in PERMISSION_ONLY_ACTIONS or name in operations(prefix).values(), (key, action)


@pytest.mark.parametrize(
    ("runbook", "step", "gap"),
    [
        (
            "PatchCycle-ValidateInstance",
            {
                "name": "rebootInstance",
                "action": "aws:executeAwsApi",
                "inputs": {"Service": "ec2", "Api": "RebootInstances", "InstanceIds": ["{{ InstanceId }}"]},
            },
            (
                "ec2:RebootInstances on *",
                "include/automation/PatchCycle-ValidateInstance.yaml (step rebootInstance: aws:executeAwsApi)",
            ),
        ),
        (
            "PatchCycle-RestoreRootVolume",
            {
                "name": "fetchScript",
                "action": "aws:runCommand",
                "inputs": {"DocumentName": "AWS-RunRemoteScript", "InstanceIds": ["{{ InstanceId }}"]},
            },
            (
                f"ssm:SendCommand on {document_arn('AWS-RunRemoteScript')}",
                "include/automation/PatchCycle-RestoreRootVolume.yaml (step fetchScript: aws:runCommand)",
            ),
        ),
    ],
)
def test_a_new_runbook_step_fails_the_policy_check(
    policy: dict[str, Any], tmp_path: Path, runbook: str, step: dict[str, Any], gap: tuple[str, str]
) -> None:
    """Add a step to a copy of a runbook: the unchanged policy no longer covers what the DAGs' role must do."""
    root = _copy_runbooks(tmp_path)
    _add_step(root, runbook, step)
    calls = extract_calls(package_sources()) + template_calls() + runbook_calls(root)
    assert not policy_excess(policy, calls)
    gaps = policy_gaps(policy, calls)
    missing, step_where = gap
    assert len(gaps) == 1 and gaps[0].startswith(f"{missing} (called at ") and step_where in gaps[0], gaps


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            {"name": "invoke", "action": "aws:invokeLambdaFunction", "inputs": {"FunctionName": "f"}},
            r"step invoke: aws:invokeLambdaFunction\): step action 'aws:invokeLambdaFunction' is not one the test",
        ),
        ({"name": "s", "action": "aws:executeAwsApi", "inputs": {"Service": "ec3", "Api": "X"}}, "not a botocore"),
        (
            {"name": "s", "action": "aws:executeAwsApi", "inputs": {"Service": "ec2", "Api": "DescribeEverything"}},
            "not an operation of the ec2 API",
        ),
        (
            {"name": "s", "action": "aws:executeAwsApi", "inputs": {"Service": "ec2", "Api": "{{ Api }}"}},
            "must be literal",
        ),
        ({"name": "s", "action": "aws:runCommand", "inputs": {"DocumentName": "{{ Doc }}"}}, "DocumentName"),
        (
            {
                "name": "s",
                "action": "aws:executeAwsApi",
                "inputs": {"Service": "ec2", "Api": "CreateVolume", "TagSpecifications": []},
            },
            "ec2:CreateVolume tags what it creates: .* TAG_ON_CREATE",
        ),
    ],
)
def test_the_runbook_derivation_refuses_what_it_cannot_attribute(
    tmp_path: Path, step: dict[str, Any], message: str
) -> None:
    root = _copy_runbooks(tmp_path)
    _add_step(root, "PatchCycle-PrePatchSnapshot", step)
    with pytest.raises(ExtractionError, match=message):
        runbook_calls(root)


def test_a_tagging_create_call_in_the_code_needs_its_tagging_action() -> None:
    source = "class H(SsmHook):\n    def f(self):\n        self.conn.create_ops_item(Title='t', Tags=[])\n"
    with pytest.raises(ExtractionError, match="ssm:CreateOpsItem tags what it creates"):
        extract_calls({"example.py": source})
    tagged = extract_calls({"example.py": source.replace("create_ops_item(Title='t', ", "create_document(")})
    assert [c.tagged for c in tagged] == [True]
    assert call_actions(tagged[0]) == ("ssm:CreateDocument", "ssm:AddTagsToResource")


def test_the_runbook_documents_are_the_only_documents_the_role_can_write_or_start(policy: dict[str, Any]) -> None:
    writes = ("ssm:AddTagsToResource", "ssm:CreateDocument", "ssm:UpdateDocument", "ssm:UpdateDocumentDefaultVersion")
    others = (
        f"arn:aws:ssm:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:document/ProductionHardening",
        document_arn("AWS-RunPatchBaseline"),
        f"arn:aws:ssm:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:document/patchcycle-lowercase",
    )
    for action in (*writes, "ssm:DescribeDocument", "ssm:GetDocument"):
        assert all(allows(policy, action, document) for document in RUNBOOK_DOCUMENTS), action
        assert not any(allows(policy, action, other) for other in others), f"{action} on a document not the project's"
    for statement in policy["Statement"]:
        if set(writes) & set(statement["Action"]):
            documents = [r for r in _as_list(statement["Resource"]) if ":document/" in r]
            assert documents in ([], [f"arn:aws:ssm:*:*:document/{RUNBOOK_PREFIX}*"]), statement["Sid"]
    starts = [s for s in policy["Statement"] if "ssm:StartAutomationExecution" in s["Action"]]
    assert starts and all(
        _as_list(s["Resource"]) == [f"arn:aws:ssm:*:*:automation-definition/{RUNBOOK_PREFIX}*:*"] for s in starts
    ), starts
    assert all(allows(policy, "ssm:StartAutomationExecution", definition) for definition in RUNBOOK_DEFINITIONS)
    for other in (
        f"arn:aws:ssm:{SAMPLE_REGION}::automation-definition/AWS-RestartEC2Instance:1",
        f"arn:aws:ssm:{SAMPLE_REGION}:{SAMPLE_ACCOUNT}:automation-definition/ProductionHardening:1",
    ):
        assert not allows(policy, "ssm:StartAutomationExecution", other), other


def test_snapshots_can_only_be_deleted_when_tagged_by_the_project(policy: dict[str, Any]) -> None:
    """And the project's snapshots are created with that tag, and restores use only them."""
    snapshots = ["arn:aws:ec2:*::snapshot/*"]
    deletes = [s for s in policy["Statement"] if "ec2:DeleteSnapshot" in s["Action"]]
    resource_tag = {"StringEquals": {f"aws:ResourceTag/{MANAGED_TAG[0]}": MANAGED_TAG[1]}}
    request_tag = {"StringEquals": {f"aws:RequestTag/{MANAGED_TAG[0]}": MANAGED_TAG[1]}}
    assert deletes and all(s.get("Condition") == resource_tag for s in deletes), deletes
    assert all(_as_list(s["Resource"]) == snapshots for s in deletes), "ec2:DeleteSnapshot on snapshots only"
    creates = _statements_on(policy, "ec2:CreateSnapshots", SAMPLE_SNAPSHOT)
    assert creates and all(s.get("Condition") == request_tag for s in creates), creates
    restores = _statements_on(policy, "ec2:CreateReplaceRootVolumeTask", SAMPLE_SNAPSHOT)
    assert restores and all(s.get("Condition") == resource_tag for s in restores), "restore from own snapshots"
    tasks = _statements_on(policy, "ec2:CreateReplaceRootVolumeTask", SAMPLE_RESTORE_TASK)
    assert tasks and all(s.get("Condition") == request_tag for s in tasks), tasks
    for create, resource in (
        ("CreateSnapshots", SAMPLE_SNAPSHOT),
        ("CreateReplaceRootVolumeTask", SAMPLE_RESTORE_TASK),
    ):
        tagging = _statements_on(policy, "ec2:CreateTags", resource)
        assert tagging and all(s.get("Condition") == {"StringEquals": {"ec2:CreateAction": create}} for s in tagging)


def test_the_runbooks_tag_what_they_create_as_the_conditions_expect() -> None:
    tagged: dict[str, dict[str, str]] = {}
    for name in RUNBOOKS:
        for step in yaml.safe_load(_runbook_path(REPO, name).read_text())["mainSteps"]:
            for spec in (step.get("inputs") or {}).get("TagSpecifications", []):
                tagged[spec["ResourceType"]] = {tag["Key"]: tag["Value"] for tag in spec["Tags"]}
    # The AMI builder's instance too: RunInstances, tagged as the launch and terminate conditions expect.
    assert set(tagged) == {"snapshot", "replace-root-volume-task", "instance", "image"}, tagged
    assert tagged["instance"]["patchcycle:role"] == "ami-builder", tagged
    assert all(MANAGED.items() <= tags.items() for tags in tagged.values()), tagged


def test_the_automation_role_can_be_passed_only_to_systems_manager(policy: dict[str, Any]) -> None:
    passes = _statements_on(policy, "iam:PassRole", SAMPLE_AUTOMATION_ROLE)
    assert passes and all(
        s.get("Condition") == {"StringEquals": {"iam:PassedToService": "ssm.amazonaws.com"}} for s in passes
    ), passes
    assert not allows(policy, "iam:PassRole", f"arn:aws:iam::{SAMPLE_ACCOUNT}:role/patchcycle-admin")


def _readme_policy(marker: str) -> dict[str, Any]:
    """The JSON block right after `marker` in include/iam/README.md."""
    found = re.search(re.escape(marker) + r"\s*```json\n(.*?)\n```", IAM_README.read_text(), re.DOTALL)
    assert found, f"include/iam/README.md has no ```json block after {marker}"
    document: dict[str, Any] = json.loads(found.group(1))
    return document


def test_the_readme_automation_role_allows_exactly_the_runbook_steps() -> None:
    """The role the runbooks act as (AutomationAssumeRole): trusted by Systems Manager, with the steps' actions only."""
    trust = _readme_policy("<!-- automation-role-trust-policy -->")
    principals = [s["Principal"] for s in trust["Statement"]]
    assert principals == [{"Service": "ssm.amazonaws.com"}] and trust["Statement"][0]["Action"] == "sts:AssumeRole"
    role = _readme_policy("<!-- automation-role-permissions -->")
    assert_well_formed(role)
    steps = runbook_calls()
    assert not policy_gaps(role, steps), policy_gaps(role, steps)
    assert not policy_excess(role, steps), policy_excess(role, steps)
    sent = {r.split(":document/")[1] for s in role["Statement"] for r in _as_list(s["Resource"]) if ":document/" in r}
    assert sent == {c.document for c in steps if c.document}, sent


_README_ROW = re.compile(r"^\| `([A-Za-z0-9]+)` \| (.*?) \|", re.MULTILINE)


def test_the_readme_explains_every_statement_with_its_actions(policy: dict[str, Any]) -> None:
    """Each statement of the policy has a row in include/iam/README.md's table listing exactly its actions (or, for
    the runbook steps' statements, its Sid in the automation role's policy there)."""
    text = IAM_README.read_text()
    rows = {
        sid: {token for token in re.findall(r"`([^`]+)`", actions) if ":" in token}
        for sid, actions in _README_ROW.findall(text)
    }
    for statement in policy["Statement"]:
        sid, actions = statement["Sid"], set(_as_list(statement["Action"]))
        if sid in rows:
            assert rows[sid] == actions, (sid, rows[sid] ^ actions)
        else:
            assert f'"Sid": "{sid}"' in text, f"include/iam/README.md does not explain statement {sid}"


# The immutable path's writes reach only the groups and launch templates the operator tagged with a patch group
# (both services support the resource-tag keys on these actions: the Service Authorization Reference).
PATCH_GROUP_SCOPED = {
    "autoscaling:StartInstanceRefresh": "autoscaling:ResourceTag/PatchGroup",
    "autoscaling:CancelInstanceRefresh": "autoscaling:ResourceTag/PatchGroup",
    "ec2:CreateLaunchTemplateVersion": "aws:ResourceTag/PatchGroup",
    "ec2:ModifyLaunchTemplate": "aws:ResourceTag/PatchGroup",
}


def test_refreshes_and_launch_template_versions_only_reach_what_carries_a_patch_group_tag(
    policy: dict[str, Any],
) -> None:
    for action, key in PATCH_GROUP_SCOPED.items():
        statements = [s for s in policy["Statement"] if action in s["Action"]]
        assert statements and all(s.get("Condition") == {"Null": {key: "false"}} for s in statements), action
    rollback = [s for s in policy["Statement"] if "autoscaling:RollbackInstanceRefresh" in s["Action"]]
    assert rollback == [], "AutoRollback is Auto Scaling's own doing: the role never calls RollbackInstanceRefresh"
