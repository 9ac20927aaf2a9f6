"""The immutable path's records read back: the baked AMIs as staging profiles, and the whole run's bakes, proofs
and refreshes for the approval gate and the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from patchcycle.config import Target
from patchcycle.core.frames import concat_frames, typed_frame
from patchcycle.core.immutable import BAKE_PLAN_COLUMNS, GROUP_PLAN_COLUMNS
from patchcycle.core.immutable_rollout import (
    BAKE_RESULT_COLUMNS,
    IMAGE_PROOF_COLUMNS,
    GroupRefresh,
    ReplacementCheck,
    approval_section,
    image_problems,
    image_profiles,
    immutable_outcomes,
    refresh_entries,
)
from patchcycle.core.outcomes import ApprovalRecord, StagingRecord
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.staging import PROFILE_COLUMNS, STAGING_RESULT_COLUMNS
from patchcycle.run_artifacts import (
    BAKE_PLAN,
    BAKE_RESULTS,
    GROUP_PLAN,
    IMAGE_PROOFS,
    REFRESHES,
    REPLACEMENT_CHECKS,
    STAGING_RESULTS,
    RunArtifacts,
)


def with_image_profiles(artifacts: RunArtifacts, profiles: pd.DataFrame, target: Target) -> pd.DataFrame:
    """The staging profiles plus one per AMI this target baked (launched from the baked AMI, id = the bake id)."""
    bakes, results = artifacts.find(BAKE_PLAN), artifacts.find(BAKE_RESULTS, target=target)
    if bakes is None or results is None or results.empty:
        return profiles
    return concat_frames([profiles, image_profiles(bakes, results)], PROFILE_COLUMNS)


def bake_ids(artifacts: RunArtifacts) -> set[str]:
    """The run's planned bake ids: the staging profiles that are baked AMIs' replicas (empty when none)."""
    bakes = artifacts.find(BAKE_PLAN)
    return set() if bakes is None else {str(b) for b in bakes["bake_id"]}


@dataclass
class ImmutableRecord:
    """The whole run's immutable path as recorded so far (empty tables when nothing was planned)."""

    bakes: pd.DataFrame = field(default_factory=lambda: typed_frame([], BAKE_PLAN_COLUMNS))
    groups: pd.DataFrame = field(default_factory=lambda: typed_frame([], GROUP_PLAN_COLUMNS))
    results: pd.DataFrame = field(default_factory=lambda: typed_frame([], BAKE_RESULT_COLUMNS))
    proofs: pd.DataFrame = field(default_factory=lambda: typed_frame([], IMAGE_PROOF_COLUMNS))
    refreshes: dict[str, GroupRefresh] = field(default_factory=dict)


def read_immutable_record(artifacts: RunArtifacts, targets: Sequence[Target]) -> ImmutableRecord:
    bakes, groups = artifacts.find(BAKE_PLAN), artifacts.find(GROUP_PLAN)
    if bakes is None or groups is None:
        return ImmutableRecord()
    return ImmutableRecord(
        bakes=bakes,
        groups=groups,
        results=concat_frames([artifacts.find(BAKE_RESULTS, target=t) for t in targets], BAKE_RESULT_COLUMNS),
        proofs=concat_frames([artifacts.find(IMAGE_PROOFS, target=t) for t in targets], IMAGE_PROOF_COLUMNS),
        refreshes=read_refreshes(artifacts),
    )


def read_refreshes(artifacts: RunArtifacts) -> dict[str, GroupRefresh]:
    """refresh_key (account/region/group) -> its refresh record, as refresh_groups left them ({} before it ran)."""
    found: dict[str, GroupRefresh] | None = artifacts.find(REFRESHES)
    return dict(found) if found else {}


def approval_part(artifacts: RunArtifacts, targets: Sequence[Target]) -> tuple[str, list[str]]:
    """The approval body's section on the Auto Scaling groups, and what stops the auto policy approving them
    ("" and [] when no group is on the immutable path)."""
    record = read_immutable_record(artifacts, targets)
    if record.groups.empty:
        return "", []
    staging = concat_frames([artifacts.find(STAGING_RESULTS, target=t) for t in targets], STAGING_RESULT_COLUMNS)
    proofs = record.proofs if any(artifacts.exists(IMAGE_PROOFS, target=t) for t in targets) else None
    problems = image_problems(record.bakes, record.results, proofs, staging)
    return approval_section(record.groups, record.results, record.proofs, problems), problems


def immutable_report(
    artifacts: RunArtifacts, targets: Sequence[Target], approval: ApprovalRecord | None, staging: StagingRecord
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The outcomes of the Auto Scaling instances the immutable path took, and the report's list of groups."""
    record = read_immutable_record(artifacts, targets)
    outcomes = immutable_outcomes(record.groups, record.results, approval, staging, record.refreshes)
    checks: dict[str, ReplacementCheck] = {}
    for target in targets:
        found: dict[str, ReplacementCheck] | None = artifacts.find(REPLACEMENT_CHECKS, target=target)
        checks.update(found or {})
    pinned = {str(b["bake_id"]): split_cve_ids(str(b["patch_ids"])) for b in record.bakes.to_dict("records")}
    return outcomes, refresh_entries(record.groups, record.refreshes, checks, pinned, outcomes)
