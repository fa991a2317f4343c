"""Sending a month's finalized documents to the parties: `billing send`.

Each finalized document of a service month (an invoice, a credit note, a
statement: the documents in `out/YYYY-MM/invoices/`, the month `billing run
--month YYYY-MM` invoiced) is e-mailed with its PDF to the billing contact
the configuration now gives for its party, copied to `sending.cc`. The
subject and body are the configuration's templates (`billing.message_templates`).

A document is sent once: each message the server accepts for the billing
contact is a `sent` event of the document in the ledger (its Message-ID,
recipients and the PDF's hash), and a document with one is skipped unless
`resend`. A document that was cancelled (credited, voided, replaced) before
it was ever sent is not sent, nor is the credit note of a document never
sent: the party never saw them. One document failing (no PDF, no address,
a refused recipient, the server down) does not stop the others; the report
lists what was sent, skipped and failed. A dry run writes each message as
`out/YYYY-MM/outbox/<number>.eml` instead, and records nothing.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Callable

from billing import ledger as ledger_mod
from billing import mail
from billing.closing import pdf_name
from billing.config import Organization, Sending
from billing.errors import BillingError, InputError
from billing.fileio import atomic_write_bytes, mirror_outputs, output_exists
from billing.ledger import Invoice
from billing.message_templates import TITLES, body_text, header_text, render
from billing.money import money_with_code as money

log = logging.getLogger(__name__)

SENT, FAILED = "sent", "send_failed"        # the ledger events
CANCELLED = {"credited": "credited", "voided": "voided", "replaced": "replaced"}
Deliver = Callable[..., mail.Sent]          # mail.send_message(smtp, message)


@dataclass(frozen=True)
class SendOptions:
    out_dir: Path
    ledger_url: str | None = None
    out_url: str | None = None          # outputs in an object store: out_dir is its local cache
    dry_run: bool = False
    resend: bool = False
    party: str | None = None            # ID, community:ID or funder:ID
    actor: str | None = None
    lock_wait: float = 120.0


@dataclass(frozen=True)
class Outcome:
    """What happened to one document: sent (or written, in a dry run), skipped or failed, and one line why."""

    number: str
    result: str         # sent, written, skipped, failed
    text: str


@dataclass
class SendReport:
    month: str
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)

    @property
    def failed(self) -> bool:
        return self.count("failed") > 0

    def summary(self) -> str:
        done = (f"{self.count('written')} written to the outbox (dry run)" if self.dry_run
                else f"{self.count('sent')} sent")
        return f"{self.month}: {done}, {self.count('skipped')} skipped, {self.count('failed')} failed"


class NotSendable(BillingError):
    """One document cannot be sent; the text says why (the others still go)."""


# ---- who, what -----------------------------------------------------------------------------


def party_of(org: Organization, text: str) -> tuple[str, str]:
    """--party: ID, community:ID or funder:ID -> (kind, id); InputError naming the known parties."""
    kind, _, pid = text.rpartition(":")
    communities, funders = {c.id for c in org.communities}, {f.id for f in org.funders}
    if kind and kind not in ("community", "funder"):
        raise InputError(f"--party {text!r}: write ID, community:ID or funder:ID")
    matches = [k for k, ids in (("community", communities), ("funder", funders)) if pid in ids and kind in ("", k)]
    if not matches:
        raise InputError(f"--party {text!r}: no such {kind or 'community or funder'}; communities: "
                         f"{', '.join(sorted(communities)) or 'none'}; funders: {', '.join(sorted(funders)) or 'none'}")
    if len(matches) > 1:
        raise InputError(f"--party {text!r}: both a community and a funder have this id; write community:{pid} "
                         f"or funder:{pid}")
    return matches[0], pid


def recipient(org: Organization, doc: Invoice) -> tuple[str, str]:
    """(name, address) of the party's billing contact: as the configuration gives it now, else as the
    document recorded it."""
    entities = org.communities if doc.party_kind == "community" else org.funders
    entity = next((e for e in entities if e.id == doc.party_id), None)
    if entity is not None:
        contact = entity.billing_contact
        if not contact.email:
            where = f"{'communities' if doc.party_kind == 'community' else 'funders'} ({doc.party_id})"
            raise NotSendable(f"{where}.billing_contact.email is not given; add the address its documents go to")
        return contact.name, contact.email
    address = doc.bill_to.get("email")
    if not address:
        raise NotSendable(f"{doc.party_kind} {doc.party_id} is no longer in the configuration and its document "
                          "records no e-mail address")
    return doc.bill_to.get("name") or doc.party_id, address


def template_values(org: Organization, doc: Invoice, contact: tuple[str, str]) -> dict:
    """What the subject and body templates can use (see `billing.message_templates.VALUES`)."""
    issuer = doc.issuer or {}
    return {
        "document": {"number": doc.number, "type": doc.document_type, "title": TITLES[doc.document_type],
                     "month": doc.month, "issue_date": doc.issue_date.isoformat(),
                     "due_date": doc.due_date.isoformat(), "total": money(doc.total, doc.currency),
                     "amount": format(doc.total, "f"), "credited": money(abs(doc.total), doc.currency),
                     "currency": doc.currency, "corrects": doc.corrects,
                     "pdf": pdf_name(doc)},
        "party": {"id": doc.party_id, "kind": doc.party_kind,
                  "name": doc.bill_to.get("display_name") or doc.bill_to.get("name") or doc.party_id,
                  "contact": contact[0], "email": contact[1]},
        "issuer": {"name": issuer.get("name") or org.issuer.name, "email": issuer.get("email") or org.issuer.email,
                   "website": issuer.get("website") or org.issuer.website},
        "organization": {"name": org.name},
    }


def compose(org: Organization, doc: Invoice, pdf: bytes) -> EmailMessage:
    """The message of one document: rendered subject and body, the PDF attached."""
    settings = org.sending or Sending()
    contact = recipient(org, doc)
    values = template_values(org, doc, contact)
    to = email.utils.formataddr((header_text(contact[0]), contact[1]))
    cc = [a for a in settings.cc if a.lower() != contact[1].lower()]
    return mail.build_message(org.smtp, to=[to], cc=cc, reply_to=settings.reply_to,
                              subject=header_text(render(settings.subject, values)),
                              body=body_text(render(settings.body, values)),
                              attachments=[mail.Attachment(pdf_name(doc), pdf)])


def read_pdf(doc: Invoice, opts: SendOptions) -> bytes:
    """The document's PDF from the output folder (fetched from the object store if only it has it)."""
    path = opts.out_dir / doc.month / "invoices" / pdf_name(doc)
    if not output_exists(path):
        where = f"{opts.out_url}/{doc.month}/invoices/{path.name}" if opts.out_url else str(path)
        raise NotSendable(f"its PDF {where} does not exist; run `billing run --month {doc.month}` again to "
                          "produce it")
    data = path.read_bytes()
    if not data.startswith(b"%PDF"):
        raise NotSendable(f"{path} is not a PDF")
    return data


