"""The invoice ledger: drafts, finalization, gapless numbering, change detection.

Kept in a real database through SQLAlchemy: a SQLite file by default,
PostgreSQL when `ledger_url` (or BILLING_LEDGER_URL) says so. Rules:
- An invoice is a draft (no number) or finalized. A finalized invoice is
  never changed or deleted.
- Numbers are taken when an invoice is finalized, inside the same
  transaction, from a per-year counter: sequential, gapless, never reused.
- Recording a month that already has finalized invoices compares contents:
  the same content is a no-op (no new invoice, no new number); different
  content changes nothing and is reported, by billed party and amount.
- A month is recorded all or nothing.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable

from sqlalchemy import (Date, DateTime, ForeignKey, Index, Integer, Numeric, String, Text, TypeDecorator,
                        create_engine, delete, event, select)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from billing.config import Organization
from billing.errors import BillingError, FinalizedInvoiceChanged, InputError
from billing.money import ZERO, round_money
from billing.months import Month
from pricing_models import Charge
from pricing_models.base import SECTIONS

LEDGER_ENV = "BILLING_LEDGER_URL"


class ExactDecimal(TypeDecorator):
    """Decimal stored exactly: NUMERIC on PostgreSQL, text on SQLite (which has no decimal type)."""

    impl = String(80)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))  # unconstrained: keeps each scale
        return dialect.type_descriptor(String(80))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"ledger amounts must be Decimal, got {type(value).__name__}")
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value) if isinstance(value, str) else value


class Base(DeclarativeBase):
    pass


class InvoiceRow(Base):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    party_kind: Mapped[str] = mapped_column(String(16))          # community or funder
    party_id: Mapped[str] = mapped_column(String(64))
    month: Mapped[str] = mapped_column(String(7), index=True)
    status: Mapped[str] = mapped_column(String(16))              # draft or finalized
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    issue_date: Mapped[dt.date] = mapped_column(Date)
    due_date: Mapped[dt.date] = mapped_column(Date)
    subtotal: Mapped[Decimal] = mapped_column(ExactDecimal())
    total: Mapped[Decimal] = mapped_column(ExactDecimal())
    content_hash: Mapped[str] = mapped_column(String(64))
    data_fingerprint: Mapped[str] = mapped_column(String(64))    # hash of the cost data it was computed from
    bill_to: Mapped[str] = mapped_column(Text)                   # JSON: name, email, address at the time
    issuer: Mapped[str] = mapped_column(Text)                    # JSON: issuer block at the time
    notes: Mapped[str] = mapped_column(Text, default="[]")       # JSON list of strings
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finalized_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    lines: Mapped[list["LineRow"]] = relationship(order_by="LineRow.position", cascade="all, delete-orphan")

    __table_args__ = (
        # One finalized invoice per party and month, whatever happens.
        Index("one_finalized_per_party_month", "party_kind", "party_id", "month", unique=True,
              sqlite_where=(status == "finalized"), postgresql_where=(status == "finalized")),
    )


class LineRow(Base):
    __tablename__ = "invoice_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    section: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    unit: Mapped[str | None] = mapped_column(String(16))
    unit_price: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    amount_exact: Mapped[Decimal] = mapped_column(ExactDecimal())
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())      # rounded once, by money.ROUNDING_RULE
    community: Mapped[str | None] = mapped_column(String(64))
    hub: Mapped[str | None] = mapped_column(String(64))
    cluster: Mapped[str | None] = mapped_column(String(64))
    component: Mapped[str | None] = mapped_column(String(16))
    details: Mapped[str] = mapped_column(Text, default="{}")


class InputManifestRow(Base):
    """What a month's invoices were computed from: each source's files or snapshot and their content hashes."""

    __tablename__ = "input_manifests"
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)   # = invoices.data_fingerprint
    month: Mapped[str] = mapped_column(String(7), index=True)
    sources: Mapped[str] = mapped_column(Text)                             # JSON list
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class SequenceRow(Base):
    __tablename__ = "invoice_sequences"
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


# ---- plain values the rest of the pipeline sees ---------------------------------------


@dataclass(frozen=True)
class Line:
    section: str
    kind: str
    description: str
    amount_exact: Decimal
    amount: Decimal
    quantity: Decimal | None = None
    unit: str | None = None
    unit_price: Decimal | None = None
    community: str | None = None
    hub: str | None = None
    cluster: str | None = None
    component: str | None = None
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Invoice:
    party_kind: str
    party_id: str
    month: str
    currency: str
    issue_date: dt.date
    due_date: dt.date
    lines: tuple[Line, ...]
    bill_to: dict
    issuer: dict
    data_fingerprint: str
    status: str = "draft"
    number: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def subtotal(self) -> Decimal:
        return sum((l.amount for l in self.lines), ZERO)

    @property
    def total(self) -> Decimal:
        return self.subtotal

    @property
    def content_hash(self) -> str:
        """What the invoice says (party, currency, lines, total); not when or from which file."""
        body = {"party": [self.party_kind, self.party_id], "month": self.month, "currency": self.currency,
                "lines": [[l.section, l.description, _s(l.quantity), l.unit, _s(l.unit_price),
                           _s(round_money(l.amount, self.currency)), l.hub, l.cluster, l.component] for l in self.lines]}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


@dataclass
class MonthRecord:
    """What recording a month did."""

    month: str
    invoices: list[Invoice] = field(default_factory=list)   # the month's invoices as they now stand
    created: list[str] = field(default_factory=list)        # numbers (or party ids for drafts) created now
    unchanged: list[str] = field(default_factory=list)


# ---- building invoices from charges ---------------------------------------------------


def issue_date_for(month: Month) -> dt.date:
    """Invoices for a month are dated the first day of the next month, so reruns give the same dates."""
    return month.end


def _contact(contact) -> dict:
    return {"name": contact.name, "email": contact.email, "address": list(contact.address)}


def build_invoices(org: Organization, month: Month, charges: dict[str, list[Charge]],
                   data_fingerprint: str, notes: Iterable[str] = ()) -> list[Invoice]:
    """One invoice per billed party (community or funder), lines rounded once."""
    issue = issue_date_for(month)
    due = issue + dt.timedelta(days=org.issuer.payment_terms_days)
    issuer = org.issuer.model_dump(mode="json")
    by_party: dict[tuple[str, str], list[Charge]] = {}
    for community_id, community_charges in charges.items():
        by_party.setdefault(("community", community_id), [])
        for ch in community_charges:
            party = ("community", community_id) if ch.bill_to is None else ("funder", ch.bill_to)
            by_party.setdefault(party, []).append(ch)
    section_order = list(dict.fromkeys(SECTIONS.values()))
    invoices = []
    for (kind, party_id), party_charges in sorted(by_party.items(), key=lambda kv: _party_order(org, kv[0])):
        entity = org.community(party_id) if kind == "community" else org.funder(party_id)
        ordered = sorted(party_charges, key=lambda c: section_order.index(SECTIONS[c.kind]))
        lines = tuple(Line(SECTIONS[c.kind], c.kind, c.description, c.amount, c.rounded, c.quantity, c.unit,
                           c.unit_price, c.community, c.hub, c.cluster, c.component, c.details) for c in ordered)
        party_notes = list(notes)
        if kind == "community" and entity.funder:
            party_notes.append(f"Part or all of these charges are paid by {org.funder(entity.funder).name}.")
        invoices.append(Invoice(kind, party_id, str(month), entity.currency, issue, due, lines,
                                {"id": party_id, **_contact(entity.billing_contact),
                                 "display_name": entity.name}, issuer, data_fingerprint,
                                notes=tuple(party_notes)))
    return invoices


def _party_order(org: Organization, party: tuple[str, str]) -> tuple:
    kind, pid = party
    ids = [c.id for c in org.communities] if kind == "community" else [f.id for f in org.funders]
    return (kind != "community", ids.index(pid) if pid in ids else len(ids), pid)


# ---- the database ---------------------------------------------------------------------


def ledger_url(org: Organization, out_dir: str, override: str | None = None) -> str:
    return override or os.environ.get(LEDGER_ENV) or org.ledger_url or f"sqlite:///{os.path.join(out_dir, 'ledger.db')}"


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never echo an unparseable URL, it may hold a secret
        return "<unparseable database URL>"


def open_ledger(url: str) -> Engine:
    """Connect and create the tables if needed.

    Every way the URL can be wrong (not a URL, an unknown database type, a
    driver that is not installed, a file or server that cannot be opened)
    is an `InputError` naming the URL, its password hidden.
    """
    from sqlalchemy.exc import NoSuchModuleError

    where = safe_url(url)

    def first_line(err: BaseException) -> str:
        text = str(err).strip()
        return text.splitlines()[0] if text else type(err).__name__

    def refuse(problem: str, advice: str) -> InputError:
        try:
            password = make_url(url).password
        except Exception:  # noqa: BLE001
            password = None
        if password:
            problem = problem.replace(str(password), "***")
        return InputError(f"ledger {where}: {problem}; {advice}")

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001
        raise refuse("not a database URL", "use e.g. sqlite:///PATH/ledger.db or "
                                           "postgresql+psycopg://USER@HOST/DATABASE") from None
    sqlite_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if sqlite_file:
        folder = os.path.dirname(os.path.abspath(parsed.database))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise refuse(f"cannot create its folder {folder} ({err.strerror})",
                         "choose a place you can write to") from None
    try:
        engine = create_engine(url, future=True)
    except NoSuchModuleError:
        raise refuse(f"unknown database type {parsed.drivername!r}",
                     "use sqlite:///PATH/ledger.db or postgresql+psycopg://USER@HOST/DATABASE") from None
    except ImportError as err:   # the dialect is known, its DBAPI module is not installed
        raise refuse(f"its database driver (Python module {err.name or '?'!r}) is not installed",
                     "install it, or name an installed driver in the URL (e.g. postgresql+psycopg://)") from None
    except Exception as err:  # noqa: BLE001 - ArgumentError, TypeError...: bad options in the URL
        raise refuse(f"invalid database URL ({first_line(err)})", "check the URL and its ?options") from None
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # pragma: no cover - trivial
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
    try:
        Base.metadata.create_all(engine)
    except Exception as err:  # noqa: BLE001
        engine.dispose()
        reason = first_line(getattr(err, "orig", None) or err)
        if sqlite_file:
            raise refuse(f"cannot open the SQLite file {parsed.database} ({reason})",
                         "the ledger must be a SQLite database file in a folder you can write to") from None
        raise refuse(f"cannot open the database ({type(err).__name__}: {reason})",
                     "check the URL, that the server is reachable and that the user may create tables") from None
    return engine


def _to_row(inv: Invoice, now: dt.datetime) -> InvoiceRow:
    row = InvoiceRow(party_kind=inv.party_kind, party_id=inv.party_id, month=inv.month, status=inv.status,
                     number=inv.number, currency=inv.currency, issue_date=inv.issue_date, due_date=inv.due_date,
                     subtotal=inv.subtotal, total=inv.total, content_hash=inv.content_hash,
                     data_fingerprint=inv.data_fingerprint, bill_to=json.dumps(inv.bill_to, sort_keys=True),
                     issuer=json.dumps(inv.issuer, sort_keys=True), notes=json.dumps(list(inv.notes)),
                     created_at=now, finalized_at=now if inv.status == "finalized" else None)
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
                   tuple(json.loads(row.notes)))


def _next_number(session: Session, year: int, prefix: str) -> str:
    """Take the next number of the year; the row lock makes concurrent runs queue, not collide."""
    seq = session.execute(select(SequenceRow).where(SequenceRow.year == year).with_for_update()).scalar_one_or_none()
    if seq is None:
        seq = SequenceRow(year=year, last_number=0)
        session.add(seq)
        session.flush()
    seq.last_number += 1
    session.flush()
    return f"{prefix}-{year}-{seq.last_number:04d}"


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


def record_month(engine: Engine, org: Organization, month: Month, invoices: list[Invoice], *,
                 finalize: bool, now: dt.datetime | None = None, inputs: list[dict] | None = None) -> MonthRecord:
    """Store a month's invoices: finalize (taking numbers) or keep as drafts. All or nothing.

    `inputs` describes the data they were computed from (kept once per fingerprint).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        return _record_month(engine, org, month, invoices, finalize, now, inputs or [])
    except IntegrityError:
        raise BillingError(f"{month}: another run finalized invoices for this month at the same time; "
                           "nothing was changed by this run: run it again to see the result") from None


