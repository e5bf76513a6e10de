"""The JavaScript runtime (js/) against seqkit.runtime: same token ids, and decode speed.

    python tools/bench_js.py MODEL_DIR --src test.de.gz [--ref test.en.gz] [--limit 200]
        [--parity] [--speed] [--beam-size 5] [--json out.json]

MODEL_DIR is an exported seq2seq model (fp32 or int8). Three runtimes decode the first --limit
lines of --src with the model's own search settings but for the strategy, beam size and batch:

- python: seqkit.runtime.load_model (onnxruntime + numpy), in this process;
- node: js/bin/seqkit-js.mjs on onnxruntime-node (a subprocess; model load excluded from time);
- browser: the `seqkit web` site of MODEL_DIR, served from 127.0.0.1 with the cross-origin
  isolation headers, in headless Chromium (selenium + Debian's chromium/chromium-driver),
  onnxruntime-web's WASM backend (page load excluded from time).

--parity (batch 32, one thread): per strategy, how many sentences each JS runtime decodes to
exactly the Python runtime's token ids, and BLEU of each with --ref (sacrebleu).
--speed: sentences/s per runtime at 1 thread and at all threads (os.cpu_count()), at batch 1
(--speed-limit lines, one sentence per search call) and batch 32, greedy and beam. Each
figure is the best of --repeats timed passes, each after an untimed warm-up pass over 8 lines
(JIT, onnxruntime's first runs); the machine may be shared, so compare figures of one run only.
Needs `npm ci --prefix js` first. Prints markdown tables; --json keeps every number.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE_CLI = ROOT / "js" / "bin" / "seqkit-js.mjs"
WARMUP = 8  # lines translated once, untimed, before each timed pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path)
    p.add_argument("--src", type=Path, required=True, help="Source lines (.gz read as gzip).")
    p.add_argument("--ref", type=Path, default=None, help="References, for BLEU in the parity table.")
    p.add_argument("--limit", type=int, default=200, help="First N lines of --src (parity, batch-32 speed).")
    p.add_argument("--speed-limit", type=int, default=50, help="First N lines for batch-1 speed.")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--parity", action="store_true")
    p.add_argument("--speed", action="store_true")
    p.add_argument("--runtimes", default="python,node,browser")
    p.add_argument("--repeats", type=int, default=2, help="Timed passes per speed figure; the fastest counts.")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--screenshot", type=Path, default=None,
                   help="PNG of the site after translating the first line with beam search (docs/images/web-page.png).")
    args = p.parse_args(argv)
    if not (args.parity or args.speed or args.screenshot):
        p.error("ask for --parity, --speed, --screenshot or any of them")
    return args


def read_lines(path: Path, limit: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [line.rstrip("\n") for _, line in zip(range(limit), fh)]


def options(strategy: str, beam: int, batch: int) -> dict[str, Any]:
    return {"strategy": strategy, "batch_size": batch, **({"beam_size": beam} if strategy == "beam" else {})}


def run_python(model_dir: Path, lines: list[str], opts: dict[str, Any], threads: int) -> tuple[list[list[int]], list[str], float]:
    from seqkit.runtime import load_model

    translator = load_model(model_dir, threads=threads).translator(**opts)
    translator.translate(lines[:WARMUP])
    start = time.perf_counter()
    results = translator.translate(lines)
    return [r.tokens for r in results], [r.text for r in results], time.perf_counter() - start


def run_node(model_dir: Path, lines: list[str], opts: dict[str, Any], threads: int) -> tuple[list[list[int]], list[str], float]:
    argv = ["node", str(NODE_CLI), "translate", str(model_dir), "--json", "--timing", "--warmup", str(WARMUP),
            "--threads", str(threads),
            "--strategy", opts["strategy"], "--batch-size", str(opts["batch_size"])]
    if "beam_size" in opts:
        argv += ["--beam-size", str(opts["beam_size"])]
    proc = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"node runtime failed: {proc.stderr.strip()}")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    timing = json.loads(proc.stderr.strip().splitlines()[-1])
    return [r["tokens"] for r in rows], [r["text"] for r in rows], timing["decode_seconds"]


class Browser:
    """The site of one model in headless Chromium, served with the isolation headers."""

    def __init__(self, model_dir: Path, workdir: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        from seqkit.web import preview_server, write_site

        site = write_site(model_dir, workdir / "site")
        self.server = preview_server(site)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        self.driver.set_script_timeout(3600)
        self.threads: int | None = None

    def open(self, threads: int) -> None:
        if self.threads == threads:
            return
        self.driver.get(f"{self.url}?threads={threads}")
        deadline = time.monotonic() + 120
        while not (state := self.driver.execute_script("return document.body.dataset.state")):
            if time.monotonic() > deadline:
                raise SystemExit("the site did not load within 120 s")
            time.sleep(0.2)
        if state != "ready":
            raise SystemExit(f"the site did not load: {self.driver.find_element('id', 'error').text}")
        got = self.driver.execute_script("return window.seqkit.model.threads")
        if got != threads:
            raise SystemExit(f"asked onnxruntime-web for {threads} threads, it has {got} (page not cross-origin isolated?)")
        self.threads = threads

    def run(self, lines: list[str], opts: dict[str, Any], threads: int) -> tuple[list[list[int]], list[str], float]:
        self.open(threads)
        script = ("const [lines, opts, warmup, done] = arguments;"
                  "window.seqkit.translate(lines.slice(0, warmup), opts).then(() => { const t = performance.now();"
                  "return window.seqkit.translate(lines, opts).then((r) => done({ms: performance.now() - t,"
                  " tokens: r.map((x) => x.tokens), texts: r.map((x) => x.text)})); }).catch((e) => done({error: String(e.message)}));")
        out = self.driver.execute_async_script(script, lines, opts, WARMUP)
        if "error" in out:
            raise SystemExit(f"browser runtime failed: {out['error']}")
        return out["tokens"], out["texts"], out["ms"] / 1000

    def screenshot(self, line: str, path: Path) -> None:
        """The page as a user sees it after typing ``line`` and pressing Run (beam search)."""
        from selenium.webdriver.support.ui import Select

        self.driver.set_window_size(1200, 1000)
        self.threads = None
        self.open(1)
        Select(self.driver.find_element("id", "strategy")).select_by_value("beam")
        self.driver.find_element("id", "source").send_keys(line)
        self.driver.find_element("id", "run").click()
        deadline = time.monotonic() + 120
        while self.driver.find_element("id", "output").get_attribute("data-state") != "done":
            if time.monotonic() > deadline:
                raise SystemExit(f"the page did not translate: {self.driver.find_element('id', 'error').text}")
            time.sleep(0.2)
        self.driver.save_screenshot(str(path))

    def close(self) -> None:
        self.driver.quit()
        self.server.shutdown()


def bleu(texts: list[str], refs: list[str] | None) -> float | None:
    if refs is None:
        return None
    from seqkit.metrics import bleu as corpus_bleu

    return round(corpus_bleu(texts, refs).score, 2)


def parity(runners: dict[str, Any], model_dir: Path, lines: list[str], refs: list[str] | None, beam: int) -> list[dict[str, Any]]:
    rows = []
    for strategy in ("greedy", "beam"):
        opts = options(strategy, beam, 32)
        ref_ids, ref_texts, _ = runners["python"](model_dir, lines, opts, 1)
        rows.append({"strategy": opts, "runtime": "python", "identical": len(lines), "bleu": bleu(ref_texts, refs)})
        for name in [n for n in runners if n != "python"]:
            ids, texts, _ = runners[name](model_dir, lines, opts, 1)
            same = sum(a == b for a, b in zip(ids, ref_ids))
            rows.append({"strategy": opts, "runtime": name, "identical": same, "bleu": bleu(texts, refs),
                         "first_difference": next((i for i, (a, b) in enumerate(zip(ids, ref_ids)) if a != b), None)})
    return rows


def speed(runners: dict[str, Any], model_dir: Path, lines: list[str], short: list[str], beam: int,
          repeats: int) -> list[dict[str, Any]]:
    rows = []
    for threads in sorted({1, os.cpu_count() or 1}):
        for name, runner in runners.items():
            for batch, text in ((1, short), (32, lines)):
                for strategy in ("greedy", "beam"):
                    seconds = min(runner(model_dir, text, options(strategy, beam, batch), threads)[2]
                                  for _ in range(repeats))
                    rows.append({"runtime": name, "threads": threads, "batch": batch, "strategy": strategy,
                                 "sentences": len(text), "seconds": round(seconds, 3),
                                 "sent_per_s": round(len(text) / seconds, 1)})
                    print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def markdown(parity_rows: list[dict[str, Any]], speed_rows: list[dict[str, Any]], n: int, beam: int) -> str:
    out = []
    if parity_rows:
        out += ["| strategy | runtime | identical ids | BLEU |", "|---|---|---:|---:|"]
        for r in parity_rows:
            label = "greedy" if r["strategy"]["strategy"] == "greedy" else f"beam {beam}"
            out.append(f"| {label} | {r['runtime']} | {r['identical']}/{n} | {r['bleu'] if r['bleu'] is not None else '-'} |")
        out.append("")
    if speed_rows:
        out += [f"| runtime | threads | greedy b1 | beam {beam} b1 | greedy b32 | beam {beam} b32 |", "|---|---:|---:|---:|---:|---:|"]
        keys = sorted({(r["runtime"], r["threads"]) for r in speed_rows}, key=lambda k: (k[1], k[0]))
        for runtime, threads in keys:
            cell = {(r["batch"], r["strategy"]): r["sent_per_s"] for r in speed_rows
                    if r["runtime"] == runtime and r["threads"] == threads}
            out.append(f"| {runtime} | {threads} | " + " | ".join(
                str(cell.get(k, "-")) for k in ((1, "greedy"), (1, "beam"), (32, "greedy"), (32, "beam"))) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lines = read_lines(args.src, args.limit)
    refs = read_lines(args.ref, args.limit) if args.ref else None
    names = args.runtimes.split(",")
    runners: dict[str, Any] = {"python": run_python, "node": run_node}
    with tempfile.TemporaryDirectory(prefix="bench-js-") as tmp:
        browser = Browser(args.model_dir, Path(tmp)) if "browser" in names or args.screenshot else None
        if browser:
            runners["browser"] = lambda _model_dir, text, opts, threads: browser.run(text, opts, threads)
        runners = {n: runners[n] for n in names if n in runners}
        try:
            parity_rows = parity(runners, args.model_dir, lines, refs, args.beam_size) if args.parity else []
            speed_rows = speed(runners, args.model_dir, lines, lines[: args.speed_limit], args.beam_size,
                               args.repeats) if args.speed else []
            if args.screenshot:
                browser.screenshot(lines[0], args.screenshot)
        finally:
            if browser:
                browser.close()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    meta = {"model_dir": str(args.model_dir), "src": str(args.src), "lines": len(lines), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "node": node}
    print(json.dumps(meta))
    print(markdown(parity_rows, speed_rows, len(lines), args.beam_size))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "parity": parity_rows, "speed": speed_rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
