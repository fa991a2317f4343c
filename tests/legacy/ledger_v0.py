"""The ledger schema exactly as the first release (before migrations) created it with `create_all`.

Kept to test that `billing.ledger.open_ledger` upgrades such a ledger in place.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (Date, DateTime, ForeignKey, Index, Integer, Numeric, String, Text, TypeDecorator)
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
