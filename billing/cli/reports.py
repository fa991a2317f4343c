"""billing report: revenue and cost recovery by month and community, from the ledger."""
from __future__ import annotations

from billing.cli.common import load_org, common_options, preflight


def add_parsers(sub) -> None:
    report = sub.add_parser("report", parents=[common_options()],
                            help="write out/revenue.csv, revenue-by-service-month.csv, revenue.png, recovery.csv and "
                                 "recovery.png from the ledger")
    report.add_argument("--by", choices=("issued", "service"), default="issued",
                        help="plot revenue by the month documents were issued (default) or by service month")
    report.set_defaults(handler=cmd_report)
    add_status_parser(sub)


def cmd_report(args) -> int:
    from billing.pipeline import RunOptions, write_revenue_report
    from billing.recovery import write_recovery_report

    preflight(args)
    org = load_org(args)
    opts = RunOptions(out_dir=args.out, out_url=args.out_url, ledger_url=args.ledger)
    rows = write_revenue_report(org, opts, args.by)
    months = sorted({r.month for r in rows})
    where = args.out_url or args.out
    print(f"revenue report: {len(rows)} row(s) over {len(months)} month(s) -> {where}/revenue.csv, "
          f"{where}/revenue-by-service-month.csv, {where}/revenue.png")
    recovery = write_recovery_report(org, opts)
    print(f"recovery report: {len(recovery)} row(s) over {len({r.month for r in recovery})} service month(s) -> "
          f"{where}/recovery.csv, {where}/recovery.png")
    return 0




def add_status_parser(sub) -> None:
    status = sub.add_parser("status", parents=[common_options()],
                            help="where each month stands: finalized, draft, incomplete, restated, not run")
    status.add_argument("--from", dest="start", default=None, help="first month, YYYY-MM (default: the earliest)")
    status.add_argument("--to", dest="end", default=None, help="last month, YYYY-MM (default: the last closed)")
    status.add_argument("--format", choices=("table", "csv"), default="table")
    status.set_defaults(handler=cmd_status)


def cmd_status(args) -> int:
    import csv
    import sys

    from billing import ledger as ledger_mod
    from billing.cli.common import parse_month
    from billing.status import money_text, statuses

    org = load_org(args)
    first = parse_month(args.start, "--from") if args.start else None
    last = parse_month(args.end, "--to") if args.end else None
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(args.out), args.ledger))
    try:
        rows = statuses(org, engine, first, last)
    finally:
        engine.dispose()
    header = ["month", "state", "documents", "totals", "unattributed", "last_run", "detail"]
    table = [[r.month, r.state, str(r.documents), money_text(r.totals), money_text(r.unattributed), r.last_run or "-",
              r.detail] for r in rows]
    if args.format == "csv":
        from billing.outputs import safe_cell

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([[safe_cell(c) for c in row] for row in table])
        return 0
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header[:-1])]
    for row in [header] + table:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths))
        print((line + ("  " + row[-1] if row[-1] else "")).rstrip())
    return 0
