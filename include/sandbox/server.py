"""The sandbox AWS endpoint: the APIs the sandbox adds, in front of moto, on one port.

Requests for an operation the sandbox implements are answered here (validated
against botocore's models both ways); every other request goes to moto. Injected
throttling and 5xx faults apply to both.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from moto.iam.models import get_account_id_from
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from include.sandbox import (
    alarms,
    automation,
    autoscaling,
    change_calendar,
    cloudformation,
    config_rules,
    ebs,
    ec2_protocol,
    fleet,
    images,
    inspector,
    moto_fixes,
    patching,
    protocol,
    query_protocol,
    rds_endpoints,
    rds_maintenance,
    securityhub,
    ssm_baselines,
    ssm_commands,
    ssm_documents,
    ssm_patches,
)
from include.sandbox.api import Handler, RequestContext
from include.sandbox.loopback import LOOPBACK_ENVIRON_KEY
from include.sandbox.request_log import COMMANDING, REPLACING, RequestLog
from include.sandbox.scenario import Scenario
from include.sandbox.world import World

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

# SigV4 signing names that differ from botocore's service names.
SIGNING_TO_SERVICE = {"monitoring": "cloudwatch", "config": "config", "email": "ses"}

# JSON or query protocol: whichever botocore's model gives the service.
HANDLERS: dict[tuple[str, str], Handler] = {
    **ssm_commands.HANDLERS,
    **ssm_patches.HANDLERS,
    **ssm_baselines.HANDLERS,
    **rds_maintenance.HANDLERS,
    **config_rules.HANDLERS,
    **securityhub.HANDLERS,
    **inspector.HANDLERS,
    **ebs.HANDLERS,
    **images.HANDLERS,
    **change_calendar.HANDLERS,
    **alarms.HANDLERS,
    **ssm_documents.HANDLERS,
    **automation.HANDLERS,
    **autoscaling.HANDLERS,
}
# Operations moto answers, after which the sandbox adds what moto lacks (e.g. a stack's injected failure).
AFTER_MOTO: dict[tuple[str, str], cloudformation.AfterMoto] = {
    **cloudformation.AFTER_MOTO,
    **images.AFTER_MOTO,
    **rds_maintenance.AFTER_MOTO,
}
# Checks before moto answers (an AwsApiError is the response; moto is not called), e.g. a DB instance's state.
BEFORE_MOTO: dict[tuple[str, str], cloudformation.AfterMoto] = {**rds_maintenance.BEFORE_MOTO}
# moto's successful response, rewritten after AFTER_MOTO (e.g. the status a resource is created in).
REWRITE_MOTO: dict[tuple[str, str], Callable[[World, bytes], bytes]] = {**rds_maintenance.REWRITE_MOTO}

_CREDENTIAL = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
# Query-protocol services and the error envelope each uses.
_EC2_STYLE = {"ec2"}


class SandboxApp:
    """WSGI app: the sandbox's own APIs first, then moto."""

    def __init__(self, world: World, strict: bool = False) -> None:
        self.world = world
        self.strict = strict
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.calls: dict[str, int] = {}
        # The part of `calls` that Automation's steps made in-process (on AWS, AWS's calls, not the client's).
        self.automation_calls: dict[str, int] = {}
        self._calls_lock = threading.Lock()
        self.requests = RequestLog()
        automation.attach(world, self)  # Automation's steps call this app in-process (loopback.py)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        automation.advance(self.world)  # executions' steps due by now run first, each at its own time
        ebs.settle(self.world)  # snapshots and root volume replacements due by now reach moto and the World first
        images.settle(self.world)  # baked images due by now are available in moto
        autoscaling.settle(self.world)  # instance refreshes' replacements due by now, in time order
        rds_maintenance.settle(self.world)  # DB instances' maintenance, snapshots, restores and deletions due by now
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_sandbox/"):
            return self._control(environ, start_response, path)
        body = _read_body(environ)
        service, region, access_key = _credential_scope(environ)
        operation = _operation(environ, body, service)
        self._count(f"{service}:{operation}", "automation" if environ.get(LOOPBACK_ENVIRON_KEY) else "client")
        account_id = get_account_id_from(access_key) if access_key else self.world.scenario.accounts[0].id
        logged = f"{service}:{operation}" in COMMANDING
        invoked_by = "automation" if environ.get(LOOPBACK_ENVIRON_KEY) else "client"
        if f"{service}:{operation}" in REPLACING:  # query protocol, answered by moto or a handler: log the status sent
            fields = cloudformation.form_fields(body, str(environ.get("QUERY_STRING", "")))
            start_response = self._logging(
                start_response, f"{service}:{operation}", account_id, region, fields, invoked_by
            )
        fault = self._draw_fault(service, operation, region)
        if fault is not None:
            if logged:
                self.requests.record(
                    f"{service}:{operation}", account_id, region, _json(body), fault.status, invoked_by
                )
            return _error(start_response, service, fault)
        handler = HANDLERS.get((service, operation))
        after = AFTER_MOTO.get((service, operation))
        if handler is None and after is None:
            moto_response: Iterable[bytes] = self.moto(environ, start_response)
            if service == "rds" and not operation.startswith("Describe"):
                # e.g. DeleteDBCluster: its port refuses once the answer is out. Not after a Describe: moto's first
                # read of a new cluster answers creating and makes it available, and its port must not listen yet.
                with self.world.lock:
                    rds_endpoints.sync()
            return moto_response
        ctx = RequestContext(account_id, region, service, operation, access_key)
        if handler is None:
            assert after is not None
            return self._moto_then(after, ctx, environ, start_response, body)
        if query_protocol.speaks_query(service, operation) or ec2_protocol.speaks_ec2(service, operation):
            form = body or str(environ.get("QUERY_STRING", "")).encode()
            return self._serve_query(handler, ctx, form, start_response)
        try:
            result = self._handle(handler, ctx, body)
        except protocol.AwsApiError as exc:
            if logged:
                self.requests.record(f"{service}:{operation}", account_id, region, _json(body), exc.status, invoked_by)
            return _error(start_response, service, exc)
        if logged:
            hold = self.requests.record(f"{service}:{operation}", account_id, region, _json(body), 200, invoked_by)
            if hold is not None:  # the work is done; the caller hears of it when the hold is released
                self.requests.wait(hold)
        payload = json.dumps(result).encode()
        rest = protocol.is_rest_json(service)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json" if rest else "application/x-amz-json-1.1"),
                ("Content-Length", str(len(payload))),
                ("x-amzn-RequestId", str(uuid.uuid4())),
            ],
        )
        return [payload]

    def _moto_then(
        self,
        after: cloudformation.AfterMoto,
        ctx: RequestContext,
        environ: dict[str, Any],
        start_response: StartResponse,
        body: bytes,
    ) -> Iterable[bytes]:
        """Let moto answer, then (if it succeeded) complete what moto lacks before the response leaves.

        Under the World's lock, so that SSM never sees the state in between (e.g. a stack's
        instances launched but not yet tagged or rolled back).
        """
        statuses: list[tuple[str, list[tuple[str, str]], Any]] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            statuses.append((status, headers, exc_info))  # sent once the payload is final
            return lambda data: None

        with self.world.request():
            before = BEFORE_MOTO.get((ctx.service, ctx.operation))
            if before is not None:
                try:
                    before(self.world, ctx, cloudformation.form_fields(body, str(environ.get("QUERY_STRING", ""))))
                except protocol.AwsApiError as exc:
                    return _error(start_response, ctx.service, query_protocol.escaped(exc))
            response = self.moto(environ, capture)
            try:
                payload = b"".join(response)
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()
            if statuses and statuses[-1][0].startswith("200"):
                after(self.world, ctx, cloudformation.form_fields(body, str(environ.get("QUERY_STRING", ""))))
                rewrite = REWRITE_MOTO.get((ctx.service, ctx.operation))
                if rewrite is not None:
                    payload = rewrite(self.world, payload)
            if ctx.service == "rds":  # e.g. DeleteDBInstance: the instance is deleting, its port refuses
                rds_endpoints.sync()
        if statuses:
            status, headers, exc_info = statuses[-1]
            headers = [(k, str(len(payload)) if k.lower() == "content-length" else v) for k, v in headers]
            start_response(status, headers, exc_info)
        return [payload]

    def _logging(
        self,
        start_response: StartResponse,
        operation: str,
        account_id: str,
        region: str,
        fields: dict[str, str],
        invoked_by: str,
    ) -> StartResponse:
        """start_response that logs the call with the status it answers (after the work is done)."""

        def logged(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            self.requests.record(operation, account_id, region, dict(fields), int(status.split()[0]), invoked_by)
            return start_response(status, headers, exc_info)

        return logged

    def _handle(self, handler: Handler, ctx: RequestContext, body: bytes) -> dict[str, Any]:
        try:
            params = json.loads(body or b"{}")
        except ValueError as exc:
            raise protocol.AwsApiError("SerializationException", "Request body is not valid JSON") from exc
        protocol.validate_request(ctx.service, ctx.operation, params)
        with self.world.request():
            self.world.commands(ctx.account_id, ctx.region).advance()
            result = protocol.to_wire(handler(self.world, ctx, params))
        self._check_response(ctx, protocol.validate_response(ctx.service, ctx.operation, result))
        return dict(result)

    def _serve_query(
        self, handler: Handler, ctx: RequestContext, form: bytes, start_response: StartResponse
    ) -> Iterable[bytes]:
        """A query-protocol operation (RDS, ..., or EC2's variant): form-encoded request in, XML out."""
        request_id = str(uuid.uuid4())
        ec2 = ec2_protocol.speaks_ec2(ctx.service, ctx.operation)
        decode = ec2_protocol.decode_request if ec2 else query_protocol.decode_request
        serialize = ec2_protocol.serialize_response if ec2 else query_protocol.serialize_response
        try:
            params = decode(ctx.service, ctx.operation, form)
            with self.world.request():
                result = handler(self.world, ctx, params)
            self._check_response(ctx, protocol.validate_query_response(ctx.service, ctx.operation, result))
        except protocol.AwsApiError as exc:
            return _error(start_response, ctx.service, query_protocol.escaped(exc))
        payload = serialize(ctx.service, ctx.operation, result, request_id)
        start_response(
            "200 OK",
            [("Content-Type", "text/xml"), ("Content-Length", str(len(payload))), ("x-amzn-RequestId", request_id)],
        )
        return [payload]

    def _check_response(self, ctx: RequestContext, problems: list[str]) -> None:
        if problems:
            message = f"sandbox response for {ctx.service}:{ctx.operation} breaks botocore's model: {problems[:5]}"
            log.error(message)
            if self.strict:
                raise protocol.AwsApiError("InternalServerError", message, 500)

    def _count(self, key: str, invoked_by: str = "client") -> None:
        with self._calls_lock:
            self.calls[key] = self.calls.get(key, 0) + 1
            if invoked_by == "automation":
                self.automation_calls[key] = self.automation_calls.get(key, 0) + 1

    def _draw_fault(self, service: str, operation: str, region: str) -> protocol.AwsApiError | None:
        faults = self.world.scenario.faults
        spec = faults.get(f"{service}:{operation}") or faults.get(f"{service}:*") or faults.get("*")
        if spec is None or not service or (spec.regions and region not in spec.regions):
            return None
        if spec.access_denied:
            return _access_denied(service, operation, self.world.scenario.accounts[0].id)
        with self.world.lock:
            roll = self.world.rng.random()
        if roll < spec.throttle_rate:
            return _throttle(service)
        if roll < spec.throttle_rate + spec.server_error_rate:
            return protocol.AwsApiError(
                "InternalFailure", "An internal error occurred (injected by the scenario).", 500
            )
        return None

    def _control(self, environ: dict[str, Any], start_response: StartResponse, path: str) -> Iterable[bytes]:
        """Sandbox-only endpoints: health, API call counts, the request log and its hold, moving the simulated
        clock, and drift on demand."""
        if path == "/_sandbox/health":
            body: dict[str, Any] = {
                "status": "ok",
                "scenario": self.world.scenario.name,
                "instances": self.world.scenario.instance_count,
                "now": self.world.now().isoformat(),
            }
        elif path == "/_sandbox/calls":
            invoked_by = parse_qs(str(environ.get("QUERY_STRING", ""))).get("invoked_by", [""])[0]
            if invoked_by not in ("", "client", "automation"):
                payload = json.dumps({"error": "invoked_by: client or automation"}).encode()
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [payload]
            with self._calls_lock:
                everything, automation_only = dict(self.calls), dict(self.automation_calls)
            if invoked_by == "automation":
                body = automation_only
            elif invoked_by == "client":
                clients = {key: n - automation_only.get(key, 0) for key, n in everything.items()}
                body = {key: n for key, n in clients.items() if n}
            else:
                body = everything
        elif path == "/_sandbox/requests":
            operation = parse_qs(str(environ.get("QUERY_STRING", ""))).get("operation", [""])[0]
            body = {"requests": self.requests.entries(operation)}
        elif path == "/_sandbox/hold" and environ.get("REQUEST_METHOD") == "POST":
            try:
                body = self.requests.arm(_json(_read_body(environ)))
            except (TypeError, ValueError) as exc:
                payload = json.dumps({"error": str(exc)}).encode()
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [payload]
        elif path == "/_sandbox/hold":
            body = self.requests.state()
        elif path == "/_sandbox/release" and environ.get("REQUEST_METHOD") == "POST":
            body = self.requests.release()
        elif path == "/_sandbox/clock/advance" and environ.get("REQUEST_METHOD") == "POST":
            seconds = float(json.loads(_read_body(environ) or b"{}").get("seconds", 0))
            body = {"now": self.world.clock.advance(seconds).isoformat()}
        elif path == "/_sandbox/patches/uninstall" and environ.get("REQUEST_METHOD") == "POST":
            try:
                body = self._uninstall(json.loads(_read_body(environ) or b"{}"))
            except (KeyError, TypeError, ValueError) as exc:
                payload = json.dumps({"error": str(exc)}).encode()
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [payload]
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "unknown sandbox endpoint"}']
        payload = json.dumps(body).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]

    def _uninstall(self, request: dict[str, Any]) -> dict[str, Any]:
        """Drift on demand: remove installed patches from an instance, then run the scan its daily
        association would, so Patch Manager (and what reads its state) sees them MISSING again."""
        account_id, region, instance_id, patch_ids = _uninstall_request(request, self.world.scenario.accounts[0].id)
        with self.world.request():
            instance = self.world.instance(account_id, region, instance_id)
            if instance is None or not instance.registered:
                raise ValueError(f"instance_id: {instance_id} is not a managed instance in {account_id}/{region}")
            removed = sorted(p for p in patch_ids if instance.installed.pop(p, None) is not None)
            instance.pending_reboot.difference_update(patch_ids)
            now = self.world.now()
            try:
                patching.scan(
                    self.world, instance, now - timedelta(seconds=self.world.scenario.commands.scan_seconds), now
                )
            except patching.ScanFailed:
                instance.report = None
        return {"instance_id": instance_id, "removed": removed, "scanned_at": now.isoformat()}


