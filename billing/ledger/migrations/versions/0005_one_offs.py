"""One-off charges and credits recorded with `billing adjust`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

EXACT = sa.String(80).with_variant(sa.Numeric(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "one_offs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("party", sa.String(80), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("amount", EXACT, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_one_offs_month", "one_offs", ["month"])


def downgrade() -> None:
    raise NotImplementedError("the ledger is a system of record: restore a backup instead of downgrading")
