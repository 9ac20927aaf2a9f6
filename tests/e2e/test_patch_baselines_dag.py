"""End to end: `airflow dags test patch_baselines` against the sandbox, applied twice: the second run changes nothing.

The sandbox serves the default scenario's fleet without its baselines, so the account starts with no
baselines of its own; what SSM should hold afterwards is derived from include/baselines/*.yaml.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from include.cycle import free_port
from include.demo import HOST, REPO_ROOT, child_environment, prepare_state_dir
from include.sandbox.scenario import DEFAULT_SCENARIO, parse_scenario
from include.sandbox.server import SandboxServer
from patchcycle.baseline_files import load_baseline_files
from patchcycle.core.baselines.diff import normalized
from patchcycle.core.baselines.vocabulary import MANAGED_TAG_KEY, MANAGED_TAG_VALUE
from tests.conftest import client_factory, sandbox_calls

REGIONS = ("us-east-1", "eu-west-1")
WRITES = (
    "CreatePatchBaseline",
    "UpdatePatchBaseline",
    "DeletePatchBaseline",
    "RegisterPatchBaselineForPatchGroup",
    "DeregisterPatchBaselineForPatchGroup",
    "AddTagsToResource",
    "RemoveTagsFromResource",
)
RUN_TIMEOUT_SECONDS = 600


def dags_test(env: dict[str, str], conf: dict[str, Any], log: Path) -> str:
    with log.open("wb") as out:
        subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "dags", "test", "patch_baselines", "-c", json.dumps(conf)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
    text = log.read_text()
    finished = [line for line in text.splitlines() if "DagRun Finished" in line]
    assert finished and "state=success" in finished[-1], f"patch_baselines did not succeed; see {log}"
    return text


def writes(url: str) -> dict[str, int]:
    return {operation: sandbox_calls(url, f"ssm:{operation}") for operation in WRITES}


def test_patch_baselines_applies_then_changes_nothing(
    sandbox_factory: Callable[..., SandboxServer], tmp_path: Path
) -> None:
    document = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    document.pop("baselines")
    document["faults"] = {}
    server = sandbox_factory(parse_scenario(document, source="<default without baselines>"))
    paths = prepare_state_dir(tmp_path / "state")
    env = child_environment(paths, server.url, api_url=f"http://{HOST}:{free_port()}")
    migrate = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    conf = {"dry_run": False, "targets": [{"aws_conn_id": "aws_default", "regions": list(REGIONS)}]}
    declared = load_baseline_files(REPO_ROOT / "include" / "baselines")

    first = dags_test(env, conf, paths.log_dir / "first.log")
    after_first = writes(server.url)
    assert after_first["CreatePatchBaseline"] == len(declared) * len(REGIONS)
    assert after_first["RegisterPatchBaselineForPatchGroup"] == sum(len(s.patch_groups) for s in declared) * len(
        REGIONS
    )
    for spec in declared:
        assert f"+ create {spec.name}" in first
    for region in REGIONS:
        ssm = client_factory(server.url)("ssm", region=region)
        pages = ssm.get_paginator("describe_patch_baselines").paginate(Filters=[{"Key": "OWNER", "Values": ["Self"]}])
        ids = {b["BaselineName"]: b["BaselineId"] for page in pages for b in page["BaselineIdentities"]}
        assert set(ids) == {s.name for s in declared}
        for spec in declared:
            got = ssm.get_patch_baseline(BaselineId=ids[spec.name])
            assert sorted(got["PatchGroups"]) == sorted(spec.patch_groups)
            for field, value in spec.api_fields().items():
                assert normalized(field, got.get(field)) == normalized(field, value), (region, spec.name, field)
            tags = ssm.list_tags_for_resource(ResourceType="PatchBaseline", ResourceId=ids[spec.name])["TagList"]
            assert {"Key": MANAGED_TAG_KEY, "Value": MANAGED_TAG_VALUE} in tags

    second = dags_test(env, conf, paths.log_dir / "second.log")
    assert writes(server.url) == after_first
    for spec in declared:
        assert f"= {spec.name} unchanged" in second
