"""The books for the accountant: double-entry journal entries from the ledger, as CSV or Beancount.

One entry per finalized document issued in a range of months and per
payment received in it:

- an invoice debits the party's receivable (`Assets:Receivable:<Party>`) with
  its total and credits, per line, the account of the line's kind: service
  fees, cloud cost recovered (passed through), markup, caps and credits,
  prior-period adjustments; the part of a community's charges that its
  funder pays is debited to `subsidies` (its subsidy lines are negative),
  and a prepaid draw to the prepaid liability. Everything on a funder's
  invoice is grant revenue. Lines are classified as cost recovery classifies
  them (`billing.recovery.line_column`), so the books and recovery.csv agree;
- a credit note has the same lines negated, so its entry reverses the
  original's;
- a statement (a month that comes to zero, paid by a grant) is an entry too:
  its revenue by kind and the subsidy that pays for it, with no receivable.
  A document whose postings all come to zero gives no entry;
- a payment debits the bank with what was received and credits the
  receivable of each document it was applied to; what is not applied goes
  to the unapplied-payments account (a refund sent, a negative payment, the
  other way round).

Postings of a document are summed per account, rounded amounts only (what
the documents show), so an entry balances to the cent in its currency; the
journal is checked for that and refuses to be written otherwise.

Payments are shown as they stand when the journal is written: a payment
applied to a document after an earlier export moves from the unapplied
account to the receivable in a new export of the same range (entry ids are
stable: document numbers, `payment-<id>`).
"""
from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Sequence

from billing.config import Accounts
from billing.errors import BillingError, InputError
from billing.fileio import atomic_write_bytes
from billing.ledger import Invoice, Line, Payment
from billing.money import ZERO, currency_quantum, round_money
from billing.months import Month
from billing.outputs import write_csv
from billing.recovery import line_column

FORMATS = ("csv", "beancount")
# The account (a field of `Accounts`) a line of a community's document goes to, by its column in recovery.csv.
ACCOUNT_OF_COLUMN = {"fees": "service_fees", "cloud_passthrough": "cloud_recovered", "markup": "markup",
                     "caps_and_credits": "caps_and_credits", "prior_period_adjustments": "prior_period",
                     "subsidies": "subsidies"}
# What a posting to each account is, for the memo.
MEMOS = {"service_fees": "service fees", "cloud_recovered": "cloud cost passed through",
         "markup": "markup on cloud cost",
         "caps_and_credits": "caps, discounts and credits", "prior_period": "prior-period adjustments",
         "subsidies": "charges paid by the funder", "prepaid": "prepaid credit drawn",
         "grant_revenue": "grant-funded charges"}
CSV_HEADER = ["entry_id", "date", "entry_type", "document", "party", "account", "debit", "credit", "currency",
              "description", "memo"]
DOCUMENT_NAMES = {"invoice": "Invoice", "credit_note": "Credit note", "statement": "Statement"}


@dataclass(frozen=True)
class Posting:
    account: str
    amount: Decimal            # positive: a debit; negative: a credit
    currency: str
    party: str = ""            # community:ID or funder:ID, for receivables
    document: str = ""         # the document number the posting concerns
    memo: str = ""


@dataclass(frozen=True)
class Entry:
    entry_id: str              # the document's number, or payment-<id>
    date: dt.date
    entry_type: str            # invoice, credit_note, statement or payment
    payee: str                 # who: the party's name, or the payer
    narration: str
    postings: tuple[Posting, ...]
    links: tuple[str, ...] = ()   # document numbers this entry concerns

    @property
    def accounts(self) -> set[str]:
        return {p.account for p in self.postings}


# ---- accounts ----------------------------------------------------------------------------


def party_component(party_id: str) -> str:
    """An account component from a party id: 'global_communities.grant' -> 'Global-communities-grant'."""
    text = re.sub(r"[^A-Za-z0-9-]", "-", party_id)
    return text[:1].upper() + text[1:]


class ReceivableAccounts:
    """Each party's receivable account, under `accounts.receivable`; two parties never share one."""

    def __init__(self, accounts: Accounts):
        self.root = accounts.receivable
        self.owner: dict[str, str] = {}

    def __call__(self, party_kind: str, party_id: str) -> str:
        account, party = f"{self.root}:{party_component(party_id)}", f"{party_kind}:{party_id}"
        if self.owner.setdefault(account, party) != party:
            raise InputError(f"accounts: {self.owner[account]} and {party} would share the receivable account "
                             f"{account}; rename one of them (ids differing only by '_', '.' or '-' read alike)")
        return account


def line_account(doc: Invoice, line: Line) -> str:
    """The `Accounts` field a document's line is credited (or, negative, debited) to."""
    if doc.party_kind == "funder":
        return "grant_revenue"
    if line.kind == "prepaid":      # a balance paid in advance is drawn down, not a price reduction
        return "prepaid"
    return ACCOUNT_OF_COLUMN[line_column(line)]


