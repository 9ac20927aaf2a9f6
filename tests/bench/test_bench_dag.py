"""What `make bench` reads from a finished cycle's artifacts to know the waves' and patch reads' minimums."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pandas as pd

from include import cycle
from tests.bench.bench_dag import outstanding_patches, wave_rows
from tests.bench.dag_figures import WaveRow

RUN = "patch_cycle/manual__2026-12-07T16_40_27"
SMALL = {
    "name": "artifacts-only",
    "seed": 1,
    "amis": {"ami-0a1b2c3d4e5f60001": {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": "111122223333",
            "regions": {
                "us-east-1": {"instance_groups": [{"name": "one", "count": 1, "ami": "ami-0a1b2c3d4e5f60001"}]}
            },
        }
    ],
}


def _put(s3: Any, key: str, frame: pd.DataFrame) -> None:
    body = io.BytesIO()
    frame.to_parquet(body)
    s3.put_object(Bucket=cycle.ARTIFACT_BUCKET, Key=f"{RUN}/{key}", Body=body.getvalue())


def test_the_waves_results_and_compliance_tables_are_read_from_the_runs_artifacts(
    sandbox_factory: Callable[..., Any],
) -> None:
    server = sandbox_factory(SMALL)  # only its S3 is used
    s3 = cycle.sandbox_s3(server.url)
    s3.create_bucket(Bucket=cycle.ARTIFACT_BUCKET)
    plan = pd.DataFrame({"resource_id": ["i-1", "i-2", "i-3"], "profile_id": ["web", "web", "app"], "wave": [1, 1, 2]})
    _put(s3, "install/waves.parquet", plan)
    results = {
        "account_id": ["111122223333", "111122223333"],
        "region": ["us-east-1", "eu-west-1"],
        "resource_id": ["i-1", "i-2"],
        "snapshot": ["completed", "failed"],
        "command_id": ["c-1", ""],
        "validation": ["passed", ""],
        "rollback": ["", ""],
    }
    _put(s3, "waves/wave_1.results.parquet", pd.DataFrame(results))
    counts = {"missing": [2, 0], "failed": [0, 0], "installed_pending_reboot": [0, 1]}
    _put(s3, "match/aws_default.us-east-1.compliance.parquet", pd.DataFrame({"resource_id": ["i-1", "i-2"], **counts}))
    _put(
        s3,
        "verify/aws_default.us-east-1.compliance.parquet",
        pd.DataFrame({"resource_id": ["i-1"], **{k: v[:1] for k, v in counts.items()}}),
    )
    _put(s3, "report/other.parquet", pd.DataFrame({"x": [1]}))  # neither: left alone

    assert wave_rows(server.url) == {
        "wave 1": [
            WaveRow("111122223333", "us-east-1", "web", "completed", True, "passed", ""),
            WaveRow("111122223333", "eu-west-1", "web", "failed", False, "", ""),
        ]
    }
    assert outstanding_patches(server.url) == {"match": [[2, 1]], "verify": [[2]]}
