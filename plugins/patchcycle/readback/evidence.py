"""Every target's post-install evidence, read back for the report: Inspector's CVE tables and Config's."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from patchcycle.config import Target
from patchcycle.core.report_evidence import config_section, inspection_section
from patchcycle.readback.match import missing_part, sent_instances
from patchcycle.run_artifacts import CONFIG_COMPLIANCE, CONFIG_SUMMARY, CVES, INVENTORY, RESIDUAL, RunArtifacts, Step


@dataclass
class EvidenceTables:
    """The report's `inspection` (None outside install mode) and `config` sections, and what is missing."""

    inspection: dict[str, Any] | None
    config: dict[str, Any]
    missing: list[dict[str, Any]] = field(default_factory=list)  # {aws_conn_id, region, stage, error}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    return pd.concat(frames, ignore_index=True) if frames else None


def read_evidence(artifacts: RunArtifacts, targets: Iterable[Target], installs: bool) -> EvidenceTables:
    """Each target's inspect and config artifacts. A stage that should have left them and did not is listed
    missing, with its recorded error or "the task did not finish": inspect where a wave sent the install,
    config wherever the inventory was read.
    """
    cves, residual, config_rows, config_targets, missing = [], [], [], [], []
    for target in targets:
        if installs:
            frame = artifacts.find(CVES, target=target)
            if frame is not None:
                cves.append(frame)
                found = artifacts.find(RESIDUAL, target=target)
                residual.extend([found] if found is not None else [])
            elif sent_instances(artifacts, target):
                # The install reached this target, so its CVEs had to be proved: a failed or lost task is missing.
                missing.append(missing_part(artifacts, target, Step.INSPECT))
        rows = artifacts.find(CONFIG_COMPLIANCE, target=target)
        summary = artifacts.find(CONFIG_SUMMARY, target=target)
        if rows is not None:
            config_rows.append(rows)
        if summary is not None:
            config_targets.append({"aws_conn_id": target.aws_conn_id, "region": target.region_name, **asdict(summary)})
        elif artifacts.exists(INVENTORY, target=target):
            # Config reads every target whose inventory exists (a missing inventory is reported already).
            missing.append(missing_part(artifacts, target, Step.CONFIG))
    return EvidenceTables(
        inspection=inspection_section(_concat(cves), _concat(residual)) if installs else None,
        config=config_section(_concat(config_rows), config_targets),
        missing=missing,
    )
