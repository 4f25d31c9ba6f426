#!/usr/bin/env python3
"""Analysis speed: Omnitrail's engine next to DuckDB and Polars on the same Parquet file.

Usage: python3 bench/engine_bench.py [--events 10000000] [--customers 1000000] [--repeat 5]

Steps (all in one run, on this machine):
1. Generate ONE Parquet file with a fixed seed: `--events` events of `--customers`
   customers over 30 activities (customer_id, timestamp, activity, channel). Journeys follow
   a Markov chain with skewed transitions, customers have geometric journey lengths, each
   activity prefers a few channels, gaps between events are log-normal (minutes to days).
2. `omnitrail import` it into a fresh data dir.
3. Three queries, each as Omnitrail, DuckDB and Polars:
   - process map: directly-follows edges by activity with count, distinct customers and
     median / mean / p90 transition time, plus events and customers per activity;
   - a 4-step ordered funnel with a 7-day window from the first step;
   - top-20 variants (whole-journey activity sequences) with count and median duration.
   Warm: data already in memory (Omnitrail: `--repeat N` loads once and times N runs;
   DuckDB: an in-memory table; Polars: a DataFrame), median of the runs. Cold: one run from
   nothing (Omnitrail: one CLI process that opens the store, loads and computes; DuckDB and
   Polars: a fresh connection / lazy scan querying the Parquet file).
4. Print the figures, the ratios and Omnitrail's resident bytes per event; write
   bench/out/engine.json.

The Python packages (numpy, pyarrow, duckdb, polars) are installed into
~/.cache/omnitrail-bench-venv on first
use; the script re-runs itself inside it.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, build, in_venv
PACKAGES = ["numpy", "pyarrow", "duckdb", "polars"]
SEED = 20240601
ACTIVITIES = 30
CHANNELS = ["web", "mobile_app", "email", "phone", "chat", "store", "sms", "social"]
WINDOW_DAYS = 7


def activity_name(i):
    return f"a{i:02d}"


def generate(path, events, customers):
    """Writes the benchmark file; returns the funnel's four steps."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    # Journey lengths: geometric (many short journeys, a long tail), adjusted to the exact total.
    lengths = rng.geometric(customers / events, size=customers).astype(np.int64)
    diff = events - int(lengths.sum())
    while diff != 0:
        idx = rng.integers(0, customers, size=abs(diff))
        if diff > 0:
            np.add.at(lengths, idx, 1)
        else:
            ok = idx[lengths[idx] > 1]
            ok = np.unique(ok)[: abs(diff)]
            lengths[ok] -= 1
        diff = events - int(lengths.sum())

    # A skewed Markov chain: Zipf-like first activity, sparse Dirichlet rows.
    start = 1.0 / np.arange(1, ACTIVITIES + 1) ** 1.3
    start /= start.sum()
    trans = rng.dirichlet(np.full(ACTIVITIES, 0.15), size=ACTIVITIES)
    trans_cum = np.cumsum(trans, axis=1)
    # Each activity prefers a few channels.
    chan = rng.dirichlet(np.full(len(CHANNELS), 0.3), size=ACTIVITIES)
    chan_cum = np.cumsum(chan, axis=1)

    offsets = np.concatenate([[0], np.cumsum(lengths)])
    activity = np.empty(events, dtype=np.int16)
    activity[offsets[:-1]] = rng.choice(ACTIVITIES, size=customers, p=start)
    max_len = int(lengths.max())
    for k in range(1, max_len):
        alive = np.nonzero(lengths > k)[0]
        if alive.size == 0:
            break
        prev = activity[offsets[alive] + k - 1]
        u = rng.random(alive.size)
        nxt = (u[:, None] > trans_cum[prev]).sum(axis=1)
        activity[offsets[alive] + k] = np.minimum(nxt, ACTIVITIES - 1)
    u = rng.random(events)
    channel = np.minimum((u[:, None] > chan_cum[activity]).sum(axis=1), len(CHANNELS) - 1)

    # Timestamps: a start in 2024, then log-normal gaps (median 20 min, tail of days),
    # at least one second so a customer's events are strictly ordered.
    customer_of = np.repeat(np.arange(customers), lengths)
    first = rng.integers(0, 365 * 86400, size=customers)
    gaps = np.maximum(1, rng.lognormal(np.log(1200), 2.0, size=events)).astype(np.int64)
    gaps[offsets[:-1]] = 0
    cum = np.cumsum(gaps)
    base = cum[offsets[:-1]]
    secs = first[customer_of] + cum - base[customer_of]
    ts_us = (1704067200 + secs) * 1_000_000

    act_names = np.array([activity_name(i) for i in range(ACTIVITIES)], dtype=object)
    table = pa.table(
        {
            "customer_id": pa.array(np.char.add("c", customer_of.astype(str)).astype(object), pa.string()),
            "timestamp": pa.array(ts_us, pa.timestamp("us", tz="UTC")),
            "activity": pa.array(act_names[activity], pa.string()),
            "channel": pa.array(np.array(CHANNELS, dtype=object)[channel], pa.string()),
        }
    )
    pq.write_table(table, path, compression="snappy", row_group_size=1 << 20)

    # Funnel: the most likely walk from the most common first activity.
    steps = [int(np.argmax(start))]
    while len(steps) < 4:
        row = trans[steps[-1]].copy()
        row[steps] = 0
        steps.append(int(np.argmax(row)))
    return [activity_name(s) for s in steps]


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def duckdb_sql(src, steps):
    w = f"INTERVAL {WINDOW_DAYS} DAY"
    s1, s2, s3, s4 = (f"'{s}'" for s in steps)
    pmap = f"""
        WITH e AS (
          SELECT customer_id, activity, timestamp,
                 lead(activity) OVER w AS nxt, lead(timestamp) OVER w AS nts
          FROM {src} WINDOW w AS (PARTITION BY customer_id ORDER BY timestamp))
        SELECT activity, nxt, count(*) AS n, count(DISTINCT customer_id) AS customers,
               median(epoch(nts) - epoch(timestamp)) AS median_s,
               avg(epoch(nts) - epoch(timestamp)) AS mean_s,
               quantile_cont(epoch(nts) - epoch(timestamp), 0.9) AS p90_s
        FROM e WHERE nxt IS NOT NULL GROUP BY 1, 2"""
    nodes = f"SELECT activity, count(*), count(DISTINCT customer_id) FROM {src} GROUP BY 1"
    funnel = f"""
        WITH f1 AS (SELECT customer_id, min(timestamp) AS t1 FROM {src} WHERE activity = {s1} GROUP BY 1),
        f2 AS (SELECT f1.customer_id, t1, min(e.timestamp) AS t2 FROM f1 JOIN {src} e
               ON e.customer_id = f1.customer_id AND e.activity = {s2} AND e.timestamp > t1 AND e.timestamp <= t1 + {w}
               GROUP BY 1, 2),
        f3 AS (SELECT f2.customer_id, t1, min(e.timestamp) AS t3 FROM f2 JOIN {src} e
               ON e.customer_id = f2.customer_id AND e.activity = {s3} AND e.timestamp > t2 AND e.timestamp <= t1 + {w}
               GROUP BY 1, 2),
        f4 AS (SELECT f3.customer_id FROM f3 JOIN {src} e
               ON e.customer_id = f3.customer_id AND e.activity = {s4} AND e.timestamp > t3 AND e.timestamp <= t1 + {w}
               GROUP BY 1)
        SELECT (SELECT count(*) FROM f1), (SELECT count(*) FROM f2), (SELECT count(*) FROM f3), (SELECT count(*) FROM f4)"""
    variants = f"""
        SELECT steps, count(*) AS n, median(dur) AS median_s FROM (
          SELECT customer_id, list(activity ORDER BY timestamp) AS steps,
                 epoch(max(timestamp)) - epoch(min(timestamp)) AS dur
          FROM {src} GROUP BY 1)
        GROUP BY 1 ORDER BY 2 DESC LIMIT 20"""
    return {"map": [pmap, nodes], "funnel": [funnel], "variants": [variants]}


