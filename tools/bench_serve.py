"""Load test of `seqkit serve` on loopback: latency and throughput at several client counts.

    python tools/bench_serve.py MODEL [--concurrency 1,8,32] [--requests 400] [--duration 60]
                                      [--threads T] [--strategy greedy|beam] [--json out.json]
    python tools/bench_serve.py --url http://127.0.0.1:8000 ...     # a server already running

MODEL is an exported model directory, or a run directory (exported first, fp32, into a
temporary directory; needs the train extra). The tool starts `seqkit serve MODEL` on a free
127.0.0.1 port (or uses --url, which must be a loopback address), then for each client count C
runs C clients, each sending one /v1/translate request after another over its own keep-alive
connection (each request: --texts sentences from --input, in turn). A level ends after
--requests requests or --duration seconds, whichever comes first: the test is bounded in count
and time and stops by itself.

Reported per level: requests sent, answered 200, failed (non-200 or no answer: lost), p50/p95/
p99 latency (ms, client side, the whole HTTP round trip), requests/s and texts/s over the
level's wall time, and how many requests the server merged per model call (/healthz counters).
Prints a markdown table; --json writes every number. Exit status 1 if any request failed.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import ipaddress
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT / "recipes" / "data" / "multi30k" / "test_2016_flickr.de.gz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", type=Path, help="Exported model or run directory (omit with --url).")
    p.add_argument("--url", default=None, help="A running server on loopback instead of starting one.")
    p.add_argument("--concurrency", default="1,8,32", help="Client counts, comma-separated.")
    p.add_argument("--requests", type=int, default=400, help="Requests per level at most.")
    p.add_argument("--duration", type=float, default=60.0, help="Seconds per level at most.")
    p.add_argument("--warmup", type=int, default=5, help="Untimed requests before the first level.")
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="Source sentences, one per line (.gz ok).")
    p.add_argument("--texts", type=int, default=1, help="Sentences per request.")
    p.add_argument("--strategy", choices=["greedy", "beam"], default="greedy")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads of the started server.")
    p.add_argument("--timeout", type=float, default=60.0, help="Seconds a client waits for one answer.")
    p.add_argument("--json", type=Path, default=None, help="Write every number to this JSON file.")
    args = p.parse_args(argv)
    if (args.model is None) == (args.url is None):
        p.error("give MODEL or --url (one of them)")
    args.levels = [int(c) for c in args.concurrency.split(",")]
    if min(args.levels) < 1 or args.requests < 1 or args.duration <= 0:
        p.error("--concurrency, --requests and --duration must be positive")
    return args


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def check_loopback(url: str) -> tuple[str, int]:
    """(host, port) of url; refuses anything but a loopback address (this tool floods its target)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise SystemExit(f"--url must be http:// on a loopback address (127.0.0.0/8, ::1, localhost), got {url}")
    return host, parts.port or 80


def exported_model(path: Path, workdir: Path) -> Path:
    if (path / "manifest.json").is_file():
        return path
    from seqkit.export import export_run  # a run directory: export it (needs torch)

    print(f"exporting {path} to a temporary directory ...", file=sys.stderr)
    return export_run(path, workdir / "model")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(host: str, port: int, path: str, timeout: float = 5.0) -> Any:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def start_server(model: Path, threads: int | None, log_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "seqkit.cli", "serve", str(model), "--port", str(port), "--log-level", "warning"]
    if threads:
        cmd += ["--threads", str(threads)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if get_json("127.0.0.1", port, "/healthz", 2)["status"] == "ok":
                return proc, port
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"seqkit serve did not come up:\n{log_path.read_text(errors='replace')}")


class Client(threading.Thread):
    """Sends requests back to back over one keep-alive connection until the level ends."""

    def __init__(self, level: Level, index: int):
        super().__init__(daemon=True)
        self.level, self.index = level, index
        self.latencies: list[float] = []
        self.failures: list[str] = []

    def run(self) -> None:
        lv = self.level
        conn = http.client.HTTPConnection(lv.host, lv.port, timeout=lv.args.timeout)
        while (n := lv.claim()) is not None:
            body = lv.body(n)
            start = time.perf_counter()
            try:
                conn.request("POST", "/v1/translate", body=body, headers={"Content-Type": "application/json"})
                reply = conn.getresponse()
                payload = reply.read()
                if reply.status != 200:
                    self.failures.append(f"HTTP {reply.status}: {payload[:200]!r}")
                elif len(json.loads(payload)["translations"]) != lv.args.texts:
                    self.failures.append("wrong number of translations")
                else:
                    self.latencies.append(time.perf_counter() - start)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(lv.host, lv.port, timeout=lv.args.timeout)
        conn.close()


