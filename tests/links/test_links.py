"""The console links: their URL formats, per partition, and what persisting one stores in the task's XCom."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink

from patchcycle.core.asff import CVE_GENERATOR, PATCH_GENERATOR
from patchcycle.links.base import persist_link
from patchcycle.links.cloudformation import CloudFormationStackLink
from patchcycle.links.cloudwatch import CloudWatchDashboardLink
from patchcycle.links.inspector import InspectorFindingsLink
from patchcycle.links.security_hub import SecurityHubFindingsLink, findings_search
from patchcycle.links.ssm import AutomationExecutionLink, RunCommandLink
from tests.operators.install_helpers import LinkTi

ACCOUNT = "123456789012"
COMMAND_ID = "2f0c9b8e-1d7a-4e0b-9a57-3c1f0e6d2b41"
EXECUTION_ID = "8c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f"
STACK_ID = (
    "arn:aws:cloudformation:eu-west-1:123456789012:stack/patchcycle-staging-x/7d1e2f30-aa11-11ef-8f69-0a1b2c3d4e5f"
)
# Partition -> (a region in it, the console's domain there).
PARTITIONS = {
    "aws": ("eu-west-1", "aws.amazon.com"),
    "aws-cn": ("cn-north-1", "amazonaws.cn"),
    "aws-us-gov": ("us-gov-west-1", "amazonaws-us-gov.com"),
}


def url(link: BaseAwsLink, partition: str = "aws", **fields: Any) -> str:
    """The URL as the UI shows it: the link formatted from what persist stores (region, domain, fields)."""
    region, _ = PARTITIONS[partition]
    return link.format_link(region_name=region, aws_domain=BaseAwsLink.get_aws_domain(partition), **fields)


@pytest.mark.parametrize("partition", sorted(PARTITIONS))
def test_each_link_opens_the_console_of_its_partition_in_its_region(partition: str) -> None:
    region, domain = PARTITIONS[partition]
    console = f"https://console.{domain}"
    assert url(RunCommandLink(), partition, command_id=COMMAND_ID) == (
        f"{console}/systems-manager/run-command/{COMMAND_ID}?region={region}"
    )
    assert url(AutomationExecutionLink(), partition, execution_id=EXECUTION_ID) == (
        f"{console}/systems-manager/automation/execution/{EXECUTION_ID}?region={region}"
    )
    assert url(InspectorFindingsLink(), partition) == f"{console}/inspector/v2/home?region={region}#/findings/all"
    assert url(CloudWatchDashboardLink(), partition, dashboard_name="patchcycle-kpis") == (
        f"{console}/cloudwatch/home?region={region}#dashboards:name=patchcycle-kpis"
    )
    assert url(CloudFormationStackLink(), partition, stack_id="s").startswith(
        f"{console}/cloudformation/home?region={region}#/stacks/stackinfo?stackId="
    )
    assert url(SecurityHubFindingsLink(), partition, generator_ids=[PATCH_GENERATOR]).startswith(
        f"{console}/securityhub/home?region={region}#/findings?search="
    )


def test_the_stack_link_carries_the_whole_stack_arn_encoded() -> None:
    assert url(CloudFormationStackLink(), stack_id=STACK_ID) == (
        "https://console.aws.amazon.com/cloudformation/home?region=eu-west-1#/stacks/stackinfo?stackId="
        "arn%3Aaws%3Acloudformation%3Aeu-west-1%3A123456789012%3Astack%2Fpatchcycle-staging-x%2F"
        "7d1e2f30-aa11-11ef-8f69-0a1b2c3d4e5f"
    )


def test_the_security_hub_link_filters_the_projects_active_findings_of_the_account_and_region() -> None:
    link = url(SecurityHubFindingsLink(), account_id=ACCOUNT, generator_ids=[PATCH_GENERATOR, CVE_GENERATOR])
    equals = "%3D%255Coperator%255C%253AEQUALS%255C%253A"  # "=\operator\:EQUALS\:", encoded twice
    assert link == (
        "https://console.aws.amazon.com/securityhub/home?region=eu-west-1#/findings?search="
        f"GeneratorId{equals}patchcycle%252Fpatch-compliance%26GeneratorId{equals}patchcycle%252Fcve"
        f"%26AwsAccountId{equals}{ACCOUNT}%26Region{equals}eu-west-1%26RecordState{equals}ACTIVE"
    )
    # Without an account (not known), the other filters stay.
    assert "AwsAccountId" not in url(SecurityHubFindingsLink(), generator_ids=[PATCH_GENERATOR])


def test_findings_search_encodes_values_then_the_whole_parameter() -> None:
    assert findings_search([("RecordState", "ACTIVE")]) == "RecordState%3D%255Coperator%255C%253AEQUALS%255C%253AACTIVE"
    assert findings_search([("Title", "a b&c")], operator="PREFIX") == (
        "Title%3D%255Coperator%255C%253APREFIX%255C%253Aa%2520b%2526c"
    )


def test_ids_and_names_are_escaped_in_the_path() -> None:
    assert url(RunCommandLink(), command_id="a/b?c").split("/run-command/")[1] == "a%2Fb%3Fc?region=eu-west-1"
    assert url(CloudWatchDashboardLink(), dashboard_name="a b").endswith("#dashboards:name=a%20b")


@pytest.mark.parametrize(
    ("link", "field"),
    [
        (RunCommandLink(), "command_id"),
        (AutomationExecutionLink(), "execution_id"),
        (CloudFormationStackLink(), "stack_id"),
        (CloudWatchDashboardLink(), "dashboard_name"),
        (SecurityHubFindingsLink(), "generator_ids"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_a_link_without_its_resource_is_empty(link: BaseAwsLink, field: str) -> None:
    assert url(link) == ""
    assert url(link, **{field: ""}) == ""


def test_persist_link_stores_the_fields_with_the_hooks_region_and_partition() -> None:
    ti = LinkTi()
    hook: Any = SimpleNamespace(conn_region_name="cn-north-1", conn_partition="aws-cn")
    operator: Any = SimpleNamespace(do_xcom_push=True)
    persist_link(RunCommandLink, {"ti": ti}, operator, hook, command_id=COMMAND_ID)
    assert ti.xcom == {
        RunCommandLink.key: {"region_name": "cn-north-1", "aws_domain": "amazonaws.cn", "command_id": COMMAND_ID}
    }
    assert ti.url(RunCommandLink()) == (
        f"https://console.amazonaws.cn/systems-manager/run-command/{COMMAND_ID}?region=cn-north-1"
    )


def test_persist_link_stores_nothing_for_a_task_that_pushes_no_xcom() -> None:
    ti = LinkTi()
    hook: Any = SimpleNamespace(conn_region_name="eu-west-1", conn_partition="aws")
    operator: Any = SimpleNamespace(do_xcom_push=False)
    persist_link(RunCommandLink, {"ti": ti}, operator, hook, command_id=COMMAND_ID)
    assert ti.xcom == {}


def test_every_link_has_its_own_key_and_name() -> None:
    links = [
        RunCommandLink,
        AutomationExecutionLink,
        CloudFormationStackLink,
        InspectorFindingsLink,
        SecurityHubFindingsLink,
        CloudWatchDashboardLink,
    ]
    assert len({link.key for link in links}) == len({link.name for link in links}) == len(links)
    assert all(link.key.startswith("_patchcycle_") for link in links)
