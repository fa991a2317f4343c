"""The organization's configuration: loaded and validated once, up front.

A plain YAML file that finance staff can read and edit (see
`sample/org.yaml`). `load_organization` returns immutable pydantic objects or
raises `ConfigError` listing every problem with file, path and value.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import functools
import os
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Sequence, Union

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from billing.errors import ConfigError
from billing.message_templates import DEFAULT_BODY, DEFAULT_SUBJECT, check_template
from billing.money import currency_quantum, is_iso_currency, to_decimal
from billing.months import Month

ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
# <project>.<dataset>.gcp_billing_export[_resource]_v1_<ACCOUNT>: a table name cannot be a query parameter.
GCP_EXPORT_TABLE_PATTERN = (r"^[a-z][a-z0-9-]{4,28}[a-z0-9]\.[A-Za-z0-9_]{1,1024}"
                            r"\.gcp_billing_export_(resource_)?v1_[A-Z0-9_]+$")
# A Glue database or table name, written into Athena SQL as "database"."table" (an identifier cannot be a
# query parameter): lower-case letters, digits, '_' and '-' only.
ATHENA_NAME_PATTERN = r"^[a-z0-9_][a-z0-9_-]{0,254}$"


def _decimal(value: Any) -> Decimal:
    """Config amounts must be written as strings or integers, never floats."""
    if isinstance(value, float):
        raise ValueError(f"write amounts in quotes to keep them exact, e.g. \"{value}\"")
    return to_decimal(value)


def _iso_currency(code: str) -> str:
    """A currency every invoice can be computed, rounded and printed in."""
    if not is_iso_currency(code):
        hint = f"; write it in capitals: {code.upper()!r}" if is_iso_currency(code.upper()) else ""
        raise ValueError(f"{code!r} is not an ISO 4217 currency code (e.g. USD, EUR){hint}")
    return code


def _month_text(text: str) -> str:
    """A real month written exactly YYYY-MM: months are compared and looked up as text."""
    month = Month.parse(text)
    if str(month) != text:
        raise ValueError(f"write the month exactly as YYYY-MM: {str(month)!r}, not {text!r}")
    return text


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _email(text: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        raise ValueError(f"not an email address: {text!r}")
    return text


def _invoice_prefix(prefix: str) -> str:
    """Numbers are PREFIX-YYYY-NNNN; the year must be the first group of digits only, so no two read the same."""
    groups = prefix.split("-")
    if (not 1 <= len(prefix) <= 12 or not re.fullmatch(r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)*", prefix)
            or any(g.isdigit() for g in groups)):
        raise ValueError(f"{prefix!r} cannot start invoice numbers (PREFIX-YYYY-NNNN): use 1 to 12 capital letters "
                         "and digits starting with a letter, in groups joined by single '-', none of them digits "
                         "only (it would read like a year or a number), e.g. INV or OHC-EU")
    return prefix


CurrencyCode = Annotated[str, AfterValidator(_iso_currency)]
MonthText = Annotated[str, AfterValidator(_month_text)]
Text = Annotated[str, AfterValidator(_not_blank)]
Email = Annotated[str, AfterValidator(_email)]

# Exchange rates outside these bounds are typos (a lost decimal point, the rate
# written the wrong way round for a weak currency): no two currencies in use are
# a billion to one apart (the weakest trade at about a million to the dollar), and
# such a rate would silently inflate or erase a community's cloud costs.
MIN_EXCHANGE_RATE, MAX_EXCHANGE_RATE = Decimal("1e-9"), Decimal("1e9")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Territory codes babel knows that are not countries an issuer can be in.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"})


def _country(code: str) -> str:
    """An ISO 3166-1 alpha-2 country code, in capitals (US, DE, BR)."""
    from babel import Locale

    if not (len(code) == 2 and code.isascii() and code.isalpha() and code.isupper()
            and code not in _NOT_COUNTRIES and code in Locale("en").territories):
        hint = f"; write it in capitals: {code.upper()!r}" if code != code.upper() and len(code) == 2 else ""
        raise ValueError(f"{code!r} is not an ISO 3166 two-letter country code (e.g. US, CA, DE, BR){hint}")
    return code


def _country_not_boolean(value: Any) -> Any:
    """YAML reads an unquoted NO (Norway) as false."""
    if isinstance(value, bool):
        raise ValueError(f"YAML read this as {str(value).lower()}; write the country code in quotes, e.g. \"NO\"")
    return value


CountryCode = Annotated[str, BeforeValidator(_country_not_boolean), AfterValidator(_country)]


def country_named(text: str) -> str | None:
    """The ISO 3166 code of a country written out in English ("Brazil" -> BR, "United States" -> US), or None."""
    from babel import Locale

    wanted = text.strip().casefold()
    return next((code for code, name in Locale("en").territories.items()
                 if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
                 and name.casefold() == wanted), None)


class Contact(Frozen):
    name: Text
    email: Email | None = None
    address: tuple[str, ...] = ()
    # ISO 3166 code of the address's country; e-invoices need it (else the address's last line, if a country name).
    country: CountryCode | None = None

    @property
    def country_code(self) -> str | None:
        """`country`, or the country the address's last line names."""
        return self.country or (country_named(self.address[-1]) if self.address else None)


# Electronic invoice formats a billed party can ask for (`einvoice:`): "none" (a PDF, the default) or Factur-X,
# a PDF/A-3 carrying the invoice as EN 16931 XML (invoices/facturx.py).
EINVOICE_FORMATS = ("none", "factur-x")


def _einvoice_format(value: Any) -> Any:
    if value not in EINVOICE_FORMATS:
        raise ValueError(f"unknown e-invoice format {value!r}; known: {', '.join(EINVOICE_FORMATS)} "
                         "(factur-x: a PDF/A-3 invoice with its EN 16931 XML embedded)")
    return value


EinvoiceFormat = Annotated[str, BeforeValidator(_einvoice_format)]


