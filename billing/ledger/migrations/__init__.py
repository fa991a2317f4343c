"""Alembic migrations of the ledger: the only way its schema is created or changed."""
