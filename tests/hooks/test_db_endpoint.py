"""The RDS rehearsal's connectivity check against real sockets on this machine."""

from __future__ import annotations

import socket

from patchcycle.hooks.db_endpoint import tcp_connect_problem


def test_a_listening_port_is_reachable_and_a_closed_one_is_refused_in_words() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert tcp_connect_problem("127.0.0.1", port) == ""
    # The same port once nothing listens there.
    assert tcp_connect_problem("127.0.0.1", port) == f"no TCP connection to 127.0.0.1:{port}: refused"


def test_a_name_that_does_not_resolve_is_said_so() -> None:
    problem = tcp_connect_problem("copy.example.invalid", 5432, timeout=2)
    assert problem.startswith("no TCP connection to copy.example.invalid:5432: the name does not resolve")
