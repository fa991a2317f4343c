"""Cost recovery for leadership: per service month and community, the cloud cost the organization incurred
and what it billed for it, so it sees what it recovers and what it absorbs.

Read from the ledger: every finalized document (credit notes count negatively,
so a credited invoice and its replacement net to the replacement) and, per
finalized month, the evidence it was invoiced from (the attribution of its
cloud cost). `out/recovery.csv` has one row per service month, community
and currency:

    month                     the service month, YYYY-MM
    community                 the community id; "(unattributed)": the month's cost no community carries
                              (no cluster, a hub tag no hub has, an inactive community; see the month's
                              attribution.csv), which the organization absorbs
    currency                  of the row's figures, as the data is: cost in the cloud's currency, billing in the
                              invoice's (a community billed in another currency than its cost has a row for each)
    cloud_cost_incurred       the community's attributed cloud cost in the month's evidence, exact; empty when
                              the month was finalized by a version that kept no evidence
    cloud_passthrough         cloud cost billed to the community (invoice lines, rounded, as all amounts below)
    markup                    margin billed on cloud cost
    fees                      service fees: fixed or tier fees, dedicated-cluster uplift, usage fees
    caps_and_credits          caps, discounts and other credits (negative)
    prior_period_adjustments  differences of a corrected invoice billed on a later one (`billing amend
                              --policy next-invoice`), counted in the service month they correct
    subsidies                 the part of the community's charges its funder took over (negative, on the
                              community's own documents)
    prepaid_draws             the part of its charges paid from a balance the community bought in advance
                              (negative, on its own documents): paid, as revenue is recognized when drawn
    billed_to_community       what the community's documents total: the seven columns before it
    grant_funded              what funders were billed for the community
    recovered                 billed_to_community + grant_funded - prepaid_draws
    recovered_minus_cost      recovered - cloud_cost_incurred; negative: what the organization absorbs
    recovery_ratio            recovered / cloud_cost_incurred, 4 decimals (3.25 = 325%); empty when the cost is
                              unknown, zero or negative, or the community is billed in another currency
    note                      why a figure is missing or not comparable, or what the unattributed row is

The rows of a month add up to the month's input cost: every attributed cost
belongs to one community row and the rest to the `(unattributed)` row. Their
`recovered` adds up to what the month's documents total plus what was drawn
from prepaid balances (prior-period adjustments aside, which count in the
month they correct).

`out/recovery.png`: per currency and service month, what was billed stacked
(cloud passed through to communities, their fees and other charges, and what
funders paid) against the cloud cost incurred, with each month's ratio.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Mapping

from billing.attribution import UNATTRIBUTED
from billing.documents import split_funded
from billing.evidence import MonthEvidence
from billing.ledger import Invoice, Line
from billing.money import ZERO, to_decimal
from billing.outputs import write_csv
from billing.reports import COLORS, monthly_figure, plot_title, save_png, style_monthly_axes
from pricing_models.base import REPORT_GROUPS

UNATTRIBUTED_ROW = "(unattributed)"
RATIO_QUANTUM = Decimal("0.0001")
# The column of recovery.csv a line on a community's document adds to, by the report group of its kind
# (a prior-period adjustment, kind "adjustment", has a column of its own).
GROUP_COLUMN = {"fees": "fees", "cloud": "cloud_passthrough", "markup": "markup", "adjustments": "caps_and_credits",
                "subsidies": "subsidies"}
# Kinds with a column of their own: a prior-period adjustment, and a prepaid draw (paid in advance, not a credit).
KIND_COLUMN = {"adjustment": "prior_period_adjustments", "prepaid": "prepaid_draws"}
BILLED_COLUMNS = ("cloud_passthrough", "markup", "fees", "caps_and_credits", "prior_period_adjustments", "subsidies",
                  "prepaid_draws")
NO_EVIDENCE = "no evidence kept for this month (finalized by an earlier version): cloud cost incurred unknown"
UNATTRIBUTED_NOTE = "cloud cost no community carries (see the month's attribution.csv): absorbed"


@dataclass
class RecoveryRow:
    month: str
    community: str
    currency: str
    cloud_cost_incurred: Decimal | None = None   # None: the month has no evidence
    cloud_passthrough: Decimal = ZERO
    markup: Decimal = ZERO
    fees: Decimal = ZERO
    caps_and_credits: Decimal = ZERO
    prior_period_adjustments: Decimal = ZERO
    subsidies: Decimal = ZERO                    # negative: taken over by funders
    prepaid_draws: Decimal = ZERO                # negative: paid from a balance bought in advance
    grant_funded: Decimal = ZERO                 # billed to funders for this community
    cloud_paid_by_community: Decimal = ZERO      # cloud pass-through less the grant's share of it (for the plot)
    note: str = ""
    comparable: bool = True                      # cost and billing in one currency: a ratio means something

    @property
    def billed_to_community(self) -> Decimal:
        return sum((getattr(self, c) for c in BILLED_COLUMNS), ZERO)

    @property
    def recovered(self) -> Decimal:
        return self.billed_to_community + self.grant_funded - self.prepaid_draws

    @property
    def recovered_minus_cost(self) -> Decimal | None:
        return None if self.cloud_cost_incurred is None else self.recovered - self.cloud_cost_incurred

    @property
    def recovery_ratio(self) -> Decimal | None:
        return ratio(self.recovered, self.cloud_cost_incurred) if self.comparable else None


def ratio(recovered: Decimal, cost: Decimal | None) -> Decimal | None:
    """recovered / cost to 4 decimals, half-up; None when the cost is unknown, zero or negative."""
    if cost is None or cost <= 0:
        return None
    return (recovered / cost).quantize(RATIO_QUANTUM, rounding=ROUND_HALF_UP)


def line_column(line: Line) -> str:
    """The column of recovery.csv a line of a community's document adds to."""
    return KIND_COLUMN.get(line.kind) or GROUP_COLUMN[REPORT_GROUPS[line.kind]]


