"""What-if, from the real history: price invoiced months under proposed pricing (`billing simulate`).

For each month of the range, the cost attributed to each community is the
evidence the month was invoiced from (kept in the ledger at finalization)
and its usage comes from the usage files; the pricing is the configuration
given (or one of its plans, for some or all communities). What the
communities actually owed is read from the ledger's finalized documents,
credit notes included. A community's total is all of its charges whoever
pays them: its own documents plus what its funder was billed for it, and
what it paid from a prepaid balance (a draw pays a charge, it does not
lower it). A
difference carried to a later invoice counts in the month it corrects, and
a voided invoice's party is left out of both sides. Nothing is written to
the ledger, no number is taken and no PDF is rendered.

Outputs: `DIR/simulation.csv` (month, community, currency, current_total,
proposed_total, difference) and `DIR/simulation.png`.
"""
from __future__ import annotations

import dataclasses
import io
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from billing import ledger as ledger_mod
from billing.attribution import AttributedCost
from billing.config import Organization
from billing.errors import InputError
from billing.evidence import MonthEvidence
from billing.fileio import atomic_write_bytes
from billing.money import ZERO, format_money
from billing.months import Month, month_range
from billing.outputs import write_csv
from billing.pricing import one_off_charges, price_month, state_before
from billing.usage import load_usage


@dataclass(frozen=True)
class SimulationRow:
    month: str
    community: str
    currency: str
    current_total: Decimal
    proposed_total: Decimal

    @property
    def difference(self) -> Decimal:
        return self.proposed_total - self.current_total


@dataclass
class Simulation:
    first: Month
    last: Month
    what: str                                  # "plan usage-2026 for 12 communities", "proposed.yaml"
    rows: list[SimulationRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, tuple[Decimal, Decimal]]:
        sums: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
        for r in self.rows:
            sums[r.currency][0] += r.current_total
            sums[r.currency][1] += r.proposed_total
        return {c: (a, b) for c, (a, b) in sorted(sums.items())}

    def summary(self) -> str:
        lines = [f"simulation of {self.what}, {self.first} to {self.last}: {len(self.rows)} row(s)"]
        for currency, (current, proposed) in self.totals().items():
            diff = proposed - current
            lines.append(f"  {currency}: invoiced {format_money(current, currency)}, proposed "
                         f"{format_money(proposed, currency)} ({'+' if diff >= 0 else ''}"
                         f"{format_money(diff, currency)})")
        lines += [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


def _with_plan(org: Organization, plan: str, communities: list[str]) -> Organization:
    if plan not in {p.id for p in org.pricing_plans}:
        raise InputError(f"--plan {plan!r}: no such plan; known: {sorted(p.id for p in org.pricing_plans)}")
    known = {c.id for c in org.communities}
    unknown = [c for c in communities if c not in known]
    if unknown:
        raise InputError(f"--community {', '.join(unknown)}: no such community")
    chosen = set(communities) or known
    currency = org.plan(plan).currency
    wrong = [c.id for c in org.communities if c.id in chosen and c.currency != currency]
    if wrong:
        raise InputError(f"--plan {plan!r} is priced in {currency}, but {', '.join(wrong)} are invoiced in another "
                         "currency; choose them out with --community")
    return org.model_copy(update={"communities": tuple(
        c.model_copy(update={"pricing_plan": plan}) if c.id in chosen else c for c in org.communities)})


def _attributed(evidence: MonthEvidence) -> list[AttributedCost]:
    return [AttributedCost(a.provider, a.billing_account, a.cluster or None, a.hub or None, a.community or None,
                           a.component, a.allocation, a.currency, a.cost, a.note, getattr(a, "corrects", "") or None)
            for a in evidence.attribution]


def _totals(documents, voided: set) -> dict[tuple[str, str, str], Decimal]:
    """(service month, community, currency) -> all its charges, whoever pays them; carried differences count in
    the month they correct."""
    totals: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: ZERO)
    for doc in documents:
        if doc.status == "draft":
            continue
        for line in doc.lines:
            community = line.community or (doc.party_id if doc.party_kind == "community" else None)
            if community is None or line.kind == "prepaid":     # a prepaid draw pays charges, it is not one
                continue
            month = dict(line.details).get("service_month", doc.month) if line.kind == "adjustment" else doc.month
            if (month, ("community", community)) in voided:
                continue
            totals[(month, community, doc.currency)] += line.amount
    return totals


