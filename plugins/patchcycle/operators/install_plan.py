"""plan_install: which instances production patches, their staging profiles, pinned patch lists and waves."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import MAX_WAVES, CycleConfig
from patchcycle.core.immutable import split_production
from patchcycle.core.plan import split_cve_ids  # any ";"-joined id list
from patchcycle.core.staging import assign_profiles, override_list_yaml, production_instances, staging_profiles
from patchcycle.core.waves import plan_waves
from patchcycle.operators.base import FleetOperator, recorded_failure
from patchcycle.operators.immutable_plan import write_immutable_plan
from patchcycle.operators.rds_plan import write_rds_plan
from patchcycle.readback.match import read_match_tables
from patchcycle.run_artifacts import OVERRIDE_LIST, OVERRIDES, PRODUCTION, PROFILES, WAVE_PLAN, RunArtifacts, Step


class InstallPlanOperator(FleetOperator[CycleConfig]):
    """Writes the production set, the profiles and the wave plan (install mode: the mode gate runs it).

    Each profile's pinned patch list is written as an InstallOverrideList document next to them, so
    staging and every production wave install exactly the same patches, whatever is released meanwhile.
    """

    config_class = CycleConfig

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        with recorded_failure(artifacts, Step.PLAN_INSTALL):
            return self._plan(artifacts, self.settings())

    def _plan(self, artifacts: RunArtifacts, config: CycleConfig) -> dict[str, Any]:
        tables = read_match_tables(artifacts, config.targets)
        if tables.missing:
            parts = "; ".join(f"{m['aws_conn_id']}/{m['region']} {m['stage']}: {m['error']}" for m in tables.missing)
            raise AirflowFailException(f"nothing is installed on a partial picture of the fleet: {parts}")
        settings = config.install
        production = production_instances(tables.inventory, tables.plan, tables.scan_failures)
        # Auto Scaling instances are replaced from a baked AMI, not patched in place (immutable: asg).
        production, immutable = split_production(production, config.auto_scaling.immutable)
        profiles = staging_profiles(production, settings.staging_max_instances)
        production = assign_profiles(production, profiles)
        staged = set(profiles.loc[profiles["staged"], "profile_id"])
        waves = plan_waves(
            production[production["profile_id"].isin(staged)], settings.canary, settings.wave_percentages, MAX_WAVES
        )
        overrides = {
            profile["profile_id"]: artifacts.write(
                OVERRIDE_LIST,
                override_list_yaml(split_cve_ids(str(profile["patch_ids"]))),
                profile=profile["profile_id"],
            )
            for profile in profiles.to_dict("records")
            if profile["staged"]
        }
        overrides.update(write_immutable_plan(artifacts, immutable, tables.inventory))
        artifacts.write(PRODUCTION, production)
        artifacts.write(PROFILES, profiles)
        artifacts.write(WAVE_PLAN, waves)
        artifacts.write(OVERRIDES, overrides)
        sizes = waves.groupby("wave").size()
        summary = {
            "production_instances": len(production),
            "profiles": len(profiles),
            "staged_profiles": len(staged),
            "not_staged_instances": int((~production["profile_id"].isin(staged)).sum()),
            "waves": {str(int(wave)): int(count) for wave, count in sizes.items()},
            "rds": write_rds_plan(artifacts, tables.inventory, tables.plan, config),
            "replaced_instances": len(immutable),
        }
        self.log.info("Install plan: %s", summary)
        return summary
