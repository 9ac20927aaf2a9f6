"""InstallPlanOperator over a real match (sandbox): skipped in scan mode; in install mode the production set,
profiles, waves and one override list per staged profile; refused on a partial picture of the fleet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from include.sandbox.server import SandboxServer
from patchcycle.core.plan import OUTSTANDING_STATES
from patchcycle.core.staging import PRODUCTION_COLUMNS, PROFILE_COLUMNS
from patchcycle.core.waves import WAVE_PLAN_COLUMNS
from patchcycle.operators.install_plan import InstallPlanOperator
from tests.operators.install_helpers import (
    KEY,
    TARGETS,
    artifact,
    context,
    copy_run,
    match_run,
    read_json,
    run_dir,
    scenario,
    settings,
)

BASE_RUN = "scheduled__match"
WEST = "eu-west-1"
SCENARIO = scenario("plan")


@pytest.fixture(scope="module")
def base(server: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BASE_RUN's inventory and match of REGION."""
    root = tmp_path_factory.mktemp("base")
    match_run(server, root, BASE_RUN)
    return root


def plan_operator(root: Path, mode: str = "install", targets: Any = TARGETS, **install: Any) -> InstallPlanOperator:
    return InstallPlanOperator(
        task_id="plan_install", targets=targets, mode=mode, settings=settings(**install), artifact_root=f"file://{root}"
    )


def test_scan_mode_skips_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(AirflowSkipException, match="scan mode: nothing is installed"):
        plan_operator(tmp_path, mode="scan").execute(context("manual__scan"))
    assert not (tmp_path / "patch_cycle").exists()


def test_install_mode_writes_the_production_set_profiles_waves_and_pinned_override_lists(
    base: Path, tmp_path: Path
) -> None:
    run_id = "scheduled__plan"
    copy_run(base, BASE_RUN, tmp_path, run_id, ("inventory", "match"))

    # One replica per region: the Windows profile (fewer instances) is not staged.
    summary = plan_operator(tmp_path, staging_max_instances=1).execute(context(run_id))

    match = pd.read_parquet(artifact(tmp_path, run_id, "match", f"{KEY}.plan.parquet"))
    outstanding = match[(match["resource_type"] == "ec2") & match["state"].isin(OUTSTANDING_STATES)]
    expected = outstanding.groupby("resource_id")["patch_id"].agg(lambda ids: ";".join(sorted(set(ids)))).to_dict()
    production = pd.read_parquet(artifact(tmp_path, run_id, "install", "production.parquet"))
    assert set(PRODUCTION_COLUMNS) <= set(production.columns) and "profile_id" in production.columns
    assert dict(zip(production["resource_id"], production["patch_ids"], strict=True)) == expected
    assert len(production) == 8

    profiles = pd.read_parquet(artifact(tmp_path, run_id, "install", "profiles.parquet"))
    assert list(profiles.columns) == list(PROFILE_COLUMNS)
    assert list(profiles["profile_id"]) == ["p01", "p02"] and list(profiles["staged"]) == [True, False]
    assert list(profiles["patch_group"]) == ["web", "windows"]
    for profile in profiles.to_dict("records"):
        members = production[production["profile_id"] == profile["profile_id"]]
        pinned = sorted({pid for joined in members["patch_ids"] for pid in joined.split(";")})
        assert profile["patch_ids"].split(";") == pinned
        assert profile["production_instances"] == len(members)

    overrides = read_json(tmp_path, run_id, "install", "overrides.json")
    assert list(overrides) == ["p01"]  # only staged profiles: the others are never installed
    for profile_id, uri in overrides.items():
        assert uri == f"file://{artifact(tmp_path, run_id, 'install', f'overrides/{profile_id}.yaml')}"
        document = yaml.safe_load(Path(uri.removeprefix("file://")).read_text())
        pinned = profiles.set_index("profile_id").loc[profile_id, "patch_ids"].split(";")
        assert document == {"patches": [{"id": pid} for pid in pinned]}
    assert not artifact(tmp_path, run_id, "install", "overrides/p02.yaml").exists()

    waves = pd.read_parquet(artifact(tmp_path, run_id, "install", "waves.parquet"))
    assert list(waves.columns) == list(WAVE_PLAN_COLUMNS)
    staged = production[production["profile_id"] == "p01"]
    assert sorted(waves["resource_id"]) == sorted(staged["resource_id"])
    assert waves.groupby("wave").size().to_dict() == {1: 2, 2: 2, 3: 2}  # canary 2, then 50% / 50% of the rest
    assert summary == {
        "production_instances": 8,
        "profiles": 2,
        "staged_profiles": 1,
        "not_staged_instances": 2,
        "waves": {"1": 2, "2": 2, "3": 2},
    }


@pytest.mark.parametrize(
    ("recorded", "why"),
    [
        (None, "the task did not finish"),
        ("RuntimeError: ssm:SendCommand failed (retryable)", "RuntimeError: ssm:SendCommand failed (retryable)"),
    ],
)
def test_a_target_without_its_match_fails_naming_the_missing_part(
    base: Path, tmp_path: Path, recorded: str | None, why: str
) -> None:
    run_id = "scheduled__partial"
    copy_run(base, BASE_RUN, tmp_path, run_id, ("inventory", "match"))
    # eu-west-1's inventory finished (it found nothing), its match did not.
    inventory = pd.read_parquet(artifact(tmp_path, run_id, "inventory", f"{KEY}.parquet"))
    inventory.iloc[0:0].to_parquet(artifact(tmp_path, run_id, "inventory", f"aws_default.{WEST}.parquet"))
    if recorded is not None:
        errors = run_dir(tmp_path, run_id) / "errors"
        errors.mkdir()
        (errors / f"match.aws_default.{WEST}.json").write_text(json.dumps({"stage": "match", "error": recorded}))
    targets = [*TARGETS, {"aws_conn_id": "aws_default", "region_name": WEST}]

    with pytest.raises(AirflowFailException) as caught:
        plan_operator(tmp_path, targets=targets).execute(context(run_id))

    assert str(caught.value) == (
        f"nothing is installed on a partial picture of the fleet: aws_default/{WEST} match: {why}"
    )
    assert not (run_dir(tmp_path, run_id) / "install").exists()
    error = read_json(tmp_path, run_id, "errors", "plan_install.json")
    assert error["stage"] == "plan_install" and f"aws_default/{WEST} match" in error["error"]


def test_a_target_without_its_inventory_fails_naming_it(base: Path, tmp_path: Path) -> None:
    run_id = "scheduled__no_inventory"
    copy_run(base, BASE_RUN, tmp_path, run_id, ("inventory", "match"))
    targets = [{"aws_conn_id": "aws_default", "region_name": WEST}, *TARGETS]
    with pytest.raises(AirflowFailException, match=rf"aws_default/{WEST} inventory: the task did not finish$"):
        plan_operator(tmp_path, targets=targets).execute(context(run_id))
