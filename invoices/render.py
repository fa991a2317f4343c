"""Render an `InvoiceDocument` to HTML and to a PDF with WeasyPrint.

Public API (what the pipeline calls):

- `render_html(doc, locale)` -> the invoice as an HTML string;
- `render_pdf(doc, path, locale)` -> writes the PDF atomically;
- `render_statement_pdf(statement, path, locale)` -> a statement of account;
- `render_many(jobs, workers, locale)` -> many PDFs in parallel processes;
  the worker processes end with the run, even if it is killed (SIGKILL),
  and a worker that crashes fails only the invoice it was rendering.

Safety:

- Jinja2 autoescapes everything, so names and addresses from the data are
  text, never markup; undefined template variables are errors.
- WeasyPrint only ever reads files inside `invoices/templates/`
  (`TemplateOnlyFetcher`). Any other URL (http, https, ftp, data:, a file
  outside the folder, a symlink that leads out of it) stops the rendering
  with `RenderError`: fail closed, nothing is fetched.
- Amounts are never re-rounded here: every amount must already be a whole
  number of the currency's minor unit, and the lines must add up to the
  subtotal, or the document is refused.
"""
from __future__ import annotations

import calendar
import ctypes
import datetime as dt
import gc
import logging
import mimetypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Iterable
from urllib.parse import unquote, urlsplit

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_interval
from babel.numbers import format_currency, format_decimal, get_currency_name, is_currency
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context

from billing.documents import DOCUMENT_KINDS, PAGE_SIZES, DocumentLine, InvoiceDocument, StatementOfAccount
from billing.errors import BillingError
from billing.fileio import atomic_write_bytes
from billing.money import currency_quantum, format_percent
from invoices import facturx

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# Each document type has its own template (`billing.documents.DOCUMENT_KINDS`), all extending this layout.
LAYOUT_TEMPLATE = "document.html.j2"
# CSS page sizes by `InvoiceDocument.page_size`; nothing else reaches the stylesheet.
PAGE_SIZE_CSS = {"a4": "A4", "letter": "letter"}


class _QuietFontNotice(logging.Filter):
    """WeasyPrint warns on every document that HarfBuzz-Subset is missing from the system (it then subsets fonts
    with fontTools, as this project's reproducible PDFs expect): a notice for the machine's owner, not a problem
    with an invoice; said once per process, and only when the log is verbose (`billing -v`)."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "HarfBuzz-Subset" not in record.getMessage():
            return True
        if _QuietFontNotice.said or not logging.getLogger().isEnabledFor(logging.INFO):
            return False
        _QuietFontNotice.said = True
        return True


logging.getLogger("weasyprint").addFilter(_QuietFontNotice())


class RenderError(BillingError):
    """An invoice could not be rendered; the message names the invoice."""


class RefusedURL(ValueError):
    """The URL fetcher refused a URL outside the templates folder."""


# ---- the URL fetcher ---------------------------------------------------------------------

# Imported lazily: WeasyPrint loads Pango/HarfBuzz through cffi, which takes
# a moment, and `render_html` does not need it.
_fetcher_class = None


def _weasyprint():
    import weasyprint
    from weasyprint import urls

    return weasyprint, urls


def _check_template_url(url: str, root: Path) -> Path:
    """The real path of a `file:` URL inside `root`, or raise `RefusedURL`."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise RefusedURL(f"malformed URL refused: {url!r}") from exc
    if parts.scheme.lower() != "file":
        raise RefusedURL(f"only files from the invoice templates folder may be loaded; refused {url!r}")
    if parts.netloc not in ("", "localhost"):
        raise RefusedURL(f"file URL with a host refused: {url!r}")
    raw = unquote(parts.path)
    if not raw or "\x00" in raw or "\\" in raw:
        raise RefusedURL(f"malformed file URL refused: {url!r}")
    if ".." in PurePosixPath(raw).parts:
        raise RefusedURL(f"'..' in a file URL refused: {url!r}")
    real = Path(os.path.realpath(raw))  # follows every symlink
    if real == root or not real.is_relative_to(root):
        raise RefusedURL(f"file outside the invoice templates folder refused: {url!r}")
    if not real.is_file():
        raise RefusedURL(f"not a file in the invoice templates folder: {url!r}")
    return real


