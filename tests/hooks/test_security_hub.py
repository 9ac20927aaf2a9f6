"""SecurityHubHook against the sandbox: imports in batches of 100 (and 6 MB), paged reads, updates 100 at a time."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.core.asff import product_arn
from patchcycle.hooks.security_hub import (
    MAX_FINDINGS_PER_IMPORT,
    MAX_IDENTIFIERS_PER_UPDATE,
    SecurityHubHook,
    import_batches,
)
from tests.conftest import sandbox_calls

ACCOUNT, REGION = "123456789012", "us-east-1"
PRODUCT = product_arn(ACCOUNT, REGION)
SCENARIO: dict[str, Any] = {
    "name": "securityhub-hook",
    "amis": {},
    "accounts": [{"id": ACCOUNT, "regions": {REGION: {}}}],
}
SANDBOX_MAX_ATTEMPTS = 1


def hook() -> SecurityHubHook:
    return SecurityHubHook(aws_conn_id="aws_default", region_name=REGION)


def finding(n: int, **overrides: Any) -> dict[str, Any]:
    base = {
        "SchemaVersion": "2018-10-08",
        "Id": f"patchcycle/test/{n:04d}",
        "ProductArn": PRODUCT,
        "GeneratorId": "patchcycle/test",
        "AwsAccountId": ACCOUNT,
        "Types": ["Software and Configuration Checks/Vulnerabilities/CVE"],
        "CreatedAt": "2026-11-20T03:00:00Z",
        "UpdatedAt": "2026-11-20T03:00:00Z",
        "Severity": {"Label": "HIGH"},
        "Title": f"Finding {n}",
        "Description": "Test finding",
        "Resources": [{"Type": "AwsEc2Instance", "Id": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-{n:017x}"}],
    }
    base.update(overrides)
    return base


def calls(server: SandboxServer, operation: str) -> int:
    return sandbox_calls(server.url, f"securityhub:{operation}")


def test_import_batches_respect_count_and_size() -> None:
    findings = [finding(n) for n in range(250)]
    assert [len(b) for b in import_batches(findings)] == [100, 100, 50]
    assert [f for b in import_batches(findings) for f in b] == findings
    size = len(json.dumps(findings[0]).encode())
    by_bytes = list(import_batches(findings[:10], max_bytes=1024 + 3 * (size + 1)))
    assert [len(b) for b in by_bytes] == [3, 3, 3, 1]
    assert list(import_batches([])) == []
    with pytest.raises(ValueError, match="over 245760"):
        list(import_batches([finding(1, Description="x" * 250_000)]))


def test_250_findings_import_in_3_calls_and_read_back_in_3_pages(fresh_server: SandboxServer) -> None:
    findings = [finding(n) for n in range(250)]
    result = hook().import_findings(findings)
    assert (result.success_count, result.failed, result.calls) == (250, [], 3)
    assert calls(fresh_server, "BatchImportFindings") == math.ceil(250 / MAX_FINDINGS_PER_IMPORT) == 3
    found = hook().findings({"GeneratorId": [{"Value": "patchcycle/", "Comparison": "PREFIX"}]})
    assert sorted(f["Id"] for f in found) == sorted(f["Id"] for f in findings)
    assert calls(fresh_server, "GetFindings") == 3


def test_refused_findings_are_collected_and_every_batch_is_still_sent(fresh_server: SandboxServer) -> None:
    findings = [finding(n) for n in range(150)]
    findings[3] = finding(3, Title=" ")
    findings[120] = finding(120, SchemaVersion="2019-01-01")
    result = hook().import_findings(findings)
    assert result.calls == 2 and result.success_count == 148
    assert [(f["Id"], f["ErrorCode"]) for f in result.failed] == [
        (findings[3]["Id"], "InvalidInput"),
        (findings[120]["Id"], "InvalidInput"),
    ]


def test_workflow_updates_go_100_identifiers_a_call(fresh_server: SandboxServer) -> None:
    findings = [finding(n) for n in range(150)]
    hook().import_findings(findings)
    identifiers = [{"Id": f["Id"], "ProductArn": PRODUCT} for f in findings]
    result = hook().update_workflow(identifiers, "RESOLVED", "Resolved by run x", "patchcycle")
    assert (
        result.calls == calls(fresh_server, "BatchUpdateFindings") == math.ceil(150 / MAX_IDENTIFIERS_PER_UPDATE) == 2
    )
    assert len(result.processed) == 150 and result.unprocessed == []
    statuses = {
        f["Workflow"]["Status"] for f in hook().findings({"Id": [{"Value": "patchcycle/", "Comparison": "PREFIX"}]})
    }
    assert statuses == {"RESOLVED"}
