"""billing export journal: the books for the accountant, double-entry, as CSV or Beancount."""
from __future__ import annotations

from billing.cli.common import common_options, load_org, parse_month, preflight
from billing.errors import InputError


def add_parsers(sub) -> None:
    export = sub.add_parser("export", help="hand the ledger to other tools (export journal: the accountant's books)")
    what = export.add_subparsers(dest="export", required=True, metavar="{journal}")
    journal = what.add_parser("journal", parents=[common_options()],
                              help="write OUT/journal-<from>-<to>.csv (or .beancount): double-entry entries for the "
                                   "documents issued and the payments received in a range of months")
    journal.add_argument("--from", dest="first", required=True, metavar="YYYY-MM",
                         help="first month, YYYY-MM (by date of issue or receipt)")
    journal.add_argument("--to", dest="last", required=True, metavar="YYYY-MM", help="last month, YYYY-MM (included)")
    journal.add_argument("--format", choices=("csv", "beancount"), default="csv",
                         help="csv: one row per posting (default); beancount: a file bean-check accepts")
    journal.set_defaults(handler=cmd_journal)


def cmd_journal(args) -> int:
    from billing import ledger as ledger_mod
    from billing.fileio import mirror_outputs
    from billing.journal import journal_entries, nothing_to_export, write_journal

    first, last = parse_month(args.first, "--from"), parse_month(args.last, "--to")
    if last < first:
        raise InputError(f"--from/--to: {first} is after {last}")
    preflight(args)
    org = load_org(args)
    if args.out_url:
        mirror_outputs(args.out, args.out_url)
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(args.out), args.ledger))
    try:
        documents, payments = ledger_mod.all_finalized(engine), ledger_mod.all_payments(engine)
    finally:
        engine.dispose()
    entries = journal_entries(documents, payments, first, last, org.accounts)
    if not entries:
        raise InputError(nothing_to_export(documents, payments, first, last))
    path = write_journal(args.out, entries, first, last, args.format, org.name)
    kinds = [e.entry_type for e in entries]
    counts = ", ".join(f"{kinds.count(k)} {label}" for k, label in
                       (("invoice", "invoice(s)"), ("credit_note", "credit note(s)"), ("statement", "statement(s)"),
                        ("payment", "payment(s)")) if k in kinds)
    where = f"{args.out_url}/{path.name}" if args.out_url else path
    print(f"journal {first} to {last}: {len(entries)} entries ({counts}), "
          f"{sum(len(e.postings) for e in entries)} postings, each balanced -> {where}")
    return 0
