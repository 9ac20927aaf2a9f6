"""prove_images on the sandbox: Amazon Inspector's findings on the staging replica launched from each baked AMI,
once Inspector has scanned it. The Amazon Linux AMI is proven (every CVE of its pinned patches closed); the Windows
replica has a pinned patch missing again, so its AMI is not proven, and the approval's auto policy is told why."""

from __future__ import annotations

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.core.plan import split_cve_ids
from patchcycle.operators.prove_images import ProveImagesOperator
from patchcycle.readback.immutable import approval_part
from patchcycle.run_artifacts import BAKE_RESULTS, IMAGE_PROOFS, STACK
from tests.conftest import first_trigger_payload
from tests.operators.immutable_helpers import (
    bake,
    client,
    create_staging,
    immutable_scenario,
    lose_a_pinned_patch,
    planned_run,
)
from tests.operators.install_helpers import AL2023, REGION, TARGET, WINDOWS, context, deferral, run_artifacts

RUN_ID = "manual__prove"
SCENARIO = immutable_scenario("prove", {"web-asg": (AL2023, 2), "win-asg": (WINDOWS, 1)})
SANDBOX_DROP_FAULTS = True
pytestmark = pytest.mark.slow  # a bake, a stack and an Inspector wait, each through its trigger


def test_inspector_proves_the_baked_ami_whose_replica_shows_no_pinned_cve_and_not_the_other(
    server: SandboxServer,
) -> None:
    config = planned_run(server, RUN_ID)
    assert bake(config, RUN_ID)[2]["baked"] == 2
    artifacts = run_artifacts(config, RUN_ID)
    results = artifacts.read(BAKE_RESULTS, target=TARGET).set_index("source_image_id")
    linux, windows = results.loc[AL2023], results.loc[WINDOWS]

    # The staging stack launches one replica per baked AMI, from the baked AMI itself.
    create_staging(config, RUN_ID)
    replicas = artifacts.read(STACK, target=TARGET).instances
    ec2 = client(server, "ec2")
    for row in (linux, windows):
        found = ec2.describe_instances(InstanceIds=[replicas[row["bake_id"]]])["Reservations"][0]["Instances"][0]
        assert found["ImageId"] == row["image_id"]

    # The Windows replica loses a pinned patch (one that fixes CVEs): Inspector finds them active again.
    lost = lose_a_pinned_patch(server, artifacts, str(windows["patch_ids"]), replicas[windows["bake_id"]])

    operator = ProveImagesOperator(task_id="prove_images", config=config, region_name=REGION)
    event = first_trigger_payload(deferral(operator, context(RUN_ID)).trigger, timeout=60)
    assert event["status"] == "rescanned" and sorted(event["rescanned"]) == sorted(replicas.values()), event
    summary = operator.execute_complete(context(RUN_ID), event)
    proofs = artifacts.read(IMAGE_PROOFS, target=TARGET).set_index("bake_id")
    assert summary == {**TARGET.as_kwargs(), "images": 2, "proven": 1}, list(proofs["reason"])

    proven = proofs.loc[linux["bake_id"]]
    cves = split_cve_ids(str(proven["cves"]))
    assert proven["proven"] and proven["reason"] == "" and proven["image_id"] == linux["image_id"]
    assert proven["instance_id"] == replicas[linux["bake_id"]] and proven["scanned_at"]
    assert cves and split_cve_ids(str(proven["closed"])) == cves and proven["still_active"] == ""

    refused = proofs.loc[windows["bake_id"]]
    still = split_cve_ids(str(refused["still_active"]))
    replica = replicas[windows["bake_id"]]
    assert not refused["proven"] and set(split_cve_ids(str(lost["cve_ids"]))) <= set(still)
    assert refused["reason"] == f"Amazon Inspector still reports {', '.join(still[:10])} on {replica}"

    # The approval's section tells the approver, and the auto policy does not approve.
    section, problems = approval_part(artifacts, [TARGET])
    assert f"{windows['image_id']} (baked from {WINDOWS}): {refused['reason']}" in problems
    assert f"{len(cves)} CVE" in section and "Not ready" in section
