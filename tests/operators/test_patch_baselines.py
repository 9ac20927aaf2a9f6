"""patch_baselines' operators against the sandbox: dry run, apply, idempotency, one update, ownership, prune."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException

from include.sandbox.server import SandboxServer
from patchcycle.baseline_files import load_baseline_files
from patchcycle.config import BaselinesConfig
from patchcycle.core.baselines.diff import normalized
from patchcycle.core.baselines.model import BaselineSpec
from patchcycle.core.baselines.vocabulary import MANAGED_TAG_KEY, MANAGED_TAG_VALUE
from patchcycle.operators.patch_baselines import BaselineParamsOperator, PatchBaselinesOperator
from tests.conftest import client_factory, sandbox_calls

ACCOUNT = "123456789012"
REGIONS = ("us-east-1", "eu-west-1")
REPO = Path(__file__).resolve().parents[2]
REPO_BASELINES = REPO / "include" / "baselines"
WRITES = (
    "CreatePatchBaseline",
    "UpdatePatchBaseline",
    "DeletePatchBaseline",
    "RegisterPatchBaselineForPatchGroup",
    "DeregisterPatchBaselineForPatchGroup",
    "AddTagsToResource",
    "RemoveTagsFromResource",
)
SCENARIO: dict[str, Any] = {
    "name": "baselines",
    "seed": 1,
    "clock": {"start": "2026-11-20T03:00:00+00:00", "speed": 1e-9},
    "amis": {"ami-0a1b2c3d4e5f60001": {"os": "AMAZON_LINUX_2023"}},
    "accounts": [{"id": ACCOUNT, "regions": {region: {} for region in REGIONS}}],
}


@pytest.fixture
def ssm(fresh_server: SandboxServer) -> Any:
    return client_factory(fresh_server.url)("ssm", region=REGIONS[0])


def documents(directory: Path = REPO_BASELINES) -> dict[str, Any]:
    """What validate hands to apply: {file: document}."""
    return {spec.source: spec.as_document() for spec in load_baseline_files(directory)}


def settings(**params: Any) -> dict[str, Any]:
    """The run's validated config, as validate pushes it (XCom `config`)."""
    targets = [{"aws_conn_id": "aws_default", "regions": list(REGIONS)}]
    return BaselinesConfig.from_params({"targets": targets, **params}).as_params()


def apply(docs: dict[str, Any], *, dry_run: bool = False, prune: bool = False, region: str = REGIONS[0]) -> Any:
    operator = PatchBaselinesOperator(
        task_id="apply", region_name=region, config=settings(dry_run=dry_run, prune=prune), baselines=docs
    )
    return operator.execute({})  # type: ignore[arg-type]


def writes(server: SandboxServer) -> dict[str, int]:
    return {operation: sandbox_calls(server.url, f"ssm:{operation}") for operation in WRITES}


def specs() -> list[BaselineSpec]:
    return load_baseline_files(REPO_BASELINES)


def own(ssm: Any) -> dict[str, str]:
    """The account's baselines in the region, name -> id."""
    pages = ssm.get_paginator("describe_patch_baselines").paginate(Filters=[{"Key": "OWNER", "Values": ["Self"]}])
    return {b["BaselineName"]: b["BaselineId"] for page in pages for b in page["BaselineIdentities"]}


def registrations(ssm: Any) -> dict[tuple[str, str], str]:
    """(patch group, OS) -> baseline name."""
    pages = ssm.get_paginator("describe_patch_groups").paginate()
    return {
        (m["PatchGroup"], m["BaselineIdentity"]["OperatingSystem"]): m["BaselineIdentity"]["BaselineName"]
        for page in pages
        for m in page["Mappings"]
    }


def test_dry_run_reports_the_diff_and_changes_nothing(fresh_server: SandboxServer, ssm: Any) -> None:
    declared = specs()
    summary = apply(documents(), dry_run=True)
    groups = sum(len(s.patch_groups) for s in declared)
    assert summary["dry_run"] is True and summary["applied"] is False
    assert summary["account_id"] == ACCOUNT
    assert summary["counts"] == {
        "create": len(declared),
        "update": 0,
        "tag": 0,
        "untag": 0,
        "deregister": 0,
        "register": groups,
        "delete": 0,
        "unchanged": 0,
        "orphaned": 0,
    }
    assert sorted(line for line in summary["changes"] if line.startswith("+ create")) == sorted(
        f"+ create {s.name} ({s.operating_system}, {len(s.approval_rules)} approval rule(s))" for s in declared
    )
    assert set(writes(fresh_server).values()) == {0}
    assert own(ssm) == {} and registrations(ssm) == {}


