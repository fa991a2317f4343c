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
from pricing_models.base import REPORT_GROUPS

BASES = ("issued", "service")


@dataclass
class RevenueRow:
    month: str                         # the month documents were issued in (or the service month they concern)
    community: str
    currency: str
    fees: Decimal = ZERO
    cloud: Decimal = ZERO              # cloud cost passed through at cost
    markup: Decimal = ZERO             # margin on cloud cost: revenue, not pass-through
    adjustments: Decimal = ZERO
    subsidies: Decimal = ZERO          # negative: what funders took over from the community
    grant_funded: Decimal = ZERO       # billed to funders for this community
    non_grant: Decimal = ZERO          # billed to the community itself

    @property
    def total(self) -> Decimal:
        return self.grant_funded + self.non_grant


def revenue_rows(documents: list[Invoice], basis: str = "issued") -> list[RevenueRow]:
    """Finalized documents summed by month and community; funder lines count for the community they cover.

    Every finalized document counts, credit notes negatively: by default in
    the month it was issued (an original in its month, its credit note and
    replacement in theirs), or, with basis "service", in the service month
    it concerns.
    """
    rows: dict[tuple[str, str, str], RevenueRow] = {}
    for doc in documents:
        if doc.status == "draft":
            continue
        month = doc.issue_date.strftime("%Y-%m") if basis == "issued" else doc.month
        for line in doc.lines:
            community = line.community or doc.party_id
            key = (month, community, doc.currency)
            row = rows.setdefault(key, RevenueRow(*key))
            if doc.party_kind == "funder":
                row.grant_funded += line.amount
                continue
            row.non_grant += line.amount
            group = REPORT_GROUPS[line.kind]
            setattr(row, group, getattr(row, group) + line.amount)
    return [rows[k] for k in sorted(rows)]


def write_revenue_csv(path: Path, rows: list[RevenueRow]) -> None:
    header = ["month", "community", "currency", "fees", "cloud_passthrough", "markup", "adjustments", "subsidies",
              "grant_funded", "non_grant", "total"]
    write_csv(path, header, ([r.month, r.community, r.currency, r.fees, r.cloud, r.markup, r.adjustments,
                              r.subsidies, r.grant_funded, r.non_grant, r.total] for r in rows))


# One plot style for every report: the same colors for the same things, the same axes, reproducible bytes.
COLORS = {"community": "#1f6f8b",       # billed to communities (fees, non-grant revenue)
          "passthrough": "#5b9db5",     # cloud cost passed through to communities
          "grant": "#b9d7e3",           # billed to funders
          "cost": "#c8553d"}            # cloud cost incurred


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def monthly_figure(panels: int):
    """A figure with one full-width panel per currency; returns (figure, axes)."""
    fig, axes = pyplot().subplots(panels, 1, figsize=(10, 4.5 * panels), squeeze=False)
    return fig, list(axes[:, 0])


def plot_title(org_name: str, what: str) -> str:
    """'<org>: <what>' with any "$" escaped: "$" would start matplotlib's math text in a name such as
    "Data $cience"."""
    return f"{org_name}: {what}".replace("$", r"\$")


def style_monthly_axes(ax, title: str, currency: str, legend_columns: int = 1) -> None:
    """Title, amounts with thousands separators in `currency`, slanted month labels, a plain frame."""
    from matplotlib.ticker import FuncFormatter

    ax.set_title(title)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylabel(currency)
    ax.tick_params(axis="x", labelrotation=45)
    ax.legend(loc="upper left", ncols=legend_columns, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)


def save_png(fig, path: Path) -> None:
    """Write the figure atomically as a PNG whose bytes depend only on the figure (no software stamp)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def write_revenue_plot(path: Path, rows: list[RevenueRow], org_name: str, basis: str = "issued") -> None:
    """Bars of monthly non-grant revenue (per currency), with grant-funded revenue stacked above."""
    months = sorted({r.month for r in rows})
    currencies = sorted({r.currency for r in rows}) or ["USD"]
    fig, axes = monthly_figure(len(currencies))
    for ax, currency in zip(axes, currencies):
        non_grant = defaultdict(lambda: ZERO)
        grant = defaultdict(lambda: ZERO)
        for r in rows:
            if r.currency == currency:
                non_grant[r.month] += r.non_grant
                grant[r.month] += r.grant_funded
        # Plotting needs floats; the figures themselves come from exact sums above.
        ng = [float(non_grant[m]) for m in months]
        gr = [float(grant[m]) for m in months]
        ax.bar(months, ng, color=COLORS["community"], label="Non-grant revenue (billed to communities)")
        ax.bar(months, gr, bottom=ng, color=COLORS["grant"], label="Grant-funded (billed to funders)")
        for x, value in zip(months, ng):
            ax.annotate(f"{value:,.0f}", (x, value), ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                        textcoords="offset points")
        by = "by month issued" if basis == "issued" else "by service month"
        style_monthly_axes(ax, plot_title(org_name, f"monthly non-grant revenue ({currency}, {by})"), currency)
    save_png(fig, path)