def make_url_fetcher(root: Path = TEMPLATES_DIR):
    """A WeasyPrint URL fetcher that serves only regular files under `root`.

    WeasyPrint 70 takes a `weasyprint.urls.URLFetcher` instance whose `fetch`
    method is overridden. `fail_on_errors=True` makes a refused URL stop the
    rendering instead of being skipped with a warning. Every URL asked for is
    recorded in `.requested`, every refused one in `.refused`.
    """
    global _fetcher_class
    if _fetcher_class is None:
        _, urls = _weasyprint()

        class TemplateOnlyFetcher(urls.URLFetcher):
            def __init__(self, root: Path):
                super().__init__(allowed_protocols=("file",), allow_redirects=False,
                                 fail_on_errors=True, timeout=1)
                self.root = Path(os.path.realpath(root))
                self.requested: list[str] = []
                self.refused: list[str] = []

            def fetch(self, url, headers=None):  # noqa: ARG002 - WeasyPrint's signature
                self.requested.append(url)
                try:
                    path = _check_template_url(url, self.root)
                except RefusedURL:
                    self.refused.append(url)
                    raise
                content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                return urls.URLFetcherResponse(
                    urls.path2url(str(path)), body=path.read_bytes(),
                    headers={"Content-Type": content_type})

        _fetcher_class = TemplateOnlyFetcher
    return _fetcher_class(root)


# ---- HTML --------------------------------------------------------------------------------


def _locale(ctx) -> str:
    return ctx["locale"]


@pass_context
def _money(ctx, amount: Decimal) -> str:
    """An amount in the invoice currency, with the currency's own decimals."""
    return format_currency(amount, ctx["doc"].currency, locale=_locale(ctx))


@pass_context
def _unit_price(ctx, amount: Decimal) -> str:
    """A unit price: at least the currency's decimals, more if the price has them (no rounding)."""
    return format_currency(amount.normalize(), ctx["doc"].currency, locale=_locale(ctx),
                           decimal_quantization=False)


@pass_context
def _quantity(ctx, value: Decimal) -> str:
    """A quantity, exactly as given (babel would otherwise round to 3 decimals)."""
    return format_decimal(value, locale=_locale(ctx), decimal_quantization=False)


@pass_context
def _percent(ctx, value: Decimal) -> str:
    """A percentage quantity: 50%, 12.5%."""
    return format_percent(value, locale=_locale(ctx))


@pass_context
def _date(ctx, value: dt.date) -> str:
    return format_date(value, format="long", locale=_locale(ctx))


@pass_context
def _short_date(ctx, value: dt.date) -> str:
    """A date in a table column: Feb 5, 2022."""
    return format_date(value, format="medium", locale=_locale(ctx))


def _build_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(money=_money, unit_price=_unit_price, quantity=_quantity, percent=_percent, date=_date,
                       short_date=_short_date)
    return env


_ENV = _build_env()


def _kind_title(doc: InvoiceDocument) -> str:
    kind = DOCUMENT_KINDS.get(doc.document_type)
    return kind.title if kind else "document"


def invoice_label(doc: InvoiceDocument) -> str:
    """How errors and logs name a document: its type and number, or what identifies a draft."""
    title = _kind_title(doc).lower()
    if doc.number and not doc.is_draft:
        return f"{title} {doc.number}"
    ref = doc.reference or doc.bill_to.id
    return f"draft {title} {ref} ({doc.bill_to.name}, {doc.period_label})"