def _record_month(engine: Engine, org: Organization, month: Month, invoices: list[Invoice], finalize: bool,
                  now: dt.datetime, inputs: list[dict]) -> MonthRecord:
    result = MonthRecord(str(month))
    with Session(engine) as session, session.begin():
        finalized = {(r.party_kind, r.party_id): r for r in session.scalars(
            select(InvoiceRow).where(InvoiceRow.month == str(month), InvoiceRow.status == "finalized"))}
        new_by_party = {(i.party_kind, i.party_id): i for i in invoices}
        changes = []
        for party in sorted(set(finalized) | set(new_by_party)):
            old, new = finalized.get(party), new_by_party.get(party)
            if old is not None and (new is None or new.content_hash != old.content_hash):
                changes.append(describe_change(_from_row(old), new))
        if changes and finalized:
            raise FinalizedInvoiceChanged(str(month), changes)
        session.execute(delete(InvoiceRow).where(InvoiceRow.month == str(month), InvoiceRow.status == "draft"))
        for fingerprint in {i.data_fingerprint for i in invoices}:
            if session.get(InputManifestRow, fingerprint) is None:
                session.add(InputManifestRow(fingerprint=fingerprint, month=str(month), created_at=now,
                                             sources=json.dumps(inputs, sort_keys=True)))
        for party, inv in new_by_party.items():
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
    return result


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
