"""What each party owes: open amounts per document, their aging, and statements of account.

Read from the ledger (documents, payments and what they were applied to);
nothing here writes to it. How the amounts are counted, as of a date D
(documents issued, credit notes issued and payments received on or before D):

- A document's open amount is its total, plus the credit notes issued
  against it (negative), minus what was paid towards it.
- An invoice cancelled by a full credit note (voided, or credited and
  replaced by `billing amend`) is left out, with its credit note: together
  they come to nothing. Money paid towards it counts towards the document
  that replaced it (and so on down a chain of replacements); with no
  replacement (a voided invoice, or a party no longer billed for the
  month) the cancelled invoice stays listed with that money as a credit
  (a negative open amount).
- A credit note against an invoice still in force (a partial credit)
  reduces that invoice's open amount. A credit note whose document is not in
  the ledger is listed on its own, as a credit.
- Statements (nothing due) are left out unless money was applied to them.
- An overpayment leaves a document with a negative open amount: a credit
  of the party, in the bucket `credit`, not aged.
- A payment not applied to any document (unmatched) belongs to no party yet:
  it is not in the receivables (see `out/payments-unmatched.csv`).
- The due date is the one printed on the invoice: its issue date plus the
  issuer's `payment_terms_days` as they were when it was issued. Days
  overdue count from the day after it; an invoice due on D is current on D.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from billing.ledger.payments import AccountDocument, Payment
from billing.money import ZERO

BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
CREDIT = "credit"      # a negative open amount: the party has paid more than the document asks


def bucket_of(open_amount: Decimal, days_overdue: int) -> str:
    """The aging bucket of an open amount that is `days_overdue` days past its due date."""
    if open_amount < 0:
        return CREDIT
    if days_overdue <= 0:
        return "current"
    if days_overdue <= 30:
        return "1-30"
    if days_overdue <= 60:
        return "31-60"
    if days_overdue <= 90:
        return "61-90"
    return "90+"


@dataclass(frozen=True)
class Receivable:
    """One document's standing on a date."""

    document: AccountDocument
    credited: Decimal        # credit notes against it (negative)
    paid: Decimal            # payments applied to it, or to the documents it replaced
    as_of: dt.date

    @property
    def open(self) -> Decimal:
        return self.document.total + self.credited - self.paid

    @property
    def days_overdue(self) -> int:
        return max((self.as_of - self.document.due_date).days, 0) if self.open > 0 else 0

    @property
    def bucket(self) -> str:
        return bucket_of(self.open, self.days_overdue)


@dataclass
class Book:
    """The ledger's documents and payments as they stood on `as_of` (None: everything recorded)."""

    documents: list[AccountDocument]
    payments: list[Payment]
    as_of: dt.date | None = None
    by_number: dict[str, AccountDocument] = field(init=False)
    credit_notes: dict[str, list[AccountDocument]] = field(init=False)
    replacements: dict[str, AccountDocument] = field(init=False)
    paid: dict[str, Decimal] = field(init=False)

    def __post_init__(self) -> None:
        on = (lambda d: True) if self.as_of is None else (lambda d: d <= self.as_of)  # noqa: E731
        self.documents = [d for d in self.documents if on(d.issue_date)]
        self.payments = [p for p in self.payments if on(p.received_on)]
        self.by_number = {d.number: d for d in self.documents}
        self.credit_notes, self.replacements = defaultdict(list), {}
        for d in self.documents:
            if d.corrects and d.document_type == "credit_note":
                self.credit_notes[d.corrects].append(d)
            elif d.corrects:
                self.replacements[d.corrects] = d
        self.paid = defaultdict(lambda: ZERO)
        for payment in self.payments:
            for allocation in payment.allocations:
                self.add_payment(allocation.number, allocation.amount)

    def add_payment(self, number: str, amount: Decimal) -> None:
        """Count money applied to `number` (towards its replacement if it was cancelled and replaced)."""
        self.paid[self.successor(number)] += amount

    def credited(self, number: str) -> Decimal:
        return sum((c.total for c in self.credit_notes.get(number, ())), ZERO)

    def is_cancelled(self, number: str) -> bool:
        """Cancelled by a full credit note (on `as_of`), or a statement replaced by another document."""
        doc = self.by_number[number]
        if doc.status == "replaced":
            return number in self.replacements
        return (doc.status in ("credited", "voided") and doc.total != 0
                and self.credited(number) == -doc.total)

    def successor(self, number: str) -> str:
        """The document that now stands for `number`: itself, or what replaced it after it was cancelled."""
        seen = set()
        while (number in self.by_number and number not in seen and self.is_cancelled(number)
               and number in self.replacements):
            seen.add(number)
            number = self.replacements[number].number
        return number

    def receivable(self, number: str) -> Receivable:
        return Receivable(self.by_number[number], self.credited(number), self.paid.get(number, ZERO),
                          self.as_of or dt.date.max)

    def open_amount(self, number: str) -> Decimal:
        return self.receivable(number).open

    def receivables(self, *, settled: bool = False) -> list[Receivable]:
        """Every document with an open amount (or, with `settled`, every invoice and statement too), by party,
        currency and issue date."""
        rows = []
        for doc in self.documents:
            orphan_credit = doc.document_type == "credit_note" and doc.corrects not in self.by_number
            if doc.document_type == "credit_note" and not orphan_credit:
                continue
            row = self.receivable(doc.number)
            if row.open != 0 or (settled and not self.is_cancelled(doc.number) and doc.document_type == "invoice"):
                rows.append(row)
        return sorted(rows, key=lambda r: (r.document.party, r.document.currency, r.document.issue_date,
                                           r.document.number))