def _check_document(doc: InvoiceDocument, locale: str) -> None:
    """Refuse what must never be printed on an invoice."""
    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise RenderError(f"{invoice_label(doc)}: unknown locale {locale!r}") from exc
    if doc.document_type not in DOCUMENT_KINDS:
        raise RenderError(f"{invoice_label(doc)}: unknown document type {doc.document_type!r}; known: "
                          f"{', '.join(DOCUMENT_KINDS)}")
    if doc.page_size not in PAGE_SIZES:
        raise RenderError(f"{invoice_label(doc)}: unknown page size {doc.page_size!r}; known: {', '.join(PAGE_SIZES)}")
    if not is_currency(doc.currency):
        raise RenderError(f"{invoice_label(doc)}: unknown currency {doc.currency!r}")
    quantum = currency_quantum(doc.currency)

    def check_amount(what: str, amount: object) -> None:
        if not isinstance(amount, Decimal) or not amount.is_finite():
            raise RenderError(f"{invoice_label(doc)}: {what} is not a finite Decimal: {amount!r}")
        if amount % quantum != 0:
            raise RenderError(f"{invoice_label(doc)}: {what} {amount} is not rounded to the "
                              f"{doc.currency} minor unit {quantum}")

    for i, line in enumerate(doc.lines, 1):
        check_amount(f"line {i} ({line.description!r}) amount", line.amount)
        for name in ("quantity", "unit_price"):
            value = getattr(line, name)
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite()):
                raise RenderError(f"{invoice_label(doc)}: line {i} {name} is not a finite Decimal: {value!r}")
        if (line.fees_part is None) != (line.cloud_part is None):
            raise RenderError(f"{invoice_label(doc)}: line {i} has only one part of its fees / cloud split")
        if line.fees_part is not None:
            check_amount(f"line {i} service fees part", line.fees_part)
            check_amount(f"line {i} cloud costs part", line.cloud_part)
            if line.fees_part + line.cloud_part != line.amount:
                raise RenderError(f"{invoice_label(doc)}: line {i} is split into {line.fees_part} + "
                                  f"{line.cloud_part}, which is not its amount {line.amount}")
    check_amount("subtotal", doc.subtotal)
    check_amount("total", doc.total)
    if doc.document_type == "statement" and doc.total != 0:
        raise RenderError(f"{invoice_label(doc)}: a statement says nothing is due, but its total is {doc.total} "
                          f"{doc.currency}")
    if doc.document_type == "credit_note" and doc.total > 0:
        raise RenderError(f"{invoice_label(doc)}: a credit note credits, but its total is {doc.total} {doc.currency}")
    if doc.funding is not None:
        check_amount("the amount a funder covers", doc.funding.covered)
    if doc.corrects is not None and doc.corrects.total is not None:
        check_amount(f"the total of {doc.corrects.number}", doc.corrects.total)
    lines_sum = sum((line.amount for line in doc.lines), Decimal(0))
    if lines_sum != doc.subtotal:
        raise RenderError(f"{invoice_label(doc)}: lines add up to {lines_sum} but the subtotal is "
                          f"{doc.subtotal} {doc.currency}")


def _details(line: DocumentLine) -> list[tuple[str, str]]:
    return [(label, value) for label, value in
            (("Hub", line.hub), ("Cluster", line.cluster), ("Component", line.component)) if value]


def _context(doc: InvoiceDocument, locale: str) -> dict:
    draft = doc.is_draft or doc.number is None
    kind = doc.kind
    if draft:
        title = (f"Draft {kind.title.lower()} {doc.reference or doc.bill_to.id} \u2014 {doc.bill_to.name} "
                 f"\u2014 {doc.period_label}")
    else:
        title = f"{kind.title} {doc.number}"
    issuer = doc.issuer
    sections = [
        {"name": name, "lines": [{"line": l, "details": _details(l)} for l in lines], "subtotal": subtotal}
        for name, lines, subtotal in doc.sections()
    ]
    return {
        "doc": doc,
        "issuer": doc.issuer,
        "bill_to": doc.bill_to,
        "locale": locale,
        "lang": locale.replace("_", "-"),
        "draft": draft,
        "draft_label": f"DRAFT \u2014 not a valid {kind.title.lower()}",
        "kind": kind,
        "heading": kind.title.upper(),
        "title": title,
        "footer_ref": title if not draft else f"Draft {kind.title.lower()} {doc.reference or doc.bill_to.id}",
        "page_size_css": PAGE_SIZE_CSS[doc.page_size],
        "period_range": format_interval(doc.period_start, doc.period_end, "yMMMd", locale=locale),
        "seller_address": issuer.fiscal_sponsor.address if issuer.fiscal_sponsor and issuer.fiscal_sponsor.address
        else issuer.address,
        "sections": sections,
        "split_total": doc.split_total(),
        "cancels_in_full": doc.corrects is not None and doc.corrects.total == -doc.total,
        "currency_name": get_currency_name(doc.currency, locale=locale),
        "has_quantities": any(l.quantity is not None for l in doc.lines),
        "has_unit_prices": any(l.unit_price is not None for l in doc.lines),
    }