def _written_as_text(value: Any) -> Any:
    """A reference written bare in YAML (4500123456) is read as a number, which loses leading zeros."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"write it in quotes, e.g. '{value}', so it stays exactly as written")
    return value


# A purchase-order number, a reference, a name or a tax id as the customer writes it.
PartyText = Annotated[str, BeforeValidator(_written_as_text), AfterValidator(_not_blank)]


class FiscalSponsor(Frozen):
    """The legal entity that invoices on the issuer's behalf (a fiscally sponsored project's sponsor)."""

    name: Text
    address: tuple[str, ...] = ()
    tax_id: PartyText | None = None


class Issuer(Frozen):
    name: Text
    address: tuple[str, ...] = ()
    email: Email | None = None
    website: str | None = None
    tax_id: str | None = None
    # Strict: `yes` would otherwise be read as 1 day.
    payment_terms_days: int = Field(default=30, ge=0, le=365, strict=True)
    payment_instructions: tuple[str, ...] = ()
    invoice_prefix: Annotated[str, AfterValidator(_invoice_prefix)] = "INV"
    # Where the issuer is: sets the paper size of its documents (Letter in the Americas that use it, else A4).
    country: CountryCode | None = None
    page_size: Literal["letter", "a4"] | None = None      # overrides the country's paper size
    # The seller of record when the issuer is a fiscally sponsored project: its name and tax id go on documents.
    fiscal_sponsor: FiscalSponsor | None = None

    @model_validator(mode="after")
    def _one_seller_tax_id(self) -> "Issuer":
        if self.fiscal_sponsor and self.tax_id and self.fiscal_sponsor.tax_id:
            raise ValueError("tax_id and fiscal_sponsor.tax_id are both given, but a document names one seller: "
                             "with a fiscal sponsor the seller is the sponsor, so give its tax id only "
                             "(fiscal_sponsor.tax_id)")
        return self


class Award(Frozen):
    """An amount a funder granted for a period: subsidies draw from it until it is used up."""

    id: Identifier
    amount: Annotated[Decimal, BeforeValidator(_decimal), Field(gt=0, le=Decimal("1e12"))]
    currency: CurrencyCode = "USD"
    start: MonthText = Field(alias="from")
    until: MonthText

    @model_validator(mode="after")
    def _in_order(self) -> "Award":
        if self.until < self.start:
            raise ValueError(f"until {self.until} is before from {self.start}")
        return self


class Funder(Frozen):
    """A grant or sponsor that pays part or all of some communities' charges."""

    id: Identifier
    name: Text
    grant: str | None = None
    currency: CurrencyCode = "USD"
    billing_contact: Contact
    # The funder's awards; without any, a subsidy is not limited by a budget.
    awards: tuple[Award, ...] = ()

    def award_for(self, month: str) -> Award | None:
        """The award in force in `month` (the first one whose period covers it)."""
        return next((a for a in self.awards if a.start <= month <= a.until), None)
    # What the funder's accounts-payable office needs on an invoice to pay it.
    purchase_order: PartyText | None = None
    customer_reference: PartyText | None = None
    legal_name: PartyText | None = None
    tax_id: PartyText | None = None
    einvoice: EinvoiceFormat = "none"       # "factur-x": its invoices carry their EN 16931 XML


def _first_day(text: str) -> dt.date:
    return dt.date.fromisoformat(text if len(text) == 10 else f"{text}-01")


def _last_day(text: str) -> dt.date:
    if len(text) == 10:
        return dt.date.fromisoformat(text)
    return Month.parse(text).end - dt.timedelta(days=1)


def _day_or_month(text: str) -> str:
    """A contract date: YYYY-MM (the whole month) or YYYY-MM-DD (from / until that day, included)."""
    if not isinstance(text, str):
        raise ValueError(f"write a month YYYY-MM or a date YYYY-MM-DD in quotes, got {text!r}")
    if len(text.strip()) == 7:
        return _month_text(text)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a month YYYY-MM or a date YYYY-MM-DD: {text!r}") from None
    _month_text(text[:7])
    if day.isoformat() != text:
        raise ValueError(f"write the date exactly as YYYY-MM-DD: {day.isoformat()!r}, not {text!r}")
    return text


DayOrMonth = Annotated[str, BeforeValidator(lambda v: v.isoformat() if isinstance(v, dt.date) else v),
                       AfterValidator(_day_or_month)]


class PlanPeriod(Frozen):
    """The plan a community is on from a month on (until the next period starts)."""

    start: MonthText = Field(alias="from")
    plan: Identifier


class Prepaid(Frozen):
    """A balance bought in advance, drawn down month by month until it is used up."""

    id: Identifier
    amount: Annotated[Decimal, BeforeValidator(_decimal), Field(gt=0, le=Decimal("1e12"))]
    start: MonthText = Field(alias="from")
    applies_to: Literal["all", "fees", "cloud"] = "all"


class Community(Frozen):
    id: Identifier
    name: Text
    kind: Literal["education", "research", "partnership"]
    currency: CurrencyCode = "USD"
    # One plan, or a history: [{from: 2022-01, plan: alpha-2022}, {from: 2026-01, plan: usage-2026}].
    pricing_plan: Identifier | tuple[PlanPeriod, ...]
    billing_contact: Contact
    funder: Identifier | None = None
    # The contract's first and last day: a month (YYYY-MM, the whole month) or a date (YYYY-MM-DD); fixed fees of
    # a month the contract covers only in part are prorated by days (plan option `prorate`).
    active_from: DayOrMonth | None = None
    active_until: DayOrMonth | None = None
    prepaid: tuple[Prepaid, ...] = ()
    # What the community's accounts-payable office needs on an invoice to pay it: universities pay against a
    # purchase order and refuse invoices without its number.
    purchase_order: PartyText | None = None
    customer_reference: PartyText | None = None
    legal_name: PartyText | None = None     # the legal entity invoiced, when not the community's own name
    tax_id: PartyText | None = None         # the customer's tax / VAT id
    einvoice: EinvoiceFormat = "none"       # "factur-x": its invoices carry their EN 16931 XML

    @model_validator(mode="after")
    def _active_in_order(self) -> "Community":
        if self.active_from and self.active_until and self.first_day > self.last_day:
            raise ValueError(f"active_until {self.active_until} is before active_from {self.active_from}")
        if isinstance(self.pricing_plan, tuple):
            starts = [p.start for p in self.pricing_plan]
            if not starts:
                raise ValueError("pricing_plan: give a plan, or a list of {from: YYYY-MM, plan: ID}")
            if starts != sorted(set(starts)):
                raise ValueError(f"pricing_plan: the periods must start in increasing months, got {starts}")
        return self

    @property
    def first_day(self) -> dt.date:
        return _first_day(self.active_from) if self.active_from else dt.date.min

    @property
    def last_day(self) -> dt.date:
        return _last_day(self.active_until) if self.active_until else dt.date.max

    def plan_periods(self) -> tuple[PlanPeriod, ...]:
        if isinstance(self.pricing_plan, str):
            return (PlanPeriod.model_validate({"from": "0001-01", "plan": self.pricing_plan}),)
        return self.pricing_plan

    def plan_for(self, month: str) -> str | None:
        """The plan in force in `month` (the latest period started by then), or None before the first."""
        current = None
        for period in self.plan_periods():
            if period.start <= month:
                current = period.plan
        return current

    def plan_ids(self) -> list[str]:
        return [p.plan for p in self.plan_periods()]


# ---- cost sources: where a cluster's spend comes from -------------------------


# Days after a month ends before it is finalized, so late cloud data (credits, refunds) lands first.
CloseAfterDays = Annotated[int, Field(ge=0, le=90, strict=True)]


class SourceBase(Frozen):
    """What every cost source may say: how long its cloud keeps restating a month after it ends."""

    close_after_days: CloseAfterDays | None = None


class FocusFilesSource(SourceBase):
    """FOCUS files as the clouds export them: CSV, CSV.gz or Parquet (glob allowed)."""

    type: Literal["focus"]
    path: Text
    cost_column: Literal["BilledCost", "EffectiveCost"] = "BilledCost"


class GcpBigQuerySource(SourceBase):
    """The BigQuery billing export (standard or detailed table)."""

    type: Literal["gcp_bigquery"]
    table: Annotated[str, Field(pattern=GCP_EXPORT_TABLE_PATTERN)]
    location: str | None = None


class AwsCostExplorerSource(SourceBase):
    """Cost Explorer get_cost_and_usage, grouped by the hub tag and service."""

    type: Literal["aws_cost_explorer"]
    metric: Literal["UnblendedCost", "NetUnblendedCost", "AmortizedCost", "BlendedCost"] = "UnblendedCost"
    region: Text = "us-east-1"


