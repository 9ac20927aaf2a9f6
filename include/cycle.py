"""`make cycle`: one patch cycle, headless, against a sandbox serving a scenario.

Rehearse a cycle against a described fleet before touching AWS: the sandbox serves
the scenario, `airflow dags test patch_cycle` runs the cycle, and the report is
copied out of the sandbox's S3 (the sandbox is gone when this ends) into
.cycle/<run id>/.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.config import Config

from include import connections
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
from include.sandbox.scenario import Scenario, load_scenario

ARTIFACT_BUCKET = "patchcycle-artifacts"
STAGING_PREFIX = "patchcycle-staging-"
CYCLE_TIMEOUT_SECONDS = 1800.0


@dataclass(frozen=True)
class CycleResult:
    succeeded: bool
    report_dir: Path | None
    log_path: Path
    stacks_left: tuple[str, ...] = ()  # staging stacks not deleted when the run ended: "region/name status"
    staging_dbs_left: tuple[
        str, ...
    ] = ()  # RDS staging copies still present when the run ended: "account/region/id status"

    @property
    def report_json(self) -> Path | None:
        return self.report_dir / report_file("report") if self.report_dir else None


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


class CycleEnvironment:
    """The sandbox serving a scenario and an Airflow home migrated for it: DAGs run here with `airflow dags test`.

    Use as a context manager; the sandbox stops on exit. Runs share the Airflow database, so an asset
    event one run emits (patch_cycle_report) is there for the next (patch_compliance_watch).
    """

    def __init__(self, scenario: Path, out_dir: Path) -> None:
        self.scenario = scenario
        self.out_dir = out_dir
        self.paths = prepare_state_dir(out_dir / "state")
        # This process reads the runs' artifacts through the plugin package, which loads Airflow: this home.
        os.environ.setdefault("AIRFLOW_HOME", str(self.paths.airflow_home))
        self.url = f"http://{HOST}:{free_port()}"
        self.env = child_environment(self.paths, self.url, api_url=f"http://{HOST}:{free_port()}")
        # One connection per scenario account; runs cover every account and region unless told otherwise.
        self.loaded = load_scenario(scenario)
        self.env.update(connections.connection_env(self.loaded, self.url))
        self._services: list[Service] = []
        self._runs = 0

    def __enter__(self) -> CycleEnvironment:
        port = self.url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "include.sandbox", "serve", "--scenario", str(self.scenario), "--port", port]
        try:
            self._services.append(start_service("sandbox", command, self.env, self.paths.log_dir))
            migrate = subprocess.run(
                ["airflow", "db", "migrate"], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, check=False
            )
            if migrate.returncode != 0:
                raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-2000:]}{migrate.stderr[-2000:]}")
            wait_for_http(f"{self.url}/_sandbox/health", SANDBOX_TIMEOUT_SECONDS, self._services)
            s3 = sandbox_s3(self.url)
            if ARTIFACT_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
                s3.create_bucket(Bucket=ARTIFACT_BUCKET)
        except BaseException:
            stop_services(self._services)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop_services(self._services)

    def run_dag(self, dag_id: str, conf: dict[str, Any]) -> tuple[bool, Path]:
        """`airflow dags test dag_id -c conf`: (whether the run succeeded, its log)."""
        self._runs += 1
        log_path = self.paths.log_dir / f"dags-test-{self._runs}-{dag_id}.log"
        say(f"Running {dag_id} against scenario {self.scenario} ... (log: {log_path})")
        started = time.monotonic()
        with log_path.open("wb") as log:
            run = subprocess.run(
                ["airflow", "dags", "test", dag_id, "-c", json.dumps(conf)],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=CYCLE_TIMEOUT_SECONDS,
                check=False,
            )
        succeeded = run.returncode == 0 and "DagRun Finished" in log_path.read_text() and _run_succeeded(log_path)
        say(f"{dag_id} finished in {time.monotonic() - started:.0f} s: {'success' if succeeded else 'FAILED'}")
        return succeeded, log_path

    def run_cycle(self, mode: str, conf: dict[str, Any] | None = None) -> CycleResult:
        """One patch_cycle; its report and artifacts are copied to out_dir/<run id>/."""
        run_conf = {
            "mode": mode,
            "poll_seconds": 2,
            "command_timeout_minutes": 2,  # the sandbox runs commands in seconds; a hung one is cut short
            "artifact_root": f"s3://{ARTIFACT_BUCKET}",
            "targets": connections.targets(self.loaded),
            **(conf or {}),
        }
        succeeded, log_path = self.run_dag("patch_cycle", run_conf)
        report_dir = _copy_run(sandbox_s3(self.url), self.out_dir, "patch_cycle", "report")
        return CycleResult(
            succeeded,
            report_dir,
            log_path,
            _stacks_left(self.url, self.loaded),
            _staging_dbs_left(self.url, self.loaded),
        )

    def run_watch(self, conf: dict[str, Any] | None = None) -> tuple[bool, Path, Path | None]:
        """One patch_compliance_watch: (succeeded, log, the copied drift.json or None)."""
        run_conf = {
            "artifact_root": f"s3://{ARTIFACT_BUCKET}",
            "poll_seconds": 2,
            "targets": connections.targets(self.loaded),
            **(conf or {}),
        }
        succeeded, log_path = self.run_dag("patch_compliance_watch", run_conf)
        run_dir = _copy_run(sandbox_s3(self.url), self.out_dir, "patch_compliance_watch", "drift")
        return succeeded, log_path, run_dir / report_file("drift") if run_dir else None


def run_cycle(scenario: Path, mode: str, out_dir: Path, conf: dict[str, Any] | None = None) -> CycleResult:
    """Serve the scenario, run one patch_cycle with `airflow dags test`, copy its report out."""
    with CycleEnvironment(scenario, out_dir) as environment:
        return environment.run_cycle(mode, conf)


def _stacks_left(url: str, scenario: Scenario) -> tuple[str, ...]:
    """Staging stacks still present in the sandbox, in every account and region (teardown must leave none,
    whatever the run's outcome): "account/region/name status"."""
    left = []
    for account in scenario.accounts:
        for region in account.regions:
            client = connections.account_client(scenario, account.id, url, "cloudformation", region.name)
            for page in client.get_paginator("list_stacks").paginate():
                for stack in page["StackSummaries"]:
                    if stack["StackName"].startswith(STAGING_PREFIX) and stack["StackStatus"] != "DELETE_COMPLETE":
                        left.append(f"{account.id}/{region.name}/{stack['StackName']} {stack['StackStatus']}")
    return tuple(left)


def _staging_dbs_left(url: str, scenario: Scenario) -> tuple[str, ...]:
    """RDS DB instances of the cycle's staging copies (patchcycle-stg-*) still in the sandbox, in every account and
    region: "account/region/id status"."""
    from patchcycle.core.rds_plan import STAGING_DB_PREFIX

    left = []
    for account in scenario.accounts:
        for region in account.regions:
            client = connections.account_client(scenario, account.id, url, "rds", region.name)
            for page in client.get_paginator("describe_db_instances").paginate():
                for db in page["DBInstances"]:
                    if db["DBInstanceIdentifier"].startswith(STAGING_DB_PREFIX):
                        where = f"{account.id}/{region.name}/{db['DBInstanceIdentifier']}"
                        left.append(f"{where} {db['DBInstanceStatus']}")
    return tuple(left)


def _run_succeeded(log_path: Path) -> bool:
    finished = [line for line in log_path.read_text().splitlines() if "DagRun Finished" in line]
    return bool(finished) and "state=success" in finished[-1]


def _report(kind: str) -> Any:
    """The report document of a DAG: "report" (patch_cycle's) or "drift" (patch_compliance_watch's)."""
    # Imported here: the plugin package loads Airflow, configured by CycleEnvironment by then.
    from patchcycle.run_artifacts import DRIFT_JSON, REPORT_JSON

    return {"report": REPORT_JSON, "drift": DRIFT_JSON}[kind]


def report_file(kind: str) -> str:
    """The file name of a DAG's report document, as copied next to the run's artifacts."""
    return PurePosixPath(_report(kind).file()).name


def _copy_run(s3: Any, out_dir: Path, dag_id: str, kind: str) -> Path | None:
    """Copy the newest run of dag_id that wrote its report (kind: see _report) out of the sandbox's S3: the
    report's stage files at the top, every stage's tables and records under artifacts/ (the evidence, kept
    after the sandbox stops)."""
    marker = _report(kind).file()
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARTIFACT_BUCKET, Prefix=f"{dag_id}/")
        for obj in page.get("Contents", [])
        if obj["Key"].endswith(f"/{marker}")
    ]
    if not keys:
        return None
    stage_prefix: str = sorted(keys)[-1].rsplit("/", 1)[0]
    run_prefix = stage_prefix.rsplit("/", 1)[0]
    target = out_dir / run_prefix.split("/")[1]
    target.mkdir(parents=True, exist_ok=True)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARTIFACT_BUCKET, Prefix=f"{run_prefix}/"):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            local = target / "artifacts" / key[len(run_prefix) + 1 :]
            local.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(ARTIFACT_BUCKET, key, str(local))
            if key.rsplit("/", 1)[0] == stage_prefix:
                s3.download_file(ARTIFACT_BUCKET, key, str(target / key.rsplit("/", 1)[1]))
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