# ---- entries -----------------------------------------------------------------------------


def document_entry(doc: Invoice, accounts: Accounts, receivable: ReceivableAccounts) -> Entry | None:
    """The entry of a finalized document: receivable against its lines' accounts; None if it all comes to zero."""
    party = f"{doc.party_kind}:{doc.party_id}"
    sums: dict[str, Decimal] = defaultdict(lambda: ZERO)
    memos: dict[str, list[str]] = defaultdict(list)       # (two kinds may share an account in the configuration)
    for line in doc.lines:
        field = line_account(doc, line)
        account = getattr(accounts, field)
        sums[account] += line.amount
        if MEMOS[field] not in memos[account]:
            memos[account].append(MEMOS[field])
    postings = [Posting(receivable(doc.party_kind, doc.party_id), doc.total, doc.currency, party, doc.number or "",
                        _receivable_memo(doc))]
    postings += [Posting(account, -amount, doc.currency, party, doc.number or "", ", ".join(memos[account]))
                 for account, amount in sums.items()]
    postings = [p for p in postings if p.amount != 0]
    if not postings:
        return None
    name = doc.bill_to.get("display_name") or doc.party_id
    narration = f"{DOCUMENT_NAMES[doc.document_type]} {doc.number} to {name} for {Month.parse(doc.month).label()}"
    if doc.document_type == "credit_note":
        narration += f", reverses {doc.corrects}"
    elif doc.corrects:
        narration += f", replaces {doc.corrects}"
    links = tuple(n for n in (doc.number, doc.corrects) if n)
    return Entry(doc.number or "", doc.issue_date, doc.document_type, name, narration, tuple(postings), links)


def _receivable_memo(doc: Invoice) -> str:
    what = {"invoice": "invoiced", "credit_note": "credited", "statement": "nothing due"}[doc.document_type]
    return f"{what}, service month {doc.month}"


def payment_entry(payment: Payment, documents: dict[str, Invoice], accounts: Accounts,
                  receivable: ReceivableAccounts) -> Entry | None:
    """Bank against the receivable of each document the payment was applied to, the rest to unapplied."""
    ref = f"payment {payment.id}"
    postings = [Posting(accounts.bank, payment.amount, payment.currency, memo=f"received: {payment.reference}")]
    for allocation in payment.allocations:
        doc = documents.get(allocation.number)
        if doc is None:
            raise InputError(f"{ref} of {payment.received_on} is applied to {allocation.number}, which is not a "
                             "finalized document of the ledger; correct the allocation")
        if doc.currency != payment.currency:
            raise InputError(f"{ref} of {payment.received_on} is in {payment.currency} but applied to "
                             f"{doc.number} in {doc.currency}; record the payment in the document's currency")
        postings.append(Posting(receivable(doc.party_kind, doc.party_id), -allocation.amount, payment.currency,
                                f"{doc.party_kind}:{doc.party_id}", doc.number or "", f"paid, {allocation.how}"))
    if payment.unapplied != 0:
        postings.append(Posting(accounts.unapplied, -payment.unapplied, payment.currency,
                                memo="not applied to a document"))
    postings = [p for p in postings if p.amount != 0]
    if not postings:
        return None
    payee = payment.payer or "unknown payer"
    numbers = tuple(dict.fromkeys(a.number for a in payment.allocations))
    what = "Refund sent" if payment.amount < 0 else "Payment received"
    narration = f"{what}: {payment.reference}" + (f" (applied to {', '.join(numbers)})" if numbers else " (unapplied)")
    return Entry(f"payment-{payment.id}", payment.received_on, "payment", payee, narration, tuple(postings), numbers)


def check_balanced(entry: Entry) -> None:
    """Every posting is a whole number of cents (the currency's minor unit) and the entry sums to zero per
    currency; a `BillingError` otherwise (the ledger holds something the books cannot take)."""
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for p in entry.postings:
        if round_money(p.amount, p.currency) != p.amount:
            raise BillingError(f"journal entry {entry.entry_id}: {p.account} {p.amount} {p.currency} is not a whole "
                               "number of the currency's minor unit; nothing was written")
        totals[p.currency] += p.amount
    for currency, total in totals.items():
        if total != 0:
            raise BillingError(f"journal entry {entry.entry_id} of {entry.date} does not balance: its {currency} "
                               f"postings sum to {total}; nothing was written")


def in_range(day: dt.date, first: Month, last: Month) -> bool:
    return first.start <= day < last.end


