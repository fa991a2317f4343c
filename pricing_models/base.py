"""The pricing-model interface: one small class per model, a registry by name.

A model turns a community's month (its attributed cloud cost, active users,
what was charged before it in the plan) into `Charge`s: exact amounts plus
the details that explain them. Models that take a percentage of earlier
charges use those charges' rounded amounts, the figures the invoice shows, so
a reader can check every line; each charge is itself rounded once, when it
becomes an invoice line.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Iterable, Sequence

from pydantic import BaseModel, ConfigDict, field_validator

from billing.money import ZERO, round_money, to_decimal
from billing.months import Month

# Invoice sections by charge kind, in the order they appear on an invoice.
SECTIONS = {"fee": "Service fees", "uplift": "Service fees", "usage": "Service fees",
            "cloud": "Cloud costs", "markup": "Cloud costs", "cap": "Adjustments", "subsidy": "Subsidies"}
KINDS = tuple(SECTIONS)


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


@dataclass(frozen=True)
class PricingContext:
    """Everything a model may look at for one community and month."""

    month: Month
    community: Any           # billing.config.Community
    funder: Any | None       # billing.config.Funder
    currency: str
    cloud: tuple[CloudCost, ...] = ()
    mau: dict[str, int] = field(default_factory=dict)   # hub id -> monthly active users
    dedicated: bool = False  # the community has a cluster of its own

    @property
    def total_mau(self) -> int:
        return sum(self.mau.values())


class ModelParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def decimal_field(value: Any) -> Decimal:
    if isinstance(value, float):
        raise ValueError(f"write amounts in quotes to keep them exact, e.g. \"{value}\"")
    return to_decimal(value)


def money_param(*names: str):
    """A pydantic validator that builds Decimals from strings and refuses floats."""
    return field_validator(*names, mode="before")(lambda v: None if v is None else decimal_field(v))


class PricingModel:
    """Base of every pricing model: subclasses set `name`, `Params`, and implement `charges`."""

    name: ClassVar[str]
    Params: ClassVar[type[ModelParams]] = ModelParams

    def __init__(self, params: ModelParams):
        self.params = params

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        raise NotImplementedError


def percent_text(value: Decimal) -> str:
    """A percentage as people write it: 50, 12.5 (no exponent, no trailing zeros)."""
    return format(value.normalize(), "f")


def rounded_sum(charges: Iterable[Charge], kinds: Iterable[str] | None = None, bill_to: str | None = None) -> Decimal:
    """Sum of the rounded amounts of the community's own charges (optionally of some kinds)."""
    kinds = set(kinds) if kinds is not None else None
    return sum((c.rounded for c in charges if c.bill_to == bill_to and (kinds is None or c.kind in kinds)), ZERO)


# ---- registry ------------------------------------------------------------------------

_REGISTRY: dict[str, type[PricingModel]] = {}


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
    """The model registered as `name`, or imported from "package.module:Class"."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as err:
            raise KeyError(f"cannot import pricing model {name!r}: {err}") from None
        if not (isinstance(cls, type) and issubclass(cls, PricingModel)):
            raise KeyError(f"{name!r} is not a PricingModel subclass")
        return cls
    raise KeyError(f"unknown pricing model {name!r}; known: {sorted(_REGISTRY)} (or 'package.module:Class')")


def known_models() -> list[str]:
    return sorted(_REGISTRY)
