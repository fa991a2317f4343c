"""Recording a month: drafts, finalization with gapless numbers, change detection, the month's evidence.

Rules:
- A document is a draft (no number) or finalized. A finalized document is
  never edited or deleted; it is corrected by a credit note and a new
  document (`billing.ledger.corrections`), its status tells which.
- Numbers are taken when a document is finalized, inside the same
  transaction, from a gapless series per document type and year of issue.
  `recording_month` yields before committing, so the caller renders every
  document with the numbers the transaction holds; if that fails, the
  transaction is rolled back and no number is taken.
- Recording a month that is already finalized compares money (not
  wording): the same money is a no-op; different money changes nothing and
  is reported by billed party (correct it with `billing amend`).
- Every state change is an event (who, when, why); the figures a month was
  invoiced from (its evidence) are kept with it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterator

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.config import Organization
from billing.errors import BillingError, FinalizedInvoiceChanged, InputError
from billing.ledger.invoices import CarriedAdjustment, Invoice, Line, lines_total
from billing.ledger.schema import (AdjustmentRow, EventRow, EvidenceRow, InputManifestRow, InvoiceRow, LineRow,
                                   SequenceRow)
from billing.money import ZERO
from billing.months import Month

Party = tuple[str, str]   # (party kind, party id)


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
    invoices: list[Invoice] = field(default_factory=list)   # every document of the month as it now stands
    created: list[str] = field(default_factory=list)        # numbers (or party ids for drafts) created now
    unchanged: list[str] = field(default_factory=list)
    # The evidence the month's finalized documents were computed from (None: drafts, or not recorded).
    evidence: Evidence | None = None


def default_actor() -> str:
    """Who does it, for the event log: the operating-system user."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


# ---- rows <-> values -------------------------------------------------------------------


def line_to_json(l: Line) -> dict:
    return {"section": l.section, "kind": l.kind, "description": l.description, "amount_exact": str(l.amount_exact),
            "amount": str(l.amount), "quantity": None if l.quantity is None else str(l.quantity), "unit": l.unit,
            "unit_price": None if l.unit_price is None else str(l.unit_price), "community": l.community,
            "hub": l.hub, "cluster": l.cluster, "component": l.component, "details": dict(l.details)}


def line_from_json(d: dict) -> Line:
    dec = lambda v: None if v is None else Decimal(v)  # noqa: E731
    return Line(d["section"], d["kind"], d["description"], Decimal(d["amount_exact"]), Decimal(d["amount"]),
                dec(d["quantity"]), d["unit"], dec(d["unit_price"]), d["community"], d["hub"], d["cluster"],
                d["component"], tuple(sorted(d["details"].items())))


def to_row(inv: Invoice, now: dt.datetime) -> InvoiceRow:
    row = InvoiceRow(party_kind=inv.party_kind, party_id=inv.party_id, month=inv.month, status=inv.status,
                     number=inv.number, currency=inv.currency, issue_date=inv.issue_date, due_date=inv.due_date,
                     subtotal=inv.subtotal, total=inv.total, content_hash=inv.content_hash,
                     data_fingerprint=inv.data_fingerprint, bill_to=json.dumps(inv.bill_to, sort_keys=True),
                     issuer=json.dumps(inv.issuer, sort_keys=True), notes=json.dumps(list(inv.notes)),
                     created_at=now, finalized_at=now if inv.status != "draft" else None,
                     document_type=inv.document_type, corrects=inv.corrects, reason=inv.reason,
                     links=json.dumps(inv.links, sort_keys=True))
    row.lines = [LineRow(position=i, section=l.section, kind=l.kind, description=l.description, quantity=l.quantity,
                         unit=l.unit, unit_price=l.unit_price, amount_exact=l.amount_exact, amount=l.amount,
                         community=l.community, hub=l.hub, cluster=l.cluster, component=l.component,
                         details=json.dumps(dict(l.details), sort_keys=True)) for i, l in enumerate(inv.lines)]
    return row


def from_row(row: InvoiceRow) -> Invoice:
    lines = tuple(Line(l.section, l.kind, l.description, l.amount_exact, l.amount, l.quantity, l.unit, l.unit_price,
                       l.community, l.hub, l.cluster, l.component, tuple(sorted(json.loads(l.details).items())))
                  for l in row.lines)
    return Invoice(row.party_kind, row.party_id, row.month, row.currency, row.issue_date, row.due_date, lines,
                   json.loads(row.bill_to), json.loads(row.issuer), row.data_fingerprint, row.status, row.number,
                   tuple(json.loads(row.notes)), row.document_type, row.corrects, row.reason,
                   json.loads(row.links or "{}"))