def render_html(doc: InvoiceDocument, locale: str = "en_US") -> str:
    """The document as a self-contained HTML page (its CSS and logo are relative to the templates folder)."""
    _check_document(doc, locale)
    return _ENV.get_template(doc.kind.template).render(**_context(doc, locale))


# ---- statements of account -------------------------------------------------------------------

# How the aging table of a statement of account heads its columns (`billing.receivables.BUCKETS`).
BUCKET_LABELS = {"current": "Not yet due", "1-30": "1\u201330 days", "31-60": "31\u201360 days",
                 "61-90": "61\u201390 days", "90+": "Over 90 days", "credit": "Credits", "total": "Total"}


def _statement_label(doc: StatementOfAccount) -> str:
    return f"statement of account of {doc.bill_to.id} ({doc.currency}) to {doc.period_end}"


def _check_statement(doc: StatementOfAccount, locale: str) -> None:
    """Refuse a statement whose figures do not add up, or are not whole minor units of its currency."""
    label = _statement_label(doc)
    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise RenderError(f"{label}: unknown locale {locale!r}") from exc
    if not is_currency(doc.currency) or doc.page_size not in PAGE_SIZES:
        raise RenderError(f"{label}: unknown currency {doc.currency!r} or page size {doc.page_size!r}")
    quantum = currency_quantum(doc.currency)
    amounts = [doc.opening, doc.closing, doc.invoiced, doc.credited, doc.received, *(a for _, a in doc.aging)]
    amounts += [a for r in doc.rows for a in (r.charge, r.credit, r.balance) if a is not None]
    for amount in amounts:
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount % quantum != 0:
            raise RenderError(f"{label}: {amount!r} is not a whole number of {doc.currency} {quantum}")
    balance = doc.opening
    for row in doc.rows:
        balance += (row.charge or 0) - (row.credit or 0)
        if balance != row.balance:
            raise RenderError(f"{label}: the balance after {row.reference} ({row.date}) is {row.balance}, but the "
                              f"rows add up to {balance}")
    if balance != doc.closing or doc.opening + doc.invoiced - doc.credited - doc.received != doc.closing:
        raise RenderError(f"{label}: opening {doc.opening} + invoiced {doc.invoiced} - credited {doc.credited} - "
                          f"received {doc.received} is not the closing balance {doc.closing}")


def render_statement_html(doc: StatementOfAccount, locale: str = "en_US") -> str:
    """A statement of account as a self-contained HTML page (template statement_of_account.html.j2)."""
    _check_statement(doc, locale)
    title = f"Statement of account \u2014 {doc.bill_to.name} \u2014 {format_date(doc.issue_date, 'long', locale=locale)}"
    overdue = sum((a for b, a in doc.aging if b not in ("current", "credit", "total")), Decimal(0))
    return _ENV.get_template(doc.template).render(
        doc=doc, issuer=doc.issuer, bill_to=doc.bill_to, locale=locale, lang=locale.replace("_", "-"), title=title,
        footer_ref=f"Statement of account, {doc.bill_to.name}", page_size_css=PAGE_SIZE_CSS[doc.page_size],
        period_range=format_interval(doc.period_start, doc.period_end, "yMMMd", locale=locale),
        seller_address=doc.issuer.fiscal_sponsor.address if doc.issuer.fiscal_sponsor and
        doc.issuer.fiscal_sponsor.address else doc.issuer.address,
        currency_name=get_currency_name(doc.currency, locale=locale), bucket_labels=BUCKET_LABELS, overdue=overdue,
        credit=dict(doc.aging).get("credit", Decimal(0)))


