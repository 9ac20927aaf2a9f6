"""Calls into the sandbox's own API from inside it, exactly as a boto3 client outside would make them.

Automation's steps (aws:executeAwsApi and the others) call AWS APIs: here they are botocore clients whose
requests never leave the process. botocore builds, signs (with the caller's access key, so moto files the
call under the caller's account, as it does a client's) and validates each request as usual; a
``before-send`` handler hands it to the sandbox's WSGI app (faults, the sandbox's handlers, moto) in the
same thread and turns the app's answer into botocore's response, which botocore parses, raising
ClientError for AWS errors. The thread may hold the World's lock (an RLock): the handlers take it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import botocore.session
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from werkzeug.test import EnvironBuilder, run_wsgi_app

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# As a client of the served sandbox sees it (an address: botocore then addresses S3 buckets by path, as there).
ENDPOINT = "http://127.0.0.1"
# Any secret will do: moto maps the access key to its account and does not check signatures.
_SECRET = "sandbox-internal-secret"
# A key moto knows in no account: calls signed with it land in moto's default account.
DEFAULT_ACCESS_KEY = "AKIASANDBOXINTERNAL0"
# Set in the WSGI environ of every call made from inside the sandbox (an Automation step's).
LOOPBACK_ENVIRON_KEY = "sandbox.loopback"


class _Body:
    """The `raw` of an AWSResponse: botocore reads it through stream()."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._payload

    def read(self, *_: Any) -> bytes:
        return self._payload


class Loopback:
    """botocore clients (one per service, region and access key) whose requests the sandbox app serves."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._session = botocore.session.get_session()
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str, access_key: str) -> Any:
        key = (service, region, access_key or DEFAULT_ACCESS_KEY)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._session.create_client(
                    service,
                    region_name=region,
                    endpoint_url=ENDPOINT,
                    aws_access_key_id=key[2],
                    aws_secret_access_key=_SECRET,
                    config=Config(
                        retries={"total_max_attempts": 1}, parameter_validation=True, s3={"addressing_style": "path"}
                    ),
                )
                client.meta.events.register_first("before-send", self._send)
                self._clients[key] = client
        return client

    def _send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        url = urlsplit(request.url)
        body = request.body
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:  # a file-like body (an S3 upload)
            data = body.read()
            data = data.encode() if isinstance(data, str) else bytes(data)
        headers = [(str(k), v.decode() if isinstance(v, bytes) else str(v)) for k, v in request.headers.items()]
        builder = EnvironBuilder(
            path=url.path or "/",
            base_url=f"{url.scheme}://{url.netloc}",
            query_string=url.query,
            method=request.method,
            headers=headers,
            data=data,
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        environ[LOOPBACK_ENVIRON_KEY] = True  # the request log tells these apart from clients' calls
        app_iter, status, response_headers = run_wsgi_app(self.app, environ, buffered=True)
        try:
            payload = b"".join(app_iter)
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()
        return AWSResponse(request.url, int(status.split(" ", 1)[0]), dict(response_headers.items()), _Body(payload))
