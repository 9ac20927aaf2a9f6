"""RDS endpoints that answer TCP: each DB instance and DB cluster at the sandbox's host, on a port of its own.

moto reports endpoints no one can reach (``<id>.aaaaaaaaaa.<region>.rds.amazonaws.com:5432``). Here, as LocalStack
does, every DB instance's Endpoint and every DB cluster's Endpoint / Port is the sandbox's host (127.0.0.1, or the
host the server was told to advertise) and a port the operating system gave that database when the sandbox first
saw it, kept for its lifetime. The port listens while the database is ``available`` and refuses connections
otherwise (creating, backing-up, upgrading, modifying, deleting, deleted, ...): a plain TCP check on the endpoint
sees what a client of the real database would. Connections are accepted and closed at once; no database protocol.

The port is reserved by a bound socket that does not listen (the kernel refuses connections to it and gives the
port to no one else); becoming available, that socket listens, and leaving available it is closed and the port
bound again at once. ``sync`` brings every listener in line with moto's statuses: rds_maintenance.settle calls it
after applying the transitions due (before every request), and the server after each RDS call moto answered, so
right after a Describe the ports are in the state it reported. moto's classes read the ports here through the
properties moto_fixes installs (``address``, ``port``, ``endpoint``); with no registry active (no sandbox server)
they are moto's own values.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from moto.rds.models import DBCluster, DBInstance, rds_backends

log = logging.getLogger(__name__)

AVAILABLE = "available"
BACKLOG = 128
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # binding every interface, not an address to report
LOOPBACK = "127.0.0.1"


@dataclass
class _Endpoint:
    """One database's port: its reserving socket, listening or not."""

    model: Any  # moto's DBInstance or DBCluster (held, so that its id() stays its own)
    port: int
    sock: socket.socket | None
    listening: bool = False


@dataclass
class Endpoints:
    """The ports of the databases moto holds, and the thread that accepts (and closes) their connections."""

    bind_host: str = LOOPBACK
    address: str = LOOPBACK
    _entries: dict[int, _Endpoint] = field(default_factory=dict)  # id(model) -> its endpoint
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _thread: threading.Thread | None = None
    _wake: tuple[socket.socket, socket.socket] | None = None
    _closed: bool = False

    # -- ports --------------------------------------------------------------------------------------------------

    def port_of(self, model: Any) -> int | None:
        """The model's port: allocated on first use (a model moto holds only), None for one it does not."""
        with self._lock:
            entry = self._entries.get(id(model))
            if entry is None and not self._closed and _alive(model):
                entry = self._allocate(model)
            return entry.port if entry is not None else None

    def _allocate(self, model: Any) -> _Endpoint:
        sock = self._socket()
        try:
            sock.bind((self.bind_host, 0))
        except OSError:
            sock.close()
            raise
        entry = self._entries[id(model)] = _Endpoint(model, int(sock.getsockname()[1]), sock)
        return entry

    def _socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        return sock

    # -- listening ----------------------------------------------------------------------------------------------

    def sync(self) -> None:
        """Every database moto holds has a port, listening if and only if it is available; the ports of databases
        moto no longer holds are closed and given back."""
        alive: dict[int, Any] = {}
        for account in list(rds_backends.values()):
            for backend in list(account.values()):
                for model in [*backend.databases.values(), *backend.clusters.values()]:
                    alive[id(model)] = model
        changed = False
        with self._lock:
            if self._closed:
                return
            for key in [key for key in self._entries if key not in alive]:
                changed |= self._release(self._entries.pop(key))
            for key, model in alive.items():
                entry = self._entries.get(key)
                if entry is None:
                    try:
                        entry = self._allocate(model)
                    except OSError as exc:  # no port to be had (out of descriptors?): moto's endpoint meanwhile
                        log.warning("no RDS endpoint port for %s: %s", model.resource_id, exc)
                        continue
                changed |= self._listen(entry) if _status(model) == AVAILABLE else self._unlisten(entry)
            if changed:
                self._woken()

    def _listen(self, entry: _Endpoint) -> bool:
        if entry.listening:
            return False
        if entry.sock is None:  # the port could not be bound again last time: try once more
            entry.sock = self._rebind(entry.port)
        if entry.sock is None:
            return False
        try:
            entry.sock.listen(BACKLOG)
        except OSError as exc:
            log.warning("RDS endpoint port %s cannot listen: %s", entry.port, exc)
            return False
        entry.listening = True
        self._accepting()
        return True

    def _unlisten(self, entry: _Endpoint) -> bool:
        """Close the listening socket (refusing what waits in its backlog) and reserve the port again."""
        if not entry.listening:
            return False
        if entry.sock is not None:
            _close(entry.sock)
        entry.listening = False
        entry.sock = self._rebind(entry.port)
        return True

    def _rebind(self, port: int) -> socket.socket | None:
        sock = self._socket()
        try:
            sock.bind((self.bind_host, port))
        except OSError as exc:
            sock.close()
            log.warning("RDS endpoint port %s cannot be bound again (%s): it refuses until it can be", port, exc)
            return None
        return sock

    def _release(self, entry: _Endpoint) -> bool:
        if entry.sock is not None:
            _close(entry.sock)
            entry.sock = None
        was_listening, entry.listening = entry.listening, False
        return was_listening

    # -- the accepting thread -----------------------------------------------------------------------------------

    def _accepting(self) -> None:
        """Start the thread that accepts connections, with the first listener."""
        if self._thread is not None:
            return
        self._wake = socket.socketpair()
        self._wake[0].setblocking(False)
        self._thread = threading.Thread(target=self._accept_loop, name="sandbox-rds-endpoints", daemon=True)
        self._thread.start()

    def _woken(self) -> None:
        """Tell the thread the listeners changed."""
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake[1].send(b"x")

    def _accept_loop(self) -> None:
        assert self._wake is not None
        waker = self._wake[0]
        while True:
            poller = select.poll()  # not select(): descriptors past FD_SETSIZE in a busy process
            with self._lock:
                if self._closed:
                    return
                sockets = {waker.fileno(): waker}
                sockets.update(
                    (e.sock.fileno(), e.sock) for e in self._entries.values() if e.listening and e.sock is not None
                )
            for fd in sockets:
                poller.register(fd, select.POLLIN)
            try:
                events = poller.poll(1000)
            except OSError:
                continue
            for fd, _ in events:
                sock = sockets[fd]
                if sock is waker:
                    with contextlib.suppress(OSError):
                        while waker.recv(4096):
                            pass
                    continue
                try:
                    connection, _ = sock.accept()
                except OSError:  # closed meanwhile, or the client gave up (or no descriptor to spare: not a spin)
                    time.sleep(0.01)
                    continue
                connection.close()

    def close(self) -> None:
        """Close every port and stop the thread (the sandbox stops, or its world is reset)."""
        with self._lock:
            self._closed = True
            for entry in self._entries.values():
                self._release(entry)
            self._entries.clear()
            self._woken()
            thread, wake = self._thread, self._wake
        if thread is not None:
            thread.join(timeout=5)
        if wake is not None:
            for end in wake:
                end.close()


