"""The run-artifact contract: schemas checked both ways, the only place that knows the layout, its doc current."""

from __future__ import annotations

import ast
import string
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from patchcycle.artifact_docs import DOC, render
from patchcycle.config import Target
from patchcycle.core.frames import typed_frame
from patchcycle.core.plan import PLAN_COLUMNS
from patchcycle.core.wave_results import WaveRecord
from patchcycle.run_artifacts import (
    ALL_ARTIFACTS,
    KEYS,
    MATCH_PLAN,
    REPORT_JSON,
    STACK,
    WAVE,
    WAVE_SENT,
    ArtifactError,
    ArtifactMissing,
    Record,
    RunArtifacts,
)
from patchcycle.run_records import SentCommand, StackRecord

REPO = Path(__file__).resolve().parents[1]
CONTRACT = REPO / "plugins" / "patchcycle" / "run_artifacts.py"
STORE = REPO / "plugins" / "patchcycle" / "artifacts.py"
TARGET = Target("aws_default", "us-east-1")


@pytest.fixture
def run(tmp_path: Path) -> RunArtifacts:
    return RunArtifacts(f"file://{tmp_path}", "patch_cycle", "manual__2026-11-20T03:00:00+00:00", conn_id=None)


# -- the contract itself ----------------------------------------------------------------------------------------


def test_every_artifact_has_its_own_file_and_known_placeholders() -> None:
    paths = [f"{a.stage}/{a.name}" for a in ALL_ARTIFACTS]
    assert len(paths) == len(set(paths))
    for artifact in ALL_ARTIFACTS:
        assert set(artifact.placeholders) <= set(KEYS), artifact.name
        assert artifact.about and artifact.written_by, artifact.name


def test_a_table_is_checked_when_written_and_when_read(run: RunArtifacts, tmp_path: Path) -> None:
    plan = typed_frame([{"account_id": "1", "resource_id": "i-1", "patch_id": "KB1"}], PLAN_COLUMNS)
    uri = run.write(MATCH_PLAN, plan, target=TARGET)
    assert uri.endswith("/patch_cycle/manual__2026-11-20T03_00_00_00_00/match/aws_default.us-east-1.plan.parquet")
    pd.testing.assert_frame_equal(run.read(MATCH_PLAN, target=TARGET), plan)
    with pytest.raises(ArtifactError, match=r"plan\.parquet: missing column\(s\) \['title'\]"):
        run.write(MATCH_PLAN, plan.drop(columns="title"), target=TARGET)
    with pytest.raises(ArtifactError, match=r"column 'severity' is int64, not str"):
        run.write(MATCH_PLAN, plan.assign(severity=3), target=TARGET)
    # Written by something else, under another shape: the reader refuses it, naming the file.
    plan.drop(columns="cve_ids").to_parquet(tmp_path / uri.removeprefix(f"file://{tmp_path}/"), index=False)
    with pytest.raises(ArtifactError, match=r"plan\.parquet: missing column\(s\) \['cve_ids'\]"):
        run.read(MATCH_PLAN, target=TARGET)


def test_a_record_is_checked_strictly_when_read(run: RunArtifacts, tmp_path: Path) -> None:
    record = StackRecord(stack_name="patchcycle-staging-x", account_id="1", region="us-east-1", created=True)
    uri = run.write(STACK, record, target=TARGET)
    assert run.read(STACK, target=TARGET) == record
    path = Path(uri.removeprefix("file://"))
    path.write_text(path.read_text().replace('"created": true', '"created": "yes"'))
    with pytest.raises(ArtifactError, match=r"stack\.json: created: Input should be a valid boolean"):
        run.read(STACK, target=TARGET)
    path.write_text('{"stack_name": "s", "account_id": "1", "region": "r", "colour": "red"}')
    with pytest.raises(ArtifactError, match=r"colour: Unexpected keyword argument"):
        run.read(STACK, target=TARGET)


def test_records_of_core_types_and_lists_round_trip(run: RunArtifacts) -> None:
    wave = WaveRecord(wave=2, instances=5, started_at="2026-11-20T03:00:00Z", status="halted", halted=True)
    run.write(WAVE, wave, wave=2)
    assert run.read(WAVE, wave=2) == wave
    sent = [SentCommand(command_id="c-1", instance_ids=["i-1", "i-2"])]
    run.write(WAVE_SENT, sent, wave=2, target=TARGET)
    assert run.read(WAVE_SENT, wave=2, target=TARGET) == sent


