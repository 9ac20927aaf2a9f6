"""InstallPlanOperator over a real match (sandbox): the production set, profiles, waves and one override list per
staged profile; refused on a partial picture of the fleet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException

from include.sandbox.server import SandboxServer
from patchcycle.config import Target
from patchcycle.core.plan import OUTSTANDING_STATES
from patchcycle.operators.install_plan import InstallPlanOperator
from patchcycle.run_artifacts import (
    INVENTORY,
    INVENTORY_SUMMARY,
    MATCH_COMPLIANCE,
    MATCH_PLAN,
    OVERRIDE_LIST,
    OVERRIDES,
    PRODUCTION,
    PROFILES,
    RUN_ERROR,
    SCAN_FAILURES,
    TARGET_ERROR,
    WAVE_PLAN,
    Step,
)
from patchcycle.run_records import TaskError
from tests.operators.install_helpers import (
    TARGET,
    context,
    copy_run,
    cycle_config,
    match_run,
    s3_root,
    scenario,
)

BASE_RUN = "scheduled__match"
WEST = "eu-west-1"
SCENARIO = scenario("plan")
ROOT = s3_root("install-plan")
MATCHED = (INVENTORY, INVENTORY_SUMMARY, MATCH_PLAN, MATCH_COMPLIANCE, SCAN_FAILURES)


@pytest.fixture(scope="module")
def base(server: SandboxServer) -> dict[str, Any]:
    """BASE_RUN's inventory and match of the region; the module's config."""
    config = cycle_config(ROOT)
    match_run(server, config, BASE_RUN)
    return config


def plan(config: dict[str, Any], run_id: str) -> dict[str, Any]:
    summary: dict[str, Any] = InstallPlanOperator(task_id="plan_install", config=config).execute(context(run_id))
    return summary


def test_the_production_set_profiles_waves_and_pinned_override_lists(base: dict[str, Any]) -> None:
    run_id = "scheduled__plan"
    # One replica per region: the Windows profile (fewer instances) is not staged.
    config = cycle_config(ROOT, staging_max_instances=1)
    artifacts = copy_run(config, BASE_RUN, run_id, MATCHED, [TARGET])

    summary = plan(config, run_id)

    match = artifacts.read(MATCH_PLAN, target=TARGET)
    outstanding = match[(match["resource_type"] == "ec2") & match["state"].isin(OUTSTANDING_STATES)]
    expected = outstanding.groupby("resource_id")["patch_id"].agg(lambda ids: ";".join(sorted(set(ids)))).to_dict()
    production = artifacts.read(PRODUCTION)
    assert dict(zip(production["resource_id"], production["patch_ids"], strict=True)) == expected
    assert len(production) == 8

    profiles = artifacts.read(PROFILES)
    assert list(profiles["profile_id"]) == ["p01", "p02"] and list(profiles["staged"]) == [True, False]
    assert list(profiles["patch_group"]) == ["web", "windows"]
    for profile in profiles.to_dict("records"):
        members = production[production["profile_id"] == profile["profile_id"]]
        pinned = sorted({pid for joined in members["patch_ids"] for pid in joined.split(";")})
        assert profile["patch_ids"].split(";") == pinned
        assert profile["production_instances"] == len(members)

    overrides = artifacts.read(OVERRIDES)
    assert list(overrides) == ["p01"]  # only staged profiles: the others are never installed
    for profile_id, uri in overrides.items():
        assert uri == artifacts.uri(OVERRIDE_LIST, profile=profile_id) and uri.startswith(f"{ROOT}/")
        document = yaml.safe_load(artifacts.read(OVERRIDE_LIST, profile=profile_id))
        pinned = profiles.set_index("profile_id").loc[profile_id, "patch_ids"].split(";")
        assert document == {"patches": [{"id": pid} for pid in pinned]}
    assert not artifacts.exists(OVERRIDE_LIST, profile="p02")

    waves = artifacts.read(WAVE_PLAN)
    staged = production[production["profile_id"] == "p01"]
    assert sorted(waves["resource_id"]) == sorted(staged["resource_id"])
    assert waves.groupby("wave").size().to_dict() == {1: 2, 2: 2, 3: 2}  # canary 2, then 50% / 50% of the rest
    assert summary == {
        "production_instances": 8,
        "profiles": 2,
        "staged_profiles": 1,
        "not_staged_instances": 2,
        "waves": {"1": 2, "2": 2, "3": 2},
        "rds": {"databases": 0, "clusters": 0, "actions": 0, "waves": {}},  # no database in this fleet
        "replaced_instances": 0,
    }


@pytest.mark.parametrize(
    ("recorded", "why"),
    [
        (None, "the task did not finish"),
        ("RuntimeError: ssm:SendCommand failed (retryable)", "RuntimeError: ssm:SendCommand failed (retryable)"),
    ],
)
def test_a_target_without_its_match_fails_naming_the_missing_part(
    base: dict[str, Any], recorded: str | None, why: str
) -> None:
    run_id = f"scheduled__partial_{bool(recorded)}"
    config = cycle_config(ROOT, regions=[TARGET.region_name, WEST])
    artifacts = copy_run(config, BASE_RUN, run_id, MATCHED, [TARGET])
    west = Target("aws_default", WEST)
    # eu-west-1's inventory finished (it found nothing), its match did not.
    artifacts.write(INVENTORY, artifacts.read(INVENTORY, target=TARGET).iloc[0:0], target=west)
    if recorded is not None:
        at = datetime.now(UTC).isoformat()
        error = TaskError(stage=Step.MATCH, error=recorded, at=at, where=recorded, region=WEST)
        artifacts.write(TARGET_ERROR, error, step=Step.MATCH, target=west)

    with pytest.raises(AirflowFailException) as caught:
        plan(config, run_id)

    assert str(caught.value) == (
        f"nothing is installed on a partial picture of the fleet: aws_default/{WEST} match: {why}"
    )
    assert not artifacts.exists(PRODUCTION) and not artifacts.exists(WAVE_PLAN)
    error = artifacts.read(RUN_ERROR, step=Step.PLAN_INSTALL)
    assert error.stage == "plan_install" and f"aws_default/{WEST} match" in error.error


def test_a_target_without_its_inventory_fails_naming_it(base: dict[str, Any]) -> None:
    run_id = "scheduled__no_inventory"
    config = cycle_config(ROOT, regions=[WEST, TARGET.region_name])
    copy_run(config, BASE_RUN, run_id, MATCHED, [TARGET])
    with pytest.raises(AirflowFailException, match=rf"aws_default/{WEST} inventory: the task did not finish$"):
        plan(config, run_id)
