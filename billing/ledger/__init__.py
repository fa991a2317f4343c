"""The invoice ledger: the system of record.

Kept in a real database through SQLAlchemy (a SQLite file by default,
PostgreSQL when configured), its schema created and upgraded by Alembic
migrations. One module per concern:

- `schema`: the tables;  `migrations/`: how they came to be;
- `database`: where the ledger is, opening it, upgrading it;
- `invoices`: invoices as plain values, built from a month's charges;
- `record`: drafts, finalization with gapless numbers, change detection,
  and the evidence each month was invoiced from.
"""
from billing.ledger.database import LEDGER_ENV, ledger_url, migrate, open_ledger, safe_url
from billing.ledger.invoices import Invoice, Line, build_invoices, issue_date_for
from billing.ledger.record import (Evidence, MonthRecord, all_finalized, describe_change, finalized_month,
                                   input_manifest, invoice_changes, month_invoices, record_month, recording_month)
from billing.ledger.schema import Base, EvidenceRow, InputManifestRow, InvoiceRow, LineRow, SequenceRow

__all__ = ["LEDGER_ENV", "Base", "Evidence", "EvidenceRow", "InputManifestRow", "Invoice", "InvoiceRow", "Line",
           "LineRow", "MonthRecord", "SequenceRow", "all_finalized", "build_invoices", "describe_change",
           "finalized_month", "input_manifest", "invoice_changes", "issue_date_for", "ledger_url", "migrate",
           "month_invoices", "open_ledger", "record_month", "recording_month", "safe_url"]