# ---- sending a month -------------------------------------------------------------------------


def send_month(org: Organization, month: str, opts: SendOptions, *, deliver: Deliver = mail.send_message,
               progress: Callable[[Outcome], None] | None = None) -> SendReport:
    """E-mail (or, in a dry run, write out) each finalized document of the service month; see the module."""
    if org.smtp is None:
        raise InputError("smtp: sending documents needs the top-level smtp block of the configuration (host, port, "
                         "from, ...)")
    party = party_of(org, opts.party) if opts.party else None
    if not opts.dry_run:
        _check_login(org)
    if opts.out_url:
        mirror_outputs(opts.out_dir, opts.out_url)
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))
    report = SendReport(month, opts.dry_run)

    def note(outcome: Outcome) -> None:
        report.outcomes.append(outcome)
        log.info("%s %s: %s", outcome.result, outcome.number, outcome.text)
        if progress is not None:
            progress(outcome)

    try:
        if opts.dry_run:
            _send_documents(org, engine, month, party, opts, deliver, note)
        else:
            with ledger_mod.month_lock(engine, org.org_id, month, wait=opts.lock_wait, actor=opts.actor):
                _send_documents(org, engine, month, party, opts, deliver, note)
    finally:
        engine.dispose()
    return report


def _check_login(org: Organization) -> None:
    """The login's environment variables are set, before anything is sent."""
    for setting in ("username_env", "password_env"):
        variable = getattr(org.smtp, setting)
        if variable:
            try:
                mail.environment_secret(variable, f"smtp.{setting}")
            except mail.MailError as err:
                raise InputError(f"{err}; billing send logs in to the mail server with it") from None