def test_a_document_is_checked_against_its_json_schema(run: RunArtifacts) -> None:
    with pytest.raises(ArtifactError, match=r"report\.json: \(the document\): 'run_id' is a required property"):
        run.write(REPORT_JSON, {"mode": "scan"})


def test_a_missing_artifact_names_its_file_and_the_task_that_writes_it(run: RunArtifacts) -> None:
    assert run.find(STACK, target=TARGET) is None and not run.exists(STACK, target=TARGET)
    with pytest.raises(ArtifactMissing, match=r"staging/aws_default\.us-east-1\.stack\.json is missing: the task"):
        run.read(STACK, target=TARGET)


def test_a_file_name_needs_exactly_its_placeholders(run: RunArtifacts) -> None:
    with pytest.raises(TypeError, match=r"takes \['wave', 'target'\], got \['wave'\]"):
        run.uri(WAVE_SENT, wave=1)
    with pytest.raises(TypeError, match=r"takes \['wave'\], got \['target', 'wave'\]"):
        run.uri(WAVE, wave=1, target=TARGET)


def test_every_record_schema_builds() -> None:
    for artifact in ALL_ARTIFACTS:
        if isinstance(artifact, Record):
            assert artifact.adapter.json_schema(), artifact.name


# -- the only place that knows the layout -----------------------------------------------------------------------


def _literal_tails() -> set[str]:
    """The constant end of every contract file name that says what the file is (".summary.json", "report.json")."""
    tails = set()
    for artifact in ALL_ARTIFACTS:
        literal = [text for text, _, _, _ in string.Formatter().parse(artifact.name)][-1]
        if literal.strip(".") not in {"json", "parquet", "yaml", "csv", "html"}:
            tails.add(literal)
    return tails


def layout_spellings(source: str) -> list[str]:
    """What in a module's source spells the run's layout itself: an import of the artifact store, a string that
    ends like a contract file or names a stage folder, or a parquet file."""
    tree = ast.parse(source)
    stages = {artifact.stage for artifact in ALL_ARTIFACTS}
    tails = _literal_tails()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "patchcycle.artifacts":
            found.append(f"imports the artifact store ({', '.join(a.name for a in node.names)})")
        if isinstance(node, ast.ImportFrom) and any(a.name == "ObjectStoragePath" for a in node.names):
            found.append("opens object storage itself (ObjectStoragePath)")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if ".parquet" in text or any(text.endswith(tail) for tail in tails):
                found.append(f"spells an artifact file: {text!r}")
            if any(f"/{stage}/" in text or text.startswith(f"{stage}/") for stage in stages):
                found.append(f"spells a stage folder: {text!r}")
    return found


def _modules() -> list[Path]:
    """Every module of the plugin, the DAGs and the project's tools (the sandbox AWS knows no run)."""
    roots = [REPO / "plugins", REPO / "dags", REPO / "include"]
    files = [path for root in roots for path in root.rglob("*.py")]
    # links/ spells AWS console URLs, not the run's layout: their paths may share a word with a stage ("automation").
    links = REPO / "plugins" / "patchcycle" / "links"
    return sorted(
        p for p in files if p not in (CONTRACT, STORE) and "sandbox" not in p.parts and not p.is_relative_to(links)
    )


def test_no_module_but_the_contract_spells_the_layout() -> None:
    offenders = {
        str(path.relative_to(REPO)): found for path in _modules() if (found := layout_spellings(path.read_text()))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "source",
    [
        "from patchcycle.artifacts import ArtifactStore",
        "from airflow.sdk import ObjectStoragePath",
        "name = f'{key}.summary.json'",
        "name = 'report.json'",
        "path = 'inventory/' + key",
        "uri = f'{root}/patch_cycle/{run}/install/overrides/{p}.yaml'",
        "frame.to_parquet(f'{key}.parquet')",
    ],
)
def test_the_layout_check_catches_each_way_of_spelling_it(source: str) -> None:
    assert layout_spellings(source)


def test_the_layout_check_lets_plain_strings_be() -> None:
    assert layout_spellings("task_id = 'inventory'\nmode = 'install'\nschema = 'baseline.schema.json'") == []


# -- its documentation -------------------------------------------------------------------------------------------


def test_the_layout_doc_is_what_the_contract_gives() -> None:
    """docs/artifacts.md is generated: run `make docs` after changing the contract."""
    assert DOC.read_text() == render()


def test_the_layout_doc_names_every_artifact() -> None:
    text: Any = DOC.read_text()
    for artifact in ALL_ARTIFACTS:
        assert f"`{artifact.stage}/{artifact.name}`" in text