def _close(sock: socket.socket) -> None:
    """Stop listening now, then close. close() alone is not enough: the accepting thread's poll() holds the socket
    until it wakes, and it would go on accepting connections meanwhile (Linux ends the listening at shutdown)."""
    with contextlib.suppress(OSError):  # not listening, or a system that refuses shutdown on a listener
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _alive(model: Any) -> bool:
    """Whether moto holds the model (not one being built, nor one deleted)."""
    backend = getattr(model, "backend", None)
    if backend is None:
        return False
    table = backend.clusters if isinstance(model, DBCluster) else backend.databases
    return any(held is model for held in list(table.values()))


def _status(model: Any) -> str:
    """The model's status, read without moto's side effect (a DBCluster's first read turns creating into
    available: the Describe that reads it next must still see creating)."""
    if isinstance(model, DBCluster):
        return str(model._status)
    return str(model.status)


# -- the active registry (moto's state is process-wide: one sandbox serves at a time) ------------------------------

_ACTIVE: Endpoints | None = None
_ACTIVE_LOCK = threading.Lock()


def start(bind_host: str = LOOPBACK, address: str | None = None) -> Endpoints:
    """A new registry for a sandbox bound to `bind_host` (any previous one is closed). Endpoints report `address`,
    by default the bound host (127.0.0.1 when it binds every interface)."""
    global _ACTIVE
    with _ACTIVE_LOCK:
        previous, _ACTIVE = _ACTIVE, None
    if previous is not None:
        previous.close()
    reported = address or (LOOPBACK if bind_host in WILDCARD_HOSTS else bind_host)
    registry = Endpoints(bind_host=bind_host or LOOPBACK, address=reported)
    with _ACTIVE_LOCK:
        _ACTIVE = registry
    return registry


def stop(registry: Endpoints | None = None) -> None:
    """Close the active registry (only if it is `registry`, when given)."""
    global _ACTIVE
    with _ACTIVE_LOCK:
        current = _ACTIVE
        if current is None or (registry is not None and current is not registry):
            return
        _ACTIVE = None
    current.close()


def sync() -> None:
    """Bring the active registry's listeners in line with moto's statuses (nothing without one)."""
    registry = _ACTIVE
    if registry is not None:
        registry.sync()


# -- what moto's classes read (moto_fixes installs these) ----------------------------------------------------------

_MOTO_INSTANCE_ADDRESS = DBInstance.address
_MOTO_CLUSTER_ENDPOINT = DBCluster.endpoint


def _port(model: Any) -> Any:
    """The sandbox's port of the model, else the port moto keeps (also while moto builds it: None until set)."""
    kept = model.__dict__.get("port")
    registry = _ACTIVE
    if kept is None or registry is None:
        return kept
    allocated = registry.port_of(model)
    return kept if allocated is None else allocated


def _set_port(model: Any, value: Any) -> None:
    model.__dict__["port"] = value  # the engine's port, as moto keeps it (a restore copies it from __dict__)


def _address(model: Any) -> str:
    registry = _ACTIVE
    if registry is not None and registry.port_of(model) is not None:
        return registry.address
    return str(_MOTO_INSTANCE_ADDRESS.fget(model))  # type: ignore[attr-defined]


def _cluster_endpoint(model: Any) -> str:
    registry = _ACTIVE
    if registry is not None and registry.port_of(model) is not None:
        return registry.address
    return str(_MOTO_CLUSTER_ENDPOINT.fget(model))  # type: ignore[attr-defined]


def patch_moto() -> None:
    """DBInstance.address / port and DBCluster.endpoint / port read the active registry (idempotent)."""
    DBInstance.address = property(_address)  # type: ignore[method-assign,assignment]
    DBInstance.port = property(_port, _set_port)  # type: ignore[assignment]
    DBCluster.endpoint = property(_cluster_endpoint)  # type: ignore[method-assign,assignment]
    DBCluster.port = property(_port, _set_port)  # type: ignore[assignment]
