"""Recording payments: reading a bank export, matching each payment to a document, applying one by hand.

- A bank export is a CSV file; its columns, date format and decimal separator
  are a `BankMapping` (the default: `date, amount, currency, reference`,
  optional `payer`; others named in the configuration's `bank_mappings`).
  Every bad cell is reported (file, line, column, value) and nothing is
  recorded unless the whole file reads.
- A payment is matched by the document number(s) found in its reference
  text: the ledger's own number format (PREFIX-YYYY-NNNN, any case, with
  `-`, `/`, `.`, `_`, spaces or nothing between the parts), anywhere in the
  text. Never by amount. A number that names a cancelled invoice leads to
  the invoice that replaced it. The payment must be in the document's
  currency. Whatever is paid is applied: a partial payment leaves the rest
  open, an overpayment leaves a credit. A payment naming several documents
  pays each in turn up to its open amount; what is left goes to the last.
- Anything else stays unmatched, with the reason, for `billing payments
  apply`. Unmatched payments are listed in `payments-unmatched.csv`.
- Importing the same rows again records nothing: each row has a
  fingerprint of its content (date, amount, currency, reference, payer) and
  its occurrence among identical rows of its file, so an overlapping export
  from another day is recognized and two identical rows in one file are
  both kept.
- An import is one transaction: all of it is recorded, or nothing.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.config import DEFAULT_BANK_MAPPING, BankMapping
from billing.errors import BillingError, InputError
from billing.ledger.payments import AccountDocument, Payment, account_documents, payments_in
from billing.ledger.record import add_event, default_actor
from billing.ledger.schema import AllocationRow, PaymentRow
from billing.money import ZERO, currency_quantum, format_money, is_iso_currency
from billing.receivables import Book

MAX_AMOUNT = Decimal("1e12")


# ---- reading a bank export ---------------------------------------------------------------------


@dataclass(frozen=True)
class BankRow:
    """One row of a bank export, read and checked."""

    line: int
    received_on: dt.date
    amount: Decimal
    currency: str
    reference: str
    payer: str | None
    fingerprint: str = ""


def mapping_named(mappings: dict[str, BankMapping], name: str | None) -> BankMapping:
    """The configuration's mapping `name`, or the default columns without a name."""
    if name is None:
        return DEFAULT_BANK_MAPPING
    if name not in mappings:
        known = ", ".join(sorted(mappings)) or "none: add bank_mappings to the configuration"
        raise InputError(f"--mapping {name!r}: no such bank mapping in the configuration; known: {known}")
    return mappings[name]


def read_bank_file(path: Path, mapping: BankMapping = DEFAULT_BANK_MAPPING) -> list[BankRow]:
    """The rows of a bank export, each with its fingerprint; one `InputError` lists every bad cell."""
    try:
        text = Path(path).read_bytes().decode(mapping.encoding)
    except OSError as err:
        raise InputError(f"{path}: cannot read the bank file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not {mapping.encoding} text (undecodable byte at offset {err.start}); set the "
                         "mapping's encoding, e.g. latin-1 or cp1252") from None
    lines = io.StringIO(text)
    for _ in range(mapping.skip_lines):
        lines.readline()
    reader = csv.reader(lines, delimiter=mapping.delimiter)
    header = next(reader, None)
    if header is None:
        raise InputError(f"{path}: empty file; a bank export starts with a header row")
    header = [h.strip() for h in header]
    _check_columns(path, header, mapping, mapping.skip_lines + 1)
    column = {name: i for i, name in reversed(list(enumerate(header)))}
    rows, problems = [], []
    for values in reader:
        line = mapping.skip_lines + reader.line_num
        if not any(v.strip() for v in values):
            continue
        row = _read_row(values, column, mapping, line, problems)
        if row is not None:
            rows.append(row)
    if problems:
        raise InputError(f"{path}: {len(problems)} bad value(s); nothing was recorded", problems)
    return _with_fingerprints(rows)


def _check_columns(path: Path, header: list[str], mapping: BankMapping, line: int) -> None:
    wanted = [mapping.date, mapping.amount, *mapping.reference_columns]
    wanted += [mapping.currency] if mapping.currency else []
    missing = [c for c in wanted if c not in header]
    if missing:
        raise InputError(f"{path}, line {line}: no column {', '.join(repr(c) for c in missing)}; the header has "
                         f"{', '.join(repr(h) for h in header)}. Another bank's export needs its mapping: "
                         "--mapping NAME (bank_mappings in the configuration)")


def _cell(values: list[str], column: dict[str, int], name: str | None) -> str:
    if name is None or name not in column or column[name] >= len(values):
        return ""
    return values[column[name]].strip()


