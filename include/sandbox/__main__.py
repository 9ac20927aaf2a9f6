"""`python -m include.sandbox serve --scenario FILE --port N`: the sandbox AWS on one local port."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time
from types import FrameType

from include.sandbox.scenario import DEFAULT_SCENARIO, ScenarioError, load_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a scenario until interrupted")
    serve.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="scenario YAML file")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5055)
    serve.add_argument(
        "--rds-endpoint-host",
        help="the address RDS endpoints report (default: --host, or 127.0.0.1 when it binds every interface)",
    )
    serve.add_argument("--strict", action="store_true", help="answer 500 when a response breaks botocore's model")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    check = commands.add_parser("check", help="validate a scenario file and print what it holds")
    check.add_argument("scenario")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        print(f"{scenario.name}: {scenario.instance_count} instances in {len(scenario.groups())} groups, ok")
        return 0

    from include.sandbox.server import SandboxServer  # imports moto: only when serving

    started = time.monotonic()
    server = SandboxServer(
        scenario,
        host=args.host,
        port=args.port,
        strict=args.strict,
        verbose=args.verbose,
        rds_endpoint_host=args.rds_endpoint_host,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(
        f"Sandbox AWS serving scenario {scenario.name!r} ({scenario.instance_count} instances, "
        f"loaded in {time.monotonic() - started:.1f}s) at {server.url}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