# ---- numbering and events ----------------------------------------------------------------

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


def number_for(session: Session, org: Organization, inv: Invoice) -> str | None:
    """The number a document takes when finalized (a statement takes none if the organization wants none)."""
    if inv.document_type == "statement" and org.zero_total_document == "none":
        return None
    check_issue_date(session, inv)
    return _next_number(session, inv.issue_date.year, org.issuer.invoice_prefix, inv.document_type)


def add_event(session: Session, number: str | None, event: str, actor: str, now: dt.datetime,
              reason: str | None = None, **details) -> None:
    if number is not None:
        session.add(EventRow(number=number, event=event, at=now, actor=actor, reason=reason,
                             details=json.dumps(details, sort_keys=True, default=str)))


def check_issue_date(session: Session, inv: Invoice) -> None:
    """Numbers follow time: a document is not dated before the last one numbered in its series and year."""
    year = inv.issue_date.year
    latest = session.scalar(select(func.max(InvoiceRow.issue_date)).where(
        InvoiceRow.document_type == inv.document_type, InvoiceRow.number.is_not(None),
        InvoiceRow.issue_date >= dt.date(year, 1, 1), InvoiceRow.issue_date <= dt.date(year, 12, 31)))
    if latest is not None and inv.issue_date < latest:
        kind = inv.document_type.replace("_", " ")
        raise InputError(f"{inv.month}: issue date {inv.issue_date} is before {latest}, the date of the last {kind} "
                         f"numbered in {year}; numbers follow time: issue it on {latest} or later")


# ---- what a month's documents say ---------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What a party's documents for a month now state (after any corrections), or that they were voided."""

    content_hash: str
    currency: str
    lines: tuple[Line, ...]
    number: str | None          # the document in force it belongs to
    voided: bool = False
    document_type: str = "invoice"

    @property
    def total(self) -> Decimal:
        return lines_total(self.lines)


def _party_key(party: Party) -> str:
    return f"{party[0]}/{party[1]}"


def expected_to_json(state: dict[Party, Expected]) -> str:
    return json.dumps({_party_key(p): {"hash": e.content_hash, "currency": e.currency, "number": e.number,
                                       "voided": e.voided, "document_type": e.document_type,
                                       "lines": [line_to_json(l) for l in e.lines]}
                       for p, e in sorted(state.items())}, sort_keys=True)


def latest_evidence_row(session: Session, month: str) -> EvidenceRow | None:
    return session.scalars(select(EvidenceRow).where(EvidenceRow.month == month)
                           .order_by(EvidenceRow.version.desc()).limit(1)).first()


def evidence_of_row(row: EvidenceRow | None) -> Evidence | None:
    """The evidence a row holds (None when only the month's state was recorded, e.g. by a void)."""
    return None if row is None or not row.body else Evidence(row.evidence_hash, row.body, row.version)


def month_documents(session: Session, month: str) -> list[InvoiceRow]:
    return list(session.scalars(select(InvoiceRow).where(InvoiceRow.month == month).order_by(InvoiceRow.id)))


def month_state(session: Session, month: str) -> dict[Party, Expected]:
    """What each billed party's documents for the month say: recorded after a correction, else the documents
    in force."""
    row = latest_evidence_row(session, month)
    if row is not None and row.expected:
        state = {}
        for key, e in json.loads(row.expected).items():
            kind, _, pid = key.partition("/")
            state[(kind, pid)] = Expected(e["hash"], e["currency"], tuple(line_from_json(l) for l in e["lines"]),
                                          e["number"], e["voided"], e.get("document_type", "invoice"))
        return state
    return {(i.party_kind, i.party_id): Expected(i.content_hash, i.currency, i.lines, i.number,
                                                 document_type=i.document_type)
            for i in map(from_row, month_documents(session, month)) if i.is_in_force}


