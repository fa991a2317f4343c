"""The project's small exception tree.

`InputError` means the user can fix it (configuration, a data file, an
argument): the CLI prints its message alone and exits with 2. Anything else
is an execution error (exit 1).
"""
from __future__ import annotations


class BillingError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(BillingError):
    """Bad configuration, data or arguments; the message names file, field and value."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = problems or []
        super().__init__(message if not self.problems else message + "\n" + "\n".join(f"  - {p}" for p in self.problems))


class ConfigError(InputError):
    """The organization's configuration is invalid."""


class SourceError(BillingError):
    """A cost source could not deliver the month's data."""

    def __init__(self, source: str, message: str, *, transient: bool = False):
        self.source = source
        self.transient = transient
        super().__init__(f"{source}: {message}")


class ReconciliationError(BillingError):
    """Input totals and attributed totals disagree: something was lost."""


class FinalizedInvoiceChanged(BillingError):
    """A month's data changed after its invoices were finalized."""

    def __init__(self, month: str, changes: list[str], details: list[str] | None = None):
        self.month = month
        self.changes = changes
        self.details = details or []
        text = (f"{month}: data changed after its invoices were finalized; nothing was changed. "
                "Differences by billed party:\n" + "\n".join(f"  - {c}" for c in changes))
        if self.details:
            text += ("\nWhat changed (exact amounts):\n" + "\n".join(f"  - {d}" for d in self.details)
                     + f"\nThe finalized files are kept; the new figures are in {month}/attribution.restated.csv "
                     "and reconciliation.restated.csv.")
        text += (f"\nTo correct the documents (a credit note and a new invoice for each party that changed): "
                 f"billing amend --month {month} --reason '...' [--policy reissue|next-invoice]")
        super().__init__(text)