def _uninstall_request(request: dict[str, Any], first_account: str) -> tuple[str, str, str, list[str]]:
    """(account_id, region, instance_id, patch_ids) of an uninstall request (account_id defaults to the
    scenario's first account); ValueError names a bad field."""
    fields = {name: request.get(name) for name in ("region", "instance_id")}
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}: a non-empty string is required")
    patch_ids = request.get("patch_ids")
    if not isinstance(patch_ids, list) or not patch_ids or not all(isinstance(p, str) for p in patch_ids):
        raise ValueError("patch_ids: a non-empty list of patch ids is required")
    account_id = str(request.get("account_id") or first_account)
    return account_id, str(fields["region"]), str(fields["instance_id"]), list(patch_ids)


def _json(body: bytes) -> dict[str, Any]:
    """A JSON request body as a dict ({} when it is not one)."""
    try:
        decoded = json.loads(body or b"{}")
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the body once and put it back, so moto can read it too."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


def _credential_scope(environ: dict[str, Any]) -> tuple[str, str, str]:
    """(service, region, access key) from the SigV4 Authorization header."""
    match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not match:
        return "", "us-east-1", ""
    access_key, region, signing_name = match.groups()
    return SIGNING_TO_SERVICE.get(signing_name, signing_name), region, access_key


