"""Load test of serve.py on loopback: batching vs the naive one-request-one-model-call server.

    .venv/bin/python bench/bench_serve.py --model pokedex.model --labelbin lb.pickle \\
        --image examples/pikachu.png --clients 1 8 32 --requests 400 --seconds 10 --rounds 3

Each server is the real serve.py in its own process: "batched" with its
defaults, "naive" with `--max-batch 1 --batch-wait-ms 0` (every request is
its own model call, nothing waits). Clients are asyncio connections in this
process, each sending the same image as a raw-body POST /predict over a
kept-alive HTTP/1.1 connection, as fast as answers come back. A level stops
after --requests answers or --seconds, whichever comes first, so the run
stops by itself (at most rounds x levels x 2 x seconds). Levels are
interleaved naive/batched over --rounds so that load from other work hits
both alike. Prints a Markdown table of the median round: throughput, p50 and
p99 latency, errors, and the mean batch size the server reports in /health.
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
MODES = {"naive": ["--max-batch", "1", "--batch-wait-ms", "0"], "batched": []}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--labelbin", required=True)
    parser.add_argument("--image", default=os.path.join(REPO, "examples", "pikachu.png"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=400,
                        help="answers per level at most (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds per level at most (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds; the median is reported (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="requests before measuring")
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser.parse_args(argv)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args, flags):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "serve.py"), "--model", args.model,
         "--labelbin", args.labelbin, "--port", str(port), *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
        env=dict(os.environ, POKEDEX_TOKEN=""))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"serve.py {' '.join(flags)} exited {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("serve.py did not start within 120 s")


def health(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        return json.load(response)


async def client(port, request, state):
    """One kept-alive connection posting `request` until the level's budget is spent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while state["started"] < state["limit"] and time.perf_counter() < state["deadline"]:
            state["started"] += 1
            begin = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            state["latencies"].append(time.perf_counter() - begin)
            if status != 200:
                state["errors"][status] = state["errors"].get(status, 0) + 1
    finally:
        writer.close()
        await writer.wait_closed()


async def level(port, request, clients, limit, seconds):
    state = {"started": 0, "limit": limit, "deadline": time.perf_counter() + seconds,
             "latencies": [], "errors": {}}
    begin = time.perf_counter()
    await asyncio.gather(*(client(port, request, state) for _ in range(clients)))
    elapsed = time.perf_counter() - begin
    latencies = sorted(state["latencies"])
    return {"clients": clients, "answers": len(latencies), "seconds": round(elapsed, 2),
            "per_second": round(len(latencies) / elapsed, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1,
                                                 int(0.99 * len(latencies)))], 1),
            "errors": state["errors"]}


def mean_batch(before, after):
    calls = images = 0
    for size, count in after["batches"].items():
        new = count - before["batches"].get(size, 0)
        calls, images = calls + new, images + new * int(size)
    return round(images / calls, 1) if calls else None


def main(argv=None):
    args = parse_args(argv)
    with open(args.image, "rb") as handle:
        body = handle.read()
    request = (b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream"
               b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    servers = {}
    try:
        for mode, flags in MODES.items():  # both up at once; only one is loaded at a time
            servers[mode] = start_server(args, flags)
            asyncio.run(level(servers[mode][1], request, 1, args.warmup, 30))
        runs = {(mode, clients): [] for mode in MODES for clients in args.clients}
        for _ in range(args.rounds):  # interleaved, so drifting load hits both alike
            for clients in args.clients:
                for mode, (_, port) in servers.items():
                    before = health(port)
                    row = asyncio.run(level(port, request, clients, args.requests,
                                            args.seconds))
                    row["mean_batch"] = mean_batch(before, health(port))
                    runs[mode, clients].append(row)
                    print(f"[{mode}] {row}", file=sys.stderr, flush=True)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(30)
    results = {key: median_run(rows) for key, rows in runs.items()}
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n{os.cpu_count()} CPUs (load average {load} at the end: other work shares them); "
          f"image {os.path.basename(args.image)} ({len(body):,} bytes); median of "
          f"{args.rounds} interleaved rounds of up to {args.requests} answers or "
          f"{args.seconds:g} s\n")
    print("| clients | naive req/s | naive p50 / p99 ms | batched req/s | batched p50 / p99 ms "
          "| mean batch | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for clients in args.clients:
        naive, batched = results["naive", clients], results["batched", clients]
        errors = {mode: row["errors"] for mode, row in (("naive", naive), ("batched", batched))
                  if row["errors"]}
        print(f"| {clients} | {naive['per_second']} | {naive['p50_ms']} / {naive['p99_ms']} | "
              f"{batched['per_second']} | {batched['p50_ms']} / {batched['p99_ms']} | "
              f"{batched['mean_batch']} | {batched['per_second'] / naive['per_second']:.1f}x |"
              + (f" errors: {errors}" if errors else ""))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({f"{mode} {clients}": rows for (mode, clients), rows in runs.items()},
                      handle, indent=2)
    return 0


def median_run(rows):
    """The run with the median throughput (its own latencies and batch size with it)."""
    return sorted(rows, key=lambda row: row["per_second"])[len(rows) // 2]

if __name__ == "__main__":
    sys.exit(main())
