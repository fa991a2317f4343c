"""billing validate and billing sources check: is the configuration right, can each source be read?"""
from __future__ import annotations

import sys

from billing.cli.common import checked_org, parse_month, common_options
from billing.errors import BillingError


def add_parsers(sub) -> None:
    validate = sub.add_parser("validate", parents=[common_options()], help="check the configuration and report every problem")
    validate.set_defaults(handler=cmd_validate)
    sources = sub.add_parser("sources", help="cost sources")
    sources_sub = sources.add_subparsers(dest="sources_command", required=True)
    check = sources_sub.add_parser("check", parents=[common_options()], help="can each cluster's source read the month?")
    check.add_argument("--month", required=True, help="YYYY-MM")
    check.set_defaults(handler=cmd_sources_check)


def cmd_validate(args) -> int:
    from billing.cli.serve import default_cron
    from billing.notify import unset_variables

    org = checked_org(args)
    print(f"{args.org or 'bundled sample'}: valid — {len(org.communities)} communities, {len(org.clusters)} clusters, "
          f"{len(org.hubs)} hubs, {len(org.pricing_plans)} pricing plans, {len(org.funders)} funders")
    print(f"  id {org.org_id}; time zone {org.timezone}; billing serve schedules the monthly run at "
          f"'{default_cron(org)}' (06:00 on the day each month closes)")
    if org.approval.required:
        print(f"  approval required: the monthly flow drafts each month and waits up to "
              f"{org.approval.timeout_hours:g} hours for a person to approve it before finalizing and sending")
    for problem in unset_variables(org):
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def cmd_sources_check(args) -> int:
    from billing.sources import SnapshotStore, make_source

    org, month = checked_org(args), parse_month(args.month)
    snapshots = SnapshotStore(args.out / "snapshots")
    failed = 0
    for cluster in org.clusters:
        try:
            result = make_source(cluster, org, snapshots).check(month)
        except BillingError as err:
            from billing.sources.base import CheckResult
            result = CheckResult(cluster.id, cluster.source.type, False, str(err))
        failed += not result.ok
        print(f"{'ok  ' if result.ok else 'FAIL'} {cluster.id:<28} {result.source:<22} {result.detail}")
        for warning in result.warnings:
            print(f"     warning: {warning}")
    print(f"{len(org.clusters) - failed} of {len(org.clusters)} source(s) can read {month}")
    return 1 if failed else 0


