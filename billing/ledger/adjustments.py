"""One-off charges and credits recorded for a party and month (`billing adjust`)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from billing.errors import InputError
from billing.ledger.record import default_actor
from billing.ledger.schema import InvoiceRow, OneOffRow


@dataclass(frozen=True)
class RecordedOneOff:
    party: str
    month: str
    description: str
    amount: Decimal
    kind: str


def record_one_off(engine: Engine, *, party: str, month: str, description: str, amount: Decimal, kind: str,
                   actor: str | None = None) -> None:
    """Keep a one-off for a month whose documents for the party are not finalized yet."""
    party_kind, _, party_id = party.partition(":")
    with Session(engine) as session, session.begin():
        finalized = session.scalars(select(InvoiceRow).where(
            InvoiceRow.month == month, InvoiceRow.party_kind == party_kind, InvoiceRow.party_id == party_id,
            InvoiceRow.status != "draft")).first()
        if finalized is not None:
            raise InputError(f"{month} is already finalized for {party_kind} {party_id} ({finalized.number}); record "
                             "the one-off for a month not yet finalized, or amend that month after recording it "
                             "for it in the configuration")
        session.add(OneOffRow(party=party, month=month, description=description, amount=amount, kind=kind,
                              actor=actor or default_actor(), created_at=dt.datetime.now(dt.timezone.utc)))


def recorded_one_offs(engine: Engine, month: str) -> list[RecordedOneOff]:
    with Session(engine) as session:
        rows = session.scalars(select(OneOffRow).where(OneOffRow.month == month).order_by(OneOffRow.id))
        return [RecordedOneOff(r.party, r.month, r.description, r.amount, r.kind) for r in rows]