def render_statement_pdf(doc: StatementOfAccount, path: Path, locale: str = "en_US") -> None:
    """Render a statement of account to a PDF at `path`, atomically, through the template-only fetcher."""
    html = render_statement_html(doc, locale)
    try:
        data = html_to_pdf_bytes(html, source_date=doc.issue_date)
    except RenderError as exc:
        raise RenderError(f"{_statement_label(doc)}: {exc}") from exc
    atomic_write_bytes(Path(path), data)


# ---- PDF ---------------------------------------------------------------------------------


# Serializes WeasyPrint calls in one process (they hold the GIL anyway) so
# the SOURCE_DATE_EPOCH swap below is never seen by a concurrent render.
_RENDER_LOCK = threading.Lock()


@contextmanager
def _font_timestamp(source_date: dt.date | None):
    """Pin the timestamp that fontTools writes into every embedded font subset.

    Without libharfbuzz-subset, WeasyPrint subsets fonts with fontTools,
    which stamps each subset's `head.modified` with the current time, so two
    renders a second apart differ in bytes. fontTools honours
    SOURCE_DATE_EPOCH (reproducible-builds.org); set it to the invoice's
    issue date for the duration of the render, then restore it.
    """
    with _RENDER_LOCK:
        if source_date is None:
            yield
            return
        saved = os.environ.get("SOURCE_DATE_EPOCH")
        os.environ["SOURCE_DATE_EPOCH"] = str(calendar.timegm(source_date.timetuple()))
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("SOURCE_DATE_EPOCH", None)
            else:
                os.environ["SOURCE_DATE_EPOCH"] = saved


def html_to_pdf_bytes(html: str, fetcher=None, source_date: dt.date | None = None,
                      pdf_variant: str | None = None) -> bytes:
    """Lay out `html` (base URL: the templates folder) with the template-only fetcher.

    A refused URL raises `RenderError` naming it; nothing outside the
    templates folder is ever read. `source_date` pins the embedded fonts'
    timestamps so the same HTML gives the same bytes. `pdf_variant`: one of
    WeasyPrint's, e.g. "pdf/a-3b" for a Factur-X invoice.
    """
    weasyprint, urls = _weasyprint()
    if fetcher is None:
        fetcher = make_url_fetcher()
    try:
        with _font_timestamp(source_date):
            document = weasyprint.HTML(string=html, base_url=str(TEMPLATES_DIR) + os.sep, url_fetcher=fetcher)
            return document.write_pdf(**({"pdf_variant": pdf_variant} if pdf_variant else {}))
    except urls.FatalURLFetchingError as exc:  # a BaseException in WeasyPrint: turn it into an error
        cause = exc.__cause__ or exc
        raise RenderError(f"refused to load a resource while rendering: {cause}") from exc


def render_pdf(doc: InvoiceDocument, path: Path, locale: str = "en_US") -> None:
    """Render `doc` to a PDF at `path`, atomically (a crash leaves the old file or the new one).

    A party with `einvoice: factur-x` gets its issued invoices and credit
    notes as Factur-X: PDF/A-3b with the EN 16931 XML inside (`invoices.facturx`).
    """
    html = render_html(doc, locale)
    einvoice = facturx.applies(doc)
    try:
        data = html_to_pdf_bytes(html, source_date=doc.issue_date,
                                 pdf_variant=facturx.PDF_VARIANT if einvoice else None)
        if einvoice:
            data = facturx.embed(doc, data, lang=locale.replace("_", "-"))
    except (RenderError, facturx.FacturXError) as exc:
        raise RenderError(f"{invoice_label(doc)}: {exc}") from exc
    atomic_write_bytes(Path(path), data)


def _render_job(doc: InvoiceDocument, path: Path, locale: str) -> None:
    render_pdf(doc, path, locale)


# ---- worker processes --------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1            # from <linux/prctl.h>
PARENT_POLL_SECONDS = 0.5