def _read_row(values, column, mapping: BankMapping, line: int, problems: list[str]) -> BankRow | None:
    def bad(name: str, value: str, why: str) -> None:
        problems.append(f"line {line}, column {name!r}: {value!r} {why}")

    before = len(problems)
    raw_date = _cell(values, column, mapping.date)
    try:
        received_on = dt.datetime.strptime(raw_date, mapping.date_format).date()
    except ValueError:
        bad(mapping.date, raw_date, f"is not a date in the format {mapping.date_format}")
        received_on = None
    currency = mapping.account_currency or _cell(values, column, mapping.currency)
    if not is_iso_currency(currency):
        bad(mapping.currency, currency, "is not an ISO 4217 currency code (e.g. USD, EUR)")
    raw_amount = _cell(values, column, mapping.amount)
    amount = parse_amount(raw_amount, mapping)
    if amount is None:
        example = "1234.56" if mapping.decimal_separator == "." else "1234,56"
        bad(mapping.amount, raw_amount, f"is not an amount (written like {example}"
            + (f", thousands separated by {mapping.thousands_separator!r}" if mapping.thousands_separator else "")
            + ")")
    elif amount == 0 or abs(amount) >= MAX_AMOUNT:
        bad(mapping.amount, raw_amount, "is not an amount received or refunded (zero, or implausibly large)")
    elif is_iso_currency(currency) and amount % currency_quantum(currency) != 0:
        bad(mapping.amount, raw_amount, f"has more decimals than {currency} has (its smallest unit is "
            f"{currency_quantum(currency)})")
    reference = " ".join(v for v in (_cell(values, column, c) for c in mapping.reference_columns) if v)
    if not reference.isprintable():
        bad(mapping.reference_columns[0], reference, "has control characters")
    payer = _cell(values, column, mapping.payer) or None
    if len(problems) > before:
        return None
    return BankRow(line, received_on, amount, currency, reference, payer)


AMOUNT_PATTERN = re.compile(r"[+-]?\d+(\.\d+)?")


def parse_amount(text: str, mapping: BankMapping = DEFAULT_BANK_MAPPING) -> Decimal | None:
    """An amount as the bank writes it ("1.234,56" with a German mapping), or None if it is not one."""
    text = text.replace("\u00a0", " ").strip()
    if mapping.thousands_separator:
        text = text.replace(mapping.thousands_separator, "")
    if mapping.decimal_separator == ",":
        if "." in text:
            return None
        text = text.replace(",", ".")
    text = text.replace(" ", "") if mapping.thousands_separator == " " else text
    if not AMOUNT_PATTERN.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _content(row: BankRow) -> tuple:
    return (row.received_on.isoformat(), format(row.amount.normalize(), "f"), row.currency,
            " ".join(row.reference.split()), " ".join((row.payer or "").split()))


def _with_fingerprints(rows: list[BankRow]) -> list[BankRow]:
    """Each row's fingerprint: its content and how many identical rows came before it in the file."""
    seen: Counter = Counter()
    result = []
    for row in rows:
        content = _content(row)
        body = "\x1f".join((*content, str(seen[content])))
        seen[content] += 1
        result.append(BankRow(row.line, row.received_on, row.amount, row.currency, row.reference, row.payer,
                              hashlib.sha256(body.encode()).hexdigest()))
    return result


# ---- finding document numbers in a reference ---------------------------------------------------

SEPARATOR = r"[\s\-_./]*"
NUMBER_PATTERN = re.compile(r"^(?P<prefix>[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*?)-(?P<series>(?:CN|ST)-)?(?P<year>\d{4})"
                            r"-(?P<seq>\d+)$")


def number_prefixes(numbers, configured: str | None = None) -> list[str]:
    """The prefixes the ledger's numbers use (and the configured one), longest first."""
    prefixes = {configured} if configured else set()
    for number in numbers:
        m = NUMBER_PATTERN.match(number)
        if m:
            prefixes.add(m["prefix"])
    return sorted(prefixes, key=lambda p: (-len(p), p))


def number_finder(prefixes: list[str]) -> re.Pattern:
    """A pattern that finds PREFIX-[CN-|ST-]YYYY-NNNN in any case, with any usual separators or none."""
    alternatives = [SEPARATOR.join(re.escape(group) for group in p.split("-")) for p in prefixes]
    return re.compile(rf"(?<![A-Za-z0-9])(?P<prefix>{'|'.join(alternatives)}){SEPARATOR}"
                      rf"(?:(?P<series>CN|ST){SEPARATOR})?(?P<year>(?:19|20)\d\d){SEPARATOR}(?P<seq>\d{{1,6}})(?!\d)",
                      re.IGNORECASE)


