"""The ledger's tables (SQLAlchemy ORM). Created and upgraded only by the Alembic migrations in `migrations/`."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (Date, DateTime, ForeignKey, Index, Integer, Numeric, String, Text, TypeDecorator,
                        UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


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


# A party's document in force for a month: finalized, and not a credit note.
IN_FORCE_SQL = "status = 'finalized' AND document_type != 'credit_note'"


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
    document_type: Mapped[str] = mapped_column(String(16), default="invoice", server_default="invoice")
    corrects: Mapped[str | None] = mapped_column(String(32))     # number of the document it corrects
    reason: Mapped[str | None] = mapped_column(Text)
    links: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")   # JSON: related documents
    # Loaded with their documents in one query per batch ("selectin"), not one query per document.
    lines: Mapped[list["LineRow"]] = relationship(order_by="LineRow.position", cascade="all, delete-orphan",
                                                  lazy="selectin")

    __table_args__ = (
        # One document in force per party and month, whatever happens (credit notes and
        # cancelled documents stay beside it).
        Index("one_in_force_per_party_month", "party_kind", "party_id", "month", unique=True,
              sqlite_where=text(IN_FORCE_SQL), postgresql_where=text(IN_FORCE_SQL)),
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
    """The last number taken in each gapless series (invoices, credit notes, statements) and year."""

    __tablename__ = "invoice_sequences"
    series: Mapped[str] = mapped_column(String(16), primary_key=True, default="invoice", server_default="invoice")
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(Integer)


class EventRow(Base):
    """A state change of a document: finalized, credited, replaced, voided, adjusted, sent, paid."""

    __tablename__ = "document_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), index=True)
    event: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")   # JSON


class AdjustmentRow(Base):
    """A correction carried to a party's next invoice as prior-period adjustment lines."""

    __tablename__ = "pending_adjustments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    party_kind: Mapped[str] = mapped_column(String(16))
    party_id: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    corrects: Mapped[str] = mapped_column(String(32))            # the number of the document it corrects
    service_month: Mapped[str] = mapped_column(String(7))        # the month that document is for
    lines: Mapped[str] = mapped_column(Text)                     # JSON: the lines to add
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    applied_to: Mapped[str | None] = mapped_column(String(32), index=True)   # number of the invoice carrying it


class EvidenceRow(Base):
    """The supporting figures a month was invoiced from: attribution, reconciliation, source totals.

    One row per finalization of the month (version 1 when first finalized);
    the month's supporting files are always written from the newest version,
    so they describe the data the invoices were computed from, even after a
    cloud restates the month.
    """

    __tablename__ = "month_evidence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    month: Mapped[str] = mapped_column(String(7), index=True)
    version: Mapped[int] = mapped_column(Integer)
    data_fingerprint: Mapped[str] = mapped_column(String(64))
    evidence_hash: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)                   # JSON: attribution, reconciliation, sources
    # JSON {party: content hash or "voided"}: what the month's documents now say, after corrections.
    expected: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("month", "version", name="one_evidence_per_month_version"),)


class RunLockRow(Base):
    """Who is invoicing an organization's month right now (one run at a time, across processes and workers)."""

    __tablename__ = "run_locks"
    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))          # user@host pid N
    host: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class MonthRunRow(Base):
    """One run of a month (run, amend, void) and how it ended: for `billing status`."""

    __tablename__ = "month_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(64))
    month: Mapped[str] = mapped_column(String(7), index=True)
    command: Mapped[str] = mapped_column(String(16))          # run, amend, void
    outcome: Mapped[str] = mapped_column(String(16))          # finalized, draft, restated, changed, incomplete, failed
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text, default="", server_default="")
    details: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")   # JSON: totals, unattributed, ...


class OneOffRow(Base):
    """A one-off charge or credit recorded with `billing adjust` for a party and month."""

    __tablename__ = "one_offs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    party: Mapped[str] = mapped_column(String(80))              # community:ID or funder:ID
    month: Mapped[str] = mapped_column(String(7), index=True)
    description: Mapped[str] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())     # positive; a credit is kind "credit"
    kind: Mapped[str] = mapped_column(String(8))                # charge or credit
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class PaymentRow(Base):
    """Money received, as the bank reported it. Imported once (its fingerprint is unique)."""

    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_on: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())      # positive: received; negative: a refund sent
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str] = mapped_column(Text)                 # the bank's text, where payers write numbers
    payer: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)                    # the file (and row) it came from
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))


class AllocationRow(Base):
    """A payment (or part of one) applied to a document."""

    __tablename__ = "payment_allocations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(32), index=True)   # the document it pays
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    how: Mapped[str] = mapped_column(String(16))                  # matched (by its reference) or manual
    applied_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))