def service_month(doc: Invoice, line: Line) -> str:
    """The service month a line is about: a prior-period adjustment's is the month it corrects."""
    if line.kind == "adjustment":
        return dict(line.details).get("service_month") or doc.month
    return doc.month


def grant_cloud_share(line: Line, currency: str) -> Decimal:
    """The cloud part of a subsidy line, split as the funder's document splits it (everything, with no split
    recorded)."""
    details = dict(line.details)
    fees_base, cloud_base = to_decimal(details.get("fees_base", "0")), to_decimal(details.get("cloud_base", "0"))
    return split_funded(line.amount, fees_base, cloud_base, currency)[1]


def recovery_rows(documents: list[Invoice], evidence: Mapping[str, MonthEvidence | None]) -> list[RecoveryRow]:
    """Recovery by service month, community and currency, from finalized documents and each month's evidence.

    `evidence`: service month -> its evidence (None: the month was finalized
    without any, so its cost is unknown).
    """
    rows: dict[tuple[str, str, str], RecoveryRow] = {}

    def row(month: str, community: str, currency: str) -> RecoveryRow:
        return rows.setdefault((month, community, currency), RecoveryRow(month, community, currency))

    for doc in documents:
        if doc.status == "draft":
            continue
        for line in doc.lines:
            r = row(service_month(doc, line), line.community or doc.party_id, doc.currency)
            if doc.party_kind == "funder":
                r.grant_funded += line.amount
                continue
            column = line_column(line)
            setattr(r, column, getattr(r, column) + line.amount)
            if line.kind == "cloud":
                r.cloud_paid_by_community += line.amount
            elif line.kind == "subsidy":
                r.cloud_paid_by_community += grant_cloud_share(line, doc.currency)
    for month, found in evidence.items():
        for a in found.attribution if found is not None else ():
            attributed = a.allocation != UNATTRIBUTED and a.community
            r = row(month, a.community if attributed else UNATTRIBUTED_ROW, a.currency)
            r.cloud_cost_incurred = (r.cloud_cost_incurred or ZERO) + a.cost
    return _annotated([rows[k] for k in sorted(rows, key=_order)], evidence)


def _order(key: tuple[str, str, str]) -> tuple:
    month, community, currency = key
    return month, community == UNATTRIBUTED_ROW, community, currency


def _annotated(rows: list[RecoveryRow], evidence: Mapping[str, MonthEvidence | None]) -> list[RecoveryRow]:
    """Known costs of zero where a month has evidence, and notes where a figure is missing or not comparable."""
    currencies: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        currencies[(r.month, r.community)].add(r.currency)
    for r in rows:
        if evidence.get(r.month) is None:
            r.note = NO_EVIDENCE
            continue
        if r.cloud_cost_incurred is None:
            r.cloud_cost_incurred = ZERO
        if r.community == UNATTRIBUTED_ROW:
            r.note = UNATTRIBUTED_NOTE
        elif len(currencies[(r.month, r.community)]) > 1:
            r.comparable = False
            r.note = (f"cost and billing in more than one currency "
                      f"({', '.join(sorted(currencies[(r.month, r.community)]))}): see the community's other rows "
                      "of the month; no ratio across currencies")
    return rows


def write_recovery_csv(path: Path, rows: list[RecoveryRow]) -> None:
    header = ["month", "community", "currency", "cloud_cost_incurred", *BILLED_COLUMNS, "billed_to_community",
              "grant_funded", "recovered", "recovered_minus_cost", "recovery_ratio", "note"]
    write_csv(path, header, ([r.month, r.community, r.currency, r.cloud_cost_incurred,
                              *(getattr(r, c) for c in BILLED_COLUMNS), r.billed_to_community, r.grant_funded,
                              r.recovered, r.recovered_minus_cost, r.recovery_ratio, r.note] for r in rows))


