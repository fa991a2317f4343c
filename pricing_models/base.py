"""The pricing-model interface: one small class per model, a registry by name.

A model turns a community's month (its attributed cloud cost, active users,
what was charged before it in the plan) into `Charge`s: exact amounts plus
the details that explain them. Models that take a percentage of earlier
charges use those charges' rounded amounts, the figures the invoice shows, so
a reader can check every line; each charge is itself rounded once, when it
becomes an invoice line.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any, ClassVar, Iterable, Sequence

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from billing.money import ZERO, format_percent, round_money, to_decimal
from billing.months import Month

# Invoice sections by charge kind, in the order they appear on an invoice.
SECTIONS = {"fee": "Service fees", "uplift": "Service fees", "usage": "Service fees", "minimum": "Service fees",
            "cloud": "Cloud costs", "markup": "Cloud costs", "cap": "Adjustments", "discount": "Adjustments",
            "one_off_charge": "One-off charges", "one_off_credit": "Credits", "subsidy": "Subsidies",
            "prepaid": "Prepaid credit", "adjustment": "Prior-period adjustments"}
KINDS = tuple(SECTIONS)
# How reports and CSVs group charge kinds: service fees, cloud cost passed through, markup (margin on cloud),
# subsidies, and adjustments (caps, discounts, prior-period corrections).
REPORT_GROUPS = {"fee": "fees", "uplift": "fees", "usage": "fees", "minimum": "fees", "one_off_charge": "fees",
                 "cloud": "cloud", "markup": "markup", "cap": "adjustments", "discount": "adjustments",
                 "one_off_credit": "adjustments", "prepaid": "adjustments", "adjustment": "adjustments",
                 "subsidy": "subsidies"}
# Kinds that only the ledger or the contract writes (corrections, one-offs, prepaid draws), never a pricing model.
LEDGER_KINDS = frozenset({"adjustment", "one_off_charge", "one_off_credit", "prepaid"})
# What a subsidy or discount can apply to: the charge kinds in each scope (None: every charge so far).
SCOPES = {"all": None, "fees": frozenset({"fee", "uplift", "usage", "minimum"}), "cloud": frozenset({"cloud", "markup"})}
# What a cap limits: the service fees (markup included: what the organization earns), or everything.
CAP_SCOPES = {"fees": frozenset({"fee", "uplift", "usage", "minimum", "markup"}), "all": None}


@dataclass(frozen=True)
class Charge:
    """An exact amount owed, with what explains it. Negative for credits and subsidies."""

    kind: str
    description: str
    amount: Decimal
    currency: str
    quantity: Decimal | None = None
    unit: str | None = None
    unit_price: Decimal | None = None
    hub: str | None = None
    cluster: str | None = None
    component: str | None = None
    bill_to: str | None = None          # None: the community; else the id of the funder who pays
    community: str | None = None        # the community this charge concerns (set by billing.pricing)
    details: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown charge kind {self.kind!r}; known: {KINDS}")

    @property
    def rounded(self) -> Decimal:
        return round_money(self.amount, self.currency)


@dataclass(frozen=True)
class CloudCost:
    """A community's attributed cloud cost for one hub (or cluster overhead) and component."""

    cluster: str
    hub: str | None
    component: str
    allocation: str          # "direct", "shared" (split of a shared cluster's overhead) or "cluster" (dedicated overhead)
    amount: Decimal          # exact, already in the invoicing currency
    note: str = ""
    corrects: str | None = None   # a correction (FOCUS ChargeClass) of this earlier month, YYYY-MM


@dataclass
class PricingState:
    """What earlier months used up, for the models that remember: awards drawn by subsidies (shared by the
    communities a funder pays for, updated as each is priced), and each community's charges earlier in the
    calendar year (for yearly minimums)."""

    award_drawn: dict[str, Decimal] = field(default_factory=dict)        # award id -> drawn so far
    prepaid_drawn: dict[str, Decimal] = field(default_factory=dict)      # prepaid balance id -> drawn so far
    year_charges: dict[tuple[str, str], Decimal] = field(default_factory=dict)   # (community, kind) -> this year

    def year_total(self, community: str, kinds: Iterable[str] | None) -> Decimal:
        return sum((v for (c, k), v in self.year_charges.items() if c == community and (kinds is None or k in kinds)),
                   ZERO)


@dataclass(frozen=True)
class PricingContext:
    """Everything a model may look at for one community and month."""

    month: Month
    community: Any           # billing.config.Community
    funder: Any | None       # billing.config.Funder
    currency: str
    cloud: tuple[CloudCost, ...] = ()
    mau: dict[str, int] = field(default_factory=dict)   # hub id -> billable monthly active users
    dedicated: bool = False  # the community has a cluster of its own
    active_days: int | None = None      # days of the month the contract covers (None: all of them)
    days_in_month: int | None = None
    prorate: str = "daily"              # the plan's rule for fixed fees of a partial month: daily or none
    state: PricingState = field(default_factory=PricingState)
    last_month: bool = False            # the contract's last month (it ends in this month)

    @property
    def total_mau(self) -> int:
        return sum(self.mau.values())

    @property
    def partial(self) -> bool:
        """The contract covers only part of the month, and the plan prorates fixed fees by days."""
        return (self.prorate == "daily" and self.active_days is not None and self.days_in_month is not None
                and self.active_days < self.days_in_month)

    def prorated(self, amount: Decimal) -> Decimal:
        """A monthly amount for the days the contract covers (exact)."""
        return amount * self.active_days / self.days_in_month if self.partial else amount


