"""The `billing` command, one module per command group.

Exit codes: 0 success; 2 bad input or configuration (one clear message, no
traceback); 1 anything else (a month whose finalized invoices would change, a
failed reconciliation, a source that could not deliver, an internal error).
Commands that write check the whole command line first (`preflight`), so a
wrong argument stops them before any month is read, priced or finalized.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from billing.cli import accounts, config, contracts, corrections, export, monthly, payments, reports, sending, serve
from billing.cli.common import check_output_folder, preflight  # noqa: F401  (used by tests)
from billing.errors import BillingError, InputError

log = logging.getLogger("billing")
GROUPS = (monthly, corrections, sending, contracts, reports, payments, accounts, export, config, serve)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="billing",
                                description="Monthly cost recovery and invoicing for JupyterHub communities.")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:   # argparse printed usage and the error (2), or --help (0)
        return exit_.code if isinstance(exit_.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BillingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # whoever read the output stopped reading (`| head`): nothing went wrong here
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # so exiting does not fail on a flush
        return 141
    except Exception as err:  # noqa: BLE001 - the last line of defence: a message, not a traceback
        if args.verbose:
            traceback.print_exc()
        print(f"internal error: {type(err).__name__}: {err} (rerun with -v for details)", file=sys.stderr)
        return 1