def describe_change(old: Expected | None, new: Invoice | None, party: Party) -> str:
    who = f"{party[0]} {party[1]}"
    if old is None:
        return f"{who}: not invoiced when the month was finalized; would now be billed {new.total} {new.currency}"
    what = old.document_type.replace("_", " ")
    if new is None:
        return f"{who}: {what} {old.number} ({old.total} {old.currency}) would no longer be billed"
    diff = new.total - old.total
    return (f"{who}: {what} {old.number} total {old.total} {old.currency}, recomputed {new.total} "
            f"(difference {'+' if diff >= 0 else ''}{diff}{'; the lines differ' if diff == 0 else ''})")


def changed_parties(state: dict[Party, Expected], recomputed: list[Invoice]) -> list[Party]:
    """Parties whose money differs between what the month's documents say and a recomputation (voided
    parties are left alone)."""
    new = {(i.party_kind, i.party_id): i for i in recomputed}
    if not state:
        return []
    return [p for p in sorted(set(state) | set(new))
            if not (p in state and state[p].voided)
            and (p not in state or p not in new or state[p].content_hash != new[p].content_hash)]


def state_changes(state: dict[Party, Expected], recomputed: list[Invoice]) -> list[str]:
    new = {(i.party_kind, i.party_id): i for i in recomputed}
    return [describe_change(state.get(p), new.get(p), p) for p in changed_parties(state, recomputed)]


# ---- links between the documents of a month ------------------------------------------------


def link_documents(documents: list[Invoice]) -> list[Invoice]:
    """Cross-references printed on the documents: a community's funder document, a funder's communities."""
    current = [d for d in documents if d.status in ("draft", "finalized") and d.document_type != "credit_note"]
    funder_docs = {d.party_id: d for d in current if d.party_kind == "funder"}
    community_docs = {d.party_id: d for d in current if d.party_kind == "community"}
    result = []
    for doc in documents:
        links = dict(doc.links)
        if doc.party_kind == "community" and doc.document_type != "credit_note":
            for funder_id, fdoc in funder_docs.items():
                covered = sum((l.amount for l in fdoc.lines if l.community == doc.party_id), ZERO)
                if any(l.community == doc.party_id for l in fdoc.lines):
                    links["funder"] = {"id": funder_id, "name": fdoc.bill_to.get("display_name", funder_id),
                                       "grant": fdoc.bill_to.get("grant"), "number": fdoc.number,
                                       "covered": str(covered)}
        elif doc.party_kind == "funder" and doc.document_type != "credit_note":
            covered_ids = list(dict.fromkeys(l.community for l in doc.lines if l.community))
            links["communities"] = [
                {"id": cid, "name": community_docs[cid].bill_to.get("display_name", cid), "number":
                 community_docs[cid].number, "document_type": community_docs[cid].document_type}
                if cid in community_docs else {"id": cid, "name": cid, "number": None, "document_type": None}
                for cid in covered_ids]
        result.append(dataclasses.replace(doc, links=links))
    return result


# ---- recording a month ---------------------------------------------------------------------


