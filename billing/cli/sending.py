"""billing send: e-mail a month's finalized documents to the parties' billing contacts."""
from __future__ import annotations

import sys

from billing.cli.common import common_options, load_org, parse_month, preflight


def add_parsers(sub) -> None:
    send = sub.add_parser("send", parents=[common_options()],
                          help="e-mail each finalized document of a month (invoices, credit notes, statements) with "
                               "its PDF to the party's billing contact; each document once")
    send.add_argument("--month", required=True, help="the service month, YYYY-MM (the documents in out/YYYY-MM)")
    send.add_argument("--dry-run", action="store_true",
                      help="write each message to out/YYYY-MM/outbox/NUMBER.eml; send and record nothing")
    send.add_argument("--resend", action="store_true", help="send documents that were already sent again")
    send.add_argument("--party", default=None, metavar="ID",
                      help="only this party's documents: a community or funder id (community:ID or funder:ID if "
                           "both have it)")
    send.add_argument("--actor", default=None, help="who sends, for the event log (default: your user name)")
    send.add_argument("--lock-wait", type=float, default=120.0, metavar="SECONDS",
                      help="how long to wait for a month that another run is invoicing or sending (default: 120)")
    send.set_defaults(handler=cmd_send)


def cmd_send(args) -> int:
    from billing.sending import SendOptions, send_month

    preflight(args)
    org = load_org(args)
    month = str(parse_month(args.month))
    opts = SendOptions(out_dir=args.out, ledger_url=args.ledger, out_url=args.out_url, dry_run=args.dry_run,
                       resend=args.resend, party=args.party, actor=args.actor, lock_wait=args.lock_wait)

    def show(outcome) -> None:
        label = {"written": "would send", "failed": "FAILED"}.get(outcome.result, outcome.result)
        stream = sys.stderr if outcome.result == "failed" else sys.stdout
        stream.write(f"{month}: {label} {outcome.number} {outcome.text}\n")
        stream.flush()

    report = send_month(org, month, opts, progress=show)
    if not report.outcomes:
        who = f" of {args.party}" if args.party else ""
        print(f"{month}: no finalized document{who} to send (run `billing run --month {month}` first)")
        return 0
    print(report.summary())
    return 1 if report.failed else 0
