"""Which AWS errors are worth a retry, and a clear failure for the ones that are not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError

# Errors no retry can fix: permissions, bad input, missing resources. The task fails at once.
FATAL_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "AuthFailure",
        "ValidationException",
        "ValidationError",
        "InvalidParameterValue",
        "InvalidParameters",
        "InvalidDocument",
        "InvalidInstanceId",
        "InvalidParameterCombination",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)

# What botocore's standard retry mode treats as throttling or transient (botocore.retries.standard): 4xx, but retryable.
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def is_fatal(error: ClientError) -> bool:
    """True for errors a retry cannot fix (throttling, 5xx and connection errors are retried instead)."""
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    retryable = code in RETRYABLE_CODES or "Throttl" in code or status == 429
    return code in FATAL_CODES or (400 <= status < 500 and not retryable)


@contextmanager
def aws_call(api: str, account_id: str, region: str) -> Iterator[None]:
    """Name the API, account and region in the error, and fail without retries when retrying cannot help."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Unknown")
        message = error.response.get("Error", {}).get("Message", "")
        text = f"{api} failed in account {account_id}, region {region}: {code}: {message}"
        if is_fatal(error):
            raise AirflowFailException(text) from error
        raise RuntimeError(f"{text} (retryable)") from error