def _operation(environ: dict[str, Any], body: bytes, service: str = "") -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return str(target.rsplit(".", 1)[-1])
    # rest-json services (Inspector2, Security Hub) name the operation by method and path alone.
    routed = protocol.rest_json_operation(
        service, str(environ.get("REQUEST_METHOD", "")), str(environ.get("PATH_INFO", ""))
    )
    if routed:
        return routed
    for source in (environ.get("QUERY_STRING", ""), body.decode("utf-8", "replace")):
        action = parse_qs(source).get("Action")
        if action:
            return str(action[0])
    return str(environ.get("REQUEST_METHOD", ""))


def _access_denied(service: str, operation: str, account_id: str) -> protocol.AwsApiError:
    message = (
        f"User: arn:aws:sts::{account_id}:assumed-role/patchcycle/airflow is not authorized to perform: "
        f"{service}:{operation} because no identity-based policy allows the {service}:{operation} action"
    )
    if service == "ec2":
        return protocol.AwsApiError(
            "UnauthorizedOperation", f"You are not authorized to perform this operation. {message}"
        )
    if service in ("s3", "rds", "cloudformation", "sts", "iam", "cloudwatch"):
        return protocol.AwsApiError("AccessDenied", message, 403)
    return protocol.AwsApiError("AccessDeniedException", message)