def journal_entries(documents: Iterable[Invoice], payments: Iterable[Payment], first: Month, last: Month,
                    accounts: Accounts) -> list[Entry]:
    """Entries for finalized documents issued and payments received from `first` to `last` (months, inclusive),
    by date (documents before payments on a day), each checked to balance."""
    documents = [d for d in documents if d.status != "draft" and d.number]
    by_number = {d.number: d for d in documents}
    receivable = ReceivableAccounts(accounts)
    entries = [document_entry(d, accounts, receivable) for d in documents if in_range(d.issue_date, first, last)]
    entries += [payment_entry(p, by_number, accounts, receivable) for p in payments
                if in_range(p.received_on, first, last)]
    entries = sorted((e for e in entries if e is not None),
                     key=lambda e: (e.date, e.entry_type == "payment", e.entry_id))
    for entry in entries:
        check_balanced(entry)
    return entries


def nothing_to_export(documents: Sequence[Invoice], payments: Sequence[Payment], first: Month, last: Month) -> str:
    """Why a range has no entries, and what the ledger does hold."""
    issued = sorted(d.issue_date for d in documents if d.status != "draft")
    received = sorted(p.received_on for p in payments)
    held = [f"documents issued from {issued[0]} to {issued[-1]}" if issued else "no finalized document",
            f"payments received from {received[0]} to {received[-1]}" if received else "no payment"]
    return (f"no finalized document was issued and no payment received from {first} to {last} "
            f"({first.start} to {last.end - dt.timedelta(days=1)}); the ledger has {' and '.join(held)}: "
            "give --from/--to months within that range; nothing was written")


# ---- files -------------------------------------------------------------------------------


def journal_path(out_dir: Path, first: Month, last: Month, fmt: str) -> Path:
    return Path(out_dir) / f"journal-{first}-{last}.{fmt}"


def write_journal_csv(path: Path, entries: Sequence[Entry]) -> None:
    """One row per posting: debit or credit (never both), both positive, in the posting's currency."""
    rows = ([e.entry_id, e.date.isoformat(), e.entry_type, p.document, p.party, p.account,
             money_text(p.amount, p.currency) if p.amount > 0 else "",
             money_text(-p.amount, p.currency) if p.amount < 0 else "", p.currency, e.narration, p.memo]
            for e in entries for p in e.postings)
    write_csv(path, CSV_HEADER, rows)


def beancount_text(entries: Sequence[Entry], first: Month, last: Month, title: str) -> str:
    """A Beancount file: options, an `open` for every account (with its currencies) on the range's first day,
    then the entries."""
    currencies: dict[str, set[str]] = defaultdict(set)
    for e in entries:
        for p in e.postings:
            currencies[p.account].add(p.currency)
    operating = sorted({c for cs in currencies.values() for c in cs})
    out = [f";; {title}: journal from {first} to {last}, written by hub-billing (billing export journal).",
           ";; Drop the options and open directives when appending to books that already have them.",
           f"option \"title\" {_string(title)}"]
    out += [f"option \"operating_currency\" \"{c}\"" for c in operating]
    out.append("")
    out += [f"{first.start} open {account} {','.join(sorted(currencies[account]))}" for account in sorted(currencies)]
    for e in entries:
        out.append("")
        links = "".join(f" ^{n}" for n in e.links if re.fullmatch(r"[A-Za-z0-9\-_/.]+", n))
        out.append(f"{e.date} * {_string(e.payee)} {_string(e.narration)}{links}")
        out.append(f"  entry-id: {_string(e.entry_id)}")
        width = max(len(p.account) for p in e.postings) + 2
        for p in e.postings:
            line = f"  {p.account.ljust(width)}{money_text(p.amount, p.currency):>14} {p.currency}"
            out.append(line)
            if p.memo:
                out.append(f"    memo: {_string(p.memo)}")
    return "\n".join(out) + "\n"


def money_text(amount: Decimal, currency: str) -> str:
    """An amount with the currency's own decimals, no exponent: 1500 USD -> '1500.00', 1500 JPY -> '1500'."""
    return format(amount.quantize(currency_quantum(currency)), "f")


def _string(text: str) -> str:
    """A Beancount string literal on one line."""
    return '"' + " ".join(str(text).split()).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_journal(out_dir: Path, entries: Sequence[Entry], first: Month, last: Month, fmt: str,
                  title: str) -> Path:
    """The journal file in `out_dir`: journal-<from>-<to>.csv or .beancount; returns its path."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: give one of {', '.join(FORMATS)}")
    path = journal_path(out_dir, first, last, fmt)
    if fmt == "csv":
        write_journal_csv(path, entries)
    else:
        atomic_write_bytes(path, beancount_text(entries, first, last, title).encode("utf-8"))
    return path


def totals_by_account(entries: Iterable[Entry]) -> dict[tuple[str, str], Decimal]:
    """(account, currency) -> the sum of its postings (debits positive)."""
    totals: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for e in entries:
        for p in e.postings:
            totals[(p.account, p.currency)] += p.amount
    return dict(totals)

