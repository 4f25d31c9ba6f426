#!/usr/bin/env python3
"""Journey trigger latency: from the acknowledgement of the event that completes a rule to
the webhook request arriving at a receiver, while 10k events/s of background ingest run.

1. builds `omnitrail` (release) and starts `omnitrail serve` on a fresh data dir;
2. adds the seed rule (web payment_failed, then social complaint within 2 h, unless a
   callback within 1 h of the failure) with its webhook pointed at a local receiver that
   timestamps each arrival;
3. a background thread sends canonical events in batches of 500 at a steady rate
   (default 10 000 events/s; 1% of them payment failures, so the rule's state is busy);
4. for each probe customer: sends `payment_failed` 70 minutes in the past, then the
   completing `complaint` now, and records when its HTTP 200 came back and when the
   signed webhook for that customer arrived.

Reports p50/p99/max of arrival − acknowledgement (it can be negative: the rule is evaluated
inside the ingest call, so the webhook may leave before the 200 reaches the client) and of
arrival − request sent (an upper bound that includes the ingest request itself).

Only the standard library; the receiver is http.server on 127.0.0.1.

    python3 bench/trigger_bench.py [--rate 10000] [--probes 300] [--out bench/out/trigger_bench.json]
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, build  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def post(url, key, body):
    req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, r.read()


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    i = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[i]


class Arrivals:
    """Webhook arrivals by customer email, with the receiver's perf_counter time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_email = {}
        self.cond = threading.Condition(self.lock)

    def handler(self):
        arrivals = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                at = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                ok = all(self.headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
                data = json.loads(body)["data"]
                for ident in data["identifiers"]:
                    if ident.startswith("email:"):
                        with arrivals.cond:
                            arrivals.by_email.setdefault(ident[6:], (at, ok))
                            arrivals.cond.notify_all()

            def log_message(self, *a):
                pass

        return H

    def wait(self, email, timeout):
        end = time.perf_counter() + timeout
        with self.cond:
            while email not in self.by_email:
                left = end - time.perf_counter()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.by_email[email]


def background(url, key, rate, batch, stop, counts):
    """Sends `rate` events/s in batches of `batch` until `stop` is set."""
    interval = batch / rate
    n = 0
    next_at = time.perf_counter()
    while not stop.is_set():
        now_s = time.time()
        lines = []
        for _ in range(batch):
            n += 1
            user = f"bg-{random.randrange(200_000)}"
            failed = random.random() < 0.01
            lines.append(json.dumps({
                "timestamp": now_s, "identifiers": {"user_id": user},
                "channel": "web", "activity": "payment_failed" if failed else "page_viewed",
                "event_id": f"bg-{n}"}))
        try:
            post(f"{url}/v1/events", key, "\n".join(lines))
            counts["sent"] += batch
        except Exception as e:  # keep the load going; count what failed
            counts["failed"] += batch
            counts["error"] = str(e)
        next_at += interval
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            counts["behind"] += 1
            next_at = time.perf_counter()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=10_000, help="background events per second")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of background load first")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "trigger_bench.json"))
    args = ap.parse_args()

    exe = build()
    work = Path(tempfile.mkdtemp(prefix="omnitrail-trigger-bench-"))
    data = work / "data"
    arrivals = Arrivals()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), arrivals.handler())
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    server = None
    stop = threading.Event()
    counts = {"sent": 0, "failed": 0, "behind": 0}
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "background_rate": args.rate, "batch": args.batch, "probes": args.probes}
    try:
        write = run([str(exe), "--data", str(data), "keys", "create", "--kind", "write"]).stdout.split()[0]
        secret = run([str(exe), "--data", str(data), "keys", "create", "--kind", "secret"]).stdout.split()[0]
        server = subprocess.Popen([str(exe), "--data", str(data), "serve", "--listen", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = server.stdout.readline().strip()
        if not first.startswith("listening on "):
            raise SystemExit(f"server did not start: {first}")
        url = first.removeprefix("listening on ")
        rule = {
            "name": "payment-failed-then-complaint",
            "steps": [{"activity": "payment_failed", "channel": "web"},
                      {"activity": "complaint", "channel": "social", "within": "2h"}],
            "unless": [{"activity": "callback_completed", "after": 1, "within": "1h"}],
            "cooldown": "1d",
            "actions": [{"webhook": {"url": hook, "secret": SECRET}},
                        {"task": {"queue": "callback", "title": "call back"}}],
        }
        post(f"{url}/api/v1/rules", secret, json.dumps(rule))

        bg = threading.Thread(target=background, args=(url, write, args.rate, args.batch, stop, counts))
        started = time.perf_counter()
        bg.start()
        time.sleep(args.warmup)
        after_ack, after_send, missing, unsigned = [], [], 0, 0
        for i in range(args.probes):
            email = f"probe-{i}@example.com"
            now_s = time.time()
            post(f"{url}/v1/events", write, json.dumps({
                "event_id": f"probe-pf-{i}", "timestamp": now_s - 4200,
                "identifiers": {"email": email}, "channel": "web", "activity": "payment_failed"}))
            complaint = json.dumps({
                "event_id": f"probe-c-{i}", "timestamp": time.time(),
                "identifiers": {"email": email}, "channel": "social", "activity": "complaint"})
            sent = time.perf_counter()
            post(f"{url}/v1/events", write, complaint)
            acked = time.perf_counter()
            got = arrivals.wait(email, 10.0)
            if got is None:
                missing += 1
                continue
            at, ok = got
            unsigned += not ok
            after_ack.append((at - acked) * 1000)
            after_send.append((at - sent) * 1000)
            time.sleep(0.02)
        stop.set()
        bg.join()
        elapsed = time.perf_counter() - started

        def summary(xs):
            return {"p50_ms": round(percentile(xs, 0.5), 3), "p99_ms": round(percentile(xs, 0.99), 3),
                    "max_ms": round(max(xs), 3), "n": len(xs)}

        result.update({
            "ack_to_webhook": summary(after_ack),
            "send_to_webhook": summary(after_send),
            "missing": missing, "unsigned": unsigned,
            "background_sent": counts["sent"], "background_failed": counts["failed"],
            "background_rate_achieved": round(counts["sent"] / elapsed),
            "background_fell_behind": counts["behind"],
        })
    finally:
        stop.set()
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        receiver.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