def numbers_in(reference: str, finder: re.Pattern, prefixes: list[str]) -> list[str]:
    """The document numbers a reference text names, in the ledger's spelling, in the order written."""
    canonical = {re.sub(SEPARATOR, "", p).upper(): p for p in prefixes}
    found = []
    for m in finder.finditer(reference):
        prefix = canonical.get(re.sub(SEPARATOR, "", m["prefix"]).upper())
        if prefix is None:
            continue
        series = f"{m['series'].upper()}-" if m["series"] else ""
        number = f"{prefix}-{series}{m['year']}-{int(m['seq']):04d}"
        if number not in found:
            found.append(number)
    return found


# ---- matching --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """What a payment pays: (document number, amount) pairs, or why it pays nothing yet."""

    allocations: tuple[tuple[str, Decimal], ...] = ()
    reason: str = ""
    notes: tuple[str, ...] = ()

    @property
    def matched(self) -> bool:
        return bool(self.allocations)


def payable(book: Book, number: str, currency: str) -> tuple[AccountDocument | None, str]:
    """The document a payment naming `number` pays (following replacements), or why there is none."""
    doc = book.by_number.get(number)
    if doc is None:
        return None, f"{number} is not a document in the ledger"
    if doc.document_type == "credit_note":
        return None, f"{number} is a credit note: nothing is paid towards it"
    target = book.by_number[book.successor(number)]
    if target.document_type == "statement":
        return None, f"{target.number} is a statement: nothing is due on it"
    if book.is_cancelled(target.number):
        notes = ", ".join(c.number for c in book.credit_notes.get(target.number, ()))
        return None, f"{target.number} was {target.status} (credit note {notes}): nothing is due on it"
    if target.currency != currency:
        return None, f"the payment is in {currency}, but {target.number} is in {target.currency}"
    return target, ""


def match_payment(book: Book, amount: Decimal, currency: str, reference: str, finder: re.Pattern,
                  prefixes: list[str]) -> Match:
    """How a payment is applied, from the document numbers its reference names (never from its amount)."""
    numbers = numbers_in(reference, finder, prefixes)
    if not numbers:
        return Match(reason="no document number in the reference")
    targets, notes = [], []
    for number in numbers:
        doc, why = payable(book, number, currency)
        if doc is None:
            return Match(reason=why)
        if doc.number != number:
            notes.append(f"{number} was replaced by {doc.number}")
        if doc not in targets:
            targets.append(doc)
    if len(targets) > 1 and amount < 0:
        return Match(reason=f"a refund naming several documents ({', '.join(d.number for d in targets)}): "
                            "apply it by hand")
    allocations, left = [], amount
    for i, doc in enumerate(targets):
        share = left if i == len(targets) - 1 else min(max(book.open_amount(doc.number), ZERO), left)
        if share != 0:
            allocations.append((doc.number, share))
        left -= share
    return Match(tuple(allocations), notes=tuple(notes))


# ---- recording -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """A payment recorded by an import, what it was applied to, and each document's open amount after it."""

    payment: Payment
    match: Match
    open_after: tuple[tuple[str, Decimal], ...] = ()

    @property
    def outcome(self) -> str:
        """unmatched, full (every document it pays is settled), partial (some left open) or over (a credit)."""
        if not self.match.matched:
            return "unmatched"
        if any(amount < 0 for _, amount in self.open_after):
            return "over"
        return "partial" if any(amount > 0 for _, amount in self.open_after) else "full"


@dataclass
class ImportResult:
    """What importing a bank file did."""

    path: str
    rows: int = 0
    recorded: list[Recorded] = field(default_factory=list)
    already: int = 0                     # rows imported before (same fingerprint)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.recorded if r.outcome == outcome)


def import_payments(engine: Engine, path: Path, rows: list[BankRow], *, prefix: str | None = None,
                    actor: str | None = None, now: dt.datetime | None = None, source: str | None = None) -> ImportResult:
    """Record the rows not imported before and apply each to the documents its reference names; one transaction."""
    now, actor = now or dt.datetime.now(dt.timezone.utc), actor or default_actor()
    result = ImportResult(str(path), rows=len(rows))
    try:
        with Session(engine) as session, session.begin():
            known = set(session.scalars(select(PaymentRow.fingerprint).where(
                PaymentRow.fingerprint.in_([r.fingerprint for r in rows])))) if rows else set()
            book = Book(account_documents(session), payments_in(session))
            prefixes = number_prefixes(book.by_number, prefix)
            finder = number_finder(prefixes)
            for row in rows:
                if row.fingerprint in known:
                    result.already += 1
                    continue
                payment_row = PaymentRow(received_on=row.received_on, amount=row.amount, currency=row.currency,
                                         reference=row.reference, payer=row.payer,
                                         source=f"{source or Path(path).name}, line {row.line}",
                                         fingerprint=row.fingerprint, created_at=now, actor=actor)
                session.add(payment_row)
                session.flush()
                match = match_payment(book, row.amount, row.currency, row.reference, finder, prefixes)
                for number, amount in match.allocations:
                    _allocate(session, payment_row.id, number, amount, "matched", actor, now, row.currency)
                    book.add_payment(number, amount)
                open_after = tuple((n, book.open_amount(n)) for n, _ in match.allocations)
                result.recorded.append(Recorded(_payment_of(payment_row, match, now), match, open_after))
    except IntegrityError:
        raise BillingError(f"{path}: another import recorded some of these payments at the same time; nothing was "
                           "recorded by this one: run it again") from None
    return result


