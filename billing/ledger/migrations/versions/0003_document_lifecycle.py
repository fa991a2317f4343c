"""Document lifecycle: credit notes, statements, corrections, events, carried adjustments.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

- invoices: document_type (invoice, credit_note, statement), corrects, reason, links; one document *in force*
  per party and month (credit notes and cancelled documents stay beside it).
- invoice_sequences: one gapless series per document type and year (primary key series, year).
- document_events: every state change, with who and why; existing finalized invoices get their
  'finalized' event back-filled from finalized_at.
- pending_adjustments: corrections carried to a party's next invoice.
- month_evidence.expected: what the month's documents say after corrections.
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

IN_FORCE = "status = 'finalized' AND document_type != 'credit_note'"


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("document_type", sa.String(16), nullable=False, server_default="invoice"))
        batch.add_column(sa.Column("corrects", sa.String(32), nullable=True))
        batch.add_column(sa.Column("reason", sa.Text, nullable=True))
        batch.add_column(sa.Column("links", sa.Text, nullable=False, server_default="{}"))
        batch.drop_index("one_finalized_per_party_month")
    op.create_index("one_in_force_per_party_month", "invoices", ["party_kind", "party_id", "month"], unique=True,
                    sqlite_where=sa.text(IN_FORCE), postgresql_where=sa.text(IN_FORCE))

    op.create_table(
        "invoice_sequences_new",
        sa.Column("series", sa.String(16), primary_key=True, server_default="invoice"),
        sa.Column("year", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_number", sa.Integer, nullable=False),
    )
    op.execute("INSERT INTO invoice_sequences_new (series, year, last_number) "
               "SELECT 'invoice', year, last_number FROM invoice_sequences")
    op.drop_table("invoice_sequences")
    op.rename_table("invoice_sequences_new", "invoice_sequences")

    op.create_table(
        "document_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("details", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_document_events_number", "document_events", ["number"])
    op.execute("INSERT INTO document_events (number, event, at, actor, reason, details) "
               "SELECT number, 'finalized', coalesce(finalized_at, created_at), '(before the event log)', NULL, '{}' "
               "FROM invoices WHERE status = 'finalized' AND number IS NOT NULL ORDER BY id")

    op.create_table(
        "pending_adjustments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("party_kind", sa.String(16), nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("corrects", sa.String(32), nullable=False),
        sa.Column("service_month", sa.String(7), nullable=False),
        sa.Column("lines", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_to", sa.String(32), nullable=True),
    )
    op.create_index("ix_pending_adjustments_applied_to", "pending_adjustments", ["applied_to"])

    with op.batch_alter_table("month_evidence") as batch:
        batch.add_column(sa.Column("expected", sa.Text, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the ledger is a system of record: restore a backup instead of downgrading")
