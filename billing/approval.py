"""A month approved by a person before it is finalized (`approval: required` in the configuration).

Three steps, each a plain function (the Prefect flow waits for the answer
between them; this module knows nothing of Prefect):

1. `propose_month`: ingest, attribute and price the month, record its
   documents as drafts and render their DRAFT PDFs, for review;
2. the approver answers (approve or not, and why);
3. `finalize_proposal`: finalize exactly the documents that were reviewed
   (numbers planned, PDFs rendered, then committed, as `close_month`
   does); if anything they say changed since (another month used up an
   award, a correction was carried to them), nothing is finalized. Or
   `record_decision`: a rejection (or a question nobody answered in time)
   is kept in the ledger's month runs with its reason; nothing is finalized
   and the drafts stay.

The month is held (`month_guard`) while it is proposed and while it is
finalized, not while it waits for the answer.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from billing import ledger as ledger_mod
from billing.closing import CloseOptions, PreparedMonth, close_month, finalize_plan, plan_months, render_plan
from billing.config import Organization
from billing.errors import BillingError
from billing.ledger import Invoice
from billing.months import Month
from billing.pipeline import (MonthResult, RunOptions, Stage, run_inline, run_outcome, close_options, month_guard,
                              month_result, prepare_month)


@dataclass
class Proposal:
    """A month priced and drafted for review, and how it will be finalized if approved."""

    month: Month
    prepared: PreparedMonth
    closing: CloseOptions          # the finalization it asks for
    review: MonthResult            # the drafts (and any documents already finalized), as recorded
    notes: list[str]

    @property
    def pending(self) -> bool:
        """Whether there is anything to approve: drafts of a month that closed (not a preview, not done)."""
        return not self.closing.draft and any(d.status == "draft" for d in self.review.invoices)


class ProposalChanged(BillingError):
    """The documents differ from those reviewed: nothing was finalized."""


def propose_month(org: Organization, month: Month, opts: RunOptions, stage: Stage = run_inline) -> Proposal:
    """Price the month and record and render its documents as drafts, for a person to review."""
    closing, notes = close_options(org, month, opts)
    review_closing = dataclasses.replace(closing, draft=True)
    with month_guard(org, month, opts, "run") as report:
        prepared = stage(prepare_month)(org, month, opts, closing.draft)
        closed = stage(close_month)(org, month, prepared.ingested, prepared.attributed, prepared.reconciliation,
                                    prepared.usage, review_closing)
        proposal = Proposal(month, prepared, closing, month_result(prepared, closed, review_closing, notes), notes)
        report.update(run_outcome(proposal.review, None))
        if proposal.pending:
            report.update(outcome="pending", message="")
    return proposal


def finalize_proposal(org: Organization, proposal: Proposal, opts: RunOptions, *, approver: str | None,
                      reason: str = "") -> MonthResult:
    """Finalize the reviewed documents; ProposalChanged (nothing finalized) if any of them would differ."""
    closing = dataclasses.replace(proposal.closing, actor=approver or proposal.closing.actor)
    month = proposal.month
    with month_guard(org, month, dataclasses.replace(opts, actor=closing.actor), "run") as report:
        [plan] = plan_months(org, [(proposal.prepared, closing)])
        if isinstance(plan, BillingError):
            raise plan
        if changes := _differences(proposal.review.invoices, plan.invoices):
            raise ProposalChanged(f"{month}: the documents changed since they were reviewed ({'; '.join(changes)}); "
                                  "nothing was finalized: run the month again to review them")
        closed = finalize_plan(org, plan, render_plan(plan, closing), closing)
        result = month_result(proposal.prepared, closed, closing, proposal.notes)
        report.update(run_outcome(result, None))
        report.update(approved_by=closing.actor, approval_reason=reason)
    return result


def _differences(reviewed: list[Invoice], planned: list[Invoice]) -> list[str]:
    """How the documents to finalize differ from the drafts that were reviewed (by party, by money)."""
    drafts = {(d.party_kind, d.party_id): d for d in reviewed if d.status == "draft"}
    now = {(d.party_kind, d.party_id): d for d in planned}
    changes = []
    for party in sorted(set(drafts) | set(now)):
        old, new = drafts.get(party), now.get(party)
        if old is None and new is not None and not _was_finalized(reviewed, party):
            changes.append(f"{party[0]} {party[1]}: a new document of {new.total} {new.currency}")
        elif old is not None and (new is None or new.content_hash != old.content_hash):
            changes.append(f"{party[0]} {party[1]}: reviewed {old.total} {old.currency}, now "
                           + (f"{new.total} {new.currency}" if new else "no document"))
    return changes


def _was_finalized(documents: list[Invoice], party: tuple[str, str]) -> bool:
    return any((d.party_kind, d.party_id) == party and d.status != "draft" for d in documents)


def record_decision(org: Organization, proposal: Proposal, opts: RunOptions, *, outcome: str, message: str,
                    actor: str | None = None, **details) -> None:
    """Keep a month's approval that did not finalize it: rejected (with the reason) or expired."""
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))
    try:
        ledger_mod.record_run(engine, org.org_id, str(proposal.month), command="approve", outcome=outcome,
                              started_at=dt.datetime.now(dt.timezone.utc), actor=actor or opts.actor,
                              message=message, **details)
    finally:
        engine.dispose()
