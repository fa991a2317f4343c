"""Telling people how a monthly run went, as `notifications:` in the configuration says.

By e-mail (through `smtp:`) and/or a Slack-compatible webhook: on a failed
month, on an incomplete one (a cost source could not deliver), and with the
summary of a month or a backfill on success. The CLI (`billing run`,
`backfill`) and the Prefect flows call this module; it builds the messages
and sends them.

Sending never fails a billing run: a message that cannot be delivered
becomes a warning (stderr or the log) and the run's exit code stays what it
was. The SMTP login and the webhook URL come from the environment variables
the configuration names; neither appears in a message, a warning or a log.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence


from billing import mail
from billing.config import Organization
from billing.errors import BillingError, SourceError
from billing.money import ZERO, money_with_code as money

if TYPE_CHECKING:
    from billing.pipeline import MonthResult

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT = 10                # seconds per attempt
WEBHOOK_RETRY_DELAYS = (2.0, 10.0)  # before the second and third attempt, after a 429, a 5xx or no connection
MAX_RETRY_AFTER = 60.0              # the longest Retry-After honoured
MAX_DETAIL_LINES = 60               # documents and warnings listed in one e-mail
MAX_CHAT_LINES = 25                 # lines posted to the webhook
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class NotificationError(BillingError):
    """A notification could not be delivered on one channel; one line, without the secret."""


@dataclass(frozen=True)
class Notice:
    """One message: the event it reports, a subject, what every channel says, and what only e-mail lists."""

    event: str                     # failure, incomplete or success
    subject: str
    lines: tuple[str, ...]
    details: tuple[str, ...] = ()  # the e-mail only: each document, each warning

    def email_body(self, footer: str) -> str:
        return "\n".join((*self.lines, *([""] + list(self.details) if self.details else []), "", footer)) + "\n"

    def chat_text(self) -> str:
        """Slack's text: the subject in bold, then the lines, with &, < and > escaped as Slack requires."""
        lines = list(self.lines)
        if len(lines) > MAX_CHAT_LINES:
            lines = lines[:MAX_CHAT_LINES] + [f"... {len(self.lines) - MAX_CHAT_LINES} more line(s) in the e-mail "
                                              "and the run's log"]
        text = "\n".join([f"*{self.subject}*", *lines])
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---- the messages ------------------------------------------------------------------------------


def totals_by_currency(documents) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for doc in documents:
        totals[doc.currency] += doc.total
    return dict(sorted(totals.items()))


def unattributed_by_currency(reconciliation) -> dict[str, Decimal]:
    amounts: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for row in reconciliation:
        amounts[row.currency] += row.unattributed
    return {c: a for c, a in sorted(amounts.items()) if a}


def _amounts(amounts: dict[str, Decimal]) -> str:
    return ", ".join(money(a, c) for c, a in amounts.items()) or "nothing"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def month_summary(result: MonthResult, folder: Path) -> Notice:
    """The success message of one month: documents, totals per currency, unattributed cost, warnings, files."""
    docs, drafts = result.invoices, result.draft
    totals, unattributed = totals_by_currency(docs), unattributed_by_currency(result.reconciliation)
    done = "drafts ready (nothing finalized)" if drafts else "invoiced"
    subject = f"{result.month} {done}: {_count(len(docs), 'document')}, {_amounts(totals)}"
    kinds = defaultdict(int)
    for doc in docs:
        kinds[doc.document_type] += 1
    lines = [f"{result.month} {done}: {_count(len(docs), 'draft' if drafts else 'document')} "
             f"({', '.join(_count(n, k) for k, n in sorted(kinds.items())) or 'none'}); "
             f"{len(result.created)} new, {len(result.unchanged)} unchanged.",
             f"Totals of the month's documents: {_amounts(totals)}.",
             f"Unattributed cloud cost: {_amounts(unattributed)}{' (see attribution.csv)' if unattributed else ''}."]
    lines += [f"Warning: {w}" for w in result.warnings]
    lines.append(f"Files: {folder} (invoices/, invoices.csv, attribution.csv, reconciliation.csv)")
    details = ["Documents:"] + [
        f"  {doc.number or 'DRAFT'}  {doc.document_type}  {_party_name(doc)}  {money(doc.total, doc.currency)}"
        for doc in docs]
    return Notice("success", subject, tuple(lines), _capped(details))


