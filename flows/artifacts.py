"""What a month's flow run shows on the Prefect server: its summary and the table of its documents.

Two artifacts per month, keyed by organization and month so the Artifacts
page lists each month once and keeps every run of it in the key's history:

- `invoicing-<org-id>-<yyyy-mm>` (markdown): documents created and
  unchanged, totals per currency, unattributed cost, warnings, where the
  files are; or, for a month that failed, why;
- `invoices-<org-id>-<yyyy-mm>` (table): number, type, party, status,
  total, currency and PDF of each document of the month.

They are created only inside a flow run (a plain call does nothing), and a
server that refuses one is a warning in the run's log, never a failed month:
the invoices are already in the ledger and on disk.
"""
from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from billing.closing import pdf_name
from billing.money import money_with_code as money
from billing.notify import unattributed_by_currency
from billing.pipeline import totals_by_currency

if TYPE_CHECKING:
    from billing.config import Organization
    from billing.pipeline import MonthResult

FILES = "invoices/, invoices.csv, attribution.csv, reconciliation.csv"
MAX_NUMBERS_LISTED = 10


def artifact_key(kind: str, org_id: str, month: str) -> str:
    """`<kind>-<org-id>-<yyyy-mm>`: lowercase letters, digits and dashes, as Prefect requires of a key."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", f"{kind}-{org_id}-{month}".lower())).strip("-")


def _md(text: object) -> str:
    """Text shown as itself in markdown (and in a table cell): its markup characters escaped."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", str(text)).replace("\n", " ")


def _path(path: Path) -> str:
    """A file path as code (its characters as they are); a | escaped so that it stays in its table cell."""
    text = str(path).replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _kinds(documents) -> str:
    counts = Counter(doc.document_type.replace("_", " ") for doc in documents)
    return ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in sorted(counts.items()))


def _amounts(amounts: dict) -> str:
    return ", ".join(money(a, c) for c, a in amounts.items()) or "nothing"


def _totals(documents) -> dict[str, Decimal]:
    """What the month's documents in force (or drafts) bill, per currency, as `billing status` records it."""
    return {currency: Decimal(total) for currency, total in totals_by_currency(documents).items()}


def _numbers(numbers: list[str]) -> str:
    """How many, and which (the first few: every document is in the table)."""
    shown = ", ".join(_md(n) for n in numbers[:MAX_NUMBERS_LISTED])
    more = f" and {len(numbers) - MAX_NUMBERS_LISTED} more" if len(numbers) > MAX_NUMBERS_LISTED else ""
    return f"{len(numbers)}" + (f": {shown}{more}" if numbers else "")


def summary_markdown(org: Organization, result: MonthResult, out_dir: Path | str) -> str:
    """The month's summary: what was created or left unchanged, totals per currency, unattributed cost,
    warnings, and where the files are."""
    folder = Path(out_dir).resolve() / result.month
    done = "drafts ready (nothing finalized)" if result.draft else "invoiced"
    rows = [("Documents", f"{len(result.invoices)}" + (f": {_kinds(result.invoices)}" if result.invoices else "")),
            ("Created", _numbers(result.created)),
            ("Unchanged", _numbers(result.unchanged)),
            ("Totals", _md(_amounts(_totals(result.invoices)))),
            ("Unattributed cloud cost", _md(_amounts(unattributed_by_currency(result.reconciliation)))),
            ("Files", f"{_path(folder)} ({FILES})")]
    lines = [f"# {_md(org.name)}: {result.month} {done}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if result.warnings:
        lines += ["", "## Warnings", ""] + [f"- {_md(w)}" for w in result.warnings]
    lines += ["", f"Each document: the table `{artifact_key('invoices', org.org_id, result.month)}`."]
    return "\n".join(lines) + "\n"


def failure_markdown(org: Organization, month: str, failure: str, out_dir: Path | str) -> str:
    """A month that was not invoiced: why, and that nothing was changed for it."""
    return (f"# {_md(org.name)}: {month} not invoiced\n\n{_md(failure)}\n\n"
            f"Nothing was finalized for this month; its files in {_path(Path(out_dir).resolve() / month)} "
            "are as they were.\n")


def documents_table(result: MonthResult, out_dir: Path | str) -> list[dict]:
    """A row per document of the month, in the ledger's order."""
    invoices = Path(out_dir).resolve() / result.month / "invoices"
    return [{"number": doc.number or "DRAFT", "type": doc.document_type.replace("_", " "),
             "party": doc.bill_to.get("display_name") or doc.bill_to.get("name") or doc.party_id,
             "status": doc.status, "total": str(doc.total), "currency": doc.currency,
             "pdf": str(invoices / name) if (name := pdf_name(doc)) else ""}
            for doc in result.invoices]


def publish_month(org: Organization, out_dir: Path | str, month, result: MonthResult | None = None,
                  failure: str | None = None) -> None:
    """The month's artifacts on the Prefect server, when called inside a flow run; otherwise nothing."""
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    month = str(month)
    described = f"{org.name}, {month}"
    try:
        if result is None:
            create_markdown_artifact(failure_markdown(org, month, failure or "it failed", out_dir),
                                     key=artifact_key("invoicing", org.org_id, month),
                                     description=f"{described}: not invoiced")
            return
        create_markdown_artifact(summary_markdown(org, result, out_dir),
                                 key=artifact_key("invoicing", org.org_id, month), description=described)
        create_table_artifact(documents_table(result, out_dir), key=artifact_key("invoices", org.org_id, month),
                              description=f"{described}: documents")
    except Exception as err:  # noqa: BLE001 - the month is invoiced; a missing summary must not say otherwise
        get_run_logger().warning(f"{month}: the run's artifacts were not recorded: {type(err).__name__}: {err}")
