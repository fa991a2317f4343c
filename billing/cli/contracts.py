"""billing adjust / grants / simulate: one-off charges and credits, awards drawn, what-if pricing."""
from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

from billing.cli.common import common_options, load_org, parse_month, preflight
from billing.errors import InputError


def add_parsers(sub) -> None:
    adjust = sub.add_parser("adjust", parents=[common_options()],
                            help="record a one-off charge or credit for a party and month (its own invoice line)")
    adjust.add_argument("--party", required=True, help="community:ID or funder:ID")
    adjust.add_argument("--month", required=True, help="YYYY-MM, a month not yet finalized for the party")
    adjust.add_argument("--description", required=True, help="the line's text, e.g. 'Onboarding and setup'")
    adjust.add_argument("--amount", required=True, type=_amount, help="a positive amount, e.g. 500.00")
    adjust.add_argument("--credit", action="store_true", help="a credit (a negative line), not a charge")
    adjust.add_argument("--actor", default=None, help="who records it (default: your user name)")
    adjust.set_defaults(handler=cmd_adjust)
    grants = sub.add_parser("grants", parents=[common_options()],
                            help="write out/grants.csv: each award drawn by month, cumulative and remaining")
    grants.set_defaults(handler=cmd_grants)
    simulate = sub.add_parser("simulate", parents=[common_options()],
                              help="price the invoiced history under proposed pricing and compare (no ledger writes)")
    simulate.add_argument("--from", dest="start", required=True, help="first month, YYYY-MM")
    simulate.add_argument("--to", dest="end", required=True, help="last month, YYYY-MM")
    simulate.add_argument("--plan", help="price the communities with this plan of the configuration instead "
                                         "(without it, the configuration --org names is the proposal: e.g. "
                                         "--org proposed.yaml)")
    simulate.add_argument("--community", action="append", default=[], metavar="ID",
                          help="with --plan: only these communities (repeat; default: all)")
    simulate.set_defaults(handler=cmd_simulate)


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    if not value.is_finite() or value <= 0 or value > Decimal("1e12"):
        raise argparse.ArgumentTypeError(f"give a positive amount (a credit is --credit), got {text!r}")
    return value


def cmd_adjust(args) -> int:
    from billing import ledger as ledger_mod
    from billing.money import format_money, round_money

    org = load_org(args)
    month = parse_month(args.month)
    kind, _, party_id = args.party.partition(":")
    known = {c.id: c for c in org.communities} if kind == "community" else {f.id: f for f in org.funders}
    if kind not in ("community", "funder") or party_id not in known:
        raise InputError(f"--party {args.party!r}: give community:ID or funder:ID of the configuration")
    description = args.description.strip()
    if not description or not description.isprintable():
        raise InputError("--description: give the line's text in plain printable characters")
    currency = known[party_id].currency
    amount = round_money(args.amount, currency)
    if amount != args.amount:
        raise InputError(f"--amount {args.amount}: {currency} has no smaller unit than {round_money(Decimal(1), currency)}")
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(args.out), args.ledger))
    try:
        ledger_mod.record_one_off(engine, party=args.party, month=str(month), description=description, amount=amount,
                                  kind="credit" if args.credit else "charge", actor=args.actor)
    finally:
        engine.dispose()
    what = "credit" if args.credit else "charge"
    print(f"{month}: one-off {what} of {format_money(amount, currency)} for {kind} {party_id} recorded "
          f"({description!r}); it goes on the party's {month} invoice when the month is run")
    return 0


def cmd_grants(args) -> int:
    from billing import ledger as ledger_mod
    from billing.fileio import mirror_outputs
    from billing.grants import award_months, warnings, write_grants_csv

    org = load_org(args)
    if args.out_url:
        mirror_outputs(args.out, args.out_url)
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(args.out), args.ledger))
    try:
        rows = award_months(org, ledger_mod.all_finalized(engine))
    finally:
        engine.dispose()
    write_grants_csv(args.out / "grants.csv", rows)
    awards = sorted({r.award for r in rows})
    print(f"grants: {len(awards)} award(s), {len(rows)} row(s) -> {args.out_url or args.out}/grants.csv")
    for line in warnings(rows):
        print(f"  warning: {line}")
    return 0


def _existing_ledger(org, args) -> None:
    """The invoiced history must exist: a simulation written to a folder of its own would otherwise open (and
    create) an empty ledger there and compare with nothing."""
    from billing import ledger as ledger_mod

    url = ledger_mod.ledger_url(org, str(args.out), args.ledger)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            raise InputError(f"no ledger at {path}: the simulation prices the invoiced history, so give the ledger "
                             "of your runs, e.g. --ledger sqlite:///out/ledger.db (or BILLING_LEDGER_URL)")


def cmd_simulate(args) -> int:
    from billing.simulation import simulate, write_simulation

    org = load_org(args)
    first, last = parse_month(args.start, "--from"), parse_month(args.end, "--to")
    if last < first:
        raise InputError(f"--from/--to: {first} is after {last}")
    if args.community and not args.plan:
        raise InputError("--community is for --plan: which communities the proposed plan applies to")
    _existing_ledger(org, args)
    result = simulate(org, first, last, out_dir=args.out, ledger_url=args.ledger, plan=args.plan,
                      communities=args.community)
    write_simulation(args.out, result, org.name)
    sys.stdout.write(result.summary() + f"\n-> {args.out}/simulation.csv, {args.out}/simulation.png\n")
    return 0
