"""Whether a database endpoint accepts a TCP connection from this worker: the RDS rehearsal's connectivity check.

Only the TCP handshake, no database protocol and no credentials: the check proves the copy listens where RDS says
it does after the maintenance, without the DAGs holding a database login."""

from __future__ import annotations

import socket

CONNECT_TIMEOUT_SECONDS = 5.0


def tcp_connect_problem(address: str, port: int, timeout: float = CONNECT_TIMEOUT_SECONDS) -> str:
    """Why `address:port` did not accept a TCP connection ("" when it did), in words."""
    where = f"{address}:{port}"
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return ""
    except socket.gaierror as error:
        return f"no TCP connection to {where}: the name does not resolve ({error.strerror})"
    except TimeoutError:
        return f"no TCP connection to {where}: no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return f"no TCP connection to {where}: refused"
    except OSError as error:
        return f"no TCP connection to {where}: {error.strerror or error}"