def aging_totals(rows: list[Receivable]) -> dict[str, dict[str, Decimal]]:
    """Open amounts per currency and bucket (`BUCKETS`, then `credit`, then `total`)."""
    totals: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        per = totals.setdefault(row.document.currency, {b: ZERO for b in (*BUCKETS, CREDIT, "total")})
        per[row.bucket] += row.open
        per["total"] += row.open
    return dict(sorted(totals.items()))


RECEIVABLES_HEADER = ("party", "party_name", "number", "document_type", "currency", "issue_date", "due_date",
                      "total", "credited", "paid", "open", "days_overdue", "bucket")


def write_receivables_csv(path: Path, rows: list[Receivable]) -> None:
    from billing.outputs import write_csv

    write_csv(path, RECEIVABLES_HEADER, ([r.document.party, r.document.party_name, r.document.number,
                                          r.document.document_type, r.document.currency,
                                          r.document.issue_date.isoformat(), r.document.due_date.isoformat(),
                                          r.document.total, r.credited, r.paid, r.open, str(r.days_overdue),
                                          r.bucket] for r in rows))


# ---- statements of account -------------------------------------------------------------------


@dataclass(frozen=True)
class AccountEntry:
    """A dated row of a statement of account: a document (its total) or a payment (what it paid)."""

    date: dt.date
    kind: str                 # invoice, credit_note or payment
    reference: str            # the document number, or the numbers of the documents a payment paid
    description: str
    amount: Decimal           # what it adds to the balance: + invoice, - credit note, - payment
    balance: Decimal          # the running balance after it
    due_date: dt.date | None = None
    note: str | None = None   # a payment: the reference the payer gave the bank


@dataclass(frozen=True)
class AccountStatement:
    """A party's account in one currency over a period: opening balance, dated entries, closing balance."""

    party_kind: str
    party_id: str
    party_name: str
    currency: str
    start: dt.date            # first day
    end: dt.date              # last day
    opening: Decimal
    entries: tuple[AccountEntry, ...]
    aging: dict[str, Decimal]  # the closing balance's open amounts by bucket, on `end`

    @property
    def closing(self) -> Decimal:
        return self.entries[-1].balance if self.entries else self.opening

    @property
    def invoiced(self) -> Decimal:
        return sum((e.amount for e in self.entries if e.kind == "invoice"), ZERO)

    @property
    def credited(self) -> Decimal:
        return sum((e.amount for e in self.entries if e.kind == "credit_note"), ZERO)

    @property
    def received(self) -> Decimal:
        return -sum((e.amount for e in self.entries if e.kind == "payment"), ZERO)


def _movements(documents: list[AccountDocument], payments: list[Payment], party: tuple[str, str],
               currency: str) -> list[tuple]:
    """Everything that moved the party's balance in `currency`: (date, order, sequence, kind, reference, text,
    amount, due, note), by date; on one day, documents (as issued) before payments (as recorded)."""
    mine = {d.number: d for d in documents if (d.party_kind, d.party_id) == party and d.currency == currency}
    moves = []
    for seq, d in enumerate(mine.values()):      # documents in the order they were issued
        if d.total == 0:       # a statement with nothing due, or a document of nothing: no movement
            continue
        if d.document_type == "credit_note":
            text = f"Credit note for {d.corrects}" if d.corrects else "Credit note"
        else:
            text = f"Invoice for {_month_label(d.month)}" + (f" (replaces {d.corrects})" if d.corrects else "")
        moves.append((d.issue_date, 0, seq, d.document_type, d.number, text, d.total,
                      d.due_date if d.document_type == "invoice" else None, None))
    for p in payments:
        applied = [a for a in p.allocations if a.number in mine]
        if applied:
            numbers = ", ".join(dict.fromkeys(a.number for a in applied))
            moves.append((p.received_on, 1, p.id, "payment", numbers, "Payment received",
                          -sum((a.amount for a in applied), ZERO), None, p.reference))
    return sorted(moves, key=lambda m: m[:3])


def _month_label(month: str) -> str:
    from billing.months import Month

    return Month.parse(month).label()


def party_currencies(documents: list[AccountDocument], party: tuple[str, str]) -> list[str]:
    return sorted({d.currency for d in documents if (d.party_kind, d.party_id) == party})


def account_statement(documents: list[AccountDocument], payments: list[Payment], party: tuple[str, str],
                      currency: str, start: dt.date, end: dt.date) -> AccountStatement:
    """The party's statement of account in `currency` from `start` to `end` (both included).

    The opening balance is everything before `start`; each entry moves the
    running balance; the closing balance equals what the receivables list as
    open for the party on `end` (credits included).
    """
    opening, entries, balance = ZERO, [], ZERO
    for date, _, _, kind, ref, text, amount, due, note in _movements(documents, payments, party, currency):
        if date > end:
            break
        balance += amount
        if date < start:
            opening = balance
            continue
        entries.append(AccountEntry(date, kind, ref, text, amount, balance, due, note))
    name = next((d.party_name for d in documents if (d.party_kind, d.party_id) == party), party[1])
    book = Book(documents, payments, end)
    rows = [r for r in book.receivables() if (r.document.party_kind, r.document.party_id) == party
            and r.document.currency == currency]
    aging = aging_totals(rows).get(currency, {b: ZERO for b in (*BUCKETS, CREDIT, "total")})
    return AccountStatement(party[0], party[1], name, currency, start, end, opening, tuple(entries), aging)
