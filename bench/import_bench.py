#!/usr/bin/env python3
"""Import and demo-generation throughput, Omnitrail next to DuckDB on the same files.

Usage: python3 bench/import_bench.py [--customers 100000] [--demo-customers 1000000]

Steps (all in one run, on this machine):
1. `omnitrail demo --no-serve` generates the demo dataset; its wall time is the demo figure.
2. DuckDB turns the demo's Parquet segments into one plain events file in CSV and in Parquet
   (customer_id, timestamp, channel, activity and six properties), sorted by time.
3. `omnitrail import` loads each file into a fresh data dir (durable: fsynced log, then
   compaction into Parquet segments at the end) and DuckDB loads the same file into a table
   of a fresh database file. Both rates are events per second of wall time; the ratio is
   Omnitrail / DuckDB.

Results are printed as a Markdown table and written to bench/out/import.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, build


def ensure_duckdb():
    try:
        import duckdb  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "duckdb"], check=True)
    import duckdb

    return duckdb


def timed(cmd):
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=100_000, help="demo customers for the import files")
    ap.add_argument("--demo-customers", type=int, default=0, help="also time a demo generation of this size")
    args = ap.parse_args()
    duckdb = ensure_duckdb()
    exe = build()
    work = Path(tempfile.mkdtemp(prefix="omnitrail-bench-"))
    results = {"machine": {"cores": os.cpu_count()}, "runs": []}
    try:
        demo_dir = work / "demo"
        secs, _ = timed([str(exe), "demo", "--no-serve", "--data", str(demo_dir), "--customers", str(args.customers)])
        stats = json.loads(subprocess.run([str(exe), "stats", "--format", "json", "--data", str(demo_dir)],
                                          check=True, capture_output=True, text=True).stdout)
        results["runs"].append({"what": f"demo generation, {args.customers} customers", "events": stats["events"],
                                "omnitrail_s": secs})
        if args.demo_customers:
            big = work / "demo-big"
            secs, _ = timed([str(exe), "demo", "--no-serve", "--data", str(big), "--customers", str(args.demo_customers)])
            big_stats = json.loads(subprocess.run([str(exe), "stats", "--format", "json", "--data", str(big)],
                                                  check=True, capture_output=True, text=True).stdout)
            results["runs"].append({"what": f"demo generation, {args.demo_customers} customers",
                                    "events": big_stats["events"], "omnitrail_s": secs})
            shutil.rmtree(big)

        con = duckdb.connect()
        select = (f"SELECT customer_id::VARCHAR AS customer_id, timestamp, channel::VARCHAR AS channel, "
                  f"activity::VARCHAR AS activity, outcome, sentiment, os, device, department, wait_seconds "
                  f"FROM read_parquet('{demo_dir}/segments/*/*/*.parquet') ORDER BY timestamp, seq")
        csv_file, pq_file = work / "events.csv", work / "events.parquet"
        con.execute(f"COPY ({select}) TO '{csv_file}' (HEADER, DELIMITER ',')")
        con.execute(f"COPY ({select}) TO '{pq_file}' (FORMAT PARQUET)")
        n = con.execute(f"SELECT count(*) FROM read_parquet('{pq_file}')").fetchone()[0]
        con.close()

        for label, path, reader in [("CSV", csv_file, "read_csv_auto"), ("Parquet", pq_file, "read_parquet")]:
            data = work / f"import-{label}"
            secs, out = timed([str(exe), "import", str(path), "--data", str(data), "--format", "json"])
            summary = json.loads(out)["files"][0]
            assert summary["imported"] == n, summary
            db = work / f"duck-{label}.db"
            start = time.perf_counter()
            dcon = duckdb.connect(str(db))
            dcon.execute(f"CREATE TABLE events AS SELECT * FROM {reader}('{path}')")
            dcon.execute("CHECKPOINT")
            dcon.close()
            duck_s = time.perf_counter() - start
            results["runs"].append({"what": f"import {label} ({path.stat().st_size // (1 << 20)} MiB)", "events": n,
                                    "omnitrail_s": secs, "duckdb_s": duck_s})
            shutil.rmtree(data)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "import.json").write_text(json.dumps(results, indent=2))
    print("| what | events | Omnitrail | events/s | DuckDB | Omnitrail / DuckDB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results["runs"]:
        rate = r["events"] / r["omnitrail_s"]
        duck = f"{r['duckdb_s']:.2f} s" if "duckdb_s" in r else "—"
        ratio = f"{r['duckdb_s'] / r['omnitrail_s']:.2f}× the speed" if "duckdb_s" in r else "—"
        print(f"| {r['what']} | {r['events']:,} | {r['omnitrail_s']:.2f} s | {rate:,.0f} | {duck} | {ratio} |")


if __name__ == "__main__":
    main()
