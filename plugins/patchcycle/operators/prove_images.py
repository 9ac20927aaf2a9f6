"""prove_images: Amazon Inspector's proof, before the approval gate, that each baked AMI closes the CVEs of its pinned
patches: the findings on the staging replica launched from it, once Inspector has scanned the replica (waited for in
the triggerer)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from airflow.sdk import Context

from patchcycle.config import CycleConfig
from patchcycle.core.frames import concat_frames, typed_frame
from patchcycle.core.immutable_rollout import IMAGE_PROOF_COLUMNS, image_proof
from patchcycle.core.inspection import patch_cves
from patchcycle.core.plan import PLAN_COLUMNS, split_cve_ids
from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.inspector import InspectorHook
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.operators.base import DEFER_MARGIN, TargetOperator
from patchcycle.run_artifacts import BAKE_RESULTS, IMAGE_PROOFS, MATCH_PLAN, STACK, RunArtifacts, Step
from patchcycle.triggers.inspector_rescan import InspectorRescanTrigger

# A replica that left no patch report: any Inspector scan of it will do.
LAUNCHED_AFTER = "1970-01-01T00:00:00Z"


class ProveImagesOperator(TargetOperator[InspectorHook, CycleConfig]):
    """Per baked AMI of this target: the CVEs its pinned patches fix, and whether Inspector shows any of them active
    on the replica launched from it (IMAGE_PROOFS). The approval's auto policy needs every AMI proven."""

    aws_hook_class = InspectorHook
    config_class = CycleConfig

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.PROVE_IMAGES):
            replicas = self._replicas(artifacts)
            if replicas.empty:
                artifacts.write(IMAGE_PROOFS, typed_frame([], IMAGE_PROOF_COLUMNS), target=self.target)
                return {**self.target.as_kwargs(), "images": 0}
            wait = config.inspector_wait
            ids = sorted(i for i in replicas["instance_id"] if i)
            # Inspector rescans a replica after its patch report changes (staging's install): wait for that scan.
            with aws_call("ssm:DescribeInstancePatchStates", self.account_id(artifacts), str(self.region_name)):
                states = self.hook_for(PatchManagerHook).instance_patch_states(ids) if ids else []
            reported = {str(s["InstanceId"]): iso_utc(s.get("OperationEndTime")) for s in states}
        self.defer(
            trigger=InspectorRescanTrigger(
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                installed_at={i: reported.get(i) or LAUNCHED_AFTER for i in ids},
                deadline=iso_utc(datetime.now(UTC) + wait),
                poll_seconds=config.poll_seconds,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=wait + DEFER_MARGIN,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        account, region = self.account_id(artifacts), str(self.region_name)
        with self.recording_failure(artifacts, Step.PROVE_IMAGES):
            replicas = self._replicas(artifacts)
            ids = sorted(i for i in replicas["instance_id"] if i)
            with aws_call("inspector2:ListCoverage", account, region):
                coverage = self.hook.coverage(ids)
            with aws_call("inspector2:ListFindings", account, region):
                findings = self.hook.findings(ids, statuses=["ACTIVE"])
            active: dict[str, list[str]] = {}
            for finding in findings:
                resource = ((finding.get("resources") or [{}])[0]).get("id", "")
                cve = (finding.get("packageVulnerabilityDetails") or {}).get("vulnerabilityId", "")
                active.setdefault(str(resource), []).append(str(cve))
            plans = concat_frames([artifacts.find(MATCH_PLAN, target=t) for t in config.targets], PLAN_COLUMNS)
            cves_of = patch_cves(plans)
            rows = []
            for bake in replicas.to_dict("records"):
                instance_id = str(bake["instance_id"])
                cves = sorted({c for p in split_cve_ids(str(bake["patch_ids"])) for c in cves_of.get(p, ([], ""))[0]})
                scanned = iso_utc((coverage.get(instance_id) or {}).get("lastScannedAt")) if instance_id else ""
                rows.append(image_proof(bake, instance_id, cves, scanned, active.get(instance_id, [])))
            proofs = typed_frame(rows, IMAGE_PROOF_COLUMNS)
            artifacts.write(IMAGE_PROOFS, proofs, target=self.target)
            summary = {"images": len(proofs), "proven": int(proofs["proven"].sum())}
            self.log.info("Baked AMIs proven by Amazon Inspector in %s: %s", self.target.key, summary)
            return {**self.target.as_kwargs(), **summary}

    def _replicas(self, artifacts: RunArtifacts) -> pd.DataFrame:
        """This target's baked AMIs (BAKE_RESULT_COLUMNS) with the staging replica launched from each ("" if none)."""
        results = artifacts.find(BAKE_RESULTS, target=self.target)
        stack = artifacts.find(STACK, target=self.target)
        if results is None or results.empty:
            return pd.DataFrame(columns=["instance_id"])
        baked = results[results["baked"]].reset_index(drop=True)
        instances = stack.instances if stack is not None else {}
        return baked.assign(instance_id=[instances.get(str(b), "") for b in baked["bake_id"]])