def polars_queries(pl, steps):
    window = WINDOW_DAYS * 86400 * 1_000_000

    def pmap(df):
        e = df.sort(["customer_id", "timestamp"]).with_columns(
            pl.col("activity").shift(-1).over("customer_id").alias("nxt"),
            (pl.col("timestamp").shift(-1).over("customer_id") - pl.col("timestamp"))
            .dt.total_microseconds()
            .alias("gap"),
        )
        edges = (
            e.filter(pl.col("nxt").is_not_null())
            .group_by(["activity", "nxt"])
            .agg(
                pl.len().alias("n"),
                pl.col("customer_id").n_unique().alias("customers"),
                pl.col("gap").median().alias("median"),
                pl.col("gap").mean().alias("mean"),
                pl.col("gap").quantile(0.9, "linear").alias("p90"),
            )
        )
        nodes = df.group_by("activity").agg(pl.len(), pl.col("customer_id").n_unique())
        return edges, nodes

    def funnel(df):
        ts = pl.col("timestamp").cast(pl.Int64)
        f1 = df.filter(pl.col("activity") == steps[0]).group_by("customer_id").agg(ts.min().alias("t1"))
        reached = [f1.height]
        prev = f1.with_columns(pl.col("t1").alias("tp"))
        for s in steps[1:]:
            prev = (
                prev.join(df.filter(pl.col("activity") == s).select("customer_id", ts.alias("t")), on="customer_id")
                .filter((pl.col("t") > pl.col("tp")) & (pl.col("t") <= pl.col("t1") + window))
                .group_by("customer_id")
                .agg(pl.col("t1").first(), pl.col("t").min().alias("tp"))
            )
            reached.append(prev.height)
        return reached

    def variants(df):
        per = df.sort(["customer_id", "timestamp"]).group_by("customer_id").agg(
            pl.col("activity").alias("steps"),
            (pl.col("timestamp").max() - pl.col("timestamp").min()).dt.total_microseconds().alias("dur"),
        )
        return (
            per.group_by("steps")
            .agg(pl.len().alias("n"), pl.col("dur").median())
            .sort("n", descending=True)
            .head(20)
        )

    return {"map": pmap, "funnel": funnel, "variants": variants}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="warm runs per query (median reported)")
    ap.add_argument("--keep", type=Path, help="keep the Parquet file and data dir here")
    ap.add_argument("--exe", type=Path, help="use this omnitrail binary instead of building one")
    args = ap.parse_args()
    in_venv(__file__, PACKAGES)
    import duckdb
    import polars as pl

    exe = args.exe or build()
    work = args.keep or Path(tempfile.mkdtemp(prefix="omnitrail-engine-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"cores": os.cpu_count()}, "events": args.events, "customers": args.customers}
    try:
        pq_file = work / "events.parquet"
        t = time.perf_counter()
        steps = generate(pq_file, args.events, args.customers)
        print(f"generated {pq_file} ({pq_file.stat().st_size >> 20} MiB) in {time.perf_counter() - t:.1f} s; "
              f"funnel {' > '.join(steps)}", file=sys.stderr)
        results["funnel_steps"] = steps

        data = work / "data"
        if data.exists():
            shutil.rmtree(data)
        t = time.perf_counter()
        subprocess.run([str(exe), "--data", str(data), "import", str(pq_file), "--customer", "customer_id",
                        "--timestamp", "timestamp", "--activity", "activity", "--channel", "channel",
                        "--format", "json"], check=True, capture_output=True)
        results["import_s"] = time.perf_counter() - t
        print(f"imported in {results['import_s']:.1f} s", file=sys.stderr)

        has_funnel = subprocess.run([str(exe), "funnel", "--help"], capture_output=True).returncode == 0
        funnel_args = ["funnel", "--window", f"{WINDOW_DAYS}d"] + [a for s in steps for a in ("--step", s)]
        commands = {"map": ["map"], "variants": ["variants", "--top", "20"]}
        if has_funnel:
            commands["funnel"] = funnel_args

        ours = {}
        for name, cmd in commands.items():
            base = [str(exe), "--data", str(data)] + cmd
            rep = json.loads(subprocess.run(base + ["--repeat", str(args.repeat)], check=True,
                                            capture_output=True, text=True).stdout)
            t = time.perf_counter()
            subprocess.run(base + ["--format", "json"], check=True, capture_output=True)
            cold = time.perf_counter() - t
            ours[name] = {"warm_s": statistics.median(rep["runs_s"]), "cold_s": cold,
                          "bytes_per_event": rep["bytes_per_event"], "load_s": rep["open_and_load_s"]}
            print(f"omnitrail {name}: warm {ours[name]['warm_s']:.3f} s, cold {cold:.2f} s", file=sys.stderr)
        results["omnitrail"] = ours

        duck = {}
        con = duckdb.connect()
        con.execute(f"CREATE TABLE events AS SELECT * FROM read_parquet('{pq_file}')")
        warm_sql = duckdb_sql("events", steps)
        cold_sql = duckdb_sql(f"read_parquet('{pq_file}')", steps)
        for name in ["map", "funnel", "variants"]:
            warm = median_time(lambda: [con.execute(q).fetchall() for q in warm_sql[name]], max(1, args.repeat // 2))

            def cold_run():
                c = duckdb.connect()
                for q in cold_sql[name]:
                    c.execute(q).fetchall()
                c.close()

            cold = median_time(cold_run, 1)
            duck[name] = {"warm_s": warm, "cold_s": cold}
            print(f"duckdb {name}: warm {warm:.3f} s, cold {cold:.2f} s", file=sys.stderr)
        con.close()
        results["duckdb"] = duck

        polars = {}
        df = pl.read_parquet(pq_file)
        queries = polars_queries(pl, steps)
        for name, q in queries.items():
            warm = median_time(lambda: q(df), max(1, args.repeat // 2))
            cold = median_time(lambda: q(pl.read_parquet(pq_file)), 1)
            polars[name] = {"warm_s": warm, "cold_s": cold}
            print(f"polars {name}: warm {warm:.3f} s, cold {cold:.2f} s", file=sys.stderr)
        del df
        results["polars"] = polars
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "engine.json").write_text(json.dumps(results, indent=2))

    print(f"\n{args.events:,} events, {args.customers:,} customers, {ACTIVITIES} activities; "
          f"import {results['import_s']:.1f} s; resident "
          f"{results['omnitrail']['map']['bytes_per_event']:.1f} bytes/event (map columns)\n")
    print("| query | Omnitrail warm | DuckDB warm | Polars warm | Omnitrail cold | DuckDB cold | Polars cold "
          "| warm: DuckDB / Omnitrail | cold: DuckDB / Omnitrail |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ["map", "funnel", "variants"]:
        o = results["omnitrail"].get(name)
        d, p = results["duckdb"][name], results["polars"][name]
        if o is None:
            print(f"| {name} | (no `omnitrail {name}` yet) | {d['warm_s']:.3f} s | {p['warm_s']:.3f} s | — "
                  f"| {d['cold_s']:.2f} s | {p['cold_s']:.2f} s | — | — |")
            continue
        print(f"| {name} | {o['warm_s']:.3f} s | {d['warm_s']:.3f} s | {p['warm_s']:.3f} s | {o['cold_s']:.2f} s "
              f"| {d['cold_s']:.2f} s | {p['cold_s']:.2f} s | {d['warm_s'] / o['warm_s']:.1f}× "
              f"| {d['cold_s'] / o['cold_s']:.2f}× |")


if __name__ == "__main__":
    main()