class AwsFocusS3Source(SourceBase):
    """The FOCUS export that AWS Data Exports writes to S3 (Manifest.json + data files)."""

    type: Literal["aws_focus_s3"]
    bucket: Text
    prefix: str
    region: Text = "us-east-1"


class AwsAthenaSource(SourceBase):
    """A FOCUS or CUR 2.0 table of AWS Data Exports, summed per month by Amazon Athena."""

    type: Literal["aws_athena"]
    database: str
    table: str
    format: Literal["focus", "cur2"] = "focus"
    workgroup: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,128}$")] = "primary"
    # Where Athena writes query results; may be left out when the workgroup has a result location.
    output_location: Annotated[str, Field(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?$")] | None = None
    region: Text = "us-east-1"

    @field_validator("database", "table")
    @classmethod
    def _glue_name(cls, name: str) -> str:
        if not re.fullmatch(ATHENA_NAME_PATTERN, name):
            raise ValueError(f"{name!r} is not a Glue name the query can use: lower-case letters, digits, '_' and "
                             "'-' only (it is written into the SQL)")
        return name


class AzureCostManagementSource(SourceBase):
    """Cost Management query (ActualCost, daily, grouped by hub tag and service)."""

    type: Literal["azure_cost_management"]
    scope: Annotated[str, Field(pattern=r"^/(subscriptions|providers/Microsoft\.Billing)/")]
    cost_type: Literal["ActualCost", "AmortizedCost"] = "ActualCost"


CostSourceConfig = Annotated[
    Union[FocusFilesSource, GcpBigQuerySource, AwsCostExplorerSource, AwsFocusS3Source, AwsAthenaSource,
          AzureCostManagementSource],
    Field(discriminator="type"),
]


class SplitRule(Frozen):
    """How a shared cluster's unmatched cost is split among its hubs."""

    rule: Literal["usage", "even", "direct_cost"] = "usage"
    # When every weight is zero (no usage recorded, no direct cost), fall back to this.
    fallback: Literal["even"] = "even"


class Cluster(Frozen):
    id: Identifier
    provider: Literal["gcp", "aws", "azure"]
    billing_account: Text
    sub_accounts: tuple[Text, ...] = Field(min_length=1)
    tenancy: Literal["dedicated", "shared"]
    community: Identifier | None = None
    hub_tag: Text = Field(description="tag / label key whose value names the hub")
    # Tag values that are the cluster's own system namespaces, not hubs: their cost is overhead.
    overhead_tag_values: tuple[str, ...] = ("kube-system", "support")
    split: SplitRule | None = None
    source: CostSourceConfig
    # True when the cluster's cost really carries no hub tag (all of it is overhead); otherwise a month in which
    # not one of its rows carries hub_tag is refused, since that is almost always a misspelled hub_tag.
    untagged_ok: bool = False

    # Sub-account ids compare case-insensitively (Azure subscription GUIDs come in both cases).
    _lower_subs = field_validator("sub_accounts", mode="after")(lambda v: tuple(s.lower() for s in v))


class Hub(Frozen):
    id: Identifier
    cluster: Identifier
    community: Identifier
    # How its cost rows are recognized: a tag value (key from the cluster), or a whole sub-account.
    # An empty tag value is how sources say "untagged": it cannot name a hub.
    tag_value: Text | None = None
    sub_account: Text | None = None
    # Whether its monthly active users are billed (false for staging and test hubs).
    billable_users: bool = True

    _lower_sub = field_validator("sub_account", mode="after")(lambda v: v.lower() if v else v)

    @property
    def match_value(self) -> str:
        return self.tag_value if self.tag_value is not None else self.id


class ChargeSpec(Frozen):
    """One pricing model in a plan: its registered name and its parameters."""

    model_config = ConfigDict(frozen=True, extra="allow")
    model: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PricingPlan(Frozen):
    id: Identifier
    name: Text
    currency: CurrencyCode = "USD"
    # Fixed monthly fees of a month the contract covers only in part: by days (daily), or in full (none).
    prorate: Literal["daily", "none"] = "daily"
    charges: tuple[ChargeSpec, ...] = Field(min_length=1)


class ExchangeRate(Frozen):
    """One unit of `from` is worth `rate` units of `to` in `month`."""

    month: MonthText
    source: CurrencyCode = Field(alias="from")
    target: CurrencyCode = Field(alias="to")
    rate: Decimal

    _exact_rate = field_validator("rate", mode="before")(_decimal)

    @field_validator("rate")
    @classmethod
    def _sane_rate(cls, rate: Decimal) -> Decimal:
        if rate <= 0:
            raise ValueError("a rate must be greater than 0")
        if not MIN_EXCHANGE_RATE <= rate <= MAX_EXCHANGE_RATE:
            raise ValueError(f"a rate must be between {MIN_EXCHANGE_RATE:f} and {MAX_EXCHANGE_RATE:f}: no two "
                             "currencies are that far apart; check for a typo or a rate written the wrong way round")
        return rate

    @model_validator(mode="after")
    def _two_currencies(self) -> "ExchangeRate":
        if self.source == self.target:
            raise ValueError(f"from and to are both {self.source}: a rate converts one currency into another")
        return self


class OneOff(Frozen):
    """A one-off charge or credit for a party and month: its own line, never a negative fee."""

    party: Annotated[str, Field(pattern=r"^(community|funder):[a-z0-9][a-z0-9_.-]*$")]   # e.g. community:uca
    month: MonthText
    description: Text
    amount: Annotated[Decimal, BeforeValidator(_decimal), Field(gt=0, le=Decimal("1e12"))]
    kind: Literal["charge", "credit"] = "charge"


class UsageData(Frozen):
    """Per-hub usage: daily measure for splitting shared clusters, monthly active users."""

    daily: str | None = None
    mau: str | None = None
    measure: str = "memory requested (GiB-hours)"


ORG_ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"


def slug(text: str) -> str:
    """An organization id from its name: lowercase ASCII letters and digits joined by single dashes."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join(re.findall(r"[a-z0-9]+", ascii_text.lower()))[:63] or "org"


def _timezone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone; write an IANA name such as UTC or America/New_York") from None
    return name


# ---- notifications: who hears how a monthly run went, and the mail server ------------------------

# Only the NAME of an environment variable is written in the configuration; its value (a password, a webhook
# URL) is read when a message is sent, and never shown: a value pasted here by mistake is not echoed either.
ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
HOST_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252}[A-Za-z0-9])?$"
NOTIFICATION_EVENTS = ("failure", "incomplete", "success", "approval")


def _env_name_problems(data: Any, fields: Sequence[str], example: str) -> None:
    """Refuse settings that should name an environment variable but do not, and secrets written in the file
    itself (`password:`, `url:`), without repeating their values."""
    if not isinstance(data, dict):
        return
    written = [name.removesuffix("_env") for name in fields if name.removesuffix("_env") in data]
    if written:
        raise ValueError(f"{' and '.join(written)}: a secret is not written in the configuration; put it in an "
                         f"environment variable and give that variable's name as "
                         f"{' and '.join(w + '_env' for w in written)}, e.g. {example} (the value is not shown)")
    wrong = [name for name in fields if data.get(name) is not None
             and not (isinstance(data[name], str) and re.fullmatch(ENV_NAME_PATTERN, data[name]))]
    if wrong:
        raise ValueError(f"{' and '.join(wrong)}: give the name of an environment variable (letters, digits and _, "
                         f"not starting with a digit), e.g. {example}, and set the secret in that variable; the "
                         "value given is not shown, in case it is the secret itself")


def _mailbox(text: str) -> str:
    """One sender: billing@example.org or "Hub Billing <billing@example.org>"."""
    pairs = email.utils.getaddresses([text])
    if len(pairs) != 1 or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", pairs[0][1]) or "\n" in text or "\r" in text:
        raise ValueError(f"not one email address: {text!r}; e.g. billing@example.org or "
                         "'Hub Billing <billing@example.org>'")
    return text


Mailbox = Annotated[str, AfterValidator(_mailbox)]
EnvName = Annotated[str, Field(pattern=f"^{ENV_NAME_PATTERN}$")]


class SmtpServer(Frozen):
    """The mail server that sends notifications (and, later, invoices); its credentials come from the environment.

    `starttls` (default) upgrades a plain connection (port 587); `ssl: true` speaks TLS from the start (port
    465). A password is only ever sent over TLS.
    """

    host: Annotated[str, Field(pattern=HOST_PATTERN)]
    port: int = Field(default=587, ge=1, le=65535, strict=True)    # 465 by default with ssl: true
    starttls: bool = Field(default=True, strict=True)                # false by default with ssl: true
    ssl: bool = Field(default=False, strict=True)
    sender: Mailbox = Field(alias="from")
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    timeout: int = Field(default=30, ge=1, le=600, strict=True)      # seconds, per connection and command

    @model_validator(mode="before")
    @classmethod
    def _defaults_and_names(cls, data: Any) -> Any:
        _env_name_problems(data, ("username_env", "password_env"), "SMTP_PASSWORD")
        if not isinstance(data, dict) or data.get("ssl") is not True:
            return data
        if data.get("starttls") is True:
            raise ValueError("give starttls: true (port 587) or ssl: true (port 465), not both")
        return {"port": 465, "starttls": False, **data}

    @model_validator(mode="after")
    def _login_over_tls(self) -> "SmtpServer":
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("give both username_env and password_env to log in, or neither")
        if self.password_env is not None and not (self.starttls or self.ssl):
            raise ValueError("a password is only sent over TLS: set starttls: true or ssl: true")
        return self


class EmailNotifications(Frozen):
    to: tuple[Email, ...]
    cc: tuple[Email, ...] = ()

    @model_validator(mode="after")
    def _each_once(self) -> "EmailNotifications":
        if not self.to:
            raise ValueError("to: give at least one address")
        if dups := _duplicates(a.lower() for a in self.to + self.cc):
            raise ValueError(f"{', '.join(dups)} given more than once in to and cc")
        return self


class WebhookNotifications(Frozen):
    """A Slack-compatible incoming webhook; its URL is a secret, so only the variable that holds it is named."""

    url_env: EnvName

    @model_validator(mode="before")
    @classmethod
    def _names_a_variable(cls, data: Any) -> Any:
        _env_name_problems(data, ("url_env",), "BILLING_WEBHOOK_URL")
        return data


class Notifications(Frozen):
    """Who hears how a monthly run or backfill went: on failure, on an incomplete month, the summary on success."""

    email: EmailNotifications | None = None
    webhook: WebhookNotifications | None = None
    on: tuple[Literal["failure", "incomplete", "success", "approval"], ...] = NOTIFICATION_EVENTS
    subject_prefix: Annotated[str, Field(max_length=60, pattern=r"^[^\r\n]*$")] = "[hub-billing]"

    @model_validator(mode="before")
    @classmethod
    def _on_as_written(cls, data: Any) -> Any:
        # YAML 1.1 reads the bare key `on` as the boolean true: take it as written.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _somewhere_to_send(self) -> "Notifications":
        if self.email is None and self.webhook is None:
            raise ValueError("give email, webhook or both")
        if not self.on:
            raise ValueError(f"on: give at least one of {', '.join(NOTIFICATION_EVENTS)}, or leave it out for all")
        if dups := _duplicates(self.on):
            raise ValueError(f"on: {', '.join(dups)} given more than once")
        return self


def _notifications_need_smtp(notifications: Notifications | None, info: ValidationInfo) -> Notifications | None:
    """E-mail needs a mail server (the top-level smtp block); when that block is itself wrong, that is reported."""
    if notifications is not None and notifications.email is not None and "smtp" in info.data \
            and info.data["smtp"] is None:
        raise ValueError("email: notifications by e-mail need the top-level smtp block (host, port, from, ...)")
    return notifications


def _strftime_date_format(fmt: str) -> str:
    """A date format for `datetime.strptime` that reads a day: it must name the year, the month and the day."""
    if not all(code in fmt for code in ("%d",)) or not any(c in fmt for c in ("%Y", "%y")) \
            or not any(c in fmt for c in ("%m", "%b", "%B")):
        raise ValueError(f"{fmt!r} is not a date format with a day, a month and a year, e.g. \"%d.%m.%Y\" or "
                         "\"%Y-%m-%d\"")
    return fmt


class BankMapping(Frozen):
    """How one bank's CSV export names its columns and writes dates and amounts (`billing payments import
    --mapping NAME`). `reference` may be a list of columns (joined with a space); a bank whose export has no
    currency column gives the account's currency as `account_currency` instead of `currency`."""

    date: Text = "date"
    amount: Text = "amount"
    currency: Text | None = None
    account_currency: CurrencyCode | None = None
    reference: Text | tuple[Text, ...] = "reference"
    payer: Text | None = None
    date_format: Annotated[str, AfterValidator(_strftime_date_format)] = "%Y-%m-%d"
    decimal_separator: Literal[".", ","] = "."
    thousands_separator: Literal["", ",", ".", " ", "'"] = ""
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    encoding: Text = "utf-8-sig"
    skip_lines: int = Field(default=0, ge=0, le=100, strict=True)   # lines above the header (account details)

    @model_validator(mode="after")
    def _one_currency_source(self) -> "BankMapping":
        if (self.currency is None) == (self.account_currency is None):
            raise ValueError("give either currency (the column with each row's currency) or account_currency (the "
                             "one currency of an export without such a column), not both or neither")
        if self.thousands_separator == self.decimal_separator:
            raise ValueError(f"thousands_separator and decimal_separator are both {self.decimal_separator!r}")
        return self

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, name: str) -> str:
        import codecs

        try:
            codecs.lookup(name)
        except LookupError:
            raise ValueError(f"{name!r} is not a text encoding Python knows, e.g. utf-8, latin-1, cp1252") from None
        return name

    @property
    def reference_columns(self) -> tuple[str, ...]:
        return (self.reference,) if isinstance(self.reference, str) else tuple(self.reference)


# Without --mapping: the columns date, amount, currency, reference and (optional) payer, ISO dates, "." decimals.
DEFAULT_BANK_MAPPING = BankMapping(currency="currency", payer="payer")

# ---- the books: account names of the journal handed to the accountant (`billing export journal`) ---------

# A Beancount account name: a root type, then components that start with a capital letter or digit.
ACCOUNT_PATTERN = re.compile(r"^(Assets|Liabilities|Equity|Income|Expenses)(:[A-Z0-9][A-Za-z0-9-]{0,63})+$")


def _account(name: str) -> str:
    if len(name) > 200 or not ACCOUNT_PATTERN.match(name):
        raise ValueError(f"{name!r} is not an account name: write Assets, Liabilities, Equity, Income or Expenses, "
                         "then ':'-separated parts that start with a capital letter or digit and hold only letters, "
                         "digits and '-', e.g. 'Income:ServiceFees'")
    return name


Account = Annotated[str, AfterValidator(_account)]


class Accounts(Frozen):
    """Where each posting of the journal goes. Receivables are kept per party, under `receivable`."""

    receivable: Account = "Assets:Receivable"                   # + :<Party>, e.g. Assets:Receivable:Uca
    bank: Account = "Assets:Bank"                               # payments received
    unapplied: Account = "Liabilities:UnappliedPayments"        # money received not (yet) applied to a document
    service_fees: Account = "Income:ServiceFees"                # fees, uplifts, usage fees, minimums, one-offs
    cloud_recovered: Account = "Income:CloudCostRecovered"      # cloud cost passed through at cost
    markup: Account = "Income:CloudMarkup"                      # margin on cloud cost
    grant_revenue: Account = "Income:GrantFunding"              # what funders are billed
    subsidies: Account = "Income:Subsidies"                     # the part of a community's charges a funder pays
    caps_and_credits: Account = "Income:CapsAndCredits"         # caps, discounts, one-off credits
    prior_period: Account = "Income:PriorPeriodAdjustments"     # differences carried to a later invoice
    prepaid: Account = "Liabilities:CustomerPrepayments"        # prepaid balances drawn down

    @model_validator(mode="after")
    def _receivables_apart(self) -> "Accounts":
        for name in ("receivable", "bank"):
            if not getattr(self, name).startswith("Assets:"):
                raise ValueError(f"{name}: {getattr(self, name)!r} must be an Assets account (Assets:...)")
        for name, account in self.model_dump().items():
            if name != "receivable" and (account + ":").startswith(self.receivable + ":"):
                raise ValueError(f"{name}: {account!r} is the receivable account {self.receivable!r} or under it, "
                                 "where each party's receivable is kept; give it an account of its own")
        return self
class Sending(Frozen):
    """How `billing send` e-mails each finalized document: subject and body templates (Jinja2, plain text,
    rendered in a sandbox; see `billing.message_templates`), who else gets a copy, where replies go."""

    subject: Annotated[str, Field(max_length=1000)] = DEFAULT_SUBJECT
    body: Annotated[str, Field(max_length=20000)] = DEFAULT_BODY
    cc: tuple[Email, ...] = ()
    reply_to: Mailbox | None = None

    @field_validator("subject", "body")
    @classmethod
    def _renders(cls, text: str, info: ValidationInfo) -> str:
        return check_template(text, info.field_name)

    @field_validator("cc")
    @classmethod
    def _each_once(cls, cc: tuple[str, ...]) -> tuple[str, ...]:
        if dups := _duplicates(a.lower() for a in cc):
            raise ValueError(f"{', '.join(dups)} given more than once")
        return cc


def _sending_needs_smtp(sending: Sending | None, info: ValidationInfo) -> Sending | None:
    if sending is not None and "smtp" in info.data and info.data["smtp"] is None:
        raise ValueError("sending documents needs the top-level smtp block (host, port, from, ...)")
    return sending


class Approval(Frozen):
    """Whether a person approves each month before it is finalized and sent (the monthly Prefect flow pauses
    for the answer), and how long it waits: `approval: required`, or {required: true, timeout_hours: 72}."""

    required: bool = Field(default=False, strict=True)
    # A run nobody answers stops after this long, with nothing finalized (its drafts are kept).
    timeout_hours: float = Field(default=72, gt=0, le=24 * 31)

    @model_validator(mode="before")
    @classmethod
    def _word(cls, data: Any) -> Any:
        if isinstance(data, bool) or data in ("required", "none"):
            return {"required": data in (True, "required")}
        if isinstance(data, str):
            raise ValueError(f"write required, none, or {{required: true, timeout_hours: 72}}; got {data!r}")
        return data

    @property
    def timeout_seconds(self) -> int:
        return max(1, round(self.timeout_hours * 3600))


class Organization(Frozen):
    name: Text
    # Names the organization in deployments, artifacts and locks (default: a slug of the name).
    id: Annotated[str, Field(pattern=ORG_ID_PATTERN, max_length=63)] | None = None
    # Where "today" is: which month has closed, the date documents are issued.
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    issuer: Issuer
    ledger_url: str | None = None
    funders: tuple[Funder, ...] = ()
    communities: tuple[Community, ...]
    clusters: tuple[Cluster, ...]
    hubs: tuple[Hub, ...]
    pricing_plans: tuple[PricingPlan, ...]
    usage: UsageData = UsageData()
    exchange_rates: tuple[ExchangeRate, ...] = ()
    # Where outputs go when --out is not given: a folder, or an object-store prefix (s3://, gs://, az://).
    out_dir: str | None = None
    # One-off charges and credits (a setup fee, a goodwill credit), each on its own line of a party's invoice.
    one_offs: tuple[OneOff, ...] = ()
    # Bank exports `billing payments import --mapping NAME` reads: their column names, date and number formats.
    bank_mappings: dict[Identifier, BankMapping] = Field(default_factory=dict)
    # A month is finalized only this many days after it ends (a source may say more); earlier runs give drafts.
    close_after_days: CloseAfterDays = 5
    # A community's month that totals 0.00 (fully grant-funded) gets a statement that nothing is due, or no document.
    zero_total_document: Literal["statement", "none"] = "statement"
    # The mail server (notifications now, invoices later) and who hears how each run went.
    smtp: SmtpServer | None = None
    notifications: Annotated[Notifications | None, AfterValidator(_notifications_need_smtp)] = None
    # Account names of the journal for the accountant (`billing export journal`).
    accounts: Accounts = Accounts()
    # How `billing send` e-mails the documents (defaults when absent; needs smtp).
    sending: Annotated[Sending | None, AfterValidator(_sending_needs_smtp)] = None
    # Whether the monthly flow waits for a person to approve the month's drafts before finalizing and sending.
    approval: Approval = Approval()
    # The folder the configuration was read from; relative paths resolve against it.
    # Cross-references are checked by `parse_organization` (each problem on its own line).
    base_dir: Path = Field(default=Path("."), exclude=True)

    # ---- lookups -------------------------------------------------------------

    @functools.cached_property
    def index(self) -> "_Index":
        """Lookups by id, built once (the organization is immutable): a large one has thousands of hubs."""
        by_cluster: dict[str, list[Hub]] = {}
        by_community: dict[str, list[Hub]] = {}
        for h in self.hubs:
            by_cluster.setdefault(h.cluster, []).append(h)
            by_community.setdefault(h.community, []).append(h)
        return _Index(_by_id(self.communities), _by_id(self.funders), _by_id(self.clusters),
                      _by_id(self.pricing_plans), by_cluster, by_community)

    def community(self, community_id: str) -> Community:
        return self.index.communities[community_id]

    def funder(self, funder_id: str) -> Funder:
        return self.index.funders[funder_id]

    def cluster(self, cluster_id: str) -> Cluster:
        return self.index.clusters[cluster_id]

    def plan(self, plan_id: str) -> PricingPlan:
        return self.index.plans[plan_id]

    def hubs_of_cluster(self, cluster_id: str) -> list[Hub]:
        return list(self.index.hubs_by_cluster.get(cluster_id, ()))

    def hubs_of_community(self, community_id: str) -> list[Hub]:
        return list(self.index.hubs_by_community.get(community_id, ()))

    def resolve(self, path: str) -> str:
        """A path from the configuration, relative to the configuration's folder."""
        expanded = os.path.expanduser(path)
        return expanded if os.path.isabs(expanded) else str(self.base_dir / expanded)

    def rate(self, month: str, source: str, target: str) -> Decimal | None:
        for r in self.exchange_rates:
            if r.month == month and r.source == source and r.target == target:
                return r.rate
        return None

    @property
    def org_id(self) -> str:
        return self.id or slug(self.name)

    def today(self) -> dt.date:
        """Today's date in the organization's time zone."""
        from zoneinfo import ZoneInfo

        return dt.datetime.now(ZoneInfo(self.timezone)).date()

    def last_closed_month(self, today: dt.date | None = None) -> Month:
        """The latest month that has closed (`close_after_days` after its end) on `today`."""
        today = today or self.today()
        month = Month(today.year, today.month)
        while self.closing_day(month) > today:
            month = month.previous()
        return month

    def closing_day(self, month: Month) -> dt.date:
        """The day a month closes: it ends, then every source's close_after_days (the longest) passes."""
        days = max([self.close_after_days] + [c.source.close_after_days for c in self.clusters
                                              if c.source.close_after_days is not None])
        return month.end + dt.timedelta(days=days)

    def is_active(self, community: Community, month: str) -> bool:
        """Whether the contract covers any day of the month (and a plan is in force)."""
        m = Month.parse(month)
        return (community.first_day < m.end and community.last_day >= m.start
                and community.plan_for(month) is not None)

    def active_days(self, community: Community, month: Month) -> tuple[int, int]:
        """(days of the month the contract covers, days in the month)."""
        first, last = max(community.first_day, month.start), min(community.last_day, month.end - dt.timedelta(days=1))
        total = (month.end - month.start).days
        return max((last - first).days + 1, 0), total

    def plan_of(self, community: Community, month: Month | str) -> PricingPlan:
        return self.plan(community.plan_for(str(month)))


@dataclass(frozen=True)
class _Index:
    communities: dict[str, Community]
    funders: dict[str, Funder]
    clusters: dict[str, Cluster]
    plans: dict[str, PricingPlan]
    hubs_by_cluster: dict[str, list[Hub]]
    hubs_by_community: dict[str, list[Hub]]


def _by_id(items) -> dict[str, Any]:
    return {item.id: item for item in items}


def _duplicates(values) -> list[str]:
    seen, dups = set(), []
    for v in values:
        if v in seen and v not in dups:
            dups.append(v)
        seen.add(v)
    return dups


def _cross_reference_problems(org: Organization):
    """Every reference between entities must resolve; yields readable problems."""
    for kind, items in (("funders", org.funders), ("communities", org.communities), ("clusters", org.clusters),
                        ("hubs", org.hubs), ("pricing_plans", org.pricing_plans)):
        for dup in _duplicates(i.id for i in items):
            yield f"{kind}: id {dup!r} is used more than once"
    communities, funders, plans = _by_id(org.communities), _by_id(org.funders), _by_id(org.pricing_plans)
    clusters = _by_id(org.clusters)
    for i, c in enumerate(org.communities):
        for plan_id in dict.fromkeys(c.plan_ids()):
            if plan_id not in plans:
                yield f"communities[{i}] ({c.id}).pricing_plan: no plan {plan_id!r}; known: {sorted(plans)}"
            elif plans[plan_id].currency != c.currency:
                yield (f"communities[{i}] ({c.id}).currency: {c.currency} but plan {plan_id!r} "
                       f"is priced in {plans[plan_id].currency}")
        for dup in _duplicates(p.id for p in c.prepaid):
            yield f"communities[{i}] ({c.id}).prepaid: id {dup!r} is used more than once"
        if c.funder is not None and c.funder not in funders:
            yield f"communities[{i}] ({c.id}).funder: no funder {c.funder!r}; known: {sorted(funders)}"
        elif c.funder is not None and funders[c.funder].currency != c.currency:
            # Subsidy lines are in the community's currency and go, unconverted, on the funder's invoice.
            yield (f"communities[{i}] ({c.id}).currency: {c.currency}, but its funder {c.funder!r} is invoiced in "
                   f"{funders[c.funder].currency}; a funder's invoice is in one currency: invoice them in the same "
                   "currency or use another funder")
    for i, f in enumerate(org.funders):
        for j, award in enumerate(f.awards):
            if award.currency != f.currency:
                yield (f"funders[{i}] ({f.id}).awards[{j}] ({award.id}).currency: {award.currency}, but the funder is "
                       f"invoiced in {f.currency}; an award is drawn in the currency of the funder's invoices")
        for dup in _duplicates(a.id for a in f.awards):
            yield f"funders[{i}] ({f.id}).awards: id {dup!r} is used more than once"
        for a, b in zip(f.awards, f.awards[1:]):
            if b.start <= a.until:
                yield (f"funders[{i}] ({f.id}).awards: {a.id!r} ({a.start} to {a.until}) and {b.id!r} ({b.start} to "
                       f"{b.until}) overlap; list awards in order, one at a time")
    for i, one_off in enumerate(org.one_offs):
        kind, _, party = one_off.party.partition(":")
        if party not in (communities if kind == "community" else funders):
            yield f"one_offs[{i}].party: no {kind} {party!r}"
    claimed: dict[tuple[str, str], str] = {}
    for i, cl in enumerate(org.clusters):
        where = f"clusters[{i}] ({cl.id})"
        if cl.tenancy == "dedicated":
            if cl.community is None:
                yield f"{where}.community: a dedicated cluster names the community it serves"
            elif cl.community not in communities:
                yield f"{where}.community: no community {cl.community!r}"
        if cl.tenancy == "shared" and cl.split is None:
            yield f"{where}.split: a shared cluster states how its shared cost is split (rule: usage, even or direct_cost)"
        if cl.tenancy == "shared" and cl.community is not None:
            yield f"{where}.community: only a dedicated cluster has one community; remove it or set tenancy: dedicated"
        for sub in cl.sub_accounts:
            key = (cl.provider, sub)
            if key in claimed:
                yield f"{where}.sub_accounts: {sub!r} is already claimed by cluster {claimed[key]!r}"
            claimed[key] = cl.id
        if not any(h.cluster == cl.id for h in org.hubs):
            yield f"{where}: no hub runs on this cluster"
    tag_values: dict[tuple[str, str], str] = {}
    sub_account_hubs: dict[tuple[str, str], str] = {}
    for i, h in enumerate(org.hubs):
        where = f"hubs[{i}] ({h.id})"
        if h.community not in communities:
            yield f"{where}.community: no community {h.community!r}"
        cl = clusters.get(h.cluster)
        if cl is None:
            yield f"{where}.cluster: no cluster {h.cluster!r}; known: {sorted(clusters)}"
            continue
        if cl.tenancy == "dedicated" and cl.community is not None and h.community != cl.community:
            yield f"{where}.community: {h.community!r} but cluster {cl.id!r} is dedicated to {cl.community!r}"
        if h.tag_value is not None and h.sub_account is not None:
            yield f"{where}: give either tag_value or sub_account, not both"
        if h.sub_account is not None and h.sub_account not in cl.sub_accounts:
            yield f"{where}.sub_account: {h.sub_account!r} is not one of cluster {cl.id!r}'s sub_accounts {list(cl.sub_accounts)}"
        if h.sub_account is not None:
            key = (h.cluster, h.sub_account)
            if key in sub_account_hubs:
                yield (f"{where}.sub_account: {h.sub_account!r} already names hub {sub_account_hubs[key]!r} "
                       f"on cluster {h.cluster!r}")
            sub_account_hubs.setdefault(key, h.id)
        if h.sub_account is None:
            key = (h.cluster, h.match_value)
            if key in tag_values:
                yield f"{where}.tag_value: {h.match_value!r} already names hub {tag_values[key]!r} on cluster {h.cluster!r}"
            tag_values[key] = h.id
            if h.match_value in cl.overhead_tag_values:
                yield (f"{where}.tag_value: {h.match_value!r} is one of cluster {cl.id!r}'s overhead_tag_values "
                       f"{list(cl.overhead_tag_values)}: its cost would be counted as the cluster's overhead, "
                       "not as this hub's")
    yield from _einvoice_problems(org)
    if org.ledger_url is not None and not _opens_as_database(org.ledger_url):
        yield ("ledger_url: not a database URL that SQLAlchemy can open, e.g. postgresql+psycopg://user@host/db "
               "(the value is not shown: it may hold a password)")
    first_rate: dict[tuple[str, str, str], int] = {}
    for i, r in enumerate(org.exchange_rates):
        key = (r.month, r.source, r.target)
        if key in first_rate:
            yield (f"exchange_rates[{i}]: a second rate from {r.source} to {r.target} for {r.month} "
                   f"(the first is exchange_rates[{first_rate[key]}]); give one")
        first_rate.setdefault(key, i)


def _einvoice_problems(org: Organization):
    """What a Factur-X (EN 16931) invoice must state and the configuration does not give, per party asking for one."""
    parties = [("communities", i, p) for i, p in enumerate(org.communities)]
    parties += [("funders", i, p) for i, p in enumerate(org.funders)]
    asked = [(kind, i, p) for kind, i, p in parties if p.einvoice == "factur-x"]
    if not asked:
        return
    first = f"{asked[0][0]}[{asked[0][1]}] ({asked[0][2].id})"
    if org.issuer.country is None:
        yield (f"issuer.country: {first} has einvoice: factur-x, which states the seller's country (EN 16931 BT-40); "
               "give the issuer's ISO 3166 country code, e.g. US")
    sponsor = org.issuer.fiscal_sponsor
    if not (sponsor.tax_id if sponsor else org.issuer.tax_id):
        where = "issuer.fiscal_sponsor.tax_id" if sponsor else "issuer.tax_id"
        yield (f"{where}: {first} has einvoice: factur-x, which identifies the seller by its tax or registration id "
               "(EN 16931 BR-CO-26); give it")
    for kind, i, p in asked:
        where = f"{kind}[{i}] ({p.id})"
        if p.billing_contact.country_code is None:
            last = f" (its last line {p.billing_contact.address[-1]!r} is not a country name)" \
                if p.billing_contact.address else ""
            yield (f"{where}.billing_contact.country: einvoice: factur-x states the buyer's country (EN 16931 BT-55); "
                   f"give its ISO 3166 code, e.g. DE, or end the address with the country's English name{last}")
        if currency_quantum(p.currency) < Decimal("0.01"):
            yield (f"{where}.einvoice: factur-x states amounts with at most 2 decimals (EN 16931), but {p.currency} "
                   "has 3; use einvoice: none for this party")


def _opens_as_database(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        make_url(url).get_dialect()
    except Exception:  # noqa: BLE001 - any failure means the ledger could not be opened
        return False
    return True


def _plan_trial_problems(org: Organization):
    """Price every community's plan on two made-up months, so what would fail the monthly run fails here.

    One month is empty; the other has fees, cloud cost and active users on
    every path (dedicated uplift, markup, usage tiers, cap, subsidy). A
    community with a funder must have something billed to that funder,
    otherwise its invoices would say its charges are paid by a funder who pays
    nothing.
    """
    from pricing_models import CloudCost, PricingContext, build_model  # late: pricing_models imports this module

    plans, funders = _by_id(org.pricing_plans), _by_id(org.funders)
    for i, c in enumerate(org.communities):
        if any(p not in plans for p in c.plan_ids()) or (c.funder is not None and c.funder not in funders):
            continue  # reported as a cross-reference problem
        billed_to_funder, failed = False, False
        for period in c.plan_periods():
            billed, failed = yield from _try_plan(i, c, plans[period.plan], funders, org, period.start)
            billed_to_funder |= billed
            if failed:
                break
        if c.funder is not None and not failed and not billed_to_funder:
            yield (f"communities[{i}] ({c.id}).funder: {c.funder!r}, but its plans bill nothing to a funder "
                   f"(no subsidy), while the invoices would say {funders[c.funder].name!r} pays part of the charges; "
                   "remove the funder or give a plan a subsidy")


def _try_plan(i: int, c: Community, plan: PricingPlan, funders: dict, org: Organization, start: str):
    """Price one of a community's plans on an empty and a busy made-up month; yields problems, returns
    (whether it billed the funder, whether it failed)."""
    from pricing_models import CloudCost, PricingContext, build_model  # late: pricing_models imports this module

    month = max(start, (c.active_from or "2022-01")[:7], "0001-01")
    hubs = [h for h in org.hubs if h.community == c.id]
    dedicated = any(cl.tenancy == "dedicated" and cl.community == c.id for cl in org.clusters)
    busy_cloud = tuple(CloudCost(h.cluster, h.id, "compute", "direct", Decimal(1_000_000)) for h in hubs[:1])
    billed_to_funder = False
    for cloud, mau in (((), {}), (busy_cloud, {h.id: 100_000 for h in hubs[:1]})):
        # (a funder's awards limit what it pays in a given month; the trial asks whether the plan bills it at all)
        funder = funders[c.funder].model_copy(update={"awards": ()}) if c.funder else None
        ctx = PricingContext(month=Month.parse(month), community=c, funder=funder, currency=c.currency,
                             cloud=cloud, mau=mau, dedicated=dedicated, prorate=plan.prorate)
        charges: list = []
        for j, spec in enumerate(plan.charges):
            try:
                model = build_model(spec.model, spec.params)
            except Exception:  # noqa: BLE001 - reported by validate_plan
                return billed_to_funder, True
            try:
                charges.extend(model.charges(ctx, tuple(charges)))
            except Exception as err:  # noqa: BLE001 - anything raised here would stop the monthly run
                why = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
                yield (f"communities[{i}] ({c.id}).pricing_plan: plan {plan.id!r} cannot price this community: "
                       f"charges[{j}] ({spec.model}): {why}")
                return billed_to_funder, True
        billed_to_funder |= c.funder is not None and any(ch.bill_to == c.funder for ch in charges)
    return billed_to_funder, False


# ---- reading the file -------------------------------------------------------------------

# A configuration is written by hand: 2 MB is about 100 times the sample's size,
# and PyYAML reads it in a few seconds.
MAX_CONFIG_BYTES = 2_000_000
# Aliases (*name) may repeat a value (a shared billing contact), but a few of
# them can expand a small file into billions of values ("billion laughs").
MAX_EXPANDED_VALUES = 1_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _alias_problem(root: yaml.Node) -> str | None:
    """Why the document's aliases make it unusable (a cycle, too large once expanded), or None."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def expanded(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise ValueError(f"line {node.start_mark.line + 1}: an alias refers to a value that contains it")
        open_nodes.add(id(node))
        sizes[id(node)] = 1 + sum(expanded(child) for child in _children(node))
        open_nodes.discard(id(node))
        return sizes[id(node)]

    try:
        total = expanded(root)
    except ValueError as err:
        return str(err)
    if total > MAX_EXPANDED_VALUES:
        return (f"its aliases (*name) expand it to {total:,} values; at most {MAX_EXPANDED_VALUES:,} are read: "
                "write the values out")
    return None


def _repeated_keys(node: yaml.Node | None, loc: tuple = (), seen: set[int] | None = None
                   ) -> Iterator[tuple[int, tuple, str]]:
    """(line, location, problem) for each key given twice in a mapping: PyYAML would silently keep the last.

    A value repeated by an alias is checked once, where it is first written.
    """
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                key = (key_node.tag, key_node.value)
                if key in first_line:
                    yield line, loc, (f"the key {key_node.value!r} is given twice (first at line {first_line[key]}); "
                                      "YAML would silently keep only the last value")
                first_line.setdefault(key, line)
                yield from _repeated_keys(value_node, loc + (key_node.value,), seen)
            else:  # a merge key (<<) or a complex key: its value's keys are checked where they are written
                yield from _repeated_keys(value_node, loc + (None,), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _repeated_keys(item, loc + (i,), seen)


def _read_yaml(path: Path) -> tuple[Any, list[tuple[int, tuple, str]]]:
    """The file's data and its repeated keys; ConfigError if it cannot be read as one YAML document."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: the configuration is {size:,} bytes; at most {MAX_CONFIG_BYTES:,} are read")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the configuration: {err.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text: byte {raw[err.start:err.start + 1]!r} at line {line}; "
                          "save the file as UTF-8") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and (why := _alias_problem(node)):
            raise ConfigError(f"{path}: {why}")
        repeated = list(_repeated_keys(node))
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = ", ".join(filter(None, (getattr(err, "context", None), getattr(err, "problem", None)))) or err
        raise ConfigError(f"{path}: not valid YAML{where}: {what}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply to be a configuration") from None
    finally:
        loader.dispose()
    return data, repeated


# ---- text that reaches documents ------------------------------------------------------------


def _unprintable(text: str) -> str | None:
    """Why `text` cannot go into an invoice, a CSV or the ledger, or None."""
    for ch in text:
        if "\ud800" <= ch <= "\udfff":
            return f"contains the lone surrogate U+{ord(ch):04X}, which cannot be written as UTF-8"
        if ch not in "\t\n" and unicodedata.category(ch) == "Cc":
            return f"contains the control character U+{ord(ch):04X} ({ch!r}); only tab and newline are allowed"
        if ch in BIDI_OVERRIDES:
            return (f"contains the bidirectional override U+{ord(ch):04X}, which can make a printed text read "
                    "differently from what it is; right-to-left names need no override")
    return None


# Explicit embedding and override controls reorder text on the page (the "Trojan Source" trick).
BIDI_OVERRIDES = frozenset("\u202a\u202b\u202c\u202d\u202e")


# Settings whose value is never echoed in a message: it may hold a password.
_SECRET_SETTINGS = {("ledger_url",)}


def _text_problems(value: Any, loc: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """(location, problem) for every key and string in the parsed YAML that is not printable text."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (why := _unprintable(key)):
                yield loc, f"the key {key!r} {why}"
            yield from _text_problems(item, loc + (key,))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _text_problems(item, loc + (i,))
    elif isinstance(value, str):
        if why := _unprintable(value):
            yield loc, f"{'the value' if loc in _SECRET_SETTINGS else repr(value)} {why}"
    elif isinstance(value, (bytes, bytearray)):
        yield loc, "binary data (!!binary) is not text"


# ---- reporting ----------------------------------------------------------------------------


def _where(data: Any, loc: Sequence) -> str:
    """A location as people read it: communities[3] (latam-eu).billing_contact.name."""
    text, node = "", data
    for part in loc:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
            ident = node.get("id") if isinstance(node, dict) else None
            if isinstance(ident, str) and re.fullmatch(ID_PATTERN, ident) and len(ident) <= 64:
                text += f" ({ident})"
        elif isinstance(part, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}"
        else:
            text += f"[{part!r}]"
    return text.lstrip(".") or "(top level)"


def _format_validation_error(source: str, data: Any, err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        value = e.get("input")
        msg = e["msg"].removeprefix("Value error, ")
        shown = "" if isinstance(value, (dict, list)) or not e["loc"] or repr(value) in msg else f" (got {value!r})"
        problems.append(f"{source}: {_where(data, e['loc'])}: {msg}{shown}")
    return problems


def parse_organization(data: Any, source: str = "<inline>", base_dir: Path | None = None, *,
                       earlier_problems: Sequence[str] = ()) -> Organization:
    """Validate configuration data (already parsed YAML) into an Organization.

    Raises ConfigError listing every problem found (after `earlier_problems`,
    those found while reading the file), each with file, path and value.
    """
    problems = list(earlier_problems)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping at the top level", problems)
    problems += [f"{source}: {_where(data, loc)}: {why}" for loc, why in _text_problems(data)]
    try:
        org = Organization.model_validate({**data, "base_dir": base_dir or Path(".")})
    except ValidationError as err:
        raise ConfigError(f"{source}: the configuration is invalid",
                          problems + _format_validation_error(source, data, err)) from None
    # Pricing-model parameters are validated by the models themselves.
    from pricing_models import validate_plan  # late import: pricing_models depends on billing.config

    problems += [f"{source}: {p}" for p in _cross_reference_problems(org)]
    for i, plan in enumerate(org.pricing_plans):
        problems += [f"{source}: pricing_plans[{i}] ({plan.id}).{p}" for p in validate_plan(plan)]
    problems += [f"{source}: {p}" for p in _plan_trial_problems(org)]
    if problems:
        raise ConfigError(f"{source}: the configuration is invalid", problems)
    return org


def load_organization(path: str | os.PathLike) -> Organization:
    """Read and validate the organization's YAML configuration."""
    path = Path(path)
    data, repeated = _read_yaml(path)
    return parse_organization(data, str(path), path.resolve().parent,
                              earlier_problems=[f"{path}: line {line}: {_where(data, loc)}: {why}"
                                                for line, loc, why in repeated])


def default_organization_path() -> Path:
    """The bundled sample organization."""
    return Path(__file__).resolve().parent.parent / "sample" / "org.yaml"
