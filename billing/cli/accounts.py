"""billing receivables / statement: what each party owes and since when, and its statement of account."""
from __future__ import annotations

import argparse
import datetime as dt

from billing.cli.common import check_output_folder, common_options, load_org, parse_month
from billing.errors import InputError


def add_parsers(sub) -> None:
    receivables = sub.add_parser("receivables", parents=[common_options()],
                                 help="write OUT/receivables.csv (open amount, days overdue and aging bucket of each "
                                      "document) and print the totals per bucket and currency")
    receivables.add_argument("--as-of", type=_date, default=None, metavar="YYYY-MM-DD",
                             help="the day to age on: documents issued and payments received until then "
                                  "(default: today)")
    receivables.add_argument("--all", action="store_true", help="list settled invoices too")
    receivables.set_defaults(handler=cmd_receivables)
    statement = sub.add_parser("statement", parents=[common_options()],
                               help="render a party's statement of account to OUT/statements/<party>-<to>.pdf "
                                    "(one per currency the party is invoiced in)")
    statement.add_argument("--party", required=True, help="a community or funder id (or community:ID, funder:ID)")
    statement.add_argument("--from", dest="start", default=None, metavar="YYYY-MM",
                           help="the first month (default: the month of the party's first document)")
    statement.add_argument("--to", dest="end", default=None, metavar="YYYY-MM",
                           help="the last month (default: this month, up to today)")
    statement.set_defaults(handler=cmd_statement)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a date YYYY-MM-DD, got {text!r}") from None


def _engine(args, org):
    from billing import ledger as ledger_mod
    from billing.fileio import mirror_outputs

    check_output_folder(args.out)
    if args.out_url:
        mirror_outputs(args.out, args.out_url)
    return ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(args.out), args.ledger))


def _read(args, org):
    from billing import ledger as ledger_mod

    engine = _engine(args, org)
    try:
        return ledger_mod.all_documents(engine), ledger_mod.all_payments(engine)
    finally:
        engine.dispose()


def cmd_receivables(args) -> int:
    from billing.money import format_amount
    from billing.receivables import BUCKETS, CREDIT, Book, aging_totals, write_receivables_csv

    org = load_org(args)
    as_of = args.as_of or org.today()
    documents, payments = _read(args, org)
    book = Book(documents, payments, as_of)
    rows = book.receivables(settled=args.all)
    args.out.mkdir(parents=True, exist_ok=True)
    write_receivables_csv(args.out / "receivables.csv", rows)
    open_rows = [r for r in rows if r.open != 0]
    parties = len({r.document.party for r in open_rows})
    print(f"receivables on {as_of}: {len(open_rows)} open document(s) of {parties} "
          f"{'party' if parties == 1 else 'parties'} -> {args.out_url or args.out}/receivables.csv")
    totals = aging_totals(open_rows)
    columns = ("currency", *BUCKETS, CREDIT, "total")
    table = [list(columns)] + [[currency, *(format_amount(per[c], currency) for c in columns[1:])]
                               for currency, per in totals.items()]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        print("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))))
    unapplied = [p for p in payments if p.unapplied != 0 and p.received_on <= as_of]
    if unapplied:
        print(f"  and {len(unapplied)} payment(s) received but not applied to a document: see "
              "payments-unmatched.csv (billing payments apply)")
    return 0


def party_of(org, text: str) -> tuple[str, str]:
    """community:ID, funder:ID, or an id that names exactly one community or funder."""
    kind, _, pid = text.partition(":") if ":" in text else ("", "", text)
    known = {"community": {c.id for c in org.communities}, "funder": {f.id for f in org.funders}}
    if kind in known and pid in known[kind]:
        return kind, pid
    if not kind:
        found = [k for k, ids in known.items() if pid in ids]
        if len(found) == 1:
            return found[0], pid
        if len(found) == 2:
            raise InputError(f"--party {text!r} is both a community and a funder: say community:{pid} or funder:{pid}")
    raise InputError(f"--party {text!r}: no such community or funder in the configuration; give its id, or "
                     "community:ID / funder:ID")


def cmd_statement(args) -> int:
    from billing.documents import statement_of_account
    from billing.ledger.invoices import bill_to_of
    from billing.money import format_money
    from billing.receivables import account_statement, party_currencies
    from invoices.render import render_statement_pdf

    org = load_org(args)
    party = party_of(org, args.party)
    documents, payments = _read(args, org)
    currencies = party_currencies(documents, party)
    if not currencies:
        raise InputError(f"--party {args.party}: the ledger has no document for {party[0]} {party[1]} yet")
    today = org.today()
    last = parse_month(args.end, "--to") if args.end else parse_month(f"{today:%Y-%m}", "--to")
    mine = [d for d in documents if (d.party_kind, d.party_id) == party]
    first = parse_month(args.start, "--from") if args.start else parse_month(
        f"{min(d.issue_date for d in mine):%Y-%m}", "--from")
    if last < first:
        raise InputError(f"--from/--to: {first} is after {last}")
    start, end = first.start, min(last.end - dt.timedelta(days=1), max(today, first.start))
    entity = org.community(party[1]) if party[0] == "community" else org.funder(party[1])
    folder = args.out / "statements"
    folder.mkdir(parents=True, exist_ok=True)
    for currency in currencies:
        statement = account_statement(documents, payments, party, currency, start, end)
        doc = statement_of_account(statement, org.issuer.model_dump(mode="json"), bill_to_of(entity))
        name = f"{party[1]}-{last}" + (f"-{currency}" if len(currencies) > 1 else "") + ".pdf"
        render_statement_pdf(doc, folder / name)
        money = lambda amount: format_money(amount, currency)  # noqa: E731
        print(f"{party[0]} {party[1]}, {start} to {end} ({currency}): opening {money(statement.opening)}, invoiced "
              f"{money(statement.invoiced)}, credit notes {money(statement.credited)}, received "
              f"{money(statement.received)}, closing {money(statement.closing)} -> "
              f"{args.out_url or args.out}/statements/{name}")
    return 0