def backfill_summary(first: str, last: str, results: Sequence[MonthResult], failures: Sequence[str],
                     out_dir: Path, stopped_at: str | None = None) -> Notice:
    """One message for a backfill: each month invoiced, each month not, and the totals of them all."""
    invoiced = len(results)
    tried = invoiced + len(failures)
    outcome = f"{invoiced} of {tried} month(s) invoiced"
    if stopped_at:
        outcome += f"; stopped at {stopped_at}, later months were not run"
    subject = f"Backfill {first} to {last}: {outcome}"
    lines = [f"Backfill {first} to {last}: {outcome}."]
    for r in results:
        lines.append(f"  {r.month}{' (drafts)' if r.draft else ''}: {_count(len(r.invoices), 'document')}, "
                     f"{len(r.created)} new; {_amounts(totals_by_currency(r.invoices))}")
    if failures:
        lines.append("Not invoiced:")
        lines += [f"  - {f}" for f in failures]
    all_docs = [doc for r in results for doc in r.invoices]
    lines.append(f"Totals of these months' documents: {_amounts(totals_by_currency(all_docs))}.")
    warnings = [w for r in results for w in r.warnings]
    if warnings:
        lines.append(f"{_count(len(warnings), 'warning')}, listed in the e-mail and the run's output.")
    lines.append(f"Files: {out_dir} (one folder per month)")
    details = _capped(["Warnings:"] + [f"  - {w}" for w in warnings]) if warnings else ()
    return Notice("success", subject, tuple(lines), details)


def approval_request(review: MonthResult, folder: Path, flow_run: str, hours: float) -> Notice:
    """The drafts of a month waiting for a person's approval, and how to give it."""
    summary = month_summary(review, folder)
    drafts = [d for d in review.invoices if d.status == "draft"]
    subject = (f"{review.month} waiting for approval: {_count(len(drafts), 'draft')}, "
               f"{_amounts(totals_by_currency(drafts))}")
    lines = [f"{review.month} is priced and its drafts are ready for review; nothing is finalized or sent until "
             f"someone approves it, within {hours:g} hours.",
             f"Approve or reject it by resuming the paused flow run {flow_run} (in the Prefect UI: approve, and a "
             "reason), or from Python: "
             "prefect.flow_runs.resume_flow_run(ID, run_input={'approve': True, 'reason': '...'})."]
    return Notice("approval", subject, tuple(lines + list(summary.lines[1:])), summary.details)


def approval_refused(month: str, reason: str, who: str | None, *, expired: bool = False) -> Notice:
    """A month that was not approved (rejected, or no answer in time): nothing finalized, the drafts kept."""
    if expired:
        return Notice("approval", f"{month} was not approved in time: nothing finalized", (reason,))
    by = f" by {who}" if who else ""
    return Notice("approval", f"{month} rejected{by}: nothing finalized",
                  (f"{month} was rejected{by}: {reason}", "Nothing was finalized or sent; the drafts are kept. "
                   "Run the month again when it is ready for another review."))


def approved_summary(result: MonthResult, folder: Path, who: str | None, reason: str, sent) -> Notice:
    """The month's summary once approved and finalized, with what sending its documents did."""
    summary = month_summary(result, folder)
    by = f" by {who}" if who else ""
    lines = [f"Approved{by}" + (f": {reason}" if reason else "."), *summary.lines]
    if sent is None:
        lines.append("The documents were not e-mailed: the configuration has no smtp block (billing send).")
    else:
        lines.append(f"Sending: {sent.summary()}.")
        lines += [f"Not sent: {o.number}: {o.text}" for o in sent.outcomes if o.result == "failed"]
    failed = sent is not None and sent.failed
    subject = f"{summary.subject}; approved{by}" + (", some documents NOT sent" if failed else "")
    return Notice("failure" if failed else "success", subject, tuple(lines), summary.details)


def failure_notice(month: str, why: str, *, incomplete: bool = False) -> Notice:
    if incomplete:
        return Notice("incomplete", f"{month} is incomplete: nothing finalized, run it again later", (why,))
    return Notice("failure", f"{month} failed", (why,))


def describe_failure(month, err: BaseException) -> tuple[bool, str]:
    """(incomplete?, what to tell people) for an exception that stopped a month."""
    from billing.pipeline import MONTH_FAILURES, month_failure   # late: the pipeline is above this module

    if isinstance(err, MONTH_FAILURES):
        return isinstance(err, SourceError), month_failure(month, err)
    if isinstance(err, BillingError):
        return False, f"{month} could not be invoiced: {err}"
    return False, f"{month} could not be invoiced: internal error: {type(err).__name__}: {err}"


