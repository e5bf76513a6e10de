"""Several exports of one model decoding the same file, interleaved in one run: model seconds
and BLEU of each, and each one's speed as a ratio to the first.

    python tools/bench_exports.py EXPORT [EXPORT ...] --src test.de --ref test.en
        [--beam-size 5] [--batch-size 32] [--threads 2] [--repeats 3] [--shortlist | --no-shortlist]
        [--json out.json]

Each pass decodes the whole of --src with seqkit.runtime (each export's own search settings,
with the beam and batch given here); the exports take turns, pass after pass, so that a change
in the machine's load falls on all of them alike, and the fastest of each one's passes counts.
Use it for A/B comparisons of export options on one host (e.g. an export made before a change
against one made after it); docs/benchmarks.md reports such runs with their command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exports", type=Path, nargs="+")
    p.add_argument("--src", type=Path, required=True, help="Source lines (plain or .gz).")
    p.add_argument("--ref", type=Path, required=True, help="Reference lines, one per source line.")
    p.add_argument("--beam-size", type=int, default=5, help="1: greedy.")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--shortlist", action=argparse.BooleanOptionalAction, default=None,
                   help="Force each export's shortlist on or off (default: as each export decided).")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from seqkit import metrics
    from seqkit.errors import SeqkitError
    from seqkit.runtime import load_model
    from seqkit.textio import read_lines

    try:
        src, refs = read_lines(args.src), read_lines(args.ref)
        if len(src) != len(refs):
            raise SeqkitError(f"{args.ref}: {len(refs)} lines, but {args.src} has {len(src)}")
        models = [load_model(d, threads=args.threads, shortlist=args.shortlist) for d in args.exports]
    except SeqkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    search: dict[str, Any] = ({"strategy": "greedy"} if args.beam_size == 1
                              else {"strategy": "beam", "beam_size": args.beam_size})
    translators = [m.translator(batch_size=args.batch_size, **search) for m in models]
    for tr in translators:  # warm-up: first-run allocations, lazy inits
        tr.translate(src[: args.batch_size])
    best = [float("inf")] * len(models)
    hyps: list[list[str]] = [[] for _ in models]
    for _ in range(args.repeats):
        for i, tr in enumerate(translators):
            start = time.perf_counter()
            out = [r.text for r in tr.translate(src)]
            best[i] = min(best[i], time.perf_counter() - start)
            hyps[i] = out
    rows = []
    for d, m, seconds, out in zip(args.exports, models, best, hyps):
        rows.append({"export": str(d), "shortlist": type(m.stepper).__name__ == "OrtShortlistStepper",
                     "seconds": round(seconds, 3), "bleu": round(metrics.bleu(out, refs).score, 2),
                     "vs_first": round(best[0] / seconds, 3)})
    print(f"{len(src)} lines, beam {args.beam_size}, batch {args.batch_size}, {args.threads} threads, "
          f"fastest of {args.repeats} interleaved passes")
    print("| export | shortlist | model s | BLEU | speed vs the first |")
    print("|---|:---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['export']} | {'on' if r['shortlist'] else 'off'} | {r['seconds']:.2f} | {r['bleu']:.2f} | "
              f"{r['vs_first']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
