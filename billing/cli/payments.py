"""billing payments import / apply: record money received from a bank export, apply a payment by hand."""
from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from pathlib import Path

from billing.cli.common import check_output_folder, common_options, load_org


def add_parsers(sub) -> None:
    payments = sub.add_parser("payments", help="record payments from a bank export; apply one by hand")
    group = payments.add_subparsers(dest="payments_command", required=True)
    parents = [common_options()]
    imp = group.add_parser("import", parents=parents,
                           help="record a bank export's payments and match each to a document by the number in its "
                                "reference; unmatched ones go to OUT/payments-unmatched.csv")
    imp.add_argument("file", type=Path, help="the bank's CSV export")
    imp.add_argument("--mapping", default=None, metavar="NAME",
                     help="the bank's columns and formats, from bank_mappings in the configuration (default: the "
                          "columns date, amount, currency, reference and optional payer; ISO dates, '.' decimals)")
    imp.add_argument("--actor", default=None, help="who records it (default: your user name)")
    imp.set_defaults(handler=cmd_import)
    apply = group.add_parser("apply", parents=parents, help="apply a payment (or part of it) to a document by hand")
    apply.add_argument("payment_id", type=_payment_id, help="the payment's id (payments-unmatched.csv)")
    apply.add_argument("--invoice", required=True, metavar="NUMBER", help="the invoice it pays, e.g. OHC-2022-0042")
    apply.add_argument("--amount", type=_amount, default=None,
                       help="how much of it (default: all that is not applied yet)")
    apply.add_argument("--actor", default=None, help="who applies it (default: your user name)")
    apply.set_defaults(handler=cmd_apply)


def _payment_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a payment id is a whole number (payments-unmatched.csv), got {text!r}")
    return int(text)


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    if not value.is_finite() or value == 0:
        raise argparse.ArgumentTypeError(f"give an amount such as 250.00, got {text!r}")
    return value


def _ledger(args, org):
    from billing import ledger as ledger_mod
    from billing.fileio import mirror_outputs

    check_output_folder(args.out)
    if args.out_url:
        mirror_outputs(args.out, args.out_url)
    return ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(args.out), args.ledger))


def write_unmatched(args, org, engine) -> tuple[int, str]:
    """Rewrite OUT/payments-unmatched.csv with every payment not (fully) applied; (how many, where)."""
    from billing.payments import unmatched_payments, write_unmatched_csv

    unmatched = unmatched_payments(engine, org.issuer.invoice_prefix)
    args.out.mkdir(parents=True, exist_ok=True)
    write_unmatched_csv(args.out / "payments-unmatched.csv", unmatched)
    return len(unmatched), f"{args.out_url or args.out}/payments-unmatched.csv"


def cmd_import(args) -> int:
    from billing.money import format_money
    from billing.payments import import_payments, mapping_named, read_bank_file

    org = load_org(args)
    mapping = mapping_named(org.bank_mappings, args.mapping)
    rows = read_bank_file(args.file, mapping)
    engine = _ledger(args, org)
    try:
        result = import_payments(engine, args.file, rows, prefix=org.issuer.invoice_prefix, actor=args.actor)
        count, where = write_unmatched(args, org, engine)
    finally:
        engine.dispose()
    print(f"{args.file}: {result.rows} payment(s): {len(result.recorded)} new, {result.already} imported before")
    if result.recorded:
        print(f"  matched by the number in their reference: {result.count('full')} pay in full, "
              f"{result.count('partial')} in part, {result.count('over')} too much; {result.count('unmatched')} "
              "unmatched")
    for rec in result.recorded:          # what needs a look: all but plain payments in full
        payment, match = rec.payment, rec.match
        if rec.outcome == "full" and len(match.allocations) == 1 and not match.notes:
            continue
        money = format_money(payment.amount, payment.currency)
        if match.matched:
            what = "; ".join(f"{n} {_standing(left, payment.currency)}" for n, left in rec.open_after)
            print(f"  {payment.id:>5}  {payment.received_on}  {money:>12}  {what}"
                  + (f" ({'; '.join(match.notes)})" if match.notes else ""))
        else:
            print(f"  {payment.id:>5}  {payment.received_on}  {money:>12}  unmatched: {match.reason}")
    print(f"{count} payment(s) not applied in full -> {where}")
    return 0


def _standing(open_amount: Decimal, currency: str) -> str:
    from billing.money import format_money

    if open_amount == 0:
        return "paid in full"
    if open_amount > 0:
        return f"paid in part, {format_money(open_amount, currency)} open"
    return f"overpaid, a credit of {format_money(-open_amount, currency)}"


def cmd_apply(args) -> int:
    from billing.money import format_money
    from billing.payments import apply_payment

    org = load_org(args)
    engine = _ledger(args, org)
    try:
        payment, open_after = apply_payment(engine, args.payment_id, args.invoice.strip(), args.amount,
                                            actor=args.actor)
        count, where = write_unmatched(args, org, engine)
    finally:
        engine.dispose()
    applied = args.amount if args.amount is not None else payment.unapplied
    state = _standing(open_after, payment.currency)
    print(f"payment {payment.id} ({payment.received_on}, {format_money(payment.amount, payment.currency)}): "
          f"{format_money(applied, payment.currency)} applied to {args.invoice.strip()}, {state}")
    print(f"{count} payment(s) not applied in full -> {where}")
    return 0