def _throttle(service: str) -> protocol.AwsApiError:
    if service == "ec2":
        return protocol.AwsApiError("RequestLimitExceeded", "Request limit exceeded.", 503)
    if service == "s3":
        return protocol.AwsApiError("SlowDown", "Please reduce your request rate.", 503)
    return protocol.AwsApiError("ThrottlingException", "Rate exceeded", 400)


def _error(start_response: StartResponse, service: str, error: protocol.AwsApiError) -> list[bytes]:
    """An error in the envelope the service's protocol uses, so botocore parses code and message."""
    request_id = str(uuid.uuid4())
    headers: list[tuple[str, str]] = []
    if service in _EC2_STYLE:
        payload = (
            f"<Response><Errors><Error><Code>{error.code}</Code><Message>{error.message}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        ).encode()
        content_type = "text/xml"
    elif service == "s3":
        payload = (
            f"<Error><Code>{error.code}</Code><Message>{error.message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        content_type = "application/xml"
    elif service in _query_services() and not protocol.is_query_compatible_json(service):
        code = "Throttling" if error.code == "ThrottlingException" else error.code
        kind = "Receiver" if error.status >= 500 else "Sender"
        payload = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{error.message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        content_type = "text/xml"
    else:
        payload = protocol.json_error_body(error)
        content_type = "application/x-amz-json-1.1"
        if protocol.is_query_compatible_json(service):  # CloudWatch: botocore reads the code from this header
            code = "Throttling" if error.code == "ThrottlingException" else error.code
            headers.append(("x-amzn-query-error", f"{code};{'Receiver' if error.status >= 500 else 'Sender'}"))
    reason = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable"}.get(
        error.status, "Error"
    )
    start_response(
        f"{error.status} {reason}",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(payload))),
            ("x-amzn-RequestId", request_id),
            *headers,
        ],
    )
    return [payload]


