"""core.baselines.model: a baseline in SSM's API shapes, and back as the document XCom carries."""

from __future__ import annotations

import yaml

from patchcycle.baseline_files import baseline_validator
from patchcycle.core.baselines.validation import parse_baseline
from patchcycle.core.baselines.vocabulary import MANAGED_TAG_KEY, MANAGED_TAG_VALUE
from tests.core.baselines.samples import APP, WEB, WIN, spec


def test_a_document_round_trips_through_xcom_form() -> None:
    for document in (WEB, APP, WIN):
        original = spec(document)
        again = parse_baseline(
            yaml.safe_load(yaml.safe_dump(original.as_document())), original.source, baseline_validator()
        )
        assert again == original


def test_api_fields_use_each_operating_systems_filter_keys() -> None:
    rules = {
        name: spec(document).api_fields()["ApprovalRules"]["PatchRules"][0]
        for name, document in (("web", WEB), ("app", APP), ("win", WIN))
    }
    keys = {name: [f["Key"] for f in rule["PatchFilterGroup"]["PatchFilters"]] for name, rule in rules.items()}
    assert keys == {
        "web": ["CLASSIFICATION", "SEVERITY"],
        "app": ["PRIORITY"],
        "win": ["CLASSIFICATION", "MSRC_SEVERITY"],
    }
    assert rules["web"]["ApproveAfterDays"] == 0 and "ApproveUntilDate" not in rules["web"]
    assert rules["win"]["ApproveUntilDate"] == "2026-12-31" and "ApproveAfterDays" not in rules["win"]
    assert "ApproveAfterDays" not in rules["app"] and "ApproveUntilDate" not in rules["app"]
    # EnableNonSecurity is Linux-only: never sent for Windows.
    assert "EnableNonSecurity" not in rules["win"] and rules["web"]["EnableNonSecurity"] is False
    request = spec(WEB).create_request()
    assert {"Key": MANAGED_TAG_KEY, "Value": MANAGED_TAG_VALUE} in request["Tags"]
    assert {"Key": "Tier", "Value": "web"} in request["Tags"]
    assert request["GlobalFilters"] == {"PatchFilters": [{"Key": "PRODUCT", "Values": ["*"]}]}
