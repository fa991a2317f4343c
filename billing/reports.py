"""Revenue reports for leadership: a CSV by month and community, and a plot."""
from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from billing.ledger import Invoice
from billing.money import ZERO
from billing.outputs import write_csv
from billing.fileio import atomic_write_bytes

FEE_KINDS = {"fee", "uplift", "usage"}
CLOUD_KINDS = {"cloud", "markup"}


@dataclass
class RevenueRow:
    month: str
    community: str
    currency: str
    fees: Decimal = ZERO
    cloud: Decimal = ZERO
    adjustments: Decimal = ZERO
    subsidies: Decimal = ZERO          # negative: what funders took over from the community
    grant_funded: Decimal = ZERO       # billed to funders for this community
    non_grant: Decimal = ZERO          # billed to the community itself

    @property
    def total(self) -> Decimal:
        return self.grant_funded + self.non_grant


def revenue_rows(invoices: list[Invoice]) -> list[RevenueRow]:
    """Finalized invoices summed by month and community; funder lines count for the community they cover."""
    rows: dict[tuple[str, str, str], RevenueRow] = {}
    for inv in invoices:
        if inv.status != "finalized":
            continue
        for line in inv.lines:
            community = line.community or inv.party_id
            key = (inv.month, community, inv.currency)
            row = rows.setdefault(key, RevenueRow(*key))
            if inv.party_kind == "funder":
                row.grant_funded += line.amount
                continue
            row.non_grant += line.amount
            if line.kind in FEE_KINDS:
                row.fees += line.amount
            elif line.kind in CLOUD_KINDS:
                row.cloud += line.amount
            elif line.kind == "subsidy":
                row.subsidies += line.amount
            else:
                row.adjustments += line.amount
    return [rows[k] for k in sorted(rows)]


def write_revenue_csv(path: Path, rows: list[RevenueRow]) -> None:
    header = ["month", "community", "currency", "fees", "cloud_passthrough", "adjustments", "subsidies",
              "grant_funded", "non_grant", "total"]
    write_csv(path, header, ([r.month, r.community, r.currency, r.fees, r.cloud, r.adjustments, r.subsidies,
                              r.grant_funded, r.non_grant, r.total] for r in rows))


def write_revenue_plot(path: Path, rows: list[RevenueRow], org_name: str) -> None:
    """Bars of monthly non-grant revenue (per currency), with grant-funded revenue stacked above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    months = sorted({r.month for r in rows})
    currencies = sorted({r.currency for r in rows}) or ["USD"]
    fig, axes = plt.subplots(len(currencies), 1, figsize=(10, 4.5 * len(currencies)), squeeze=False)
    for ax, currency in zip(axes[:, 0], currencies):
        non_grant = defaultdict(lambda: ZERO)
        grant = defaultdict(lambda: ZERO)
        for r in rows:
            if r.currency == currency:
                non_grant[r.month] += r.non_grant
                grant[r.month] += r.grant_funded
        # Plotting needs floats; the figures themselves come from exact sums above.
        ng = [float(non_grant[m]) for m in months]
        gr = [float(grant[m]) for m in months]
        ax.bar(months, ng, color="#1f6f8b", label="Non-grant revenue (billed to communities)")
        ax.bar(months, gr, bottom=ng, color="#b9d7e3", label="Grant-funded (billed to funders)")
        for x, value in zip(months, ng):
            ax.annotate(f"{value:,.0f}", (x, value), ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                        textcoords="offset points")
        # "$" would start matplotlib's math text in a name such as "Data $cience".
        ax.set_title(f"{org_name}: monthly non-grant revenue ({currency})".replace("$", r"\$"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_ylabel(currency)
        ax.tick_params(axis="x", labelrotation=45)
        ax.legend(loc="upper left", frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
