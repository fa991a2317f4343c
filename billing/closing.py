"""Closing a month, and correcting it: the ledger transactions and the documents they produce together.

Every operation that takes numbers (finalizing a month, amending it,
voiding an invoice) renders its PDFs and the month's CSVs to a staging
folder inside the ledger transaction that holds the numbers; only when all
of them exist is the transaction committed and the files moved into place.
If anything fails, nothing is committed and no number is taken.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from billing import ledger as ledger_mod
from billing.attribution import AttributedCost, ReconciliationRow
from billing.config import Organization
from billing.documents import document_for
from billing.errors import BillingError, FinalizedInvoiceChanged
from billing.evidence import MonthEvidence, Restatement, compare, evidence_of
from billing.fileio import StagedFiles, mirror_outputs, output_exists, remove_output
from billing.ingest import IngestedMonth
from billing.ledger import Correction, Evidence, Invoice, MonthRecord
from billing.ledger.record import month_evidence
from billing.money import ZERO
from billing.months import Month
from billing.outputs import write_attribution_csv, write_invoices_csv, write_reconciliation_csv
from billing.pricing import one_off_charges, price_month, state_before
from billing.usage import MonthUsage
from invoices import RenderError, render_many

RESTATED = {"attribution.csv": "attribution.restated.csv", "reconciliation.csv": "reconciliation.restated.csv"}


@dataclass(frozen=True)
class CloseOptions:
    """What closing needs of the run's options (see `billing.pipeline.RunOptions`)."""

    out_dir: Path
    ledger_url: str | None
    workers: int | None
    draft: bool
    issue_date: dt.date
    actor: str | None
    out_url: str | None = None     # the object store the outputs are copied to (see billing.storage)

    def activate(self) -> None:
        """Mirror the output folder to its object store in this process (a Dask worker too)."""
        if self.out_url:
            mirror_outputs(self.out_dir, self.out_url)


@dataclass
class Closed:
    """What closing (or correcting) a month did."""

    record: MonthRecord | Correction
    restatement: Restatement | None = None
    warnings: list[str] = field(default_factory=list)


def open_ledger(org: Organization, opts: CloseOptions):
    return ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))


def pdf_name(doc: Invoice) -> str | None:
    """The PDF of a document: its number; a draft's party; none for a statement the organization does not send."""
    if doc.number:
        return f"{doc.number}.pdf"
    if doc.status == "draft":
        return f"DRAFT-{doc.party_kind}-{doc.party_id}.pdf"
    return None


def _inputs(ingested: IngestedMonth) -> list[dict]:
    return [{"source": s.source, "clusters": list(s.clusters), "paths": list(s.paths), "fingerprint": s.fingerprint,
             "rows": s.rows, "estimated": s.estimated} for s in ingested.sources]


def _price(org: Organization, engine, month: Month, ingested: IngestedMonth, attributed: list[AttributedCost],
           usage: MonthUsage, opts: CloseOptions, *, pending: bool,
           earlier: list[Invoice] = ()) -> tuple[list[Invoice], list[str]]:
    """The month's documents as the data says today, with any adjustments carried to them.

    What earlier months used up (awards, prepaid balances, the year's
    charges) comes from the ledger's finalized documents, plus `earlier`:
    the documents of months planned before this one but not yet committed.
    """
    state = state_before(list(ledger_mod.all_finalized(engine)) + list(earlier), month)
    charges = price_month(org, month, attributed, usage, state)
    carried = ledger_mod.carried_adjustments(engine, month, pending=pending)
    one_offs = one_off_charges(org, month, ledger_mod.recorded_one_offs(engine, str(month)))
    invoices = ledger_mod.build_invoices(org, month, charges, ingested.fingerprint, issue_date=opts.issue_date,
                                         carried=carried, extra=one_offs)
    used = {dict(l.details).get("adjustment_id") for inv in invoices for l in inv.lines if l.kind == "adjustment"}
    warnings = [f"{month}: the correction of {adj.corrects} ({adj.party_kind} {adj.party_id}) waits for a later "
                "invoice: it would make this one negative" for adj in carried if str(adj.id) not in used]
    return invoices, warnings


# ---- finalizing: plan the numbers, render, then commit what was planned -----------------------


@dataclass
class PreparedMonth:
    """A month's data, attributed, ready to be priced and closed (computed in parallel for a backfill)."""

    month: Month
    ingested: IngestedMonth
    attributed: list[AttributedCost]
    reconciliation: list[ReconciliationRow]
    usage: MonthUsage