def simulate(org: Organization, first: Month, last: Month, *, out_dir: Path, ledger_url: str | None = None,
             plan: str | None = None, communities: list[str] = ()) -> Simulation:
    """Price the months first..last under `org` (with `plan` for `communities`) and compare with the ledger."""
    proposed = _with_plan(org, plan, list(communities)) if plan else org
    what = (f"plan {plan} for {', '.join(communities) if communities else 'every community'}" if plan
            else f"the pricing of {org.name}")
    result = Simulation(first, last, what)
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(out_dir), ledger_url))
    try:
        documents = ledger_mod.all_finalized(engine)
        simulated: list = []
        voided = set()
        proposed_totals: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: ZERO)
        for month in month_range(first, last):
            _, evidence = ledger_mod.finalized_month(engine, str(month))
            state = ledger_mod.finalized_state(engine, str(month))
            voided |= {(str(month), party) for party, e in state.items() if e.voided}
            if evidence is None:
                result.skipped.append(f"{month}: not finalized (or finalized by a version that kept no evidence)")
                continue
            history = [d for d in documents if d.month < str(first)] + simulated
            charges = price_month(proposed, month, _attributed(MonthEvidence.from_json(evidence.body)),
                                  load_usage(proposed, month), state_before(history, month))
            one_offs = one_off_charges(proposed, month, ledger_mod.recorded_one_offs(engine, str(month)))
            invoices = ledger_mod.build_invoices(proposed, month, charges, "simulation", issue_date=month.end,
                                                 extra=one_offs)
            invoices = [dataclasses.replace(i, status="finalized") for i in invoices
                        if (str(month), (i.party_kind, i.party_id)) not in voided]
            simulated += invoices
            for key, amount in _totals(invoices, voided).items():
                proposed_totals[key] += amount
        current = {k: v for k, v in _totals(documents, voided).items() if str(first) <= k[0] <= str(last)}
    finally:
        engine.dispose()
    done = {str(m) for m in month_range(first, last)} - {s.split(":")[0] for s in result.skipped}
    for key in sorted(set(current) | set(proposed_totals)):
        if key[0] in done:
            result.rows.append(SimulationRow(*key, current.get(key, ZERO), proposed_totals.get(key, ZERO)))
    return result


def write_simulation(out_dir: Path, result: Simulation, org_name: str) -> None:
    header = ["month", "community", "currency", "current_total", "proposed_total", "difference"]
    write_csv(Path(out_dir) / "simulation.csv", header, ([r.month, r.community, r.currency, r.current_total,
                                                          r.proposed_total, r.difference] for r in result.rows))
    write_simulation_plot(Path(out_dir) / "simulation.png", result, org_name)


def write_simulation_plot(path: Path, result: Simulation, org_name: str, top: int = 6) -> None:
    """Per currency: current vs proposed revenue per month, and the communities that gain or lose the most."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    currencies = sorted({r.currency for r in result.rows}) or ["USD"]
    fig, axes = plt.subplots(len(currencies), 2, figsize=(13, 4.8 * len(currencies)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})
    for (monthly, extremes), currency in zip(axes, currencies):
        rows = [r for r in result.rows if r.currency == currency]
        months = sorted({r.month for r in rows})
        current = [float(sum((r.current_total for r in rows if r.month == m), ZERO)) for m in months]
        proposed = [float(sum((r.proposed_total for r in rows if r.month == m), ZERO)) for m in months]
        x = range(len(months))
        monthly.bar([i - 0.2 for i in x], current, width=0.4, color="#1f6f8b", label="Invoiced")
        monthly.bar([i + 0.2 for i in x], proposed, width=0.4, color="#e07a2e", label="Proposed")
        monthly.set_xticks(list(x), months, rotation=45)
        monthly.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        monthly.set_ylabel(currency)
        monthly.set_title(f"{org_name}: revenue per month, invoiced vs proposed ({currency})".replace("$", r"\$"))
        monthly.legend(loc="upper left", frameon=False)
        monthly.spines[["top", "right"]].set_visible(False)
        by_community: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for r in rows:
            by_community[r.community] += r.difference
        ranked = sorted(by_community.items(), key=lambda kv: kv[1])
        chosen = ranked[:top // 2] + [kv for kv in ranked[-(top // 2):] if kv not in ranked[:top // 2]]
        chosen = [kv for kv in chosen if kv[1] != 0]
        names = [name for name, _ in chosen]
        values = [float(v) for _, v in chosen]
        extremes.barh(names, values, color=["#b5443a" if v < 0 else "#3a8b4f" for v in values])
        extremes.axvline(0, color="#444444", linewidth=0.8)
        extremes.xaxis.set_major_locator(MaxNLocator(nbins=5))   # signed thousands are wide: few enough to not touch
        extremes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+,.0f}"))
        extremes.set_title("Largest winners and losers (proposed - invoiced)")
        extremes.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"What-if: {result.what}, {result.first} to {result.last}".replace("$", r"\$"), fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
