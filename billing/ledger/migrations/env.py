"""Alembic environment: migrations run on the connection `billing.ledger.database.migrate` passes in."""
from alembic import context

from billing.ledger.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