@dataclass
class MonthPlan:
    """What closing a month will record: every document with the number it will take, before anything is
    committed. Its PDFs are rendered from it (in parallel processes or on other machines); the commit then
    checks that the ledger gives the same numbers, or nothing is committed."""

    month: Month
    invoices: list[Invoice]               # the month's documents as priced from the data (no numbers)
    record: MonthRecord                   # as the ledger will record them: numbers, links, statuses
    inputs: list[dict]
    evidence: MonthEvidence
    restatement: Restatement | None
    warnings: list[str]

    def to_render(self, opts: CloseOptions) -> list[tuple[Invoice, Path]]:
        """The documents to render and where their PDFs go: drafts, new documents, and any finalized
        document whose PDF is missing (a crash after an earlier commit)."""
        folder = opts.out_dir / str(self.month) / "invoices"
        new = set(self.record.created)
        return [(doc, folder / name) for doc in self.record.invoices if (name := pdf_name(doc)) is not None
                and (doc.status == "draft" or doc.number in new or not output_exists(folder / name))]


class PlanOutdated(BillingError):
    """The ledger changed between planning a month and committing it (another run took numbers)."""


def plan_months(org: Organization, months: list[tuple[PreparedMonth, CloseOptions]]) -> list[MonthPlan | BillingError]:
    """Plan the months in order, as one would finalize them one after the other (numbers follow time)."""
    engine = open_ledger(org, months[0][1])
    try:
        priced, earlier = [], []
        for p, opts in months:
            invoices, warnings = _price(org, engine, p.month, p.ingested, p.attributed, p.usage, opts, pending=True,
                                        earlier=earlier)
            state = ledger_mod.finalized_state(engine, str(p.month))
            if not state:
                earlier += [dataclasses.replace(i, status="finalized") for i in invoices]
            evidence = evidence_of(p.ingested, p.attributed, p.reconciliation)
            try:
                restatement = check_restatement(engine, p.month, invoices, evidence, opts, state)
            except FinalizedInvoiceChanged as err:
                priced.append((p, err))
                continue
            priced.append((p, (invoices, warnings, evidence, restatement, opts)))
        items = [(p.month, v[0], _inputs(p.ingested), Evidence(v[2].digest, v[2].to_json()), not v[4].draft)
                 for p, v in priced if not isinstance(v, BillingError)]
        records = iter(ledger_mod.plan_recording(engine, org, items, actor=months[0][1].actor))
    finally:
        engine.dispose()
    plans: list[MonthPlan | BillingError] = []
    for p, v in priced:
        if isinstance(v, BillingError):
            plans.append(v)
            continue
        record = next(records)
        if isinstance(record, BillingError):
            plans.append(record)
            continue
        invoices, warnings, evidence, restatement, _ = v
        plans.append(MonthPlan(p.month, invoices, record, _inputs(p.ingested), evidence, restatement, warnings))
    return plans


def render_plan(plan: MonthPlan, opts: CloseOptions, workers: int | None = None) -> StagedFiles:
    """The plan's PDFs, rendered into a staging folder (nothing is visible until the commit publishes them)."""
    opts.activate()
    staged = StagedFiles(opts.out_dir, str(plan.month))
    try:
        render_many([(document_for(doc), staged.path(final)) for doc, final in plan.to_render(opts)],
                    workers=opts.workers if workers is None else workers)
    except BaseException as err:
        staged.discard()
        if isinstance(err, RenderError):
            raise RenderError(f"{plan.month}: the documents could not be produced, so nothing was finalized and "
                              f"no number was taken: {err}") from err
        raise
    return staged


def _same_documents(planned: list[Invoice], recorded: list[Invoice]) -> bool:
    key = lambda d: (d.number, d.status, d.document_type, d.party_kind, d.party_id, d.content_hash,  # noqa: E731
                     d.issue_date, d.corrects, json_text(d.links), d.lines)
    return [key(d) for d in planned] == [key(d) for d in recorded]


