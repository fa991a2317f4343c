"""Correcting finalized documents: amend a month, void an invoice. Nothing is ever edited or deleted.

- `amending_month` recomputes a finalized month and, for each billed party
  whose money changed: with the `reissue` policy, a credit note that
  reverses its document in full (own gapless series) and a new document
  that names the one it replaces; with `next-invoice`, the difference is
  carried to the party's next invoice as prior-period adjustment lines. A
  party that appears gets a new document; one that disappears gets a
  credit note. Amending unchanged data creates nothing.
- `voiding` cancels an unpaid invoice by a full credit note.

Both yield before committing, like `recording_month`, so every new
document is rendered before its number is committed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.config import Organization
from billing.errors import BillingError, InputError
from billing.ledger.invoices import Invoice, Line
from billing.ledger.record import (Evidence, Expected, Party, from_row, latest_evidence_row, to_row, add_event,
                                   changed_parties, default_actor, describe_change, evidence_of_row, expected_to_json,
                                   line_to_json, link_documents, month_documents, month_state, number_for,
                                   store_evidence)
from billing.ledger.schema import AdjustmentRow, AllocationRow, InvoiceRow
from billing.money import ZERO, round_money
from billing.months import Month

POLICIES = ("reissue", "next-invoice")


@dataclass
class Correction:
    """What an amendment or a void did."""

    month: str
    created: list[Invoice] = field(default_factory=list)      # new documents, numbered, to render
    changes: list[str] = field(default_factory=list)          # per party, what changed
    carried: list[str] = field(default_factory=list)          # per party, what was carried to the next invoice
    invoices: list[Invoice] = field(default_factory=list)     # every document of the month afterwards
    evidence: Evidence | None = None


# ---- credit notes ------------------------------------------------------------------------


def credit_note_for(original: Invoice, *, issue_date: dt.date, reason: str) -> Invoice:
    """A credit note that reverses `original` in full: the same lines, amounts negated."""
    lines = tuple(dataclasses.replace(l, amount=-l.amount, amount_exact=-l.amount_exact) for l in original.lines)
    return dataclasses.replace(
        original, lines=lines, status="finalized", number=None, document_type="credit_note",
        corrects=original.number, reason=reason, issue_date=issue_date, due_date=issue_date,
        links={"original": {"number": original.number, "issue_date": original.issue_date.isoformat(),
                            "total": str(original.total), "document_type": original.document_type}})


def _issue(session: Session, org: Organization, doc: Invoice, actor: str, now: dt.datetime,
           reason: str | None) -> Invoice:
    """Number a new document and record its 'finalized' event."""
    doc = dataclasses.replace(doc, status="finalized", number=number_for(session, org, doc))
    add_event(session, doc.number, "finalized", actor, now, reason, document_type=doc.document_type,
              total=doc.total, currency=doc.currency, corrects=doc.corrects)
    return doc


def _cancel(session: Session, org: Organization, row: InvoiceRow, status: str, *, issue_date: dt.date,
            reason: str, actor: str, now: dt.datetime) -> Invoice | None:
    """Cancel a document in force: by a full credit note (status credited / voided), or, for a statement
    with nothing due, by marking it replaced. Returns the credit note, if any."""
    original = from_row(row)
    if original.document_type == "statement" and original.total == 0:
        row.status = "replaced"
        add_event(session, row.number, "replaced", actor, now, reason)
        return None
    note = _issue(session, org, credit_note_for(original, issue_date=issue_date, reason=reason), actor, now, reason)
    row.status = status
    add_event(session, row.number, status, actor, now, reason, credit_note=note.number)
    _release_adjustments(session, row.number)
    return note


def _release_adjustments(session: Session, number: str | None) -> None:
    """Adjustments a cancelled document carried wait for the party's next invoice again; those it caused and
    that were not yet billed are dropped (the cancellation already settles them)."""
    for adj in session.scalars(select(AdjustmentRow).where(AdjustmentRow.applied_to == number)):
        adj.applied_to = None
    for adj in session.scalars(select(AdjustmentRow).where(AdjustmentRow.corrects == number,
                                                           AdjustmentRow.applied_to.is_(None))):
        adj.applied_to = f"cancelled:{number}"


def _check_not_carried_yet(session: Session, number: str | None, party: Party) -> None:
    billed = session.scalars(select(AdjustmentRow).where(AdjustmentRow.corrects == number,
                                                         AdjustmentRow.applied_to.is_not(None))).first()
    if billed is not None and not billed.applied_to.startswith("cancelled:"):
        raise InputError(f"{party[0]} {party[1]}: an earlier correction of {number} was already billed on "
                         f"{billed.applied_to} as prior-period adjustments; correct it the same way: "
                         "--policy next-invoice")


def _check_unpaid(session: Session, number: str) -> None:
    """A document with money applied to it is not voided (as Kill Bill and Stripe refuse)."""
    paid = session.scalars(select(AllocationRow).where(AllocationRow.number == number)).first()
    if paid is not None:
        raise InputError(f"{number} has a payment applied to it ({paid.amount}, {paid.applied_at:%Y-%m-%d}); a paid "
                         "invoice is not voided: correct it with billing amend, or refund the payment first")


# ---- carrying a difference to the next invoice -------------------------------------------------


def _line_key(l: Line) -> tuple:
    return (l.section, l.kind, l.community or "", l.hub or "", l.cluster or "", l.component or "")


def difference_lines(then: tuple[Line, ...], now: tuple[Line, ...], *, corrects: str, month: Month,
                     currency: str) -> list[Line]:
    """Prior-period adjustment lines: what changed, line by line (by kind and place), exact and rounded."""
    sums: dict[tuple, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    describe: dict[tuple, str] = {}
    for sign, lines in ((-1, then), (1, now)):       # the new wording wins where a line exists in both
        for l in lines:
            key = _line_key(l)
            sums[key][0] += sign * l.amount
            sums[key][1] += sign * l.amount_exact
            describe[key] = l.description
    result = []
    for key, (amount, exact) in sums.items():
        if amount == 0:
            continue
        _, _, community, hub, cluster, component = key
        result.append(Line("Prior-period adjustments", "adjustment",
                           f"Adjustment to {corrects} ({month.label()}): {describe[key]}", exact,
                           round_money(amount, currency), community=community or None, hub=hub or None,
                           cluster=cluster or None, component=component or None,
                           details=(("corrects", corrects), ("service_month", str(month)))))
    return result


def _carry(session: Session, party: Party, expected: Expected, new: Invoice, month: Month, reason: str,
           actor: str, now: dt.datetime) -> Decimal:
    lines = difference_lines(expected.lines, new.lines, corrects=expected.number, month=month,
                             currency=new.currency)
    row = AdjustmentRow(party_kind=party[0], party_id=party[1], currency=new.currency, corrects=expected.number,
                        service_month=str(month), lines="[]", reason=reason, created_at=now)
    session.add(row)
    session.flush()
    lines = [dataclasses.replace(l, details=l.details + (("adjustment_id", str(row.id)),)) for l in lines]
    row.lines = json.dumps([line_to_json(l) for l in lines], sort_keys=True)
    total = sum((l.amount for l in lines), ZERO)
    add_event(session, expected.number, "adjusted", actor, now, reason, carried=total, currency=new.currency,
              to="the party's next invoice")
    return total


# ---- amending a month ---------------------------------------------------------------------------


@contextlib.contextmanager
def amending_month(engine: Engine, org: Organization, month: Month, recomputed: list[Invoice], *, policy: str,
                   reason: str, issue_date: dt.date, evidence: Evidence, fingerprint: str, actor: str | None = None,
                   now: dt.datetime | None = None) -> Iterator[Correction]:
    """Correct a finalized month to its recomputed documents; commit when the block ends."""
    if policy not in POLICIES:
        raise InputError(f"--policy: {policy!r}; known: {', '.join(POLICIES)}")
    now, actor = now or dt.datetime.now(dt.timezone.utc), actor or default_actor()
    try:
        with Session(engine) as session, session.begin():
            yield _amend(session, org, month, recomputed, policy, reason, issue_date, evidence, fingerprint,
                         actor, now)
    except IntegrityError:
        raise BillingError(f"{month}: another run changed this month's documents at the same time; nothing was "
                           "changed by this run: run it again") from None


def _amend(session: Session, org: Organization, month: Month, recomputed: list[Invoice], policy: str, reason: str,
           issue_date: dt.date, evidence: Evidence, fingerprint: str, actor: str, now: dt.datetime) -> Correction:
    result = Correction(str(month))
    state = month_state(session, str(month))
    if not state:
        raise InputError(f"{month} has no finalized documents to amend; finalize it with billing run")
    in_force = {(r.party_kind, r.party_id): r for r in month_documents(session, str(month))
                if r.status == "finalized" and r.document_type != "credit_note"}
    new = {(i.party_kind, i.party_id): i for i in recomputed}
    changed = changed_parties(state, recomputed)
    if not changed:
        result.invoices = [from_row(r) for r in month_documents(session, str(month))]
        result.evidence = evidence_of_row(latest_evidence_row(session, str(month)))
        return result
    new_state = dict(state)
    fresh: list[Invoice] = []
    for party in changed:
        old_row, doc, expected = in_force.get(party), new.get(party), state.get(party)
        result.changes.append(describe_change(expected, doc, party))
        if policy == "next-invoice" and old_row is not None and doc is not None:
            total = _carry(session, party, expected, doc, month, reason, actor, now)
            result.carried.append(f"{party[0]} {party[1]}: {total} {doc.currency} carried from {expected.number} to "
                                  "the next invoice")
            new_state[party] = Expected(doc.content_hash, doc.currency, doc.lines, expected.number,
                                        document_type=expected.document_type)
            continue
        if old_row is not None:
            _check_not_carried_yet(session, old_row.number, party)
            note = _cancel(session, org, old_row, "credited", issue_date=issue_date, reason=reason, actor=actor,
                           now=now)
            if note is not None:
                fresh.append(note)
        if doc is None:
            new_state.pop(party, None)
            continue
        replaces = {} if old_row is None else {"replaces": {
            "number": old_row.number, "issue_date": old_row.issue_date.isoformat(), "total": str(old_row.total),
            "credit_note": fresh[-1].number if fresh and fresh[-1].corrects == old_row.number else None}}
        doc = dataclasses.replace(doc, issue_date=issue_date,
                                  due_date=issue_date + dt.timedelta(days=org.issuer.payment_terms_days),
                                  corrects=old_row.number if old_row is not None else None,
                                  reason=reason if old_row is not None else None, links=replaces)
        doc = _issue(session, org, doc, actor, now, reason)
        if old_row is not None:
            add_event(session, old_row.number, "replaced", actor, now, reason, by=doc.number)
        fresh.append(doc)
        new_state[party] = Expected(doc.content_hash, doc.currency, doc.lines, doc.number,
                                    document_type=doc.document_type)
    existing = [from_row(r) for r in month_documents(session, str(month))]
    linked = link_documents(existing + fresh)[len(existing):]
    for doc in linked:
        session.add(to_row(doc, now))
    session.flush()
    result.created = linked
    result.invoices = [from_row(r) for r in month_documents(session, str(month))]
    result.evidence = store_evidence(session, str(month), fingerprint, evidence, expected_to_json(new_state), now)
    return result


# ---- voiding an invoice -----------------------------------------------------------------------


@contextlib.contextmanager
def voiding(engine: Engine, org: Organization, number: str, *, reason: str, issue_date: dt.date,
            actor: str | None = None, now: dt.datetime | None = None) -> Iterator[Correction]:
    """Cancel an unpaid finalized invoice by a full credit note; commit when the block ends."""
    now, actor = now or dt.datetime.now(dt.timezone.utc), actor or default_actor()
    with Session(engine) as session, session.begin():
        row = session.scalars(select(InvoiceRow).where(InvoiceRow.number == number)).first()
        if row is None:
            raise InputError(f"{number}: no such document in the ledger")
        if row.document_type != "invoice" or row.status != "finalized":
            what = row.document_type.replace("_", " ")
            raise InputError(f"{number} is a {what} with status {row.status}; only an invoice in force (status "
                             "finalized) can be voided")
        _check_unpaid(session, number)
        month = row.month
        state = month_state(session, month)
        note = _cancel(session, org, row, "voided", issue_date=issue_date, reason=reason, actor=actor, now=now)
        party = (row.party_kind, row.party_id)
        state[party] = Expected(state[party].content_hash if party in state else "", row.currency,
                                state[party].lines if party in state else (), number, voided=True)
        session.add(to_row(note, now))
        session.flush()
        stored = latest_evidence_row(session, month)
        kept = Evidence("", "") if stored is None else Evidence(stored.evidence_hash, stored.body)
        evidence = store_evidence(session, month, stored.data_fingerprint if stored else row.data_fingerprint,
                                  kept, expected_to_json(state), now)
        evidence = evidence if evidence.body else None
        yield Correction(month, created=[note], changes=[f"{number} voided: {reason}"],
                         invoices=[from_row(r) for r in month_documents(session, month)], evidence=evidence)