@contextlib.contextmanager
def recording_month(engine: Engine, org: Organization, month: Month, invoices: list[Invoice], *, finalize: bool,
                    now: dt.datetime | None = None, inputs: list[dict] | None = None,
                    evidence: Evidence | None = None, actor: str | None = None) -> Iterator[MonthRecord]:
    """Store a month's documents (finalize, taking numbers, or keep as drafts); commit when the block ends.

    Yields the record with the numbers the transaction holds; an exception
    in the block rolls everything back, numbers included. `inputs`
    describes the data the documents were computed from (kept once per
    fingerprint); `evidence` is the month's supporting figures, kept when
    the month is first finalized.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        with Session(engine) as session, session.begin():
            yield _record_month(session, org, month, invoices, finalize, now, inputs or [], evidence,
                                actor or default_actor())
    except IntegrityError:
        raise BillingError(f"{month}: another run finalized invoices for this month at the same time; "
                           "nothing was changed by this run: run it again to see the result") from None


def plan_recording(engine: Engine, org: Organization, items: list[tuple], *, now: dt.datetime | None = None,
                   actor: str | None = None) -> list[MonthRecord | BillingError]:
    """What recording these months in this order would do (the numbers each document would take, their
    links), computed in one transaction that is then rolled back: nothing is kept, no number is taken.

    `items`: (month, invoices, inputs, evidence, finalize) per month. A month whose finalized documents would change
    gives its `FinalizedInvoiceChanged` instead of a record; the months after it are planned without it.
    """
    now, actor = now or dt.datetime.now(dt.timezone.utc), actor or default_actor()
    plans: list[MonthRecord | BillingError] = []
    with Session(engine) as session:
        session.begin()
        try:
            for month, invoices, inputs, evidence, finalize in items:
                try:
                    plans.append(_record_month(session, org, month, invoices, finalize, now, inputs, evidence, actor))
                except FinalizedInvoiceChanged as err:   # raised before anything of the month is written
                    plans.append(err)
        finally:
            session.rollback()
    return plans


def record_month(engine: Engine, org: Organization, month: Month, invoices: list[Invoice], *, finalize: bool,
                 now: dt.datetime | None = None, inputs: list[dict] | None = None,
                 evidence: Evidence | None = None, actor: str | None = None) -> MonthRecord:
    """`recording_month` with nothing to do before the commit."""
    with recording_month(engine, org, month, invoices, finalize=finalize, now=now, inputs=inputs,
                         evidence=evidence, actor=actor) as record:
        return record


def _record_month(session: Session, org: Organization, month: Month, invoices: list[Invoice], finalize: bool,
                  now: dt.datetime, inputs: list[dict], evidence: Evidence | None, actor: str) -> MonthRecord:
    result = MonthRecord(str(month))
    state = month_state(session, str(month))
    changes = state_changes(state, invoices)
    if changes:
        raise FinalizedInvoiceChanged(str(month), changes)
    session.execute(delete(InvoiceRow).where(InvoiceRow.month == str(month), InvoiceRow.status == "draft"))
    for fingerprint in {i.data_fingerprint for i in invoices}:
        if session.get(InputManifestRow, fingerprint) is None:
            session.add(InputManifestRow(fingerprint=fingerprint, month=str(month), created_at=now,
                                         sources=json.dumps(inputs, sort_keys=True)))
    new_docs = []
    for inv in invoices:
        party = (inv.party_kind, inv.party_id)
        if party in state:
            result.unchanged.append(state[party].number or f"{inv.document_type} {inv.party_id}")
            continue
        if finalize:
            inv = dataclasses.replace(inv, status="finalized", number=number_for(session, org, inv))
            result.created.append(inv.number or f"{inv.document_type} {inv.party_id} (no document)")
        else:
            result.created.append(f"draft {inv.party_kind} {inv.party_id}")
        new_docs.append(inv)
    existing = [from_row(r) for r in month_documents(session, str(month))]
    for inv in link_documents(existing + new_docs)[len(existing):]:
        session.add(to_row(inv, now))
        if inv.status == "finalized":
            add_event(session, inv.number, "finalized", actor, now, None, document_type=inv.document_type,
                      total=inv.total, currency=inv.currency)
            _mark_applied(session, inv)
    session.flush()
    rows = month_documents(session, str(month))
    result.invoices = [from_row(r) for r in sorted(rows, key=lambda r: (r.status == "draft", r.id))]
    result.evidence = _keep_evidence(session, str(month), result.invoices, {i.data_fingerprint for i in invoices},
                                     evidence, now)
    return result


def _mark_applied(session: Session, inv: Invoice) -> None:
    """Carried adjustments whose lines this document now bears are applied to it."""
    ids = {int(dict(l.details)["adjustment_id"]) for l in inv.lines
           if l.kind == "adjustment" and "adjustment_id" in dict(l.details)}
    for row in session.scalars(select(AdjustmentRow).where(AdjustmentRow.id.in_(ids))):
        row.applied_to = inv.number


def _keep_evidence(session: Session, month: str, invoices: list[Invoice], computed_from: set[str],
                   evidence: Evidence | None, now: dt.datetime) -> Evidence | None:
    """The evidence of a finalized month: stored once; a ledger from before evidence was kept gets it
    only when the data is byte for byte the data its invoices were computed from."""
    finalized = [i for i in invoices if i.status != "draft"]
    if not finalized:
        return None
    stored = latest_evidence_row(session, month)
    if stored is not None:
        return evidence_of_row(stored)
    if evidence is None:
        return None
    fingerprints = {i.data_fingerprint for i in finalized}
    if len(fingerprints) != 1 or fingerprints != computed_from:
        return None
    return store_evidence(session, month, next(iter(fingerprints)), evidence, None, now)


def store_evidence(session: Session, month: str, fingerprint: str, evidence: Evidence, expected: str | None,
                   now: dt.datetime) -> Evidence:
    version = (session.scalar(select(func.max(EvidenceRow.version)).where(EvidenceRow.month == month)) or 0) + 1
    session.add(EvidenceRow(month=month, version=version, data_fingerprint=fingerprint, expected=expected,
                            evidence_hash=evidence.digest, body=evidence.body, created_at=now))
    return dataclasses.replace(evidence, version=version)


# ---- reading ---------------------------------------------------------------------------------


def finalized_month(engine: Engine, month: str) -> tuple[list[Invoice], Evidence | None]:
    """The month's finalized documents (every status but draft) and the evidence they were computed from."""
    with Session(engine) as session:
        rows = [r for r in month_documents(session, month) if r.status != "draft"]
        return [from_row(r) for r in rows], evidence_of_row(latest_evidence_row(session, month))


