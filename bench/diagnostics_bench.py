#!/usr/bin/env python3
"""Experience diagnostics speed: each diagnostics command on an existing data dir, cold and
warm, with DuckDB as the peer for two simple signals.

Usage: python3 bench/diagnostics_bench.py --data DIR [--repeat 5] [--binary PATH]

DIR is a data dir made by `omnitrail demo` (e.g. `omnitrail demo --customers 1000000
--no-serve`). For each of `friction`, `channels --performance`, `journey-map`, `emotion`,
`lifecycle` and `handoffs`:

- cold: one CLI run (`--format json`): open the store, load the columns, compute, print;
- warm: `--repeat N` loads once and times N computations; the median is reported, with the
  load time and the resident bytes per event of the loaded columns.

Peer (DuckDB over the data dir's Parquet segments, `DIR/segments/*/*/*.parquet`, the layout
of docs/storage.md), two simple signals each a small part of what Omnitrail computes:

- wait per channel: events, exact median and p90 of `wait_seconds` (channels --performance
  computes these plus ten more figures per channel);
- failure rate per touchpoint: events and share with outcome `failure` per (channel,
  activity) (friction computes this plus six more signals, distinct customers, the score and
  root causes).

Warm DuckDB: an in-memory table of the columns the query reads, median of N runs; cold: a
fresh connection querying the Parquet files. DuckDB reads raw segments: it does not apply
identity merges, which Omnitrail does before any analysis.

Results are printed as a table and written to bench/out/diagnostics.json. The Python
packages are installed into ~/.cache/omnitrail-bench-venv on first use (shared with
bench/engine_bench.py); the script re-runs itself inside it.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import ROOT, build, in_venv
PACKAGES = ["duckdb"]

COMMANDS = [
    ("friction", ["friction"]),
    ("channels --performance", ["channels", "--performance"]),
    ("journey-map", ["journey-map"]),
    ("emotion", ["emotion"]),
    ("lifecycle", ["lifecycle"]),
    ("handoffs", ["handoffs"]),
]

PEER_QUERIES = {
    "wait per channel": (
        "channels --performance",
        ["channel", "wait_seconds"],
        """select channel, count(*) as n,
                  quantile_cont(wait_seconds, 0.5) as median_s,
                  quantile_cont(wait_seconds, 0.9) as p90_s
           from {src} where wait_seconds is not null group by channel order by channel""",
    ),
    "failure rate per touchpoint": (
        "friction",
        ["channel", "activity", "outcome"],
        """select channel, activity, count(*) as events,
                  avg(case when outcome = 'failure' then 1.0 else 0.0 end) as failure_rate
           from {src} group by channel, activity order by channel, activity""",
    ),
}


def run(binary, data, args):
    """Runs one CLI command; returns (seconds, stdout)."""
    started = time.perf_counter()
    out = subprocess.run(
        [str(binary), "--data", str(data)] + args,
        capture_output=True,
        text=True,
        env={**os.environ, "OMNITRAIL_LOG": "error"},
    )
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"omnitrail {' '.join(args)} failed:\n{out.stderr}")
    return elapsed, out.stdout


def omnitrail_figures(binary, data, repeat):
    figures = {}
    for name, args in COMMANDS:
        cold, _ = run(binary, data, args + ["--format", "json"])
        _, text = run(binary, data, args + ["--format", "json", "--repeat", str(repeat)])
        timing = json.loads(text)
        figures[name] = {
            "cold_s": cold,
            "warm_s": statistics.median(timing["runs_s"]),
            "runs_s": timing["runs_s"],
            "load_s": timing["open_and_load_s"],
            "events": timing["events"],
            "bytes_per_event": timing["bytes_per_event"],
        }
        print(
            f"omnitrail {name}: cold {cold:.2f} s, warm {figures[name]['warm_s']:.3f} s",
            file=sys.stderr,
        )
    return figures


def duckdb_figures(data, repeat):
    import duckdb

    files = f"{data}/segments/*/*/*.parquet"
    figures = {}
    for name, (_, columns, sql) in PEER_QUERIES.items():
        started = time.perf_counter()
        con = duckdb.connect()
        con.execute(sql.format(src=f"read_parquet('{files}')")).fetchall()
        cold = time.perf_counter() - started
        con.close()
        con = duckdb.connect()
        con.execute(f"create table events as select {', '.join(columns)} from read_parquet('{files}')")
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            con.execute(sql.format(src="events")).fetchall()
            runs.append(time.perf_counter() - t)
        con.close()
        figures[name] = {"cold_s": cold, "warm_s": statistics.median(runs), "runs_s": runs}
        print(f"duckdb {name}: cold {cold:.2f} s, warm {figures[name]['warm_s']:.3f} s", file=sys.stderr)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="an existing data dir (omnitrail demo)")
    parser.add_argument("--repeat", type=int, default=5, help="warm runs per analysis")
    parser.add_argument("--binary", type=Path, help="the omnitrail binary (default: build the release binary)")
    args = parser.parse_args()
    if not (args.data / "MANIFEST.json").exists():
        sys.exit(f"{args.data} is not an Omnitrail data dir (no MANIFEST.json)")
    in_venv(__file__, PACKAGES)
    binary = args.binary or build()
    ours = omnitrail_figures(binary, args.data, args.repeat)
    peer = duckdb_figures(args.data, args.repeat)

    events = next(iter(ours.values()))["events"]
    print(f"\n{events:,} events in {args.data}, {os.cpu_count()} cores, warm = median of {args.repeat} runs\n")
    print(f"{'analysis':<26} {'cold s':>8} {'warm s':>8} {'load s':>8} {'bytes/event':>12}")
    for name, f in ours.items():
        print(f"{name:<26} {f['cold_s']:>8.2f} {f['warm_s']:>8.3f} {f['load_s']:>8.2f} {f['bytes_per_event']:>12.1f}")
    print(f"\n{'peer signal (DuckDB)':<30} {'cold s':>8} {'warm s':>8}   Omnitrail warm / DuckDB warm")
    ratios = {}
    for name, f in peer.items():
        command = PEER_QUERIES[name][0]
        ratio = ours[command]["warm_s"] / f["warm_s"] if f["warm_s"] > 0 else float("inf")
        ratios[name] = {"omnitrail_command": command, "ratio_warm": ratio}
        print(f"{name:<30} {f['cold_s']:>8.2f} {f['warm_s']:>8.3f}   {ratio:.1f}× ({command}, which computes much more)")

    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnostics.json").write_text(
        json.dumps(
            {"data": str(args.data), "events": events, "repeat": args.repeat,
             "omnitrail": ours, "duckdb": peer, "ratios": ratios},
            indent=2,
        )
    )
    print(f"\nwritten to {out / 'diagnostics.json'}")


if __name__ == "__main__":
    main()
