"""The evidence behind a month's invoices, and how new data differs from it.

A month's evidence is what its supporting files show: the attribution (cost
by cluster, hub, community, component), the reconciliation (input =
attributed + unattributed per billing account) and each source's totals.
It is kept in the ledger when the month is finalized, so the supporting
files of a finalized month always describe the data it was invoiced from.
When a cloud restates the month, `compare` says which sources changed and
by how much, and how each billed party's exact charges moved, even below a
cent; the new figures are written beside the old ones, never over them.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from billing.attribution import AttributedCost, ReconciliationRow
from billing.ingest import IngestedMonth
from billing.money import ZERO


@dataclass(frozen=True)
class AttributionLine:
    """One row of attribution.csv: attributed cost merged by everything the file shows."""

    cluster: str
    hub: str
    community: str
    component: str
    allocation: str
    currency: str
    cost: Decimal
    provider: str
    billing_account: str
    note: str = ""
    corrects: str = ""       # a correction (FOCUS ChargeClass) of this earlier month, YYYY-MM; "" for the month's own


@dataclass(frozen=True)
class SourceTotal:
    source: str
    currency: str
    total: Decimal
    rows: int


@dataclass(frozen=True)
class MonthEvidence:
    month: str
    attribution: tuple[AttributionLine, ...]
    reconciliation: tuple[ReconciliationRow, ...]
    sources: tuple[SourceTotal, ...]

    def to_json(self) -> str:
        """Canonical JSON (amounts as exact strings): equal evidence gives equal text."""
        def row(obj) -> dict:
            return {k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in vars(obj).items()}

        return json.dumps({"month": self.month, "attribution": [row(a) for a in self.attribution],
                           "reconciliation": [row(r) for r in self.reconciliation],
                           "sources": [row(s) for s in self.sources]}, sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> "MonthEvidence":
        data = json.loads(text)

        def build(kind, row, money):
            return kind(**{k: Decimal(v) if k in money else v for k, v in row.items()})

        return cls(data["month"],
                   tuple(build(AttributionLine, r, {"cost"}) for r in data["attribution"]),
                   tuple(build(ReconciliationRow, r, {"input_total", "attributed", "unattributed"})
                         for r in data["reconciliation"]),
                   tuple(build(SourceTotal, r, {"total"}) for r in data["sources"]))


def merge_attribution(attributed: list[AttributedCost]) -> tuple[AttributionLine, ...]:
    """Attributed cost merged by the columns of attribution.csv, in a stable order."""
    merged: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
    notes: dict[tuple, str] = {}
    for a in attributed:
        key = (a.cluster or "", a.hub or "", a.community or "", a.component, a.allocation, a.currency, a.provider,
               a.billing_account, a.corrects or "")
        merged[key] += a.cost
        if a.note:
            notes[key] = a.note
    return tuple(AttributionLine(*k[:6], merged[k], k[6], k[7], notes.get(k, ""), k[8]) for k in sorted(merged))


def evidence_of(ingested: IngestedMonth, attributed: list[AttributedCost],
                reconciliation: list[ReconciliationRow]) -> MonthEvidence:
    sources = tuple(SourceTotal(s.source, currency, total, s.rows)
                    for s in ingested.sources for currency, total in (s.totals or (("", ZERO),)))
    return MonthEvidence(str(ingested.month), merge_attribution(attributed), tuple(reconciliation), sources)


# ---- comparing a finalized month with its data now -------------------------------------


@dataclass
class Restatement:
    """How a finalized month's data now differs from the data it was invoiced from."""

    month: str
    sources: list[tuple[str, str, Decimal, Decimal]] = field(default_factory=list)   # source, currency, then, now
    parties: list[tuple[str, str, str, Decimal, Decimal]] = field(default_factory=list)  # who, number, cur, then, now
    invoice_changes: list[str] = field(default_factory=list)
    baseline_known: bool = True

    @property
    def data_changed(self) -> bool:
        return bool(self.sources or self.parties or self.invoice_changes or not self.baseline_known)

    def describe(self) -> list[str]:
        """One line per changed source and billed party, with exact amounts."""
        lines = []
        if not self.baseline_known:
            lines.append("the ledger has no record of the figures this month was invoiced from (it was finalized "
                         "by an earlier version); its input files have changed since")
        for source, currency, then, now in self.sources:
            lines.append(f"source {source}: {_exact(then)} {currency} then, {_exact(now)} now "
                         f"({_signed(now - then)})")
        for who, number, currency, then, now in self.parties:
            lines.append(f"{who} (invoice {number}): exact charges {_exact(then)} {currency} then, {_exact(now)} "
                         f"now ({_signed(now - then)})")
        return lines


def _exact(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _signed(value: Decimal) -> str:
    return ("+" if value >= 0 else "") + _exact(value)


def compare(month: str, stored: MonthEvidence | None, now: MonthEvidence,
            then_parties: dict[tuple[str, str], tuple[str, str, Decimal]], recomputed: list,
            invoice_changes: list[str]) -> Restatement:
    """Which sources changed and by how much, and each billed party's exact charges then and now.

    `then_parties`: (party kind, id) -> (document number, currency, exact total) as the month's documents say.
    """
    result = Restatement(month, invoice_changes=list(invoice_changes), baseline_known=stored is not None)
    if stored is not None and stored.to_json() != now.to_json():
        then_sources = {(s.source, s.currency): s.total for s in stored.sources}
        now_sources = {(s.source, s.currency): s.total for s in now.sources}
        for key in sorted(set(then_sources) | set(now_sources)):
            a, b = then_sources.get(key, ZERO), now_sources.get(key, ZERO)
            if a != b:
                result.sources.append((key[0], key[1], a, b))
    now_parties = {(i.party_kind, i.party_id): (i.currency, sum((l.amount_exact for l in i.lines), ZERO))
                   for i in recomputed}
    for party in sorted(set(then_parties) | set(now_parties)):
        number, currency, a = then_parties.get(party, ("-", "", ZERO))
        currency_now, b = now_parties.get(party, (currency, ZERO))
        if a != b:
            result.parties.append((f"{party[0]} {party[1]}", number, currency or currency_now, a, b))
    return result
