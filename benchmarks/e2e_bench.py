"""Benchmark: one month of a large organization, end to end, through the pipeline users run.

A generated organization of 1,000 communities and 3,000 hubs (200 dedicated
clusters of 3 hubs, 50 shared clusters of 48 hubs) and one FOCUS Parquet
file with BENCH_ROWS cost rows in January 2022 (default 1e7; generated once,
deterministically, under bench-data/) go through `billing.pipeline.run_month`:
ingest, attribution, pricing, finalization in a real ledger (SQLite in a temp
dir), the PDFs and the CSVs. Each stage is timed by wrapping (not replacing)
the functions `run_month` calls. Then:

- the same month is run again: nothing changed, so nothing is re-rendered or
  re-finalized; `rerun_share` is its time over the first run's;
- `pdf_vs_bare`: our `render_pdf` against bare WeasyPrint on the same HTML,
  per invoice, in one process;
- `core_speedup`: `render_many` of the same invoices on 1 process and on
  every core.

    python -m benchmarks.e2e_bench    # BENCH_ROWS=10000 BENCH_COMMUNITIES=10: a quick run
"""
from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DATA = Path(os.environ.get("BENCH_DATA", "bench-data"))
TAG = "2i2c:hub-name"
DEDICATED_HUBS = 3          # a dedicated cluster: one community, 3 hubs
SHARED_HUBS = 48            # a shared cluster: 16 communities of 3 hubs each
HUBS_PER_COMMUNITY = 3
BILLING_ACCOUNT = "999900000000"
MONTH = (2022, 1)
# Invoices rendered by us and by bare WeasyPrint, and on 1 process and on every core (BENCH_SAMPLE caps both).
BARE_SAMPLE = min(24, int(os.environ.get("BENCH_SAMPLE", 24)))
CORES_SAMPLE = min(64, int(os.environ.get("BENCH_SAMPLE", 64)))


