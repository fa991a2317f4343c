"""billing report: revenue by month and community, from the ledger."""
from __future__ import annotations

from billing.cli.common import load_org, common_options, preflight


def add_parsers(sub) -> None:
    report = sub.add_parser("report", parents=[common_options()],
                            help="write out/revenue.csv, revenue-by-service-month.csv and revenue.png from the ledger")
    report.add_argument("--by", choices=("issued", "service"), default="issued",
                        help="plot revenue by the month documents were issued (default) or by service month")
    report.set_defaults(handler=cmd_report)


def cmd_report(args) -> int:
    from billing.pipeline import RunOptions, write_revenue_report

    preflight(args)
    rows = write_revenue_report(load_org(args), RunOptions(out_dir=args.out, ledger_url=args.ledger), args.by)
    months = sorted({r.month for r in rows})
    print(f"revenue report: {len(rows)} row(s) over {len(months)} month(s) -> {args.out / 'revenue.csv'}, "
          f"{args.out / 'revenue.png'}")
    return 0


