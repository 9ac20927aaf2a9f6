"""patchcycle.baseline_files: reading the baseline files and the schema, and failing naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from include.sandbox.scenario import DEFAULT_SCENARIO
from patchcycle.baseline_files import (
    BASELINE_SCHEMA,
    baseline_validator,
    load_baseline_files,
    parse_baselines,
    read_baseline_document,
)
from patchcycle.core.baselines.model import BaselineConfigError
from tests.core.baselines.samples import WEB, WIN

REPO_BASELINES = Path(__file__).resolve().parents[1] / "include" / "baselines"


def write(directory: Path, name: str, document: Any) -> Path:
    path = directory / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def test_the_repository_baselines_cover_the_default_scenarios_patch_groups() -> None:
    specs = load_baseline_files(REPO_BASELINES)
    scenario = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    amis = scenario["amis"]
    fleet = {
        (group["tags"]["PatchGroup"], amis[group["ami"]]["os"])
        for account in scenario["accounts"]
        for region in account["regions"].values()
        for group in region.get("instance_groups", [])
        if "PatchGroup" in group.get("tags", {})
    }
    covered = {(group, s.operating_system) for s in specs for group in s.patch_groups}
    assert fleet <= covered
    assert {s.name for s in specs} == {b["name"] for b in scenario["baselines"]}
    assert all(s.source.startswith(str(REPO_BASELINES)) for s in specs)


def test_the_schema_lives_beside_the_baselines_and_is_not_read_as_one() -> None:
    assert BASELINE_SCHEMA.parent == REPO_BASELINES and BASELINE_SCHEMA.is_file()
    assert len(load_baseline_files(REPO_BASELINES)) == len(list(REPO_BASELINES.glob("*.yaml")))
    assert baseline_validator() is baseline_validator()  # read once per process


def test_a_bad_field_fails_naming_the_file_and_the_field(tmp_path: Path) -> None:
    write(tmp_path, "web.yaml", WEB)
    rule = {**WIN["approval_rules"][0], "approve_after_days": 400}
    del rule["approve_until_date"]
    bad = write(tmp_path, "win.yaml", {**WIN, "approval_rules": [rule]})
    with pytest.raises(BaselineConfigError) as raised:
        load_baseline_files(tmp_path)
    assert str(raised.value) == f"{bad}: approval_rules[0].approve_after_days: must be an integer 0..360, got 400"


def test_invalid_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    file = write(tmp_path, "broken.yaml", "name: x\napproval_rules: [\n  - {a: 1\n")
    with pytest.raises(BaselineConfigError, match=rf"^{file}: line \d+: invalid YAML"):
        load_baseline_files(tmp_path)
    with pytest.raises(BaselineConfigError) as raised:
        read_baseline_document(file)
    assert raised.value.where.startswith("line ")


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path, "list.yml", [WEB])
    with pytest.raises(BaselineConfigError, match=rf"^{file}: must be a mapping"):
        load_baseline_files(tmp_path)


def test_an_unquoted_yaml_date_reads_as_the_date(tmp_path: Path) -> None:
    write(tmp_path, "win.yaml", yaml.safe_dump(WIN).replace("'2026-12-31'", "2026-12-31"))
    assert "'" not in (tmp_path / "win.yaml").read_text().split("approve_until_date:")[1].split("\n")[0]
    (loaded,) = load_baseline_files(tmp_path)
    assert loaded.approval_rules[0].approve_until_date == "2026-12-31"


def test_a_directory_without_baselines_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "not a baseline")
    write(tmp_path, "baseline.schema.json", "{}")
    with pytest.raises(BaselineConfigError, match="no baseline files"):
        load_baseline_files(tmp_path)
    with pytest.raises(BaselineConfigError, match="not a directory"):
        load_baseline_files(tmp_path / "missing")


def test_two_files_with_one_name_are_refused_naming_both(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", WEB)
    second = write(tmp_path, "b.yaml", {**WEB, "patch_groups": ["other"]})
    with pytest.raises(BaselineConfigError) as raised:
        load_baseline_files(tmp_path)
    assert str(raised.value).startswith(f"{second}: name: ")
    assert str(first) in str(raised.value)


def test_the_xcom_documents_are_validated_against_the_schema_file() -> None:
    documents = {spec.source: spec.as_document() for spec in load_baseline_files(REPO_BASELINES)}
    assert [spec.as_document() for spec in parse_baselines(documents)] == list(documents.values())
    source = next(iter(documents))
    with pytest.raises(BaselineConfigError, match=rf"^{source}: colour: unknown field"):
        parse_baselines({source: {**documents[source], "colour": "blue"}})