def test_apply_creates_the_baselines_and_registrations_the_yaml_declares(fresh_server: SandboxServer, ssm: Any) -> None:
    declared = specs()
    summary = apply(documents())
    assert summary["applied"] is True and summary["counts"]["create"] == len(declared)
    ids = own(ssm)
    assert set(ids) == {s.name for s in declared}
    for spec in declared:
        got = ssm.get_patch_baseline(BaselineId=ids[spec.name])
        assert got["OperatingSystem"] == spec.operating_system
        for field, value in spec.api_fields().items():
            assert normalized(field, got.get(field)) == normalized(field, value), (spec.name, field)
        assert sorted(got["PatchGroups"]) == sorted(spec.patch_groups)
        tags = {
            t["Key"]: t["Value"]
            for t in ssm.list_tags_for_resource(ResourceType="PatchBaseline", ResourceId=ids[spec.name])["TagList"]
        }
        assert tags == {**spec.tags, MANAGED_TAG_KEY: MANAGED_TAG_VALUE}
    assert registrations(ssm) == {(g, s.operating_system): s.name for s in declared for g in s.patch_groups}
    # Only the target's region changed.
    other = client_factory(fresh_server.url)("ssm", region=REGIONS[1])
    assert own(other) == {}


def test_a_second_apply_changes_nothing(fresh_server: SandboxServer, ssm: Any) -> None:
    apply(documents())
    before = writes(fresh_server)
    state = (own(ssm), registrations(ssm))
    summary = apply(documents())
    assert writes(fresh_server) == before
    assert summary["applied"] is False
    assert {k: v for k, v in summary["counts"].items() if v} == {"unchanged": len(specs())}
    assert (own(ssm), registrations(ssm)) == state


def test_a_changed_field_is_exactly_one_update(fresh_server: SandboxServer, ssm: Any, tmp_path: Path) -> None:
    apply(documents())
    web = next(s for s in specs() if s.operating_system == "AMAZON_LINUX_2023")
    changed = copy.deepcopy(documents())
    rule = changed[web.source]["approval_rules"][0]
    rule["approve_after_days"] += 1
    before = writes(fresh_server)
    summary = apply(changed)
    after = writes(fresh_server)
    assert {op: after[op] - before[op] for op in WRITES if after[op] != before[op]} == {"UpdatePatchBaseline": 1}
    assert summary["counts"]["update"] == 1 and summary["counts"]["unchanged"] == len(specs()) - 1
    got = ssm.get_patch_baseline(BaselineId=own(ssm)[web.name])
    assert got["ApprovalRules"]["PatchRules"][0]["ApproveAfterDays"] == rule["approve_after_days"]
    assert apply(changed)["applied"] is False  # and that is idempotent too


def test_an_unmanaged_baseline_with_a_declared_name_is_refused(fresh_server: SandboxServer, ssm: Any) -> None:
    declared = specs()
    taken = declared[0]
    theirs = ssm.create_patch_baseline(
        Name=taken.name,
        OperatingSystem=taken.operating_system,
        Description="made by hand",
        Tags=[{"Key": "Owner", "Value": "dba"}],
    )["BaselineId"]
    before = writes(fresh_server)
    with pytest.raises(AirflowFailException) as raised:
        apply(documents())
    message = str(raised.value)
    assert f"{taken.name}: baseline {theirs} has this name but is not managed" in message
    assert ACCOUNT in message and REGIONS[0] in message and "nothing changed" in message
    assert writes(fresh_server) == before
    assert ssm.get_patch_baseline(BaselineId=theirs)["Description"] == "made by hand"
    assert own(ssm) == {taken.name: theirs}


def test_tagging_an_existing_baseline_hands_it_over(fresh_server: SandboxServer, ssm: Any) -> None:
    taken = specs()[0]
    theirs = ssm.create_patch_baseline(Name=taken.name, OperatingSystem=taken.operating_system, Description="old")[
        "BaselineId"
    ]
    ssm.add_tags_to_resource(
        ResourceType="PatchBaseline", ResourceId=theirs, Tags=[{"Key": MANAGED_TAG_KEY, "Value": MANAGED_TAG_VALUE}]
    )
    summary = apply(documents())
    assert summary["counts"]["create"] == len(specs()) - 1 and summary["counts"]["update"] == 1
    assert own(ssm)[taken.name] == theirs
    assert ssm.get_patch_baseline(BaselineId=theirs)["Description"] == taken.description