def _party_name(doc) -> str:
    return doc.bill_to.get("display_name") or doc.bill_to.get("name") or doc.party_id


def _capped(lines: list[str]) -> tuple[str, ...]:
    if len(lines) <= MAX_DETAIL_LINES:
        return tuple(lines)
    return (*lines[:MAX_DETAIL_LINES], f"  ... and {len(lines) - MAX_DETAIL_LINES} more (see the run's files)")


# ---- sending -------------------------------------------------------------------------------------


def post_webhook(url_env: str, text: str) -> None:
    """POST Slack-compatible JSON {"text": ...}; retries a 429, a 5xx or a refused connection twice."""
    where = f"the webhook in ${url_env}"
    url = os.environ.get(url_env)
    if not url:
        raise NotificationError(f"{where}: the environment variable is not set (or empty)")
    parts = urllib.parse.urlsplit(url)
    if not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)) or not parts.netloc:
        raise NotificationError(f"{where}: not an https:// URL (the value is not shown: it is a secret)")
    body = json.dumps({"text": text}).encode()
    attempt = 0
    while True:
        attempt += 1
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
                response.read(1000)
            return
        except urllib.error.HTTPError as err:
            retry, wait = err.code == 429 or err.code >= 500, _retry_after(err.headers.get("Retry-After"))
            why = f"answered {err.code} {_short(err.read(300))}".rstrip()
        except (TimeoutError, socket.timeout):
            retry, wait = False, None   # it may have arrived: posting again could say it twice
            why = f"did not answer within {WEBHOOK_TIMEOUT} s"
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            retry, wait = True, None
            why = f"could not be reached ({getattr(reason, 'strerror', None) or reason})"
        if not retry or attempt > len(WEBHOOK_RETRY_DELAYS):
            tries = f" ({attempt} attempts)" if attempt > 1 else ""
            raise NotificationError(_without(f"{where} {why}{tries}", url))
        time.sleep(wait if wait is not None else WEBHOOK_RETRY_DELAYS[attempt - 1])


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value else None
    except ValueError:
        return None   # an HTTP date: the usual delay is close enough


def _short(body: bytes) -> str:
    return " ".join(body.decode("utf-8", "replace").split())[:200]


