#!/usr/bin/env python3
"""HTTP server throughput and latency, with the load generator in bench/loadgen.

Usage: python3 bench/server_bench.py [--customers 20000] [--duration 20] [--batch-size 500]
                                     [--batch-concurrency 4] [--track-concurrency 64]
                                     [--views 500] [--view-rate 1000]
                                     [--out bench/out/server_bench.json]

1. builds `omnitrail` and `omnitrail-loadgen` (release);
2. generates a fresh demo data dir (`omnitrail demo --no-serve --customers N`) and makes a
   write and a secret key with `omnitrail keys create`;
3. starts `omnitrail serve --listen 127.0.0.1:0` on it and times, from the start of the
   process, its first customer view (`first_view_seconds`), then warms the view's columns;
4. runs, one after the other against the same server: Segment batches through /v1/batch
   (events/s with durable acknowledgement, latency percentiles), single /v1/track calls
   (requests/s) as the users the batches made, 500 concurrent customer views as fast as
   answers come, 500 concurrent views paced at --view-rate per second, and the paced views
   while batches are ingested;
5. stops the server with SIGTERM and prints (and writes) one JSON object.

The load generator and the server share the machine; every request goes to 127.0.0.1.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchlib import ROOT, target_dir



def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def machine():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "os": platform.platform()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--duration", type=int, default=20, help="seconds per scenario")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--batch-concurrency", type=int, default=4)
    ap.add_argument("--track-concurrency", type=int, default=64)
    ap.add_argument("--views", type=int, default=500, help="concurrent customer views")
    ap.add_argument("--view-rate", type=float, default=1000.0,
                    help="views per second in total for the paced runs (500 agents opening a customer every 0.5 s)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "server_bench.json"))
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "-p", "omnitrail", "-p", "omnitrail-loadgen"],
                   cwd=ROOT, check=True)
    exe = target_dir() / "release" / "omnitrail"
    loadgen = target_dir() / "release" / "omnitrail-loadgen"
    work = Path(tempfile.mkdtemp(prefix="omnitrail-server-bench-"))
    data = work / "data"
    result = {"machine": machine(), "customers": args.customers, "runs": []}
    server = None
    try:
        t = time.time()
        run([str(exe), "demo", "--no-serve", "--data", str(data), "--customers", str(args.customers)])
        result["demo_seconds"] = round(time.time() - t, 1)
        write = run([str(exe), "--data", str(data), "keys", "create", "--kind", "write"]).stdout.split()[0]
        secret = run([str(exe), "--data", str(data), "keys", "create", "--kind", "secret"]).stdout.split()[0]
        stats = json.loads(run([str(exe), "--data", str(data), "stats", "--format", "json"]).stdout)
        result["demo_events"] = stats["events"]

        started = time.monotonic()
        server = subprocess.Popen([str(exe), "--data", str(data), "serve", "--listen", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = server.stdout.readline().strip()
        if not first.startswith("listening on "):
            raise SystemExit(f"server did not start: {first} {server.stderr.read()}")
        url = first.removeprefix("listening on ")
        request = urllib.request.Request(f"{url}/api/v1/customers/c42?limit=20",
                                         headers={"Authorization": f"Bearer {secret}"})
        with urllib.request.urlopen(request) as answer:
            answer.read()
        result["first_view_seconds"] = round(time.monotonic() - started, 3)

        def gen(scenario, **opts):
            cmd = [str(loadgen), "--url", url, "--write-key", write, "--secret-key", secret,
                   "--scenario", scenario, "--duration", str(args.duration),
                   "--run-id", f"{scenario}-{int(time.time())}"]
            for k, v in opts.items():
                cmd += [f"--{k.replace('_', '-')}", str(v)]
            out = json.loads(run(cmd).stdout)
            result["runs"].append(out)
            print(json.dumps(out), file=sys.stderr)
            return out

        # Warm the customer view's columns (the first view loads them).
        gen("views", view_concurrency=1, customers=args.customers)
        gen("batch", ingest_concurrency=args.batch_concurrency, batch_size=args.batch_size)
        gen("track", ingest_concurrency=args.track_concurrency)
        # 500 viewers as fast as answers come (a closed loop: latency is queueing), then
        # paced like agents, alone and while batches are ingested.
        gen("views", view_concurrency=args.views, customers=args.customers)
        gen("views", view_concurrency=args.views, customers=args.customers, view_rate=args.view_rate)
        gen("mixed", ingest_concurrency=args.batch_concurrency, batch_size=args.batch_size,
            view_concurrency=args.views, customers=args.customers, view_rate=args.view_rate)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
