"""What the AWS sources share: the client, error classification, scrubbing.

- `make_client`: every boto3 client, from the default credential chain, with
  botocore's own retries off (ours are logged and bounded);
- `is_transient`: which errors are worth retrying (throttling, 5xx, network)
  and how long the service asked us to wait;
- `call_aws`: one call with those retries, permanent failures turned into
  SourceErrors that say what to fix;
- `scrub`: access keys, signatures and account numbers masked in any text
  from AWS before it reaches a message or a log;
- `charge_category`: an AWS record / line item type as a FOCUS ChargeCategory.

RECORD_TYPE (Cost Explorer) or line item type (CUR) -> FOCUS ChargeCategory:

    Usage, DiscountedUsage, SavingsPlanCoveredUsage,
    SavingsPlanNegation (and spaced spellings)          -> Usage
    Credit, Refund, and any "... Discount"               -> Credit
    Tax                                                  -> Tax
    any "... fee" (Support fee, Recurring/Upfront reservation fee,
    Savings Plan Recurring/Upfront Fee, RIFee, Fee)      -> Purchase
    anything else (e.g. "Other out-of-cycle charges")    -> Adjustment (logged)
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from typing import Any, Callable

import boto3
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, ReadTimeoutError, ResponseStreamingError)

from billing.errors import SourceError
from billing.months import Month
from billing.sources.base import with_retries

log = logging.getLogger(__name__)

PROVIDER_NAME = "AWS"
UTC = dt.timezone.utc

# ---- clients --------------------------------------------------------------------------

# One retry policy, ours (`with_retries`, logged and bounded); botocore's own is off.
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1},
                       connect_timeout=10, read_timeout=120, user_agent_extra="hub-billing")


def make_client(service: str, region: str):
    """A boto3 client from the default credential chain; never takes keys."""
    return boto3.session.Session().client(service, region_name=region, config=CLIENT_CONFIG)


# ---- errors ---------------------------------------------------------------------------

TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "LimitExceededException", "RequestThrottled", "RequestThrottledException",
    "SlowDown", "RequestTimeout", "RequestTimeoutException", "ServiceUnavailable",
    "ServiceUnavailableException", "InternalError", "InternalFailure", "InternalServerError",
    "InternalServiceError", "InternalServerException",
})
CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
    "InvalidSignatureException", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken",
})
TRANSIENT_NETWORK_ERRORS = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError,
                            ConnectTimeoutError, ResponseStreamingError)
CREDENTIALS_HELP = ("configure them through the default chain (AWS_PROFILE, environment variables, "
                    "SSO login or an instance/task role)")

_SECRET_PATTERNS = (
    (re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b"), "<access-key>"),
    (re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+", re.I), r"\1<redacted>"),
    (re.compile(r"(?<!\d)\d{12}(?!\d)"), "<account>"),
)


def scrub(text: str) -> str:
    """Text from AWS with access keys, signatures and account numbers masked."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return scrub(str(exc.response.get("Error", {}).get("Message", "")))


def is_transient(exc: BaseException) -> float | None:
    """Seconds to wait before retrying `exc` (0 = no hint), or None if retrying cannot help."""
    if isinstance(exc, TRANSIENT_NETWORK_ERRORS):
        return 0.0
    if not isinstance(exc, ClientError):
        return None
    meta = exc.response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode") or 0)
    if error_code(exc) not in TRANSIENT_CODES and status < 500 and status != 429:
        return None
    retry_after = (meta.get("HTTPHeaders") or {}).get("retry-after", "")
    return float(retry_after) if str(retry_after).isdigit() else 0.0


Explanation = Callable[[str, str], "str | SourceError | None"]


def call_aws(label: str, call: Callable[[], Any], *, explain: Explanation,
             sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run one AWS call with retries; turn permanent failures into actionable SourceErrors.

    `explain(code, message)` returns the message (or the whole SourceError)
    for an error code this call understands, or None for the generic one.
    """
    try:
        return with_retries(call, source=label, is_transient=is_transient, sleep=sleep,
                            describe=lambda exc: scrub(str(exc)))
    except ClientError as exc:
        code, message = error_code(exc), error_message(exc)
        if code in CREDENTIAL_CODES:
            raise SourceError(label, f"AWS rejected the credentials ({code}); {CREDENTIALS_HELP}") from None
        explained = explain(code, message)
        if isinstance(explained, SourceError):
            raise explained from None
        raise SourceError(label, explained or f"AWS error {code}: {message}") from None
    except BotoCoreError as exc:  # no credentials, bad profile, unreachable endpoint ...
        raise SourceError(label, f"cannot call AWS ({type(exc).__name__}): {scrub(str(exc))}; "
                                 f"if this is about credentials, {CREDENTIALS_HELP}") from None


def month_start(month: Month) -> dt.datetime:
    """Midnight UTC on the month's first day."""
    return dt.datetime(month.year, month.month, 1, tzinfo=UTC)


# ---- record types ---------------------------------------------------------------------

_USAGE_RECORD_TYPES = {"usage", "discountedusage", "discounted usage", "savingsplancoveredusage",
                       "savings plan covered usage", "savingsplannegation", "savings plan negation"}


def charge_category(record_type: str) -> str:
    """The FOCUS ChargeCategory of a Cost Explorer RECORD_TYPE or CUR line item type (see the module doc)."""
    name = record_type.strip().lower()
    if name in _USAGE_RECORD_TYPES:
        return "Usage"
    if name in ("credit", "refund") or "discount" in name:
        return "Credit"
    if name == "tax":
        return "Tax"
    if name.endswith("fee"):
        return "Purchase"
    log.warning("AWS record type %r has no known FOCUS category; reporting it as Adjustment",
                record_type)
    return "Adjustment"