def _allocate(session: Session, payment_id: int, number: str, amount: Decimal, how: str, actor: str,
              now: dt.datetime, currency: str) -> None:
    session.add(AllocationRow(payment_id=payment_id, number=number, amount=amount, how=how, applied_at=now,
                              actor=actor))
    add_event(session, number, "paid", actor, now, None, payment=payment_id, amount=amount, currency=currency,
              how=how)


def _payment_of(row: PaymentRow, match: Match, now: dt.datetime) -> Payment:
    from billing.ledger.payments import Allocation

    return Payment(row.id, row.received_on, row.amount, row.currency, row.reference, row.payer, row.source,
                   tuple(Allocation(row.id, n, a, "matched", now) for n, a in match.allocations))


def apply_payment(engine: Engine, payment_id: int, number: str, amount: Decimal | None = None, *,
                  actor: str | None = None, now: dt.datetime | None = None) -> tuple[Payment, Decimal]:
    """Apply (part of) a payment to a document by hand; returns the payment and the document's open amount after."""
    now, actor = now or dt.datetime.now(dt.timezone.utc), actor or default_actor()
    with Session(engine) as session, session.begin():
        payments = {p.id: p for p in payments_in(session)}
        payment = payments.get(payment_id)
        if payment is None:
            raise InputError(f"payment {payment_id}: no such payment in the ledger (see payments-unmatched.csv)")
        book = Book(account_documents(session), list(payments.values()))
        doc, why = payable(book, number, payment.currency)
        if doc is None:
            raise InputError(f"--invoice {number}: {why}")
        left = payment.unapplied
        amount = left if amount is None else amount
        if left == 0:
            raise InputError(f"payment {payment_id} ({format_money(payment.amount, payment.currency)}) is already "
                             "applied in full: " + ", ".join(f"{a.number} {a.amount}" for a in payment.allocations))
        if amount == 0 or (amount > 0) != (left > 0) or abs(amount) > abs(left):
            raise InputError(f"--amount {amount}: payment {payment_id} has {left} {payment.currency} left to apply; "
                             f"give an amount of the same sign, at most {left}")
        if amount % currency_quantum(payment.currency) != 0:
            raise InputError(f"--amount {amount}: {payment.currency} has no smaller unit than "
                             f"{currency_quantum(payment.currency)}")
        _allocate(session, payment_id, doc.number, amount, "manual", actor, now, payment.currency)
        book.add_payment(doc.number, amount)
        return payment, book.open_amount(doc.number)


# ---- what is left unmatched ------------------------------------------------------------------


UNMATCHED_HEADER = ("id", "date", "amount", "currency", "reference", "reason")


def unmatched_payments(engine: Engine, prefix: str | None = None) -> list[tuple[Payment, str]]:
    """Every payment with money not applied to a document, and why (as matching it again would say now)."""
    with Session(engine) as session:
        payments = payments_in(session)
        book = Book(account_documents(session), payments)
    prefixes = number_prefixes(book.by_number, prefix)
    finder = number_finder(prefixes)
    result = []
    for p in payments:
        if p.unapplied == 0:
            continue
        if p.allocations:
            applied = ", ".join(f"{a.number} {a.amount}" for a in p.allocations)
            reason = f"partly applied ({applied}); {p.unapplied} {p.currency} not applied"
        else:
            match = match_payment(book, p.amount, p.currency, p.reference, finder, prefixes)
            reason = match.reason or (f"would now match {', '.join(n for n, _ in match.allocations)}: apply it with "
                                      f"billing payments apply {p.id} --invoice {match.allocations[0][0]}")
        result.append((p, reason))
    return result


def write_unmatched_csv(path: Path, unmatched: list[tuple[Payment, str]]) -> None:
    from billing.outputs import write_csv

    write_csv(path, UNMATCHED_HEADER, ([str(p.id), p.received_on.isoformat(), p.unapplied, p.currency, p.reference,
                                        reason] for p, reason in unmatched))
