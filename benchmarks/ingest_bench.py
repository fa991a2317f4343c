"""Benchmark: ingest + attribute against a bare DuckDB GROUP BY over the same FOCUS file, then a month end to end.

For 1e5, 1e6 and 1e7 rows (or BENCH_ROWS) it generates a FOCUS Parquet file
(DuckDB, under bench-data/), then times in separate processes (so peak
memory is each one's own): our `ingest_month` + `attribute` + `reconcile`,
and the minimal DuckDB query answering the same question. Then the
end-to-end case (`benchmarks.e2e_bench`): a month of 1,000 communities
through `run_month`, PDFs and ledger included, and its rerun. The last line
is `ratio_vs_duckdb=<x> peak_mb=<y>` for the largest size, then
`e2e_month_s= pdf_vs_bare= core_speedup= rerun_share=`.

    make bench                                   # all sizes, then the e2e case (a few minutes at 1e7 rows)
    python -m benchmarks.ingest_bench --sizes 100000 --no-e2e
    BENCH_ROWS=10000 BENCH_COMMUNITIES=2 BENCH_SAMPLE=2 python -m benchmarks.ingest_bench   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(os.environ.get("BENCH_DATA", "bench-data"))
N_ACCOUNTS, N_HUBS_PER_ACCOUNT = 20, 4
TAG = "2i2c:hub-name"


def generate(path: Path, rows: int) -> None:
    import duckdb

    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"""
        COPY (
            SELECT 'AWS' AS ProviderName, '999900000000' AS BillingAccountId,
                   printf('%012d', 100000000000 + (i % {N_ACCOUNTS})) AS SubAccountId,
                   TIMESTAMPTZ '2022-01-01 00:00:00+00' AS BillingPeriodStart,
                   TIMESTAMPTZ '2022-01-01 00:00:00+00' + to_hours(i % 744) AS ChargePeriodStart,
                   CASE WHEN i % 97 = 0 THEN 'Tax' WHEN i % 89 = 0 THEN 'Credit' ELSE 'Usage' END AS ChargeCategory,
                   CAST(NULL AS VARCHAR) AS ChargeClass,
                   ['Amazon Elastic Compute Cloud', 'Amazon Simple Storage Service', 'Amazon Virtual Private Cloud',
                    'Amazon Elastic Kubernetes Service'][1 + i % 4] AS ServiceName,
                   ['Compute', 'Storage', 'Networking', 'Compute'][1 + i % 4] AS ServiceCategory,
                   CAST((CASE WHEN i % 89 = 0 THEN -1 ELSE 1 END) * ((i * 7919) % 1000000) / 1000000.0 AS DECIMAL(38,10)) AS BilledCost,
                   'USD' AS BillingCurrency,
                   CASE WHEN i % 5 = 0 THEN '{{}}'
                        ELSE '{{"{TAG}": "hub' || ((i // {N_ACCOUNTS}) % {N_HUBS_PER_ACCOUNT}) || '", "2i2c:node-purpose": "user"}}'
                   END AS Tags
            FROM range({rows}) t(i)
        ) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)
    """)


def organization(path: Path):
    from billing.config import parse_organization

    contact = {"name": "x"}
    clusters, hubs, communities = [], [], []
    for a in range(N_ACCOUNTS):
        shared = a % 4 == 0
        cid = f"c{a}"
        clusters.append({"id": cid, "provider": "aws", "billing_account": "999900000000",
                         "sub_accounts": [f"{100000000000 + a:012d}"], "hub_tag": TAG,
                         "tenancy": "shared" if shared else "dedicated", "community": None if shared else f"k{a}",
                         "split": {"rule": "direct_cost"} if shared else None,
                         # generate() tags no row of the sub-accounts a % 5 == 0 (i % 5 == 0 gives Tags {})
                         "untagged_ok": a % 5 == 0,
                         "source": {"type": "focus", "path": str(path)}})
        for h in range(N_HUBS_PER_ACCOUNT):
            community = f"k{a}-{h}" if shared else f"k{a}"
            hubs.append({"id": f"{cid}-hub{h}", "cluster": cid, "community": community, "tag_value": f"hub{h}"})
            if not any(c["id"] == community for c in communities):
                communities.append({"id": community, "name": community, "kind": "education",
                                    "pricing_plan": "p", "billing_contact": contact})
    data = {"name": "bench", "issuer": {"name": "bench"}, "communities": communities, "clusters": clusters,
            "hubs": hubs, "pricing_plans": [{"id": "p", "name": "p", "charges": [{"model": "cloud_passthrough"}]}]}
    return parse_organization(data, "bench", Path("."))


def measure_ours(path: Path) -> float:
    from billing.attribution import attribute, reconcile
    from billing.ingest import ingest_month
    from billing.months import Month
    from billing.sources import SnapshotStore
    from billing.usage import MonthUsage

    org = organization(path)
    start = time.perf_counter()
    ingested = ingest_month(org, Month(2022, 1), SnapshotStore(DATA / "snapshots"))
    attributed = attribute(org, ingested, MonthUsage("none"))
    reconcile(ingested, attributed)
    return time.perf_counter() - start


def measure_duckdb(path: Path) -> float:
    import duckdb

    con = duckdb.connect(config={"threads": 2})
    start = time.perf_counter()
    con.execute(f"""SELECT SubAccountId, json_extract_string(Tags, '$."{TAG}"') AS hub, ServiceCategory,
                           ChargeCategory, sum(BilledCost) FROM read_parquet('{path}') GROUP BY ALL""").fetchall()
    return time.perf_counter() - start


def peak_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries the forking parent's into it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, path: Path) -> dict:
    """Run one measurement in its own process; returns its time and peak RSS."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.ingest_bench", "--child", kind, str(path)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    rows = os.environ.get("BENCH_ROWS")
    parser.add_argument("--sizes", default=str(int(float(rows))) if rows else "100000,1000000,10000000")
    parser.add_argument("--no-e2e", action="store_true", help="only the ingest + attribution case")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"))
    args = parser.parse_args()
    if args.child:
        kind, path = args.child[0], Path(args.child[1])
        seconds = measure_ours(path) if kind == "ours" else measure_duckdb(path)
        print(json.dumps({"seconds": seconds, "peak_mb": peak_mb()}))
        return
    last = None
    for rows in (int(s) for s in args.sizes.split(",")):
        path = (DATA / f"focus-{rows}.parquet").resolve()
        generate(path, rows)
        ours = min((child("ours", path) for _ in range(2)), key=lambda r: r["seconds"])
        base = min((child("duckdb", path) for _ in range(2)), key=lambda r: r["seconds"])
        ratio = ours["seconds"] / base["seconds"]
        print(f"rows={rows:>10,} ours={ours['seconds']:.3f}s duckdb={base['seconds']:.3f}s ratio={ratio:.2f} "
              f"peak_mb={ours['peak_mb']:.0f} (duckdb alone {base['peak_mb']:.0f})", flush=True)
        last = (ratio, ours["peak_mb"])
    line = f"ratio_vs_duckdb={last[0]:.2f} peak_mb={last[1]:.0f}"
    if not args.no_e2e:
        from benchmarks import e2e_bench

        figures = e2e_bench.main()
        for text in e2e_bench.describe(figures):
            print(text, flush=True)
        line += " " + e2e_bench.summary(figures)
    print(line)


if __name__ == "__main__":
    main()
