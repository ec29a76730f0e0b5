#!/usr/bin/env python3
"""Throughput of a running `jobhost serve` as an outside client sees it.

Submits JOBS jobs of one installed plugin over plain HTTP JSON-RPC, in batches of
BATCH, from THREADS client threads (each with its own keep-alive connection), then
asks the server until no job is pending or running and every submitted job is
`completed`. Prints jobs per second from the first submit to the last completion and
the submit rate alone. Python's standard library only, so it runs wherever the server
does:

    jobhost serve --data-dir /tmp/jh &
    jobhost install probe target/wasm32-wasip2/release/probe.wasm
    bench/external.py --plugin probe --arg noop --token-file /tmp/jh/token

See BENCHMARKS.md for the figures and the machine they were taken on.
"""

import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse


def rpc(conn, token, body):
    conn.request(
        "POST",
        "/",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise SystemExit(f"HTTP {resp.status}: {data[:300]!r}")
    return json.loads(data)


def call(conn, token, method, params=None):
    answer = rpc(conn, token, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}})
    if "error" in answer:
        raise SystemExit(f"{method}: {answer['error']}")
    return answer["result"]


def unfinished(conn, token, ids, batch):
    """The ids among `ids` whose job is not `completed`, asked in JSON-RPC batches (a
    call refused for the token's request rate is asked again a second later)."""
    left = []
    while ids:
        limited = []
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            calls = [
                {"jsonrpc": "2.0", "id": i, "method": "jobs.get", "params": {"id": j}} for i, j in enumerate(chunk)
            ]
            for answer in rpc(conn, token, calls):
                job = answer.get("result") or {}
                error = answer.get("error") or {}
                if (error.get("data") or {}).get("kind") == "limit_exceeded":
                    limited.append(chunk[answer["id"]])
                elif job.get("status") != "completed":
                    left.append((chunk[answer["id"]], job.get("status"), job.get("error") or error))
        if limited:
            time.sleep(1)
        ids = limited
    return left


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="http://127.0.0.1:7717")
    ap.add_argument("--token-file", default=os.path.expanduser("~/.local/share/jobhost/token"))
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--arg", action="append", default=[], help="an argument of every job (repeat)")
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    token = open(args.token_file).read().strip()
    url = urllib.parse.urlparse(args.server)
    connect = lambda: http.client.HTTPConnection(url.hostname, url.port or 80, timeout=600)
    control = connect()

    job = {"plugin": args.plugin, "args": args.arg}
    sizes = [min(args.batch, args.jobs - start) for start in range(0, args.jobs, args.batch)]
    shares = [sizes[i :: args.threads] for i in range(args.threads)]
    ids, failures, lock = [], [], threading.Lock()

    def submitter(share):
        conn = connect()
        for size in share:
            batch = [
                {"jsonrpc": "2.0", "id": i, "method": "jobs.submit", "params": job} for i in range(size)
            ]
            for answer in rpc(conn, token, batch):
                with lock:
                    if "error" in answer:
                        failures.append(answer["error"])
                    else:
                        ids.append(answer["result"]["job"]["id"])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=submitter, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submitted_s = time.perf_counter() - t0
    if failures:
        raise SystemExit(f"{len(failures)} submits failed, first: {failures[0]}")

    while True:
        usage = call(control, token, "resources.usage")
        pending = call(control, token, "jobs.list", {"status": "pending", "limit": 1})["jobs"]
        if usage["running_jobs"] == 0 and not pending:
            break
        time.sleep(float(os.environ.get("POLL_S", "0.005")))
    elapsed = time.perf_counter() - t0

    # Every job must have completed: a failed job would flatter the figure.
    left = unfinished(control, token, ids, 1000)
    if left:
        raise SystemExit(f"{len(left)} of {len(ids)} jobs did not complete, the first: {left[0]}")

    report = {
        "jobs": len(ids),
        "throughput_jobs_per_s": round(len(ids) / elapsed, 1),
        "submit_jobs_per_s": round(len(ids) / submitted_s, 1),
        "elapsed_s": round(elapsed, 3),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:<24}{v:>12}")


if __name__ == "__main__":
    main()
