"""Where each month stands, for finance staff: `billing status`.

One row per month: finalized / draft / incomplete / failed / restated (the
data changed since finalization) / not run, how many documents, what they
bill per currency, the unattributed cost, and the last run. Read from the
ledger only: nothing is fetched or recomputed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from billing import ledger as ledger_mod
from billing.money import ZERO
from billing.months import Month, month_range

STATES = ("finalized", "draft", "restated", "incomplete", "failed", "not run")
# What a month's drafts wait for, when the organization approves each month (`approval: required`).
APPROVAL = {"pending": "waiting for approval", "rejected": "not approved", "expired": "approval timed out"}


@dataclass(frozen=True)
class MonthStatus:
    month: str
    state: str
    documents: int
    totals: dict[str, Decimal]
    unattributed: dict[str, Decimal]
    last_run: str
    detail: str = ""


def _totals(documents) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for doc in documents:
        totals[doc.currency] = totals.get(doc.currency, ZERO) + doc.total
    return dict(sorted(totals.items()))


def _unattributed(engine, month: str) -> dict[str, Decimal]:
    _, evidence = ledger_mod.finalized_month(engine, month)
    if evidence is None:
        return {}
    sums: dict[str, Decimal] = {}
    for row in json.loads(evidence.body)["reconciliation"]:
        sums[row["currency"]] = sums.get(row["currency"], ZERO) + Decimal(row["unattributed"])
    return sums


def month_status(engine, month: str, run) -> MonthStatus:
    documents = ledger_mod.month_invoices(engine, month)
    issued = [d for d in documents if d.status != "draft"]
    in_force = [d for d in issued if d.is_in_force]
    drafts = [d for d in documents if d.status == "draft"]
    last = "" if run is None else (f"{run.finished_at:%Y-%m-%d %H:%M} {run.command} by {run.actor}: {run.outcome}")
    detail = ""
    if issued:
        state = "finalized"
        if run is not None and run.outcome == "changed":
            state, detail = "restated", f"documents would change ({run.message}); billing amend"
        elif run is not None and run.outcome == "restated":
            state = "restated"
            detail = "; ".join(run.details.get("restated", [])) or "data changed below a cent"
        elif run is not None and run.outcome in ("incomplete", "failed"):
            detail = f"last run {run.outcome}: {run.message}"
        totals = _totals(in_force)
    elif drafts:
        state, totals = "draft", _totals(drafts)
        if run is not None and run.outcome in ("pending", "rejected", "expired"):
            detail = f"{APPROVAL[run.outcome]}{': ' + run.message if run.message else ''}"
    elif run is not None and run.outcome in ("incomplete", "failed"):
        state, totals, detail = run.outcome, {}, run.message
    else:
        state, totals = "not run", {}
    unattributed = _unattributed(engine, month)
    if not unattributed and run is not None and run.details.get("unattributed"):
        unattributed = {"": Decimal(run.details["unattributed"])}
    return MonthStatus(month, state, len(issued) or len(drafts), totals, unattributed, last, detail)


def statuses(org, engine, first: Month | None = None, last: Month | None = None) -> list[MonthStatus]:
    """Every month from `first` (default: the earliest in the ledger) to `last` (default: the last closed)."""
    runs = ledger_mod.latest_runs(engine, org.org_id)
    known = sorted(set(runs) | {d.month for d in ledger_mod.all_finalized(engine)})
    last = last or org.last_closed_month()
    first = first or (Month.parse(known[0]) if known else last)
    if first > last:
        first = last
    return [month_status(engine, str(m), runs.get(str(m))) for m in month_range(first, last)]


def money_text(amounts: dict[str, Decimal]) -> str:
    return ", ".join(f"{format(a, ',.2f')} {c}".strip() for c, a in amounts.items()) or "-"
