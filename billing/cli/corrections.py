"""billing amend / void / history: correct finalized documents, and see what happened to one."""
from __future__ import annotations

import argparse
import sys

from billing.cli.common import common_options, document_options, load_org, parse_month, preflight, run_options


def add_parsers(sub) -> None:
    parents = [common_options(), document_options()]
    amend = sub.add_parser("amend", parents=parents,
                           help="recompute a finalized month and correct its documents (credit notes, replacements)")
    amend.add_argument("--month", required=True, help="YYYY-MM")
    amend.add_argument("--reason", required=True, type=_reason, help="why, printed on the documents and logged")
    amend.add_argument("--policy", choices=("reissue", "next-invoice"), default="reissue",
                       help="reissue: a credit note and a new invoice (default); next-invoice: carry the difference "
                            "to the party's next invoice as prior-period adjustments")
    amend.add_argument("--refresh", action="store_true", help="re-query live cloud sources instead of their snapshots")
    amend.add_argument("--prefect", action="store_true", help="run through the Prefect flow")
    amend.set_defaults(handler=cmd_amend, allow_estimated=False)
    void = sub.add_parser("void", parents=parents, help="cancel an unpaid invoice by a full credit note")
    void.add_argument("number", help="the invoice number, e.g. OHC-2026-0042")
    void.add_argument("--reason", required=True, type=_reason, help="why, printed on the credit note and logged")
    void.set_defaults(handler=cmd_void)
    history = sub.add_parser("history", parents=[common_options()], help="every state change of a document")
    history.add_argument("number", help="a document number")
    history.set_defaults(handler=cmd_history)


def _reason(text: str) -> str:
    text = text.strip()
    if not text or not text.isprintable():
        raise argparse.ArgumentTypeError("give a reason in plain printable text")
    return text


def cmd_amend(args) -> int:
    from billing.pipeline import amend

    preflight(args)
    month = parse_month(args.month)
    if args.prefect:
        from flows.monthly import amend_month_flow

        result = amend_month_flow(str(month), reason=args.reason, policy=args.policy, org_path=str(args.org or ""),
                                  out_dir=args.out_url or str(args.out), ledger_url=args.ledger, refresh=args.refresh,
                                  issue_date=args.issue_date if isinstance(args.issue_date, str) else
                                  (args.issue_date.isoformat() if args.issue_date else None), actor=args.actor)
    else:
        result = amend(load_org(args), month, run_options(args), reason=args.reason, policy=args.policy)
    correction = result.correction
    lines = []
    if not correction.changes:
        lines.append(f"{month}: nothing to amend: every document says what the data says")
    else:
        lines.append(f"{month}: amended ({args.policy}): {len(correction.created)} new document(s)")
        lines += [f"  changed: {c}" for c in correction.changes]
        lines += [f"  new: {d.number or d.document_type} {d.document_type.replace('_', ' ')} {d.party_kind} "
                  f"{d.party_id} {d.total} {d.currency}" + (f" (corrects {d.corrects})" if d.corrects else "")
                  for d in correction.created]
        lines += [f"  carried: {c}" for c in correction.carried]
    lines += [f"  warning: {w}" for w in result.warnings]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_void(args) -> int:
    from billing.pipeline import void

    preflight(args)
    correction = void(load_org(args), args.number, run_options(args), reason=args.reason)
    note = correction.created[0]
    print(f"{args.number}: voided by credit note {note.number} ({note.total} {note.currency}); "
          f"out/{correction.month}/invoices/{note.number}.pdf")
    return 0


def cmd_history(args) -> int:
    from billing import ledger as ledger_mod

    org = load_org(args)
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(args.out), args.ledger))
    try:
        doc = ledger_mod.document(engine, args.number)
        events = ledger_mod.history(engine, args.number)
    finally:
        engine.dispose()
    if doc is None:
        from billing.errors import InputError

        raise InputError(f"{args.number}: no such document in the ledger")
    print(f"{doc.number}: {doc.document_type.replace('_', ' ')} for {doc.party_kind} {doc.party_id}, "
          f"{doc.month}, {doc.total} {doc.currency}, issued {doc.issue_date}, status {doc.status}"
          + (f", corrects {doc.corrects}" if doc.corrects else ""))
    for e in events:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(e.details.items()) if v not in (None, ""))
        print(f"  {e.at:%Y-%m-%d %H:%M:%S} UTC  {e.event:<9} by {e.actor}"
              + (f": {e.reason}" if e.reason else "") + (f" ({detail})" if detail else ""))
    return 0