def json_text(value) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def finalize_plan(org: Organization, plan: MonthPlan, staged: StagedFiles, opts: CloseOptions) -> Closed:
    """Record the planned month for real; commit only if the ledger gives every document the number and
    content it was rendered with; then move its files into place. A rerun of a finalized month that records
    nothing new and whose files already say the same is left as it is (`_already_recorded`)."""
    if _already_recorded(plan, staged, opts):
        staged.discard()
        return Closed(plan.record, plan.restatement, plan.warnings)
    engine = open_ledger(org, opts)
    try:
        try:
            with ledger_mod.recording_month(engine, org, plan.month, plan.invoices, finalize=not opts.draft,
                                            inputs=plan.inputs, actor=opts.actor,
                                            evidence=Evidence(plan.evidence.digest, plan.evidence.to_json())) as record:
                if not _same_documents(plan.record.invoices, record.invoices):
                    raise PlanOutdated(f"{plan.month}: the ledger changed while its documents were rendered "
                                       "(another run took numbers); nothing was committed")
                write_invoices_csv(staged.path(opts.out_dir / str(plan.month) / "invoices.csv"), record.invoices,
                                   _pdf_names(record.invoices, opts, plan.month))
                if record.evidence is not None:
                    stage_evidence(staged, plan.month, MonthEvidence.from_json(record.evidence.body), opts)
                elif not any(inv.status != "draft" for inv in record.invoices):
                    stage_evidence(staged, plan.month, plan.evidence, opts)
                # else: finalized by an earlier version from data that has since changed: keep its files
            staged.publish()
        finally:
            staged.discard()
    finally:
        engine.dispose()
    if not opts.draft:
        for stale in (opts.out_dir / str(plan.month) / "invoices").glob("DRAFT-*.pdf"):
            remove_output(stale)
    return Closed(record, plan.restatement, plan.warnings)


def _already_recorded(plan: MonthPlan, staged: StagedFiles, opts: CloseOptions) -> bool:
    """Whether committing the plan would change nothing: a finalized month whose data has not changed, no new
    document, no PDF to render, and its supporting files in place with the same invoices.csv."""
    record, folder = plan.record, opts.out_dir / str(plan.month)
    if opts.draft or record.created or plan.restatement is not None or record.evidence is None \
            or any(doc.status == "draft" for doc in record.invoices) or plan.to_render(opts):
        return False
    if not all(output_exists(folder / name) for name in ("invoices.csv", "attribution.csv", "reconciliation.csv")):
        return False
    csv = staged.path(folder / "invoices.csv")
    write_invoices_csv(csv, record.invoices, _pdf_names(record.invoices, opts, plan.month))
    return csv.read_bytes() == (folder / "invoices.csv").read_bytes()


# Attempts at planning, rendering and committing a month when other runs keep taking numbers meanwhile.
PLAN_ATTEMPTS = 3


def close_month(org: Organization, month: Month, ingested: IngestedMonth, attributed: list[AttributedCost],
                reconciliation: list[ReconciliationRow], usage: MonthUsage, opts: CloseOptions) -> Closed:
    """Price the month, then finalize it (or keep drafts) with every document produced before the commit.

    The numbers are planned, the PDFs rendered with them, and the commit
    checks the ledger still gives those numbers (else it plans again). A
    month already finalized keeps its documents and supporting files; if its
    data changed since, the new figures go beside them (`*.restated.csv`)
    and, if any document would change, the run stops with the changes.
    """
    prepared = PreparedMonth(month, ingested, attributed, reconciliation, usage)
    for attempt in range(PLAN_ATTEMPTS):
        [plan] = plan_months(org, [(prepared, opts)])
        if isinstance(plan, BillingError):
            raise plan
        staged = render_plan(plan, opts)
        try:
            return finalize_plan(org, plan, staged, opts)
        except PlanOutdated:
            if attempt == PLAN_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _pdf_names(documents: list[Invoice], opts: CloseOptions, month) -> dict:
    folder = opts.out_dir / str(month) / "invoices"
    return {doc.number or (doc.party_kind, doc.party_id): str((folder / name).relative_to(opts.out_dir))
            for doc in documents if (name := pdf_name(doc)) is not None}


