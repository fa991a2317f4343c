"""`make bench` at a tiny size: it runs through and its last line has every key (the real sizes take minutes)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("ratio_vs_duckdb", "peak_mb", "e2e_month_s", "pdf_vs_bare", "core_speedup", "rerun_share")


def test_bench_prints_every_key(tmp_path):
    env = dict(os.environ, BENCH_ROWS="10000", BENCH_COMMUNITIES="2", BENCH_SAMPLE="1", BENCH_DATA=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "benchmarks.ingest_bench"], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    last = out.strip().splitlines()[-1]
    figures = dict(pair.split("=", 1) for pair in last.split())
    assert tuple(figures) == KEYS, last
    assert all(float(v) > 0 for v in figures.values()), last
    assert "e2e rerun (unchanged month)" in out
