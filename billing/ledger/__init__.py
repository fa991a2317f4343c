"""The invoice ledger: the system of record.

Kept in a real database through SQLAlchemy (a SQLite file by default,
PostgreSQL when configured), its schema created and upgraded by Alembic
migrations. One module per concern:

- `schema`: the tables;  `migrations/`: how they came to be;
- `database`: where the ledger is, opening it, upgrading it;
- `invoices`: documents as plain values, built from a month's charges;
- `record`: drafts, finalization with gapless numbers, change detection,
  events, and the evidence each month was invoiced from;
- `corrections`: amending a month (credit notes and replacements, or
  adjustments carried to the next invoice) and voiding an invoice.
"""
from billing.ledger.adjustments import RecordedOneOff, record_one_off, recorded_one_offs
from billing.ledger.corrections import POLICIES, Correction, amending_month, credit_note_for, voiding
from billing.ledger.database import LEDGER_ENV, ledger_url, migrate, open_ledger, safe_url
from billing.ledger.invoices import (DOCUMENT_TYPES, STATUSES, CarriedAdjustment, Invoice, Line, build_invoices,
                                     lines_total, today_utc)
from billing.ledger.record import (Event, Evidence, Expected, MonthRecord, all_finalized, carried_adjustments,
                                   default_actor, describe_change, document, finalized_month, finalized_state,
                                   history, input_manifest, month_invoices, plan_recording, record_month, recording_month,
                                   state_changes)
from billing.ledger.payments import Allocation, Payment, all_payments, paid_by_document
from billing.ledger.runs import DEFAULT_LOCK_WAIT, MonthLocked, MonthRun, latest_runs, month_lock, record_run
from billing.ledger.schema import (AdjustmentRow, Base, EventRow, EvidenceRow, InputManifestRow, InvoiceRow, LineRow,
                                   SequenceRow)

__all__ = ["Allocation", "Payment", "all_payments", "paid_by_document",
           "RecordedOneOff", "record_one_off", "recorded_one_offs",
           "DEFAULT_LOCK_WAIT", "MonthLocked", "MonthRun", "latest_runs", "month_lock", "record_run",
           "DOCUMENT_TYPES", "LEDGER_ENV", "POLICIES", "STATUSES", "AdjustmentRow", "Base", "CarriedAdjustment",
           "Correction", "Event", "EventRow", "Evidence", "EvidenceRow", "Expected", "InputManifestRow", "Invoice",
           "InvoiceRow", "Line", "LineRow", "MonthRecord", "SequenceRow", "all_finalized", "amending_month",
           "build_invoices", "carried_adjustments", "credit_note_for", "default_actor", "describe_change",
           "document", "finalized_month", "finalized_state", "history", "input_manifest", "ledger_url",
           "lines_total", "migrate", "month_invoices", "open_ledger", "plan_recording", "record_month", "recording_month", "safe_url",
           "state_changes", "today_utc", "voiding"]