def _watch_parent(parent_pid: int, interval: float = PARENT_POLL_SECONDS) -> None:
    """Exit this process as soon as its parent is no longer `parent_pid` (it died; we were re-parented)."""
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when `parent_pid`, its parent, dies, even by SIGKILL.

    Linux: the kernel sends SIGKILL on the parent's death (PR_SET_PDEATHSIG).
    Everywhere: a daemon thread polls getppid() as a fallback. If the parent
    died before either was in place, exit now. (PR_SET_PDEATHSIG fires when
    the parent *thread* that started this process ends: `render_many` keeps
    the thread that starts the workers alive until they are shut down.)
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no usable libc: the thread below still covers it
            pass
    if os.getppid() != parent_pid:   # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="exit-with-parent", daemon=True).start()


def _start_worker(parent_pid: int) -> None:
    """A render worker's start: end with its parent, load WeasyPrint, then freeze the heap of imported modules
    so that the garbage collector does not walk it again for every layout."""
    die_with_parent(parent_pid)
    _weasyprint()
    gc.freeze()


class WorkerDied(RenderError):
    """The process rendering an invoice ended abruptly (crashed, or was killed)."""


def _render_in_pool(jobs: list[tuple[InvoiceDocument, Path]], workers: int, locale: str) -> list:
    """Render `jobs` in `workers` processes; (doc, path, exception) for each that failed.

    A worker that dies breaks the whole pool, failing every unfinished job
    with BrokenProcessPool. Those are rendered again one at a time in a
    fresh one-worker pool: there the job that was running when the worker
    died is the first unfinished one, so the crash is blamed on exactly the
    invoice that caused it, and the others are retried.
    """
    failures, broken = [], []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                             initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(_render_job, doc, path, locale) for doc, path in jobs]
        for (doc, path), future in zip(jobs, futures):
            try:
                future.result()
            except BrokenProcessPool:
                broken.append((doc, path))
            except Exception as exc:
                failures.append((doc, path, exc))
    if broken and workers == 1:
        doc, path = broken.pop(0)
        failures.append((doc, path, WorkerDied("the process rendering it died (crashed or was killed)")))
    if broken:
        failures += _render_in_pool(broken, 1, locale)
    return failures


def render_many(jobs: Iterable[tuple[InvoiceDocument, Path]], workers: int | None = None,
                locale: str = "en_US") -> None:
    """Render many invoices, in parallel processes when there is more than one.

    Every job is attempted; if any failed, one `RenderError` names each
    failed invoice and its path (the first failure is the `__cause__`).
    Workers are started with "spawn", so they are safe to start from a
    process that runs threads (Prefect, a web server); they exit when this
    process dies, and a crashing worker fails only its own invoice.
    """
    jobs = [(doc, Path(path)) for doc, path in jobs]
    if not jobs:
        return
    targets: dict[Path, str] = {}
    for doc, path in jobs:
        key = Path(os.path.abspath(path))
        if key in targets:
            raise ValueError(f"two invoices would be written to {path}: {targets[key]} and {invoice_label(doc)}")
        targets[key] = invoice_label(doc)
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = min(workers, len(jobs))

    failures: list[tuple[InvoiceDocument, Path, BaseException]] = []
    if workers == 1:
        # In this process, after a month's ingest and pricing have filled the heap: freeze what is there, so the
        # garbage collector does not walk it again for every layout WeasyPrint builds (about 1.4x faster here).
        gc.freeze()
        try:
            for doc, path in jobs:
                try:
                    _render_job(doc, path, locale)
                except Exception as exc:
                    failures.append((doc, path, exc))
        finally:
            gc.unfreeze()
    else:
        failures = _render_in_pool(jobs, workers, locale)
    if failures:
        order = {path: i for i, (_, path) in enumerate(jobs)}
        failures.sort(key=lambda failure: order[failure[1]])
        lines = [f"{invoice_label(doc)} -> {path}: {type(exc).__name__}: {exc}" for doc, path, exc in failures]
        raise RenderError(f"{len(failures)} of {len(jobs)} invoice(s) failed to render:\n  "
                          + "\n  ".join(lines)) from failures[0][2]
