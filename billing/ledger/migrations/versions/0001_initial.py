"""The ledger as the first release created it: invoices, lines, input manifests, number sequences.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Exact decimals: NUMERIC on PostgreSQL, text on SQLite (as billing.ledger.schema.ExactDecimal).
EXACT = sa.String(80).with_variant(sa.Numeric(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("party_kind", sa.String(16), nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("number", sa.String(32), nullable=True, unique=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("issue_date", sa.Date, nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("subtotal", EXACT, nullable=False),
        sa.Column("total", EXACT, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("data_fingerprint", sa.String(64), nullable=False),
        sa.Column("bill_to", sa.Text, nullable=False),
        sa.Column("issuer", sa.Text, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_invoices_month", "invoices", ["month"])
    op.create_index("one_finalized_per_party_month", "invoices", ["party_kind", "party_id", "month"], unique=True,
                    sqlite_where=sa.text("status = 'finalized'"), postgresql_where=sa.text("status = 'finalized'"))
    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.Integer, sa.ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("section", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("quantity", EXACT, nullable=True),
        sa.Column("unit", sa.String(16), nullable=True),
        sa.Column("unit_price", EXACT, nullable=True),
        sa.Column("amount_exact", EXACT, nullable=False),
        sa.Column("amount", EXACT, nullable=False),
        sa.Column("community", sa.String(64), nullable=True),
        sa.Column("hub", sa.String(64), nullable=True),
        sa.Column("cluster", sa.String(64), nullable=True),
        sa.Column("component", sa.String(16), nullable=True),
        sa.Column("details", sa.Text, nullable=False),
    )
    op.create_index("ix_invoice_lines_invoice_id", "invoice_lines", ["invoice_id"])
    op.create_table(
        "input_manifests",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("sources", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_input_manifests_month", "input_manifests", ["month"])
    op.create_table(
        "invoice_sequences",
        sa.Column("year", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_number", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("invoice_sequences", "input_manifests", "invoice_lines", "invoices"):
        op.drop_table(table)
