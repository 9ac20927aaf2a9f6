"""Sandbox scale: loading a 10,000-instance scenario, and DescribeInstancePatchStates latency for 50 ids."""

from __future__ import annotations

import os
import resource
import statistics
import time

os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

import boto3
from botocore.config import Config

from include.sandbox.scenario import SCENARIOS_DIR, load_scenario
from include.sandbox.server import SandboxServer

LARGE = SCENARIOS_DIR / "large.yaml"


def main() -> None:
    scenario = load_scenario(LARGE)
    started = time.perf_counter()
    server = SandboxServer(scenario).start()
    load_seconds = time.perf_counter() - started
    try:
        ssm = boto3.client(
            "ssm", region_name="us-east-1", endpoint_url=server.url, config=Config(retries={"mode": "standard"})
        )
        ids = sorted(server.world.instances("123456789012", "us-east-1"))
        batches = [ids[i : i + 50] for i in range(0, min(len(ids), 50 * 40), 50)]
        ssm.describe_instance_patch_states(InstanceIds=batches[0])  # warm the connection and models
        timings = []
        for batch in batches:
            t0 = time.perf_counter()
            states = ssm.describe_instance_patch_states(InstanceIds=batch)["InstancePatchStates"]
            timings.append((time.perf_counter() - t0) * 1000)
            assert len(states) <= 50
        timings.sort()
        print(f"sandbox: scenario {scenario.name!r}, {scenario.instance_count} instances")
        print(f"  load (validate, seed moto and SSM state): {load_seconds:.1f} s (target: 60 s or less)")
        print(
            f"  DescribeInstancePatchStates x{len(timings)}, 50 ids each, over HTTP: "
            f"median {statistics.median(timings):.1f} ms, p95 {timings[int(len(timings) * 0.95) - 1]:.1f} ms, "
            f"max {timings[-1]:.1f} ms (target: well under 100 ms)"
        )
        print(f"  peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        server.stop()