def test_moving_a_patch_group_and_pruning(fresh_server: SandboxServer, ssm: Any, tmp_path: Path) -> None:
    apply(documents())
    declared = specs()
    web = next(s for s in declared if s.operating_system == "AMAZON_LINUX_2023")
    dropped = next(s for s in declared if s.operating_system == "WINDOWS")
    # A new AL2023 baseline takes over the web group; the Windows baseline leaves the files.
    for spec in declared:
        if spec is not dropped:
            document = spec.as_document()
            if spec is web:
                document["patch_groups"] = []
            (tmp_path / Path(spec.source).name).write_text(yaml.safe_dump(document))
    (tmp_path / "web-next.yaml").write_text(
        yaml.safe_dump(
            {**web.as_document(), "name": "patchcycle-al2023-web-next", "patch_groups": list(web.patch_groups)}
        )
    )
    kept = apply(documents(tmp_path))
    assert kept["counts"]["orphaned"] == 1 and kept["counts"]["delete"] == 0
    lines = kept["changes"]
    moves = [line for line in lines if "patch group" in line]
    assert moves == [
        line
        for group in web.patch_groups
        for line in (
            f"- deregister patch group {group!r} from {web.name}",
            f"+ register patch group {group!r} -> patchcycle-al2023-web-next",
        )
    ]
    assert lines.index(moves[0]) > lines.index(next(line for line in lines if line.startswith("+ create")))
    held = registrations(ssm)
    assert {held[(g, "AMAZON_LINUX_2023")] for g in web.patch_groups} == {"patchcycle-al2023-web-next"}
    assert dropped.name in own(ssm)

    pruned = apply(documents(tmp_path), prune=True)
    assert pruned["counts"]["delete"] == 1 and pruned["counts"]["deregister"] == len(dropped.patch_groups)
    assert dropped.name not in own(ssm)
    assert all(name != dropped.name for name in registrations(ssm).values())


def test_validate_returns_the_targets_and_hands_over_the_config_and_baselines() -> None:
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.__setitem__(key, value))
    params = {
        "targets": [{"aws_conn_id": "aws_default", "regions": list(REGIONS)}],
        "baselines_dir": "include/baselines",  # relative: taken from the repository root
        "dry_run": False,
        "prune": True,
    }
    operator = BaselineParamsOperator(task_id="validate")
    targets = operator.execute({"params": params, "ti": ti})  # type: ignore[arg-type]
    assert targets == [{"aws_conn_id": "aws_default", "region_name": region} for region in REGIONS]
    assert set(pushed) == {"config", "baselines"}
    config = BaselinesConfig.from_params(pushed["config"])  # what apply reads back
    assert config == BaselinesConfig.from_params(params) and config.as_params() == pushed["config"]
    assert config.dry_run is False and config.prune is True and config.directory == REPO_BASELINES
    assert pushed["baselines"] == documents()


def test_apply_refuses_settings_that_did_not_pass_validation() -> None:
    operator = PatchBaselinesOperator(
        task_id="apply", region_name=REGIONS[0], config={**settings(), "dry_run": "no"}, baselines=documents()
    )
    with pytest.raises(AirflowFailException, match=r"^invalid settings or baseline: dry_run: must be true or false"):
        operator.execute({})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"targets": []}, "invalid params: targets"),
        ({"targets": [{"aws_conn_id": "aws_default", "regions": ["moon-1"]}]}, "targets[0].regions[0]"),
        ({"dry_run": "no"}, "dry_run: must be true or false"),
        ({"prune": 1}, "prune: must be true or false"),
        ({"baselines_dir": ""}, "baselines_dir"),
    ],
)
def test_validate_refuses_bad_params(params: dict[str, Any], words: str) -> None:
    good = {"targets": [{"aws_conn_id": "aws_default", "regions": ["us-east-1"]}], "baselines_dir": str(REPO_BASELINES)}
    operator = BaselineParamsOperator(task_id="validate")
    with pytest.raises(AirflowFailException) as raised:
        operator.execute({"params": {**good, **params}, "ti": SimpleNamespace()})  # type: ignore[arg-type]
    assert words in str(raised.value)


def test_validate_names_the_bad_file_and_field(tmp_path: Path) -> None:
    for spec in specs():
        document = spec.as_document()
        if spec.operating_system == "WINDOWS":
            document["approval_rules"][0]["approve_after_days"] = 361
        (tmp_path / Path(spec.source).name).write_text(yaml.safe_dump(document))
    bad = tmp_path / next(Path(s.source).name for s in specs() if s.operating_system == "WINDOWS")
    params = {"targets": [{"aws_conn_id": "aws_default", "regions": ["us-east-1"]}], "baselines_dir": str(tmp_path)}
    with pytest.raises(AirflowFailException) as raised:
        BaselineParamsOperator(task_id="validate").execute({"params": params, "ti": SimpleNamespace()})  # type: ignore[arg-type]
    assert f"{bad}: approval_rules[0].approve_after_days: must be an integer 0..360, got 361" in str(raised.value)
