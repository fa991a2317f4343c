"""Recording a month: drafts, finalization with gapless numbers, change detection, the month's evidence.

Rules:
- An invoice is a draft (no number) or finalized. A finalized invoice is
  never changed or deleted.
- Numbers are taken when an invoice is finalized, inside the same
  transaction, from a per-year counter: sequential, gapless, never reused.
  `recording_month` yields before committing, so the caller renders every
  document with the numbers the transaction holds; if that fails, the
  transaction is rolled back and no number is taken.
- Recording a month that already has finalized invoices compares contents:
  the same content is a no-op (no new invoice, no new number); different
  content changes nothing and is reported, by billed party and amount.
- The figures a month was invoiced from (its evidence) are kept with it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Iterator

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.config import Organization
from billing.errors import BillingError, FinalizedInvoiceChanged
from billing.ledger.invoices import Invoice, Line
from billing.ledger.schema import EvidenceRow, InputManifestRow, InvoiceRow, LineRow, SequenceRow
from billing.months import Month


@dataclass(frozen=True)
class Evidence:
    """The supporting figures of a month as the caller serialized them (the ledger does not read them)."""

    digest: str
    body: str
    version: int = 0


@dataclass
class MonthRecord:
    """What recording a month did."""

    month: str
    invoices: list[Invoice] = field(default_factory=list)   # the month's invoices as they now stand
    created: list[str] = field(default_factory=list)        # numbers (or party ids for drafts) created now
    unchanged: list[str] = field(default_factory=list)
    # The evidence the month's finalized invoices were computed from (None: drafts, or not recorded).
    evidence: Evidence | None = None


def _to_row(inv: Invoice, now: dt.datetime) -> InvoiceRow:
    row = InvoiceRow(party_kind=inv.party_kind, party_id=inv.party_id, month=inv.month, status=inv.status,
                     number=inv.number, currency=inv.currency, issue_date=inv.issue_date, due_date=inv.due_date,
                     subtotal=inv.subtotal, total=inv.total, content_hash=inv.content_hash,
                     data_fingerprint=inv.data_fingerprint, bill_to=json.dumps(inv.bill_to, sort_keys=True),
                     issuer=json.dumps(inv.issuer, sort_keys=True), notes=json.dumps(list(inv.notes)),
                     created_at=now, finalized_at=now if inv.status == "finalized" else None,
                     document_type=inv.document_type, corrects=inv.corrects, reason=inv.reason,
                     links=json.dumps(inv.links, sort_keys=True))
    row.lines = [LineRow(position=i, section=l.section, kind=l.kind, description=l.description, quantity=l.quantity,
                         unit=l.unit, unit_price=l.unit_price, amount_exact=l.amount_exact, amount=l.amount,
                         community=l.community, hub=l.hub, cluster=l.cluster, component=l.component,
                         details=json.dumps(dict(l.details), sort_keys=True)) for i, l in enumerate(inv.lines)]
    return row


def _from_row(row: InvoiceRow) -> Invoice:
    lines = tuple(Line(l.section, l.kind, l.description, l.amount_exact, l.amount, l.quantity, l.unit, l.unit_price,
                       l.community, l.hub, l.cluster, l.component, tuple(sorted(json.loads(l.details).items())))
                  for l in row.lines)
    return Invoice(row.party_kind, row.party_id, row.month, row.currency, row.issue_date, row.due_date, lines,
                   json.loads(row.bill_to), json.loads(row.issuer), row.data_fingerprint, row.status, row.number,
                   tuple(json.loads(row.notes)), row.document_type, row.corrects, row.reason,
                   json.loads(row.links or "{}"))


# Each document type numbers from its own gapless series: OHC-2026-0001, OHC-CN-2026-0001, OHC-ST-2026-0001.
SERIES_CODE = {"invoice": "", "credit_note": "CN-", "statement": "ST-"}


def _next_number(session: Session, year: int, prefix: str, series: str = "invoice") -> str:
    """Take the next number of the series and year; the row lock makes concurrent runs queue, not collide."""
    seq = session.execute(select(SequenceRow).where(SequenceRow.series == series, SequenceRow.year == year)
                          .with_for_update()).scalar_one_or_none()
    if seq is None:
        seq = SequenceRow(series=series, year=year, last_number=0)
        session.add(seq)
        session.flush()
    seq.last_number += 1
    session.flush()
    return f"{prefix}-{SERIES_CODE[series]}{year}-{seq.last_number:04d}"


def describe_change(old: Invoice | None, new: Invoice | None) -> str:
    inv = new or old
    who = f"{inv.party_kind} {inv.party_id}"
    if old is None:
        return f"{who}: not invoiced when the month was finalized; would now be billed {new.total} {new.currency}"
    if new is None:
        return f"{who}: invoice {old.number} ({old.total} {old.currency}) would no longer be billed"
    diff = new.total - old.total
    return (f"{who}: invoice {old.number} total {old.total} {old.currency}, recomputed {new.total} "
            f"(difference {'+' if diff >= 0 else ''}{diff}{'; the lines differ' if diff == 0 else ''})")


def invoice_changes(finalized: list[Invoice], recomputed: list[Invoice]) -> list[str]:
    """How recomputed invoices differ from the finalized ones, by billed party (empty: no difference)."""
    old = {(i.party_kind, i.party_id): i for i in finalized}
    new = {(i.party_kind, i.party_id): i for i in recomputed}
    if not old:
        return []
    return [describe_change(old.get(p), new.get(p)) for p in sorted(set(old) | set(new))
            if p not in old or p not in new or old[p].content_hash != new[p].content_hash]


def _latest_evidence(session: Session, month: str) -> Evidence | None:
    row = session.scalars(select(EvidenceRow).where(EvidenceRow.month == month)
                          .order_by(EvidenceRow.version.desc()).limit(1)).first()
    return None if row is None else Evidence(row.evidence_hash, row.body, row.version)


def finalized_month(engine: Engine, month: str) -> tuple[list[Invoice], Evidence | None]:
    """The month's finalized invoices and the evidence they were computed from (if recorded)."""
    with Session(engine) as session:
        rows = session.scalars(select(InvoiceRow).where(InvoiceRow.month == month, InvoiceRow.status == "finalized")
                               .order_by(InvoiceRow.id)).all()
        return [_from_row(r) for r in rows], _latest_evidence(session, month)