@dataclass(frozen=True)
class Shape:
    """The generated organization: a fifth of the communities on dedicated clusters, the rest on shared ones."""

    communities: int

    @property
    def dedicated(self) -> int:
        return max(1, self.communities // 5)

    @property
    def shared_communities(self) -> int:
        return self.communities - self.dedicated

    @property
    def shared(self) -> int:
        per_cluster = SHARED_HUBS // HUBS_PER_COMMUNITY
        return -(-self.shared_communities // per_cluster)

    @property
    def clusters(self) -> int:
        return self.dedicated + self.shared

    def hubs_of(self, cluster: int) -> int:
        if cluster < self.dedicated:
            return DEDICATED_HUBS
        return min(SHARED_HUBS, HUBS_PER_COMMUNITY * (self.shared_communities
                                                      - (cluster - self.dedicated) * SHARED_HUBS // HUBS_PER_COMMUNITY))


def bench_rows(default: int = 10_000_000) -> int:
    return int(float(os.environ.get("BENCH_ROWS", default)))


def bench_shape(default: int = 1000) -> Shape:
    return Shape(int(os.environ.get("BENCH_COMMUNITIES", default)))


def sub_account(cluster: int) -> str:
    return f"{200000000000 + cluster:012d}"


def generate(path: Path, rows: int, shape: Shape) -> None:
    """The month's FOCUS rows (plus a few of February), deterministic; kept across runs."""
    import duckdb

    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    n = shape.clusters
    hubs = "[" + ", ".join(str(shape.hubs_of(c)) for c in range(n)) + "]"
    partial = path.with_suffix(".partial")
    con = duckdb.connect(config={"threads": 2})
    # Row i: cluster i % n; hub (i // n) % (hubs + 1) of that cluster, the last "hub" being its untagged overhead.
    con.execute(f"""
        COPY (
            WITH r AS (SELECT i, i % {n} AS c, {hubs}[1 + i % {n}] AS nh FROM range({rows}) t(i)),
                 h AS (SELECT *, (i // {n}) % (nh + 1) AS h FROM r)
            SELECT 'AWS' AS ProviderName, '{BILLING_ACCOUNT}' AS BillingAccountId,
                   printf('%012d', 200000000000 + c) AS SubAccountId,
                   CASE WHEN i % 1000 = 999 THEN TIMESTAMPTZ '2022-02-01 00:00:00+00'
                        ELSE TIMESTAMPTZ '2022-01-01 00:00:00+00' END AS BillingPeriodStart,
                   TIMESTAMPTZ '2022-01-01 00:00:00+00' + to_hours(i % 744) AS ChargePeriodStart,
                   CASE WHEN i % 997 = 0 THEN 'Tax' WHEN i % 991 = 0 THEN 'Credit' ELSE 'Usage' END AS ChargeCategory,
                   CAST(NULL AS VARCHAR) AS ChargeClass,
                   ['Amazon Elastic Compute Cloud', 'Amazon Simple Storage Service', 'Amazon Virtual Private Cloud',
                    'Amazon Elastic Kubernetes Service'][1 + (i // 7) % 4] AS ServiceName,
                   ['Compute', 'Storage', 'Networking', 'Compute'][1 + (i // 7) % 4] AS ServiceCategory,
                   CAST((CASE WHEN i % 991 = 0 THEN -1 ELSE 1 END) * ((i * 7919) % 1000000) / 1000000.0
                        AS DECIMAL(38,10)) AS BilledCost,
                   'USD' AS BillingCurrency,
                   CASE WHEN h = nh THEN '{{"2i2c:node-purpose": "core"}}'
                        ELSE '{{"{TAG}": "hub' || h || '", "2i2c:node-purpose": "user"}}'
                   END AS Tags
            FROM h
        ) TO '{partial}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)
    """)
    partial.rename(path)


def organization_data(focus: Path, shape: Shape) -> dict:
    """The communities, hubs and clusters of `shape`, every cluster reading the one FOCUS file."""
    communities, clusters, hubs = [], [], []

    def community(cid: str, i: int) -> None:
        communities.append({"id": cid, "name": f"Community {i:04d}", "kind": ("education", "research")[i % 2],
                            "currency": "USD", "pricing_plan": ("standard", "partner")[i % 5 == 0],
                            "billing_contact": {"name": f"Treasurer {i:04d}", "email": f"t{i}@c{i}.example.org",
                                                "address": [f"{i} Example Street", "Springfield", "United States"]}})

    def cluster(i: int, **extra) -> str:
        cid = f"cl{i:03d}"
        clusters.append({"id": cid, "provider": "aws", "billing_account": BILLING_ACCOUNT,
                         "sub_accounts": [sub_account(i)], "hub_tag": TAG,
                         "source": {"type": "focus", "path": str(focus)}, **extra})
        return cid

    for i in range(shape.dedicated):
        comm = f"k{len(communities):04d}"
        community(comm, len(communities))
        cid = cluster(i, tenancy="dedicated", community=comm)
        hubs += [{"id": f"{cid}-hub{h}", "cluster": cid, "community": comm, "tag_value": f"hub{h}"}
                 for h in range(shape.hubs_of(i))]
    for i in range(shape.dedicated, shape.clusters):
        cid = cluster(i, tenancy="shared", split={"rule": "direct_cost"})
        for h in range(shape.hubs_of(i)):
            if h % HUBS_PER_COMMUNITY == 0:
                community(f"k{len(communities):04d}", len(communities))
            hubs.append({"id": f"{cid}-hub{h}", "cluster": cid, "community": communities[-1]["id"],
                         "tag_value": f"hub{h}"})
    plans = [{"id": "standard", "name": "Standard: monthly fee by kind, cloud at cost", "currency": "USD",
              "charges": [{"model": "tier_fee", "fees": {"education": "1000.00", "research": "1500.00",
                                                         "partnership": "4166.67"}},
                          {"model": "dedicated_uplift", "percent": "50"},
                          {"model": "cloud_passthrough"}]},
             {"id": "partner", "name": "Partner: fee by kind, cloud cost plus 10%", "currency": "USD",
              "charges": [{"model": "tier_fee", "fees": {"education": "1000.00", "research": "1500.00",
                                                         "partnership": "4166.67"}},
                          {"model": "cloud_passthrough"}, {"model": "markup", "percent": "10"}]}]
    issuer = {"name": "Bench Hubs Collaborative", "address": ["1 Bench Road", "Oakland, CA 94601", "United States"],
              "country": "US", "email": "billing@bench.example.org", "payment_terms_days": 30,
              "invoice_prefix": "BEN"}
    return {"name": "Bench Hubs Collaborative", "issuer": issuer, "pricing_plans": plans,
            "communities": communities, "clusters": clusters, "hubs": hubs}


def organization(focus: Path, shape: Shape):
    from billing.config import parse_organization

    return parse_organization(organization_data(focus, shape), "e2e-bench", focus.parent)


class StageClock:
    """Seconds spent in each named function while installed (wrapping, not replacing, what the pipeline calls)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
        return timed

    @contextmanager
    def installed(self):
        """Time the stages `billing.closing.close_month` goes through; `stage` times those of run_month."""
        from billing import closing

        names = {"plan_months": "pricing", "render_plan": "pdfs", "finalize_plan": "finalize",
                 "write_invoices_csv": "csvs", "stage_evidence": "csvs"}
        saved = {attr: getattr(closing, attr) for attr in names}
        for attr, name in names.items():
            setattr(closing, attr, self.wrap(name, saved[attr]))
        try:
            yield
        finally:
            for attr, fn in saved.items():
                setattr(closing, attr, fn)

    def stage(self, fn):
        names = {"fetch_costs": "ingest", "load_usage": "usage", "attribute_costs": "attribution",
                 "close_month": "close"}
        return self.wrap(names.get(fn.__name__, fn.__name__), fn)


def run_once(org, opts) -> tuple[float, dict[str, float], object]:
    from billing.ingest import _cached_sha256
    from billing.months import Month
    from billing.pipeline import run_month

    _cached_sha256.cache_clear()   # as a new process would: the rerun hashes its input again
    clock = StageClock()
    start = time.perf_counter()
    with clock.installed():
        result = run_month(org, Month(*MONTH), opts, stage=clock.stage)
    return time.perf_counter() - start, dict(clock.seconds), result


def outputs(out: Path) -> dict[str, int]:
    """Every output file of the month and when it was last written."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in (out / f"{MONTH[0]}-{MONTH[1]:02d}").rglob("*")
            if p.is_file()}


def pdf_vs_bare(docs: list, folder: Path) -> float:
    """Our render_pdf over bare WeasyPrint on the same HTML: total seconds, interleaved, after a warm-up."""
    import weasyprint

    from invoices.render import TEMPLATES_DIR, render_html, render_pdf

    base = str(TEMPLATES_DIR) + os.sep
    ours = bare = 0.0
    render_pdf(docs[0], folder / "warm.pdf")
    weasyprint.HTML(string=render_html(docs[0]), base_url=base).write_pdf()
    for i, doc in enumerate(docs):
        start = time.perf_counter()
        render_pdf(doc, folder / f"ours-{i}.pdf")
        ours += time.perf_counter() - start
        html = render_html(doc)   # the bare side gets its HTML for free
        start = time.perf_counter()
        weasyprint.HTML(string=html, base_url=base).write_pdf()
        bare += time.perf_counter() - start
    return ours / bare


def core_speedup(docs: list, folder: Path, rounds: int = 2) -> tuple[float, float, int]:
    """render_many on one process against every core, in turn, best of `rounds` each (other work on a shared
    machine only ever slows a round down): (seconds on 1, seconds on all, cores)."""
    from invoices.render import render_many

    cores = os.cpu_count() or 1
    timings: dict[int, float] = {}
    for r in range(rounds):
        for workers in (1, cores):
            jobs = [(doc, folder / f"r{r}-w{workers}-{i}.pdf") for i, doc in enumerate(docs)]
            start = time.perf_counter()
            render_many(jobs, workers=workers)
            timings[workers] = min(timings.get(workers, float("inf")), time.perf_counter() - start)
    return timings[1], timings[cores], cores


def main() -> dict:
    """Generate (or reuse) the input, run the month twice, then time the renderers; returns the figures."""
    from billing.documents import document_for
    from billing.pipeline import RunOptions

    rows, shape = bench_rows(), bench_shape()
    focus = (DATA / f"e2e-focus-{rows}-{shape.communities}.parquet").resolve()
    start = time.perf_counter()
    generate(focus, rows, shape)
    generated = time.perf_counter() - start
    org = organization(focus, shape)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="billing-e2e-") as tmp:
        out = Path(tmp) / "out"
        opts = RunOptions(out_dir=out, ledger_url=f"sqlite:///{tmp}/ledger.db", today=dt.date(2022, 3, 1),
                          issue_date=dt.date(2022, 2, 5), actor="bench", workers=cores)
        first, stages, result = run_once(org, opts)
        written = outputs(out)
        rerun, rerun_stages, again = run_once(org, opts)
        rewritten = sorted(p for p, stamp in outputs(out).items() if written.get(p) != stamp)
        if len(result.invoices) != len(org.communities) or again.created or rewritten:
            raise SystemExit(f"unexpected run: {len(result.invoices)} documents for {len(org.communities)} "
                             f"communities; the rerun created {again.created} and rewrote {rewritten[:5]}")
        pdfs = len(list((out / f"{MONTH[0]}-{MONTH[1]:02d}" / "invoices").glob("*.pdf")))
        # Spread over the month: dedicated and shared communities, both plans.
        step = max(1, len(result.invoices) // CORES_SAMPLE)
        sample = [document_for(inv) for inv in result.invoices[::step][:CORES_SAMPLE]]
        folder = Path(tmp) / "sample"
        folder.mkdir()
        vs_bare = pdf_vs_bare(sample[:BARE_SAMPLE], folder)
        one, all_cores, cores = core_speedup(sample, folder)
    return {"rows": rows, "communities": len(org.communities), "hubs": len(org.hubs), "pdfs": pdfs,
            "generate_s": generated, "first_s": first, "stages": stages, "rerun_s": rerun,
            "rerun_stages": rerun_stages, "pdf_per_s_per_core": pdfs / stages["pdfs"] / cores,
            "pdf_vs_bare": vs_bare, "bare_sample": min(BARE_SAMPLE, len(sample)), "cores_sample": len(sample),
            "render_1_s": one, "render_all_s": all_cores, "cores": cores, "core_speedup": one / all_cores,
            "rerun_share": rerun / first}


def describe(f: dict) -> list[str]:
    """Human lines for the figures of `main`."""
    stages = " ".join(f"{k}={v:.2f}s" for k, v in f["stages"].items())
    rerun = " ".join(f"{k}={v:.2f}s" for k, v in f["rerun_stages"].items())
    return [f"e2e: {f['rows']:,} rows, {f['communities']:,} communities, {f['hubs']:,} hubs, {f['pdfs']:,} PDFs "
            f"(input generated or reused in {f['generate_s']:.1f}s)",
            f"e2e first run: {f['first_s']:.2f}s: {stages}",
            f"e2e rerun (unchanged month): {f['rerun_s']:.2f}s: {rerun}",
            f"e2e PDFs: {f['pdf_per_s_per_core']:.2f} per second per core in the month's run; render_pdf vs bare "
            f"WeasyPrint on the same HTML ({f['bare_sample']} invoices): {f['pdf_vs_bare']:.3f}x; "
            f"{f['cores_sample']} invoices on 1 process {f['render_1_s']:.2f}s, on {f['cores']} "
            f"{f['render_all_s']:.2f}s (best of 2 each): speed-up {f['core_speedup']:.2f}x"]


def summary(f: dict) -> str:
    """The e2e part of the bench's last line."""
    return (f"e2e_month_s={f['first_s']:.1f} pdf_vs_bare={f['pdf_vs_bare']:.3f} core_speedup={f['core_speedup']:.2f} "
            f"rerun_share={f['rerun_share']:.4f}")


if __name__ == "__main__":
    figures = main()
    for line in describe(figures):
        print(line)
    print(summary(figures))