@dataclass
class MonthTotals:
    """One month and currency of the plot, exact."""

    cost: Decimal | None = None           # attributed + unattributed; None: unknown
    passthrough: Decimal = ZERO           # cloud billed to communities, less what grants paid of it
    fees: Decimal = ZERO                  # everything else billed to communities
    grant: Decimal = ZERO                 # billed to funders
    comparable: bool = True               # no community's cost is billed in another currency

    @property
    def recovered(self) -> Decimal:
        return self.passthrough + self.fees + self.grant

    @property
    def recovery_ratio(self) -> Decimal | None:
        return ratio(self.recovered, self.cost) if self.comparable else None


def month_totals(rows: list[RecoveryRow], currency: str) -> dict[str, MonthTotals]:
    totals: dict[str, MonthTotals] = defaultdict(MonthTotals)
    for r in rows:
        if r.currency != currency:
            continue
        t = totals[r.month]
        if r.cloud_cost_incurred is not None:
            t.cost = (t.cost or ZERO) + r.cloud_cost_incurred
        t.passthrough += r.cloud_paid_by_community
        t.fees += r.billed_to_community - r.prepaid_draws - r.cloud_paid_by_community
        t.grant += r.grant_funded
        t.comparable = t.comparable and r.comparable
    return totals


def write_recovery_plot(path: Path, rows: list[RecoveryRow], org_name: str) -> None:
    """Per currency and service month: what was billed (cloud passed through to communities, their fees and
    other charges, and what funders paid) stacked against the cloud cost incurred, with the recovery ratio."""
    import math

    months = sorted({r.month for r in rows})
    currencies = sorted({r.currency for r in rows}) or ["USD"]
    fig, axes = monthly_figure(len(currencies))
    for ax, currency in zip(axes, currencies):
        totals = month_totals(rows, currency)
        t = [totals[m] for m in months]
        # Plotting needs floats; the figures themselves come from exact sums above.
        cloud = [float(x.passthrough) for x in t]
        fees = [float(x.fees) for x in t]
        grant = [float(x.grant) for x in t]
        ax.bar(months, cloud, color=COLORS["passthrough"], label="Cloud passed through (billed to communities)")
        ax.bar(months, fees, bottom=cloud, color=COLORS["community"],
               label="Fees and other charges (communities, incl. prepaid)")
        ax.bar(months, grant, bottom=[a + b for a, b in zip(cloud, fees)], color=COLORS["grant"],
               label="Grant-funded (billed to funders)")
        ax.plot(months, [math.nan if x.cost is None else float(x.cost) for x in t], color=COLORS["cost"],
                marker="o", linewidth=2, label="Cloud cost incurred (attributed + unattributed)")
        for x, month_total in zip(months, t):
            share = month_total.recovery_ratio
            if share is not None:
                top = max(float(month_total.recovered), float(month_total.cost))
                ax.annotate(f"{share * 100:.0f}%", (x, top), ha="center", va="bottom", fontsize=8, xytext=(0, 4),
                            textcoords="offset points")
        highest = max([float(x.recovered) for x in t] + [float(x.cost or 0) for x in t] + [1.0])
        ax.set_ylim(top=highest * 1.3)   # room for the legend above the bars
        style_monthly_axes(ax, plot_title(org_name, f"cost recovery ({currency}, by service month)\n"
                                          + summary(totals.values(), currency)), currency, legend_columns=2)
    save_png(fig, path)


def summary(totals, currency: str) -> str:
    """'recovered 1,234 USD for 1,000 USD of cloud cost: 123%', over the months whose cost is known."""
    totals = list(totals)
    known = [t for t in totals if t.cost is not None]
    if not known:
        return (f"recovered {sum((t.recovered for t in totals), ZERO):,.0f} {currency}; cloud cost unknown "
                "(months finalized without evidence)")
    recovered, cost = sum((t.recovered for t in known), ZERO), sum((t.cost for t in known), ZERO)
    text = f"recovered {recovered:,.0f} {currency} for {cost:,.0f} {currency} of cloud cost"
    if not all(t.comparable for t in known):
        text += " (some communities are billed in another currency than their cost: no ratio)"
    elif ratio(recovered, cost) is not None:
        text += f": {ratio(recovered, cost) * 100:.0f}% (each month's above its bar)"
    if len(known) < len(totals):
        text += f", in the {len(known)} months whose cost is known"
    return text


def write_recovery_report(org, opts) -> list[RecoveryRow]:
    """recovery.csv and recovery.png in the output folder, from the ledger; returns the rows.

    `opts`: the run's options (`billing.pipeline.RunOptions`: out_dir, ledger_url, and its object store).
    """
    from billing import ledger as ledger_mod

    opts.activate()
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))
    try:
        documents = ledger_mod.all_finalized(engine)
        evidence = {}
        for month in sorted({d.month for d in documents}):
            kept = ledger_mod.finalized_month(engine, month)[1]
            evidence[month] = MonthEvidence.from_json(kept.body) if kept is not None else None
    finally:
        engine.dispose()
    rows = recovery_rows(documents, evidence)
    write_recovery_csv(opts.out_dir / "recovery.csv", rows)
    write_recovery_plot(opts.out_dir / "recovery.png", rows, org.name)
    return rows