def month_evidence(engine: Engine, month: str) -> Evidence | None:
    """The evidence a finalized month's documents were computed from (without reading the documents)."""
    with Session(engine) as session:
        return evidence_of_row(latest_evidence_row(session, month))


def finalized_state(engine: Engine, month: str) -> dict[Party, Expected]:
    with Session(engine) as session:
        return month_state(session, month)


def carried_adjustments(engine: Engine, month: Month, *, pending: bool = True) -> list[CarriedAdjustment]:
    """The corrections this month's documents already bear (so a rerun computes the same documents) and,
    with `pending`, those from earlier months still waiting for the party's next invoice."""
    with Session(engine) as session:
        numbers = {r.number for r in month_documents(session, str(month)) if r.number and r.status == "finalized"}
        rows = session.scalars(select(AdjustmentRow).where(AdjustmentRow.service_month < str(month))
                               .order_by(AdjustmentRow.id)).all()
        return [CarriedAdjustment(r.id, r.party_kind, r.party_id, r.currency, r.corrects, r.service_month,
                                  tuple(line_from_json(l) for l in json.loads(r.lines)), r.reason)
                for r in rows if (pending and r.applied_to is None) or r.applied_to in numbers]


def month_invoices(engine: Engine, month: str) -> list[Invoice]:
    with Session(engine) as session:
        return [from_row(r) for r in month_documents(session, month)]


def document(engine: Engine, number: str) -> Invoice | None:
    with Session(engine) as session:
        row = session.scalars(select(InvoiceRow).where(InvoiceRow.number == number)).first()
        return None if row is None else from_row(row)


def input_manifest(engine: Engine, fingerprint: str) -> list[dict] | None:
    """The sources, files and hashes behind invoices with this data fingerprint."""
    with Session(engine) as session:
        row = session.get(InputManifestRow, fingerprint)
        return None if row is None else json.loads(row.sources)


def all_finalized(engine: Engine) -> list[Invoice]:
    """Every finalized document (in force, credited, voided, credit notes), by service month."""
    with Session(engine) as session:
        rows = session.scalars(select(InvoiceRow).where(InvoiceRow.status != "draft")
                               .order_by(InvoiceRow.month, InvoiceRow.id)).all()
        return [from_row(r) for r in rows]


@dataclass(frozen=True)
class Event:
    number: str
    event: str
    at: dt.datetime
    actor: str
    reason: str | None
    details: dict


def history(engine: Engine, number: str) -> list[Event]:
    """Every state change of a document, oldest first."""
    with Session(engine) as session:
        rows = session.scalars(select(EventRow).where(EventRow.number == number).order_by(EventRow.at, EventRow.id))
        return [Event(r.number, r.event, r.at, r.actor, r.reason, json.loads(r.details)) for r in rows]


def record_event(engine: Engine, number: str, event: str, *, actor: str | None = None, reason: str | None = None,
                 now: dt.datetime | None = None, **details) -> None:
    """Keep one event of a document that changes nothing else (it was sent, a delivery failed), committed now."""
    with Session(engine) as session, session.begin():
        add_event(session, number, event, actor or default_actor(), now or dt.datetime.now(dt.timezone.utc),
                  reason, **details)


def latest_events(engine: Engine, numbers: list[str], event: str) -> dict[str, Event]:
    """The latest event of this kind of each of these documents (those that have one)."""
    latest: dict[str, Event] = {}
    with Session(engine) as session:
        rows = session.scalars(select(EventRow).where(EventRow.number.in_(numbers), EventRow.event == event)
                               .order_by(EventRow.at, EventRow.id))
        for r in rows:
            latest[r.number] = Event(r.number, r.event, r.at, r.actor, r.reason, json.loads(r.details))
    return latest