class ModelParams(BaseModel):
    """Base of every model's parameters: immutable, no unknown keys, defaults checked like given values.

    A model with a `description` parameter lists in `placeholders` the names
    it fills in (see `PricingModel.describe`); a template using any other is
    refused here, when the configuration is validated, not while pricing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
    placeholders: ClassVar[tuple[str, ...]] = ()

    @field_validator("description", check_fields=False)
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        check_template(template, cls.placeholders)
        return template


def check_template(template: str, placeholders: Sequence[str]) -> None:
    """Refuse a str.format template that uses more than plain `{name}`s from `placeholders`.

    Literal braces are written `{{` and `}}`. Attribute and index access,
    conversions and format specs are refused: a configuration must not reach
    into the objects a model formats.
    """
    known = ", ".join(f"{{{p}}}" for p in placeholders) if placeholders else "no placeholders"
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ValueError(f"unbalanced braces ({err}); write {{{{ and }}}} for literal braces") from None
    for name, spec, conversion in fields:
        if any(c in name for c in ".["):
            problem = "no attribute or index access"
        elif name not in placeholders:
            problem = "unknown placeholder" if name.isidentifier() else "placeholders are names"
        elif conversion or spec:
            problem = "no !conversion or :format spec"
        else:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        raise ValueError(f"{shown}: {problem}; this model's description may use {known}, and {{{{ }}}} for "
                         f"literal braces")


def decimal_field(value: Any) -> Decimal:
    if isinstance(value, float):
        raise ValueError(f"write amounts in quotes to keep them exact, e.g. \"{value}\"")
    return to_decimal(value)


# ---- parameter ranges ----------------------------------------------------------------

# The largest amount a model parameter may hold. It is not a business limit
# but a guard against typos (an exponent, a pasted account number): a monthly
# fee, cap or unit price of a million million is wrong in any currency, even
# in those where one US dollar is tens of thousands of units.
MAX_AMOUNT = Decimal(10) ** 12
# The largest surcharge percentage: more than ten times the base (a markup or
# uplift of 1000 %) is a misplaced decimal point, not a price.
MAX_PERCENT = Decimal(1000)

NOT_A_NEGATIVE = "a credit or discount is its own model (`discount`), not a negative {}"


@dataclass(frozen=True)
class Range:
    """An interval of exact decimals a parameter must lie in: [low, high], or (low, high] when `low_open`."""

    low: Decimal
    high: Decimal
    low_open: bool = False

    def __contains__(self, value: Decimal) -> bool:
        return (value > self.low if self.low_open else value >= self.low) and value <= self.high

    def __str__(self) -> str:
        low, high = f"{self.low:,}", f"{self.high:,}"
        return f"more than {low} and at most {high}" if self.low_open else f"from {low} to {high}"


def exact_decimal(valid: Range, what: str, below: str = "") -> Any:
    """An exact Decimal parameter in `valid`: floats refused, the range in the schema and in every message.

    `what` names the kind of value ("an amount", "a percentage"); `below`
    is added to the message for a value under the range.
    """
    def check(value: Any) -> Decimal:
        number = decimal_field(value)
        if number not in valid:
            hint = f"; {below}" if below and number <= valid.low else ""
            raise ValueError(f"must be {what} {valid}{hint}")
        return number

    low = {"gt": valid.low} if valid.low_open else {"ge": valid.low}
    return Annotated[Decimal, BeforeValidator(check), Field(**low, le=valid.high, description=f"{what} {valid}")]


# A fee, cap or price: zero is allowed (a free tier), negative is not.
Money = exact_decimal(Range(ZERO, MAX_AMOUNT), "an amount", NOT_A_NEGATIVE.format("amount"))
# An amount that must be there to mean anything (an amount off).
PositiveMoney = exact_decimal(Range(ZERO, MAX_AMOUNT, low_open=True), "an amount",
                              "write the amount as a positive number")
# A surcharge on a base (markup, uplift).
Percent = exact_decimal(Range(ZERO, MAX_PERCENT), "a percentage", NOT_A_NEGATIVE.format("percentage"))
# A part of a base (subsidy, percentage discount): more would exceed the base, zero would do nothing.
Share = exact_decimal(Range(ZERO, Decimal(100), low_open=True), "a percentage")


def parameter_ranges(params: type[BaseModel]) -> dict[str, str]:
    """Each ranged parameter of a Params class and its range in words: {"fees.*": "an amount from 0 to ..."}.

    Read from the JSON schema, where the ranges are declared; `name[]` is an
    item of a list, `name.*` a value of a mapping.
    """
    schema = params.model_json_schema()
    found: dict[str, str] = {}

    def walk(node: dict, path: str) -> None:
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        if "le" in node:
            found[path] = node["description"]
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}" if path else name)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*")
        if "items" in node:
            walk(node["items"], f"{path}[]")
        for sub in node.get("anyOf", ()):
            walk(sub, path)

    walk(schema, "")
    return found


class PricingModel:
    """Base of every pricing model: subclasses set `name`, `Params`, and implement `charges`."""

    name: ClassVar[str]
    Params: ClassVar[type[ModelParams]] = ModelParams

    def __init__(self, params: ModelParams):
        self.params = params

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        raise NotImplementedError

    def describe(self, **values: object) -> str:
        """The `description` parameter filled in with exactly the placeholders the Params class declares."""
        declared = set(self.Params.placeholders)
        if set(values) != declared:
            raise TypeError(f"{type(self).__name__} declares placeholders {sorted(declared)} "
                            f"but fills in {sorted(values)}")
        return self.params.description.format(**values)


def percent_text(value: Decimal) -> str:
    """A percentage as people write it: 50, 12.5 (no exponent, no trailing zeros)."""
    return format(value.normalize(), "f")


def percent_number(value: Decimal) -> str:
    """The number of a percentage as `billing.money.format_percent` prints it, without the sign: 50, 12.5, 1,000.

    A `{percent}` placeholder is filled with it, so a template's "{percent}%"
    reads exactly as format_percent writes the percentage.
    """
    return format_percent(value).removesuffix("%")


def rounded_sum(charges: Iterable[Charge], kinds: Iterable[str] | None = None, bill_to: str | None = None) -> Decimal:
    """Sum of the rounded amounts of the community's own charges (optionally of some kinds)."""
    kinds = set(kinds) if kinds is not None else None
    return sum((c.rounded for c in charges if c.bill_to == bill_to and (kinds is None or c.kind in kinds)), ZERO)