def _send_documents(org, engine, month: str, party, opts: SendOptions, deliver: Deliver, note) -> None:
    documents = [d for d in ledger_mod.month_invoices(engine, month)
                 if d.status != "draft" and d.number and (party is None or (d.party_kind, d.party_id) == party)]
    if not documents:
        return
    numbers = [d.number for d in documents] + [d.corrects for d in documents if d.corrects]
    sent_before = ledger_mod.latest_events(engine, numbers, SENT)
    for doc in documents:
        skip = _why_skip(doc, sent_before, opts.resend)
        if skip:
            note(Outcome(doc.number, "skipped", skip))
            continue
        try:
            message = compose(org, doc, read_pdf(doc, opts))
        except NotSendable as err:
            note(Outcome(doc.number, "failed", f"not sent: {err}"))
            continue
        if opts.dry_run:
            path = opts.out_dir / month / "outbox" / f"{doc.number}.eml"
            atomic_write_bytes(path, message.as_bytes())
            note(Outcome(doc.number, "written", f"to {message['To']}{_cc(message)}: {path}"))
            continue
        note(_deliver(engine, doc, message, opts, deliver, org))


def _why_skip(doc: Invoice, sent_before: dict, resend: bool) -> str | None:
    previous = sent_before.get(doc.number)
    if previous is not None and not resend:
        to = ", ".join(previous.details.get("to") or [])
        at = previous.at.astimezone(dt.timezone.utc) if previous.at.tzinfo else previous.at   # SQLite: UTC, naive
        return (f"already sent on {at:%Y-%m-%d %H:%M} UTC to {to} ({previous.details.get('message_id')}); "
                "--resend sends it again")
    if previous is None and doc.status in CANCELLED:
        return f"{CANCELLED[doc.status]} before it was ever sent: the party never saw it, so it is not sent now"
    if doc.document_type == "credit_note" and doc.corrects and doc.corrects not in sent_before:
        return f"it corrects {doc.corrects}, which was never sent, so the party needs no credit note"
    return None


def _cc(message: EmailMessage) -> str:
    return f", cc {message['Cc']}" if message["Cc"] else ""


def _deliver(engine, doc: Invoice, message: EmailMessage, opts: SendOptions, deliver: Deliver,
             org: Organization) -> Outcome:
    """Send one message and record what the server did with it."""
    to = [a for _, a in email.utils.getaddresses(message.get_all("To", []))]
    cc = [a for _, a in email.utils.getaddresses(message.get_all("Cc", []))]
    try:
        sent = deliver(org.smtp, message)
    except mail.MailError as err:
        return Outcome(doc.number, "failed", f"not sent: {err}")
    pdf = next(message.iter_attachments()).get_content()
    details = {"message_id": sent.message_id, "to": to, "cc": cc, "accepted": list(sent.accepted),
               "refused": sent.refused, "subject": str(message["Subject"]), "resend": opts.resend,
               "pdf_sha256": hashlib.sha256(pdf).hexdigest()}
    refused_to = [a for a in to if a in sent.refused]
    if refused_to:
        ledger_mod.record_event(engine, doc.number, FAILED, actor=opts.actor,
                                reason=f"refused: {', '.join(refused_to)}", **details)
        answers = "; ".join(f"{a} ({sent.refused[a]})" for a in refused_to)
        copies = f"; the copies to {', '.join(sent.accepted)} were delivered" if sent.accepted else ""
        return Outcome(doc.number, "failed", f"not sent: the mail server refused the billing contact {answers}{copies}")
    ledger_mod.record_event(engine, doc.number, SENT, actor=opts.actor, **details)
    refused_cc = "; ".join(f"cc {a} refused ({answer})" for a, answer in sent.refused.items())
    return Outcome(doc.number, "sent", f"to {message['To']}{_cc(message)} {sent.message_id}"
                   + (f"; {refused_cc}" if refused_cc else ""))