def _without(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


class Notifier:
    """Sends the organization's notifications; a no-op without `notifications:` (or with enabled=False)."""

    def __init__(self, org: Organization, out_dir: Path | str, *, warn: Callable[[str], None] | None = None,
                 enabled: bool = True):
        self.settings = org.notifications if enabled else None
        self.smtp = org.smtp
        self.org_name = org.name
        self.out_dir = Path(os.path.abspath(out_dir))
        self.warn = warn or log.warning

    # ---- what happened ------------------------------------------------------------------

    def month_succeeded(self, result: MonthResult) -> None:
        self.send(month_summary(result, self.out_dir / result.month))

    def month_incomplete(self, month, why: str) -> None:
        self.send(failure_notice(str(month), why, incomplete=True))

    def approval_requested(self, review: MonthResult, flow_run: str, hours: float) -> None:
        self.send(approval_request(review, self.out_dir / review.month, flow_run, hours))

    def approval_refused(self, month, reason: str, who: str | None = None, *, expired: bool = False) -> None:
        self.send(approval_refused(str(month), reason, who, expired=expired))

    def month_approved(self, result: MonthResult, who: str | None, reason: str, sent) -> None:
        self.send(approved_summary(result, self.out_dir / result.month, who, reason, sent))

    def month_failed(self, month, why: str) -> None:
        self.send(failure_notice(str(month), why))

    def month_error(self, month, err: BaseException) -> str:
        """Notify the exception that stopped a month (incomplete or failed) once; returns what it said."""
        incomplete, why = describe_failure(month, err)
        if not already_notified(err):
            self.send(failure_notice(str(month), why, incomplete=incomplete))
            _mark_notified(err)
        return why

    def backfill_finished(self, first, last, results: Sequence[MonthResult], failures: Sequence[str],
                          stopped_at=None) -> None:
        self.send(backfill_summary(str(first), str(last), results, failures, self.out_dir,
                                   str(stopped_at) if stopped_at else None))

    def run(self, months: Sequence) -> "RunReport":
        """Notifications for a run of months (see RunReport)."""
        return RunReport(self, [str(m) for m in months])

    # ---- how it is sent -----------------------------------------------------------------

    def send(self, notice: Notice) -> None:
        """Deliver on every configured channel; a channel that fails is a warning, never an exception."""
        if self.settings is None or notice.event not in self.settings.on:
            return
        notice = self._scrubbed(notice)
        notice = replace(notice, subject=f"{self.settings.subject_prefix} {notice.subject}".strip())
        if self.settings.email is not None:
            self._guarded("e-mail", lambda: self._send_email(notice))
        if self.settings.webhook is not None:
            self._guarded("webhook", lambda: post_webhook(self.settings.webhook.url_env, notice.chat_text()))

    def _send_email(self, notice: Notice) -> None:
        if self.smtp is None:   # the configuration refuses this; kept for organizations built in code
            raise NotificationError("no smtp block in the configuration")
        email = self.settings.email
        sent = mail.send(self.smtp, to=email.to, cc=email.cc, subject=notice.subject,
                         body=notice.email_body(f"-- hub-billing for {self.org_name}, on {socket.gethostname()}"))
        for address, answer in sent.refused.items():
            self.warn(f"notification e-mail not delivered to {address}: the server answered {answer}; "
                      "the other recipients got it")

    def _guarded(self, channel: str, deliver: Callable[[], None]) -> None:
        try:
            deliver()
        except BillingError as err:
            self.warn(self._scrub(f"notification not sent by {channel}: {err}"))
        except Exception as err:  # noqa: BLE001 - a notification must never fail the billing run
            self.warn(self._scrub(f"notification not sent by {channel}: {type(err).__name__}: {err}"))

    def _scrubbed(self, notice: Notice) -> Notice:
        return Notice(notice.event, self._scrub(notice.subject), tuple(map(self._scrub, notice.lines)),
                      tuple(map(self._scrub, notice.details)))

    def _scrub(self, text: str) -> str:
        """No secret leaves in a message: the configured variables' values, and passwords in URLs."""
        for variable in secret_variables(self.settings, self.smtp):
            value = os.environ.get(variable)
            if value and len(value) >= 4:
                text = text.replace(value, "***")
        return re.sub(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@", r"\1***@", text)


class RunReport:
    """The notifications of one run of months, as the CLI and the backfill flow use them.

        with notifier.run(months) as report:
            for month in months:
                with report.month(month):      # a month that raises is notified (failure or incomplete)
                    result = run_month(...)
                report.succeeded(result)

    One month: its success message. Several: one summary when the run ends
    (or stops on an error), listing each month.
    """

    def __init__(self, notifier: Notifier, months: list[str]):
        self.notifier, self.months = notifier, months
        self.results: list = []
        self.failures: list[str] = []
        self.current: str | None = None

    def __enter__(self) -> "RunReport":
        return self

    def __exit__(self, kind, err, tb) -> None:
        if len(self.months) > 1 and (err is None or isinstance(err, Exception)):
            self.notifier.backfill_finished(self.months[0], self.months[-1], self.results, self.failures,
                                            stopped_at=self.current if err is not None else None)

    @contextmanager
    def month(self, month) -> Iterator[None]:
        self.current = str(month)
        try:
            yield
        except Exception as err:
            self.failures.append(self.notifier.month_error(month, err))
            raise

    def succeeded(self, result: MonthResult) -> None:
        self.results.append(result)
        if len(self.months) == 1:
            self.notifier.month_succeeded(result)


def secret_variables(settings, smtp) -> list[str]:
    """The environment variables holding secrets that notifications use."""
    names = []
    if settings is not None and settings.webhook is not None:
        names.append(settings.webhook.url_env)
    if smtp is not None and smtp.password_env:
        names.append(smtp.password_env)
    return names


def unset_variables(org: Organization) -> list[str]:
    """Settings naming environment variables that are not set here (`billing validate` warns about them)."""
    wanted = []
    if org.smtp is not None:
        wanted += [(f"smtp.{f}", getattr(org.smtp, f)) for f in ("username_env", "password_env")]
    if org.notifications is not None and org.notifications.webhook is not None:
        wanted.append(("notifications.webhook.url_env", org.notifications.webhook.url_env))
    return [f"{setting}: the environment variable ${name} is not set here; messages cannot be sent without it"
            for setting, name in wanted if name and not os.environ.get(name)]


def already_notified(err: object) -> bool:
    return bool(getattr(err, "_billing_notified", False))


def _mark_notified(err: BaseException) -> None:
    try:
        err._billing_notified = True   # type: ignore[attr-defined]
    except AttributeError:
        pass
