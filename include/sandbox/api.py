"""What an API handler of the sandbox receives and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from include.sandbox.world import World


@dataclass(frozen=True)
class RequestContext:
    """Who is calling what, where: taken from the request's SigV4 credential scope and target."""

    account_id: str
    region: str
    service: str  # botocore service name, e.g. "ssm"
    operation: str  # e.g. "DescribeInstancePatchStates"
    access_key: str = ""  # the request's access key id (moto maps it to the account); "" when unsigned


# A handler takes the decoded JSON request (already validated against botocore's input shape)
# and returns the response members as Python values (datetimes allowed); it raises AwsApiError.
Handler = Callable[["World", RequestContext, dict[str, Any]], dict[str, Any]]
