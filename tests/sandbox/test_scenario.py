"""Scenario files: the shipped ones load, and bad ones fail naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from include.sandbox.scenario import DEFAULT_SCENARIO, SCENARIOS_DIR, ScenarioError, load_scenario, parse_scenario


def _default() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_SCENARIO.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", sorted(SCENARIOS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.instance_count > 0


def test_default_scenario_is_the_documented_fleet() -> None:
    scenario = load_scenario(DEFAULT_SCENARIO)
    regions = {region.name for account in scenario.accounts for region in account.regions}
    os_families = {scenario.amis[group.ami].os for _, _, group in scenario.groups()}
    environments = {group.tags.get("Environment") for _, _, group in scenario.groups()}
    assert 150 <= scenario.instance_count <= 250
    assert regions == {"us-east-1", "eu-west-1"}
    assert len(os_families) == 3
    assert {"staging", "production"} <= environments


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["accounts"][0]["regions"]["us-east-1"]["instance_groups"][0].update(count=0),
            "accounts[0].regions.us-east-1.instance_groups[0].count: 0 is less than the minimum of 1",
        ),
        (lambda d: d["accounts"][0].update(id="12345"), "accounts[0].id: '12345' does not match"),
        (
            lambda d: d.update(colour="blue"),
            "(top level): Additional properties are not allowed ('colour' was unexpected)",
        ),
        (
            lambda d: d["failures"].append({"group": "no-such-group", "scan_fails": True}),
            "failures[4].group: no instance group is named 'no-such-group'",
        ),
        (
            lambda d: d["accounts"][0]["regions"]["eu-west-1"]["instance_groups"][1].update(
                ami="ami-0000000000000dead"
            ),
            "accounts[0].regions.eu-west-1.instance_groups[1].ami: ami-0000000000000dead is not listed under amis",
        ),
        (
            lambda d: d["baselines"][0]["approval_rules"][0].update(approve_after_days=400),
            "baselines[0].approval_rules[0].approve_after_days: 400 is greater than the maximum of 360",
        ),
        (
            lambda d: d["faults"].update({"ssm:SendCommand": {"throttle_rate": 2}}),
            "faults.ssm:SendCommand.throttle_rate: 2 is greater than the maximum of 1",
        ),
        (lambda d: d["clock"].update(start="yesterday"), "clock.start: 'yesterday' is not a 'date-time'"),
    ],
)
def test_bad_scenarios_name_the_field(mutate: Any, expected: str) -> None:
    document = copy.deepcopy(_default())
    mutate(document)
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(document, source="bad.yaml")
    assert str(raised.value).startswith("scenario bad.yaml: ")
    assert expected in str(raised.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read it"):
        load_scenario(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"broken.yaml: not valid YAML"):
        load_scenario(broken)