def check_restatement(engine, month: Month, invoices: list[Invoice], evidence: MonthEvidence,
                      opts: CloseOptions, state: dict | None = None) -> Restatement | None:
    """For a finalized month: how today's data differs from the data it was invoiced from.

    New figures are written beside the finalized month's files (never over
    them); if any document would change, the run stops here with the changes.
    """
    if state is None:   # the caller may have read it already (`ledger_mod.finalized_state`)
        state = ledger_mod.finalized_state(engine, str(month))
    if not state:
        return None
    stored = month_evidence(engine, str(month))
    voided = {party for party, e in state.items() if e.voided}
    then = {party: (e.number or "-", e.currency, sum((l.amount_exact for l in e.lines), ZERO))
            for party, e in state.items() if party not in voided}
    restatement = compare(str(month), MonthEvidence.from_json(stored.body) if stored else None, evidence, then,
                          [i for i in invoices if (i.party_kind, i.party_id) not in voided],
                          ledger_mod.state_changes(state, invoices))
    folder = opts.out_dir / str(month)
    if restatement.data_changed:
        write_attribution_csv(folder / RESTATED["attribution.csv"], evidence.attribution)
        write_reconciliation_csv(folder / RESTATED["reconciliation.csv"], evidence.reconciliation)
    else:
        remove_restated(folder)
    if restatement.invoice_changes:
        raise FinalizedInvoiceChanged(str(month), restatement.invoice_changes, restatement.describe())
    return restatement if restatement.data_changed else None


def remove_restated(folder: Path) -> None:
    for name in RESTATED.values():
        if (folder / name).exists():
            remove_output(folder / name)


# ---- producing the documents ------------------------------------------------------------------


def _produce(staged: StagedFiles, month: Month | str, documents: list[Invoice], opts: CloseOptions) -> None:
    """Every document of the month not yet rendered (drafts always) and invoices.csv, into the staging folder."""
    try:
        stage_documents(staged, month, documents, opts)
    except RenderError as err:
        raise RenderError(f"{month}: the documents could not be produced, so nothing was finalized and no number "
                          f"was taken: {err}") from err


def stage_documents(staged: StagedFiles, month: Month | str, documents: list[Invoice], opts: CloseOptions) -> None:
    folder = opts.out_dir / str(month)
    jobs, names = [], {}
    for doc in documents:
        name = pdf_name(doc)
        if name is None:
            continue
        final = folder / "invoices" / name
        names[doc.number or (doc.party_kind, doc.party_id)] = str(final.relative_to(opts.out_dir))
        if doc.status == "draft" or not final.exists():
            jobs.append((document_for(doc), staged.path(final)))
    render_many(jobs, workers=opts.workers)
    write_invoices_csv(staged.path(folder / "invoices.csv"), documents, names)


def stage_evidence(staged: StagedFiles, month: Month | str, evidence: MonthEvidence, opts: CloseOptions) -> None:
    folder = opts.out_dir / str(month)
    write_attribution_csv(staged.path(folder / "attribution.csv"), evidence.attribution)
    write_reconciliation_csv(staged.path(folder / "reconciliation.csv"), evidence.reconciliation)


# ---- correcting -------------------------------------------------------------------------------


def amend_month(org: Organization, month: Month, ingested: IngestedMonth, attributed: list[AttributedCost],
                reconciliation: list[ReconciliationRow], usage: MonthUsage, opts: CloseOptions, *, reason: str,
                policy: str) -> Closed:
    """Correct a finalized month to what its data says today (see `billing.ledger.corrections`)."""
    engine = open_ledger(org, opts)
    try:
        invoices, warnings = _price(org, engine, month, ingested, attributed, usage, opts, pending=False)
        evidence = evidence_of(ingested, attributed, reconciliation)
        staged = StagedFiles(opts.out_dir, str(month))
        try:
            with ledger_mod.amending_month(engine, org, month, invoices, policy=policy, reason=reason,
                                           issue_date=opts.issue_date, actor=opts.actor,
                                           evidence=Evidence(evidence.digest, evidence.to_json()),
                                           fingerprint=ingested.fingerprint) as correction:
                if correction.changes:
                    _produce(staged, month, correction.invoices, opts)
                    stage_evidence(staged, month, evidence, opts)
            staged.publish()
        finally:
            staged.discard()
    finally:
        engine.dispose()
    if correction.changes:
        remove_restated(opts.out_dir / str(month))
    return Closed(correction, None, warnings)


def void_document(org: Organization, number: str, opts: CloseOptions, *, reason: str) -> Correction:
    """Cancel an unpaid invoice by a full credit note, rendered before the commit."""
    engine = open_ledger(org, opts)
    try:
        staged = StagedFiles(opts.out_dir, "void")
        try:
            with ledger_mod.voiding(engine, org, number, reason=reason, issue_date=opts.issue_date,
                                    actor=opts.actor) as correction:
                _produce(staged, correction.month, correction.invoices, opts)
            staged.publish()
        finally:
            staged.discard()
    finally:
        engine.dispose()
    return correction