def _query_services() -> frozenset[str]:
    return frozenset({"rds", "cloudformation", "sts", "iam", "cloudwatch", "sns", "sqs", "elasticache", "autoscaling"})


# How often the serving loop looks for shutdown(): tests start and stop many sandboxes.
STOP_POLL_SECONDS = 0.05


class SandboxServer:
    """The sandbox served on 127.0.0.1 from a background thread (the CLI and the pytest fixture use it).

    RDS endpoints listen on `host` too; they report `rds_endpoint_host` (by default `host`, or 127.0.0.1 when it
    binds every interface): the name clients reach the sandbox by, e.g. a compose service's.
    """

    def __init__(
        self,
        scenario: Scenario,
        host: str = "127.0.0.1",
        port: int = 0,
        strict: bool = False,
        verbose: bool = False,
        rds_endpoint_host: str | None = None,
    ) -> None:
        # werkzeug logs every request at INFO: a patch cycle makes thousands.
        logging.getLogger("werkzeug").setLevel(logging.INFO if verbose else logging.WARNING)
        reset_moto()
        self.rds_endpoints = rds_endpoints.start(host, rds_endpoint_host)
        moto_fixes.apply()
        moto_fixes.plain_keys_reach(scenario.accounts[0].id)
        self.world = World(scenario)
        fleet.seed(self.world)
        change_calendar.seed(self.world)  # also teaches moto's SSM documents the ChangeCalendar type
        alarms.seed(self.world)
        self.app = SandboxApp(self.world, strict=strict)
        self._server: BaseWSGIServer = make_server(
            host, port, self.app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": STOP_POLL_SECONDS},
            name="sandbox-aws",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        rds_endpoints.stop(self.rds_endpoints)  # every RDS endpoint's port closed


def reset_moto() -> None:
    """moto's backends are process-wide: start every sandbox from an empty AWS (no RDS endpoint listening)."""
    rds_endpoints.stop()
    moto_api_backend.reset()
