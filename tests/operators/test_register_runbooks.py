"""RegisterRunbooksOperator against the sandbox's SSM document store: the PatchCycle-* runbooks created tagged as
the project's, left alone when unchanged, updated and made default when their files change, made default when an
earlier registration stopped half-way, and a document of that name the project does not own refused untouched.

Documents live per region: each test registers in a region of its own, so one module sandbox serves them all.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError

from include.sandbox.server import SandboxServer
from patchcycle.config import Target
from patchcycle.core.runbooks import RUNBOOKS, SNAPSHOT_RUNBOOK, VALIDATE_RUNBOOK
from patchcycle.operators.register_runbooks import AUTOMATION, RegisterRunbooksOperator
from patchcycle.run_artifacts import RUNBOOKS as REGISTERED
from patchcycle.run_artifacts import TARGET_ERROR, Step
from tests.conftest import client_factory, sandbox_calls
from tests.operators.install_helpers import ACCOUNT, BUCKET, context, cycle_config, run_artifacts, s3_root

ARTIFACT_REGION = "us-east-1"
REGIONS = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1")
SCENARIO: dict[str, Any] = {
    "name": "register-runbooks",
    "clock": {"start": "2026-11-20T03:00:00Z", "speed": 1.0},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                region: {"s3_buckets": [{"name": BUCKET}]} if region == ARTIFACT_REGION else {} for region in REGIONS
            },
        }
    ],
}
SANDBOX_DROP_FAULTS = True  # exact call counts
ROOT = s3_root("register-runbooks")
WRITES = ("ssm:CreateDocument", "ssm:UpdateDocument", "ssm:UpdateDocumentDefaultVersion")


def config(region: str) -> dict[str, Any]:
    return cycle_config(ROOT, regions=(region,))


def register(region: str, run_id: str, runbooks: Path = AUTOMATION) -> dict[str, str]:
    operator = RegisterRunbooksOperator(
        task_id="register_runbooks", config=config(region), region_name=region, runbooks=runbooks
    )
    actions: dict[str, str] = operator.execute(context(run_id))
    return actions


def ssm(server: SandboxServer, region: str) -> Any:
    return client_factory(server.url)("ssm", region=region)


def writes(server: SandboxServer) -> dict[str, int]:
    return {api: sandbox_calls(server.url, api) for api in WRITES}


def changed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {api: after[api] - before[api] for api in WRITES}


def calls(create: int = 0, update: int = 0, set_default: int = 0) -> dict[str, int]:
    return dict(zip(WRITES, (create, update, set_default), strict=True))


def edited_copy(folder: Path, name: str = VALIDATE_RUNBOOK) -> tuple[Path, str]:
    """The project's runbook files in `folder`, `name`'s description changed; returns (folder, its new content)."""
    folder.mkdir()
    for file in AUTOMATION.glob("*.yaml"):
        shutil.copy(file, folder)
    path = folder / f"{name}.yaml"
    original = path.read_text()
    content, count = re.subn(r"(?m)^description: '", "description: 'Edited. ", original)
    assert count == 1 and content != original
    path.write_text(content)
    return folder, content


def described(server: SandboxServer, region: str, name: str) -> dict[str, Any]:
    document: dict[str, Any] = ssm(server, region).describe_document(Name=name)["Document"]
    return document


def content(server: SandboxServer, region: str, name: str, version: str = "$DEFAULT") -> str:
    return str(ssm(server, region).get_document(Name=name, DocumentVersion=version)["Content"])


def test_a_first_run_creates_the_runbooks_tagged_as_the_projects_and_records_them(server: SandboxServer) -> None:
    region, run_id = "us-east-1", "scheduled__first"
    before = writes(server)

    assert register(region, run_id) == dict.fromkeys(RUNBOOKS, "create")

    assert changed(before, writes(server)) == calls(create=len(RUNBOOKS), update=0, set_default=0)
    files = {name: (AUTOMATION / f"{name}.yaml").read_text() for name in RUNBOOKS}
    for name in RUNBOOKS:
        document = described(server, region, name)
        assert (document["DocumentType"], document["DocumentFormat"]) == ("Automation", "YAML")
        assert (document["DefaultVersion"], document["LatestVersion"]) == ("1", "1")
        assert document["Tags"] == [{"Key": "patchcycle:managed", "Value": "true"}]
        assert content(server, region, name) == files[name]
    records = run_artifacts(config(region), run_id).read(REGISTERED, target=Target("aws_default", region))
    assert sorted(records) == sorted(RUNBOOKS)
    for name, record in records.items():
        assert (record.name, record.action, record.document_version) == (name, "create", "1")
        assert record.content_sha256 == hashlib.sha256(files[name].encode()).hexdigest()

    # Registered again (the next run), nothing is written but the record.
    before = writes(server)
    assert register(region, "scheduled__second") == dict.fromkeys(RUNBOOKS, "unchanged")
    assert changed(before, writes(server)) == calls()
    again = run_artifacts(config(region), "scheduled__second").read(REGISTERED, target=Target("aws_default", region))
    assert {name: (r.action, r.document_version, r.content_sha256) for name, r in again.items()} == {
        name: ("unchanged", "1", record.content_sha256) for name, record in records.items()
    }


def test_a_changed_runbook_is_updated_and_made_the_default(server: SandboxServer, tmp_path: Path) -> None:
    region = "us-east-2"
    register(region, "scheduled__before")
    folder, edited = edited_copy(tmp_path / "automation")
    before = writes(server)

    actions = register(region, "scheduled__edited", runbooks=folder)

    assert actions == {**dict.fromkeys(RUNBOOKS, "unchanged"), VALIDATE_RUNBOOK: "update"}
    assert changed(before, writes(server)) == calls(create=0, update=1, set_default=1)
    document = described(server, region, VALIDATE_RUNBOOK)
    assert (document["DefaultVersion"], document["LatestVersion"]) == ("2", "2")
    assert content(server, region, VALIDATE_RUNBOOK) == edited
    assert content(server, region, VALIDATE_RUNBOOK, "1") == (AUTOMATION / f"{VALIDATE_RUNBOOK}.yaml").read_text()
    record = run_artifacts(config(region), "scheduled__edited").read(REGISTERED, target=Target("aws_default", region))
    assert (record[VALIDATE_RUNBOOK].action, record[VALIDATE_RUNBOOK].document_version) == ("update", "2")
    assert record[VALIDATE_RUNBOOK].content_sha256 == hashlib.sha256(edited.encode()).hexdigest()
    assert record[SNAPSHOT_RUNBOOK].document_version == "1"


def test_a_latest_version_that_is_not_the_default_is_made_the_default(server: SandboxServer, tmp_path: Path) -> None:
    """An earlier registration updated the document, then stopped before UpdateDocumentDefaultVersion."""
    region = "us-west-1"
    register(region, "scheduled__before")
    folder, edited = edited_copy(tmp_path / "automation", SNAPSHOT_RUNBOOK)
    ssm(server, region).update_document(
        Name=SNAPSHOT_RUNBOOK, Content=edited, DocumentFormat="YAML", DocumentVersion="$LATEST"
    )
    assert (described(server, region, SNAPSHOT_RUNBOOK)["DefaultVersion"]) == "1"
    before = writes(server)

    actions = register(region, "scheduled__resumed", runbooks=folder)

    assert actions == {**dict.fromkeys(RUNBOOKS, "unchanged"), SNAPSHOT_RUNBOOK: "set_default"}
    assert changed(before, writes(server)) == calls(create=0, update=0, set_default=1)
    document = described(server, region, SNAPSHOT_RUNBOOK)
    assert (document["DefaultVersion"], document["LatestVersion"]) == ("2", "2")
    assert content(server, region, SNAPSHOT_RUNBOOK) == edited
    record = run_artifacts(config(region), "scheduled__resumed").read(REGISTERED, target=Target("aws_default", region))
    assert (record[SNAPSHOT_RUNBOOK].action, record[SNAPSHOT_RUNBOOK].document_version) == ("set_default", "2")


def test_a_document_of_that_name_the_project_does_not_own_fails_the_task_untouched(server: SandboxServer) -> None:
    region, run_id = "us-west-2", "scheduled__foreign"
    foreign = (AUTOMATION / f"{VALIDATE_RUNBOOK}.yaml").read_text().replace("Patch cycle:", "Team ops:", 1)
    ssm(server, region).create_document(
        Name=VALIDATE_RUNBOOK,
        Content=foreign,
        DocumentType="Automation",
        DocumentFormat="YAML",
        Tags=[{"Key": "team", "Value": "ops"}],
    )
    before = writes(server)

    with pytest.raises(AirflowFailException) as raised:
        register(region, run_id)

    message = str(raised.value)
    assert message.startswith(f"account {ACCOUNT}, region {region}: {VALIDATE_RUNBOOK}: ")
    assert "without the tag patchcycle:managed=true" in message
    document = described(server, region, VALIDATE_RUNBOOK)
    assert (document["DefaultVersion"], document["LatestVersion"]) == ("1", "1")
    assert document["Tags"] == [{"Key": "team", "Value": "ops"}]
    assert content(server, region, VALIDATE_RUNBOOK) == foreign
    # Nothing at all: the runbooks before it in order are not created either (every one is looked at first).
    assert changed(before, writes(server)) == calls()
    for name in RUNBOOKS:
        if name != VALIDATE_RUNBOOK:
            with pytest.raises(ClientError, match="InvalidDocument"):
                ssm(server, region).describe_document(Name=name)
    artifacts = run_artifacts(config(region), run_id)
    target = Target("aws_default", region)
    assert artifacts.find(REGISTERED, target=target) is None
    error = artifacts.read(TARGET_ERROR, step=Step.REGISTER_RUNBOOKS, target=target)
    assert VALIDATE_RUNBOOK in error.error and error.region == region


def test_a_missing_runbook_file_fails_naming_the_folder_and_the_file(server: SandboxServer, tmp_path: Path) -> None:
    region = "eu-west-1"
    folder = tmp_path / "automation"
    folder.mkdir()
    for name in RUNBOOKS:
        if name != VALIDATE_RUNBOOK:
            shutil.copy(AUTOMATION / f"{name}.yaml", folder)
    before = writes(server)

    missing = rf"^runbook file\(s\) missing in {re.escape(str(folder))}: {VALIDATE_RUNBOOK}\.yaml$"
    with pytest.raises(AirflowFailException, match=missing):
        register(region, "scheduled__missing", runbooks=folder)

    assert changed(before, writes(server)) == calls()
    for name in RUNBOOKS:  # not even the files that are there
        with pytest.raises(ClientError, match="InvalidDocument"):
            ssm(server, region).describe_document(Name=name)
