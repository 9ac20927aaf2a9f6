"""NextToken paging the way the JSON APIs do it: opaque tokens, MaxResults bounded by the model."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from include.sandbox.protocol import AwsApiError

T = TypeVar("T")


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_token(token: str) -> int:
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AwsApiError("InvalidNextToken", "The specified token is not valid.") from exc
    if not isinstance(offset, int) or offset < 0:
        raise AwsApiError("InvalidNextToken", "The specified token is not valid.")
    return offset


def paginate(items: Sequence[T], params: dict[str, Any], default_max: int) -> tuple[list[T], dict[str, Any]]:
    """One page of items and the NextToken member (if more remain) to merge into the response."""
    max_results = params.get("MaxResults") or default_max
    start = decode_token(params["NextToken"]) if params.get("NextToken") else 0
    page = list(items[start : start + max_results])
    more = start + max_results < len(items)
    return page, ({"NextToken": encode_token(start + max_results)} if more else {})
