"""plan_install: which instances production patches, their staging profiles, pinned patch lists and waves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import MAX_WAVES, InstallSettings
from patchcycle.core.plan import split_cve_ids  # any ";"-joined id list
from patchcycle.core.staging import (
    assign_profiles,
    override_list_yaml,
    production_instances,
    staging_profiles,
)
from patchcycle.core.waves import plan_waves
from patchcycle.operators.base import recorded_failure
from patchcycle.operators.match_tables import read_match_tables, targets_of

STAGE = "install"
STAGE_TASK = "plan_install"


class InstallPlanOperator(BaseOperator):
    """Install mode only (skips in scan mode): writes the production set, the profiles and the wave plan.

    Each profile's pinned patch list is written as an InstallOverrideList document next to them, so
    staging and every production wave install exactly the same patches, whatever is released meanwhile.
    """

    template_fields: Sequence[str] = ("targets", "mode", "settings", "artifact_root", "artifact_conn_id")

    def __init__(
        self,
        *,
        targets: Any,
        mode: Any,
        settings: Any,
        artifact_root: str,
        artifact_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.mode = mode
        self.settings = settings
        self.artifact_root = artifact_root
        self.artifact_conn_id = artifact_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        if self.mode != "install":
            raise AirflowSkipException(f"{self.mode} mode: nothing is installed")
        settings = InstallSettings.from_dict(self.settings)
        store = ArtifactStore(self.artifact_root, context["dag"].dag_id, context["run_id"], self.artifact_conn_id)
        with recorded_failure(store, STAGE_TASK, stage=STAGE_TASK):
            return self._plan(store, settings)

    def _plan(self, store: ArtifactStore, settings: InstallSettings) -> dict[str, Any]:
        tables = read_match_tables(store, targets_of(self.targets))
        if tables.missing:
            parts = "; ".join(f"{m['aws_conn_id']}/{m['region']} {m['stage']}: {m['error']}" for m in tables.missing)
            raise AirflowFailException(f"nothing is installed on a partial picture of the fleet: {parts}")
        production = production_instances(tables.inventory, tables.plan, tables.scan_failures)
        profiles = staging_profiles(production, settings.staging_max_instances)
        production = assign_profiles(production, profiles)
        staged = set(profiles.loc[profiles["staged"], "profile_id"])
        waves = plan_waves(
            production[production["profile_id"].isin(staged)],
            settings.canary,
            settings.wave_percentages,
            MAX_WAVES,
        )
        overrides = {
            profile["profile_id"]: store.write_bytes(
                STAGE,
                f"overrides/{profile['profile_id']}.yaml",
                override_list_yaml(split_cve_ids(str(profile["patch_ids"]))).encode(),
            )
            for profile in profiles.to_dict("records")
            if profile["staged"]
        }
        store.write_frame(STAGE, "production", production)
        store.write_frame(STAGE, "profiles", profiles)
        store.write_frame(STAGE, "waves", waves)
        store.write_json(STAGE, "overrides.json", overrides)
        sizes = waves.groupby("wave").size()
        summary = {
            "production_instances": len(production),
            "profiles": len(profiles),
            "staged_profiles": len(staged),
            "not_staged_instances": int((~production["profile_id"].isin(staged)).sum()),
            "waves": {str(int(wave)): int(count) for wave, count in sizes.items()},
        }
        self.log.info("Install plan: %s", summary)
        return summary