class Level:
    """One client count: hands out request numbers until the count or the time is used up."""

    def __init__(self, args: argparse.Namespace, host: str, port: int, lines: list[str]):
        self.args, self.host, self.port, self.lines = args, host, port, lines
        self.lock = threading.Lock()
        self.sent = 0
        self.deadline = 0.0

    def claim(self) -> int | None:
        with self.lock:
            if self.sent >= self.args.requests or time.perf_counter() >= self.deadline:
                return None
            self.sent += 1
            return self.sent - 1

    def body(self, n: int) -> bytes:
        k = self.args.texts
        texts = [self.lines[(n * k + i) % len(self.lines)] for i in range(k)]
        request: dict[str, Any] = {"texts": texts, "strategy": self.args.strategy}
        if self.args.strategy == "beam":
            request["beam_size"] = self.args.beam_size
        return json.dumps(request).encode()

    def run(self, clients: int) -> dict[str, Any]:
        before = get_json(self.host, self.port, "/healthz")
        self.deadline = time.perf_counter() + self.args.duration
        start = time.perf_counter()
        threads = [Client(self, i) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        after = get_json(self.host, self.port, "/healthz")
        lat = np.array([x for t in threads for x in t.latencies]) * 1000
        failures = [f for t in threads for f in t.failures]
        calls = after["model_calls"] - before["model_calls"]
        done = after["requests_done"] - before["requests_done"]
        return {
            "clients": clients, "sent": self.sent, "ok": int(lat.size), "failed": len(failures),
            "failures": failures[:10], "wall_s": round(wall, 3),
            "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99),
            "requests_per_s": round(lat.size / wall, 2), "texts_per_s": round(lat.size * self.args.texts / wall, 2),
            "requests_per_model_call": round(done / calls, 2) if calls else None,
        }


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values.size else None


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| clients | requests | ok | failed | p50 ms | p95 ms | p99 ms | requests/s | texts/s | requests per model call |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    return head + "".join(
        f"| {r['clients']} | {r['sent']} | {r['ok']} | {r['failed']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} "
        f"| {r['requests_per_s']} | {r['texts_per_s']} | {r['requests_per_model_call']} |\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lines = read_lines(args.input)
    proc = None
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        if args.url:
            host, port = check_loopback(args.url)
            model_name = get_json(host, port, "/v1/model")["name"]
        else:
            model = exported_model(args.model, Path(tmp))
            proc, port = start_server(model, args.threads, Path(tmp) / "serve.log")
            host, model_name = "127.0.0.1", model.name
        try:
            if args.warmup:  # first requests pay for lazy initialization; not timed
                warm_args = argparse.Namespace(**{**vars(args), "requests": args.warmup, "duration": 60.0})
                Level(warm_args, host, port, lines).run(1)
            rows = [Level(args, host, port, lines).run(c) for c in args.levels]
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    setup = {"model": model_name, "strategy": args.strategy, "beam_size": args.beam_size if args.strategy == "beam" else None,
             "texts_per_request": args.texts, "server_threads": args.threads, "input": str(args.input),
             "requests_per_level": args.requests, "duration_per_level_s": args.duration,
             "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    print(f"seqkit serve load test: model {model_name}, {args.strategy}"
          f"{f' (beam {args.beam_size})' if args.strategy == 'beam' else ''}, {args.texts} text(s) per request, "
          f"{os.cpu_count()} CPUs, at most {args.requests} requests / {args.duration:g} s per level\n")
    print(table(rows))
    for r in rows:
        for failure in r["failures"]:
            print(f"clients={r['clients']}: {failure}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"setup": setup, "levels": rows}, indent=1) + "\n", encoding="utf-8")
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