def scope_sum(charges: Iterable[Charge], applies_to: str) -> Decimal:
    """The community's own charges so far in a scope of SCOPES, net of the discounts already given on it."""
    kinds = SCOPES[applies_to]
    if kinds is None:
        return rounded_sum(charges)
    return rounded_sum(c for c in charges if c.kind in kinds
                       or (c.kind == "discount" and dict(c.details).get("applies_to") == applies_to))


# ---- registry ------------------------------------------------------------------------

_REGISTRY: dict[str, type[PricingModel]] = {}
# Installed packages offer pricing models under this entry-point group; a plan names them by the entry point's name.
ENTRY_POINT_GROUP = "hub_billing.pricing_models"


def register(name: str):
    """Class decorator: make a model available to plans under `name`."""
    def decorate(cls: type[PricingModel]) -> type[PricingModel]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"pricing model {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return decorate


def model_class(name: str) -> type[PricingModel]:
    """The model a plan names: a built-in one, else one that an installed package registers as an entry point.

    A plan gives names only: nothing in a configuration makes this import a
    module of its choosing. Raises KeyError with a message for the person who
    wrote the plan.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name or "." in name:
        raise KeyError(f"pricing model {name!r}: a configuration names a model, it cannot import code; install a "
                       f"package that registers the model under the entry-point group {ENTRY_POINT_GROUP!r} and "
                       f"write the name it registers (README, \"Adding a pricing model\")")
    found = {ep.value: ep for ep in entry_points(group=ENTRY_POINT_GROUP, name=name)}
    if not found:
        raise KeyError(f"unknown pricing model {name!r}; known: {known_models()}")
    if len(found) > 1:
        raise KeyError(f"pricing model {name!r} is registered by more than one installed package: "
                       f"{', '.join(_where(ep) for ep in found.values())}; uninstall one")
    return _load(next(iter(found.values())))


def _where(ep: EntryPoint) -> str:
    return f"{ep.value!r} (package {ep.dist.name if ep.dist else '?'})"


def _load(ep: EntryPoint) -> type[PricingModel]:
    """Import the class an entry point names and register it under the entry point's name."""
    try:
        cls = ep.load()
    except Exception as err:  # noqa: BLE001  (an installed package's import failed: report it, one line)
        raise KeyError(f"pricing model {ep.name!r}: cannot load {_where(ep)}: {type(err).__name__}: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, PricingModel) and issubclass(cls.Params, ModelParams)):
        raise KeyError(f"pricing model {ep.name!r}: {_where(ep)} is not a PricingModel subclass whose Params "
                       f"is a ModelParams")
    return register(ep.name)(cls)


def known_models() -> list[str]:
    """Names a plan may use: the built-in models and those installed packages register (not loaded here)."""
    return sorted(set(_REGISTRY) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