@contextlib.contextmanager
def recording_month(engine: Engine, org: Organization, month: Month, invoices: list[Invoice], *, finalize: bool,
                    now: dt.datetime | None = None, inputs: list[dict] | None = None,
                    evidence: Evidence | None = None) -> Iterator[MonthRecord]:
    """Store a month's invoices (finalize, taking numbers, or keep as drafts); commit when the block ends.

    Yields the record with the numbers the transaction holds; an exception
    in the block rolls everything back, numbers included. `inputs`
    describes the data the invoices were computed from (kept once per
    fingerprint); `evidence` is the month's supporting figures, kept when
    the month is first finalized.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        with Session(engine) as session, session.begin():
            yield _record_month(session, org, month, invoices, finalize, now, inputs or [], evidence)
    except IntegrityError:
        raise BillingError(f"{month}: another run finalized invoices for this month at the same time; "
                           "nothing was changed by this run: run it again to see the result") from None


def record_month(engine: Engine, org: Organization, month: Month, invoices: list[Invoice], *, finalize: bool,
                 now: dt.datetime | None = None, inputs: list[dict] | None = None,
                 evidence: Evidence | None = None) -> MonthRecord:
    """`recording_month` with nothing to do before the commit."""
    with recording_month(engine, org, month, invoices, finalize=finalize, now=now, inputs=inputs,
                         evidence=evidence) as record:
        return record


def _record_month(session: Session, org: Organization, month: Month, invoices: list[Invoice], finalize: bool,
                  now: dt.datetime, inputs: list[dict], evidence: Evidence | None) -> MonthRecord:
    result = MonthRecord(str(month))
    finalized = {(r.party_kind, r.party_id): r for r in session.scalars(
        select(InvoiceRow).where(InvoiceRow.month == str(month), InvoiceRow.status == "finalized"))}
    changes = invoice_changes([_from_row(r) for r in finalized.values()], invoices)
    if changes:
        raise FinalizedInvoiceChanged(str(month), changes)
    session.execute(delete(InvoiceRow).where(InvoiceRow.month == str(month), InvoiceRow.status == "draft"))
    for fingerprint in {i.data_fingerprint for i in invoices}:
        if session.get(InputManifestRow, fingerprint) is None:
            session.add(InputManifestRow(fingerprint=fingerprint, month=str(month), created_at=now,
                                         sources=json.dumps(inputs, sort_keys=True)))
    for inv in invoices:
        party = (inv.party_kind, inv.party_id)
        if party in finalized:
            result.unchanged.append(finalized[party].number)
            continue
        if finalize:
            number = _next_number(session, inv.issue_date.year, org.issuer.invoice_prefix)
            inv = dataclasses.replace(inv, status="finalized", number=number)
            result.created.append(number)
        else:
            result.created.append(f"draft {inv.party_kind} {inv.party_id}")
        session.add(_to_row(inv, now))
    session.flush()
    rows = session.scalars(select(InvoiceRow).where(InvoiceRow.month == str(month))
                           .order_by(InvoiceRow.status.desc(), InvoiceRow.id)).all()
    result.invoices = [_from_row(r) for r in rows]
    result.evidence = _keep_evidence(session, str(month), result.invoices, {i.data_fingerprint for i in invoices},
                                     evidence, now)
    return result


def _keep_evidence(session: Session, month: str, invoices: list[Invoice], computed_from: set[str],
                   evidence: Evidence | None, now: dt.datetime) -> Evidence | None:
    """The evidence of a finalized month: stored once; a ledger from before evidence was kept gets it
    only when the data is byte for byte the data its invoices were computed from."""
    finalized = [i for i in invoices if i.status == "finalized"]
    if not finalized:
        return None
    stored = _latest_evidence(session, month)
    if stored is not None or evidence is None:
        return stored
    fingerprints = {i.data_fingerprint for i in finalized}
    if len(fingerprints) != 1 or fingerprints != computed_from:
        return None
    version = (session.scalar(select(func.max(EvidenceRow.version)).where(EvidenceRow.month == month)) or 0) + 1
    session.add(EvidenceRow(month=month, version=version, data_fingerprint=next(iter(fingerprints)),
                            evidence_hash=evidence.digest, body=evidence.body, created_at=now))
    return dataclasses.replace(evidence, version=version)


def month_invoices(engine: Engine, month: str) -> list[Invoice]:
    with Session(engine) as session:
        rows = session.scalars(select(InvoiceRow).where(InvoiceRow.month == month).order_by(InvoiceRow.id)).all()
        return [_from_row(r) for r in rows]


def input_manifest(engine: Engine, fingerprint: str) -> list[dict] | None:
    """The sources, files and hashes behind invoices with this data fingerprint."""
    with Session(engine) as session:
        row = session.get(InputManifestRow, fingerprint)
        return None if row is None else json.loads(row.sources)


def all_finalized(engine: Engine) -> list[Invoice]:
    with Session(engine) as session:
        rows = session.scalars(select(InvoiceRow).where(InvoiceRow.status == "finalized")
                               .order_by(InvoiceRow.month, InvoiceRow.id)).all()
        return [_from_row(r) for r in rows]
