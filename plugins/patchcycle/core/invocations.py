"""Reading Run Command invocations: the status, the exit code and the error a person should see."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

ERROR_MARKER: Final = "----------ERROR-------"
# Invocation statuses of a command that had not finished (cancelled at the time limit, they count as timed out).
UNFINISHED: Final = frozenset({"Pending", "InProgress", "Delayed", "Cancelling", "Cancelled"})


def invocation_error(output: str, limit: int = 300) -> str:
    """The error part of a Run Command plugin output (after SSM's ERROR marker), else its last line."""
    if ERROR_MARKER in output:
        text = output.rsplit(ERROR_MARKER, 1)[1]
    else:
        lines = [line for line in output.splitlines() if line.strip()]
        text = lines[-1] if lines else ""
    return " ".join(text.split())[:limit]


def plugin_output(invocation: Mapping[str, Any]) -> tuple[int, str]:
    """(the first plugin's ResponseCode, every plugin's Output joined) of an invocation read with details."""
    plugins = invocation.get("CommandPlugins") or [{}]
    return int(plugins[0].get("ResponseCode", -1)), "\n".join(str(p.get("Output", "")) for p in plugins).strip()
