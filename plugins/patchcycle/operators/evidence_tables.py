"""Reading every target's post-install evidence back for the report: Inspector's CVE tables and Config's."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import Target
from patchcycle.core.report_evidence import config_section, inspection_section
from patchcycle.operators.match_tables import missing_part, read_frame, read_json, sent_instances

INSPECT_STAGE = "inspect"
CONFIG_STAGE = "config"


@dataclass
class EvidenceTables:
    """The report's `inspection` (None outside install mode) and `config` sections, and what is missing."""

    inspection: dict[str, Any] | None
    config: dict[str, Any]
    missing: list[dict[str, Any]] = field(default_factory=list)  # {aws_conn_id, region, stage, error}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    return pd.concat(frames, ignore_index=True) if frames else None


def read_evidence(store: ArtifactStore, targets: Iterable[Target], mode: str) -> EvidenceTables:
    """Each target's inspect and config artifacts. A stage that should have left them and did not is listed
    missing, with its recorded error or "the task did not finish": inspect where a wave sent the install,
    config wherever the inventory was read.
    """
    cves, residual, config_rows, config_targets, missing = [], [], [], [], []
    for target in targets:
        if mode == "install":
            frame = read_frame(store, INSPECT_STAGE, f"{target.key}.cves.parquet")
            if frame is not None:
                cves.append(frame)
                found = read_frame(store, INSPECT_STAGE, f"{target.key}.residual.parquet")
                residual.extend([found] if found is not None else [])
            elif sent_instances(store, target):
                # The install reached this target, so its CVEs had to be proved: a failed or lost task is missing.
                missing.append(missing_part(store, target, INSPECT_STAGE))
        rows = read_frame(store, CONFIG_STAGE, f"{target.key}.compliance.parquet")
        summary = read_json(store, CONFIG_STAGE, f"{target.key}.json")
        if rows is not None:
            config_rows.append(rows)
        if summary is not None:
            config_targets.append({"aws_conn_id": target.aws_conn_id, "region": target.region_name, **summary})
        elif store.path("inventory", f"{target.key}.parquet").exists():
            # Config reads every target whose inventory exists (a missing inventory is reported already).
            missing.append(missing_part(store, target, CONFIG_STAGE))
    return EvidenceTables(
        inspection=inspection_section(_concat(cves), _concat(residual)) if mode == "install" else None,
        config=config_section(_concat(config_rows), config_targets),
        missing=missing,
    )
