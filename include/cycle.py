"""`make cycle`: one patch cycle, headless, against a sandbox serving a scenario.

Rehearse a cycle against a described fleet before touching AWS: the sandbox serves
the scenario, `airflow dags test patch_cycle` runs the cycle, and the report is
copied out of the sandbox's S3 (the sandbox is gone when this ends) into
.cycle/<run id>/.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config

from include.demo import (
    HOST,
    REPO_ROOT,
    SANDBOX_TIMEOUT_SECONDS,
    Service,
    child_environment,
    log_tail,
    prepare_state_dir,
    say,
    start_service,
    stop_services,
    wait_for_http,
)

ARTIFACT_BUCKET = "patchcycle-artifacts"
REPORT_FILES = ("report.json", "report.csv", "report.html")
STAGING_PREFIX = "patchcycle-staging-"
CYCLE_TIMEOUT_SECONDS = 1800.0


@dataclass(frozen=True)
class CycleResult:
    succeeded: bool
    report_dir: Path | None
    log_path: Path
    stacks_left: tuple[str, ...] = ()  # staging stacks not deleted when the run ended: "region/name status"

    @property
    def report_json(self) -> Path | None:
        return self.report_dir / "report.json" if self.report_dir else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def sandbox_s3(url: str) -> Any:
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 10}),
    )


def run_cycle(scenario: Path, mode: str, out_dir: Path, conf: dict[str, Any] | None = None) -> CycleResult:
    """Serve the scenario, run one patch_cycle with `airflow dags test`, copy its report out."""
    paths = prepare_state_dir(out_dir / "state")
    port = free_port()
    url = f"http://{HOST}:{port}"
    python = sys.executable
    env = child_environment(paths, url, api_url=f"http://{HOST}:{free_port()}")
    services: list[Service] = []
    try:
        services.append(
            start_service(
                "sandbox",
                [python, "-m", "include.sandbox", "serve", "--scenario", str(scenario), "--port", str(port)],
                env,
                paths.log_dir,
            )
        )
        migrate = subprocess.run(
            ["airflow", "db", "migrate"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-2000:]}{migrate.stderr[-2000:]}")
        wait_for_http(f"{url}/_sandbox/health", SANDBOX_TIMEOUT_SECONDS, services)
        s3 = sandbox_s3(url)
        if ARTIFACT_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=ARTIFACT_BUCKET)
        run_conf = {
            "mode": mode,
            "poll_seconds": 2,
            "command_timeout_minutes": 2,  # the sandbox runs commands in seconds; a hung one is cut short
            "artifact_root": f"s3://{ARTIFACT_BUCKET}",
            **(conf or {}),
        }
        log_path = paths.log_dir / "dags-test.log"
        say(f"Running patch_cycle ({mode}) against scenario {scenario} ... (log: {log_path})")
        started = time.monotonic()
        with log_path.open("wb") as log:
            run = subprocess.run(
                ["airflow", "dags", "test", "patch_cycle", "-c", json.dumps(run_conf)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=CYCLE_TIMEOUT_SECONDS,
                check=False,
            )
        succeeded = run.returncode == 0 and "DagRun Finished" in log_path.read_text() and _run_succeeded(log_path)
        say(f"patch_cycle finished in {time.monotonic() - started:.0f} s: {'success' if succeeded else 'FAILED'}")
        report_dir = _copy_report(s3, out_dir)
        return CycleResult(succeeded, report_dir, log_path, _stacks_left(url, scenario))
    finally:
        stop_services(services)


def _stacks_left(url: str, scenario: Path) -> tuple[str, ...]:
    """Staging stacks still present in the sandbox (teardown must leave none, whatever the run's outcome)."""
    document = yaml.safe_load(scenario.read_text())
    regions = sorted({region for account in document.get("accounts", []) for region in account.get("regions", {})})
    left = []
    for region in regions:
        client = boto3.client(
            "cloudformation",
            region_name=region,
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for page in client.get_paginator("list_stacks").paginate():
            for stack in page["StackSummaries"]:
                if stack["StackName"].startswith(STAGING_PREFIX) and stack["StackStatus"] != "DELETE_COMPLETE":
                    left.append(f"{region}/{stack['StackName']} {stack['StackStatus']}")
    return tuple(left)


def _run_succeeded(log_path: Path) -> bool:
    finished = [line for line in log_path.read_text().splitlines() if "DagRun Finished" in line]
    return bool(finished) and "state=success" in finished[-1]


def _copy_report(s3: Any, out_dir: Path) -> Path | None:
    """Copy the newest run's report files out of the sandbox's S3."""
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARTIFACT_BUCKET, Prefix="patch_cycle/")
        for obj in page.get("Contents", [])
        if obj["Key"].endswith("/report/report.json")
    ]
    if not keys:
        return None
    prefix: str = sorted(keys)[-1].rsplit("/", 1)[0]
    run_id: str = prefix.split("/")[1]
    target = out_dir / run_id
    target.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        s3.download_file(ARTIFACT_BUCKET, f"{prefix}/{name}", str(target / name))
    # Every stage's tables and records too: the evidence behind the report, kept after the sandbox stops.
    run_prefix = prefix.rsplit("/", 1)[0]
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARTIFACT_BUCKET, Prefix=f"{run_prefix}/"):
        for obj in page.get("Contents", []):
            local = target / "artifacts" / obj["Key"][len(run_prefix) + 1 :]
            local.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(ARTIFACT_BUCKET, obj["Key"], str(local))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.cycle", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=REPO_ROOT / "include/sandbox/scenarios/default.yaml")
    parser.add_argument("--mode", choices=["scan", "install"], default="scan")

    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".cycle")
    parser.add_argument("--conf", default="{}", help="extra patch_cycle params as JSON")
    args = parser.parse_args(argv)
    if not args.scenario.exists():
        say(f"error: scenario {args.scenario} does not exist")
        return 2
    conf = json.loads(args.conf)
    if conf.get("approval_mode", "auto") != "auto":
        # `airflow dags test` has no scheduler to time a manual approval out: it would wait forever.
        say("error: a headless cycle approves with approval_mode auto; approve by hand in `make demo`")
        return 2
    result = run_cycle(args.scenario.resolve(), args.mode, args.out.resolve(), {"approval_mode": "auto", **conf})
    if result.report_json is None:
        say(f"No report was written. Last lines of {result.log_path}:\n{log_tail(result.log_path, 40)}")
        return 1
    say(f"Report: {result.report_json}")
    if result.stacks_left:
        say(f"STAGING STACKS LEFT BEHIND (delete them): {', '.join(result.stacks_left)}")
        return 1
    if not result.succeeded:
        say(f"The run did not succeed; see {result.log_path}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
