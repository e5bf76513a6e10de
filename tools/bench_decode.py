"""Decoding speed and agreement: torch vs onnxruntime (fp32, int8), greedy and beam, in one run.

    python tools/bench_decode.py [RUN_DIR] [--limit N] [--threads T] [--json out.json]

RUN_DIR (default runs/translate) is exported twice (fp32 and int8, with export's own parity
check) into a temporary directory, or into --export-dir to keep and reuse the exports. Then the
split's sources (default: test) are decoded by every backend with greedy and beam search:

- sentences/s at --batch-size (default 32) over the whole split: the fastest of --repeats
  passes, the backends taking turns (the machine may be shared);
- batch-1 latency per sentence (p50, p95 in ms) over the first --latency-sentences lines;
- BLEU (sacrebleu, via seqkit.metrics) against the split's references;
- agreement: % of sentences whose ids equal the torch output of the same strategy.

The ``ort-*`` rows decode the full vocabulary; ``ort-*-shortlist`` rows (exports that have a
vocabulary shortlist, docs/export.md) decode over it.

Every backend runs the same seqkit.inference.Translator (same search code, same batching), so
the numbers compare the model backends alone. torch and onnxruntime get the same thread count.
Prints a markdown table; --json writes all numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", type=Path, default=ROOT / "runs" / "translate")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--limit", type=int, default=None, help="Only the first N sentences of the split.")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--latency-sentences", type=int, default=100, help="Sentences timed one at a time (batch 1).")
    p.add_argument("--repeats", type=int, default=3, help="Throughput passes per configuration; the fastest counts.")
    p.add_argument("--threads", type=int, default=1, help="Intra-op threads for torch and onnxruntime alike.")
    p.add_argument("--export-dir", type=Path, default=None, help="Keep the exports here (reused when present).")
    p.add_argument("--compare-execution-mode", action="store_true",
                   help="Add onnxruntime fp32 rows with the parallel execution mode.")
    p.add_argument("--compare-io-binding", action="store_true",
                   help="Add an onnxruntime fp32 row that runs the step graph through IO binding.")
    p.add_argument("--compare-mkl", action="store_true",
                   help="Add a torch row whose products run on MKL, as before seqkit.cpu_kernels.OneDnnDecoding.")
    p.add_argument("--compare-full-rows", action="store_true",
                   help="Add torch and onnxruntime fp32 rows that fetch whole (N, V) log-prob rows per step "
                        "(the search path before step_top_k).")
    p.add_argument("--workers", type=int, default=1,
                   help="Also decode torch and every onnxruntime backend with this many batches at once (rows "
                        "'-wN'), one thread each, on --threads / N intra-op threads (seqkit.inference.Translator).")
    p.add_argument("--json", type=Path, default=None, help="Write every number to this JSON file.")
    return p.parse_args(argv)


def export_once(run: Any, out: Path, quantize: str | None, which: str) -> Path:
    from seqkit.export import export_run
    from seqkit.runtime.format import verify_manifest

    if (out / "manifest.json").is_file():
        exported_from = verify_manifest(out).verification.get("checkpoint")
        if exported_from != run.checkpoint.name:
            sys.exit(f"{out} was exported from {exported_from}, not {run.checkpoint.name}; delete it to re-export")
        print(f"reusing export {out}", file=sys.stderr)
        return out
    start = time.perf_counter()
    export_run(run.run_dir, out, quantize=quantize, which=which)
    print(f"exported {out.name} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return out


def backends(args: argparse.Namespace, run: Any, export_root: Path) -> dict[str, Any]:
    """Name -> StepFunction: torch, ort-fp32, ort-int8 (full vocabulary), ort-fp32-shortlist and
    ort-int8-shortlist when the export has a vocabulary shortlist (+ the --compare-* rows)."""
    import torch

    from seqkit.models import TorchStepper
    from seqkit.runtime import load_model
    from seqkit.runtime.format import read_config

    torch.set_num_threads(args.threads)
    fp32 = export_once(run, export_root / "fp32", None, args.checkpoint)
    int8 = export_once(run, export_root / "int8", "int8", args.checkpoint)
    fns = {"torch": TorchStepper(run.model, torch.device("cpu"))}
    # (row, export, shortlist): the full vocabulary, and the shortlist where the export has one
    variants = [(name + ("-shortlist" if shortlist else ""), path, shortlist)
                for name, path in (("ort-fp32", fp32), ("ort-int8", int8))
                for shortlist in (False, True) if not shortlist or read_config(path).shortlist is not None]
    for label, path, shortlist in variants:
        fns[label] = load_model(path, threads=args.threads, shortlist=shortlist).stepper
    if args.workers > 1:  # the same exports, --workers batches at once over sessions of fewer threads
        per_worker = max(1, args.threads // args.workers)
        # torch's intra-op threads are the process's: TorchThreads sets them while its row decodes
        fns[f"torch-w{args.workers}"] = TorchThreads(TorchStepper(run.model, torch.device("cpu")), per_worker)
        for label, path, shortlist in variants:
            fns[f"{label}-w{args.workers}"] = load_model(path, threads=per_worker, shortlist=shortlist).stepper
    if args.compare_execution_mode:
        fns["ort-fp32-parallel"] = load_model(fp32, threads=args.threads, sequential=False, shortlist=False).stepper
    if args.compare_io_binding:
        fns["ort-fp32-io-binding"] = with_io_binding(load_model(fp32, threads=args.threads, shortlist=False).stepper)
    if args.compare_mkl:
        fns["torch-mkl"] = TorchStepper(run.model, torch.device("cpu"), onednn=False)  # torch's own kernels
    if args.compare_full_rows:
        fns["torch-full-rows"] = FullRows(fns["torch"])
        fns["ort-fp32-full-rows"] = FullRows(fns["ort-fp32"])
    return fns


def with_io_binding(stepper: Any) -> Any:
    """The stepper with its step session run through IO binding: inputs bound in place from
    numpy, outputs left for onnxruntime to allocate, then copied out (the CPU provider)."""
    session = stepper.step_session

    class Bound:
        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            binding = session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            for name in names:
                binding.bind_output(name)
            session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()

    stepper.step_session = Bound()
    return stepper


class TorchThreads:
    """A TorchStepper row decoded with ``threads`` intra-op threads (what ``seqkit translate
    --workers N`` gives a run directory: cores / N); ``translator`` sets them around each call."""

    def __init__(self, fn: Any, threads: int):
        self.fn, self.threads = fn, threads


class _WithThreads:
    def __init__(self, translator: Any, threads: int):
        self.translator, self.threads = translator, threads

    def translate(self, lines: list[str]) -> Any:
        import torch

        saved = torch.get_num_threads()
        torch.set_num_threads(self.threads)  # the pool's threads start now and take this count
        try:
            return self.translator.translate(lines)
        finally:
            torch.set_num_threads(saved)


class FullRows:
    """A step function without ``step_top_k``: search reads whole (N, V) log-prob rows."""

    def __init__(self, fn: Any):
        self.start, self.step = fn.start, fn.step
        self.select_memory, self.select_state = fn.select_memory, fn.select_state


def translator(fn: Any, run: Any, strategy: str, beam: int, batch_size: int, workers: int = 1) -> Any:
    from seqkit.inference import Translator

    search = run.recipe.search.model_copy(update={"strategy": strategy, "beam_size": beam, "n_best": 1,
                                                  "batch_size": batch_size})
    if isinstance(fn, TorchThreads):
        return _WithThreads(Translator(fn.fn, run.src_tok, run.tgt_tok, search, workers=workers), fn.threads)
    return Translator(fn, run.src_tok, run.tgt_tok, search, workers=workers)


def workers_of(name: str) -> int:
    """A backend row's batches at once: N for the '-wN' rows (--workers), else 1."""
    head, _, tail = name.rpartition("-w")
    return int(tail) if head and tail.isdigit() else 1


def measure_all(fns: dict[str, Any], run: Any, args: argparse.Namespace, src: list[str], refs: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (backend, strategy): throughput at --batch-size (fastest of --repeats passes) and
    batch-1 latency. Backends take turns, pass by pass and sentence by sentence, so load from
    other processes on a shared machine spreads evenly over them."""
    from seqkit import metrics

    keys = [(name, strategy) for strategy in ("greedy", "beam") for name in fns]
    batched = {k: translator(fns[k[0]], run, k[1], args.beam_size, args.batch_size, workers_of(k[0])) for k in keys}
    single = {k: translator(fns[k[0]], run, k[1], args.beam_size, 1) for k in keys}
    rows: dict[tuple[str, str], dict[str, Any]] = {k: {"seconds": float("inf")} for k in keys}
    for k in keys:
        batched[k].translate(src[: args.batch_size])  # warm-up: first-run allocations, lazy inits
    for _ in range(args.repeats):
        for k in keys:
            start = time.perf_counter()
            results = batched[k].translate(src)
            rows[k]["seconds"] = min(rows[k]["seconds"], time.perf_counter() - start)
            rows[k].setdefault("hyps", [r.text for r in results])
            rows[k].setdefault("tokens", [r.tokens for r in results])
    times: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    for line in src[: args.latency_sentences]:
        for k in keys:
            start = time.perf_counter()
            single[k].translate([line])
            times[k].append(time.perf_counter() - start)
    for k, row in rows.items():
        row["sentences_per_s"] = len(src) / row["seconds"]
        row["p50_ms"] = 1000 * float(np.percentile(times[k], 50)) if times[k] else None
        row["p95_ms"] = 1000 * float(np.percentile(times[k], 95)) if times[k] else None
        row["bleu"] = metrics.bleu(row.pop("hyps"), refs).score
        print(f"{k[0]:24s} {k[1]:6s} {row['sentences_per_s']:8.1f} sent/s  BLEU {row['bleu']:.2f}", file=sys.stderr)
    return rows


def agreement(rows: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Add "same_as_torch" (% of sentences with ids equal to torch's, same strategy) and
    "bleu_delta" (BLEU minus torch's) to each row."""
    for (_, strategy), row in rows.items():
        ref = rows[("torch", strategy)]
        same = sum(a == b for a, b in zip(row["tokens"], ref["tokens"]))
        row["same_as_torch"] = 100.0 * same / max(1, len(ref["tokens"]))
        row["bleu_delta"] = row["bleu"] - ref["bleu"]


def table(rows: dict[tuple[str, str], dict[str, Any]], args: argparse.Namespace, n: int) -> str:
    torch_speed = {s: rows[("torch", s)]["sentences_per_s"] for _, s in rows}
    lines = [
        f"| backend | search | sent/s (batch {args.batch_size}) | vs torch | p50 ms (batch 1) | p95 ms (batch 1) "
        f"| BLEU | Δ BLEU | = torch ids |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (backend, strategy), r in rows.items():
        search = f"beam {args.beam_size}" if strategy == "beam" else strategy
        p50 = f"{r['p50_ms']:.1f}" if r["p50_ms"] is not None else "-"
        p95 = f"{r['p95_ms']:.1f}" if r["p95_ms"] is not None else "-"
        lines.append(
            f"| {backend} | {search} | {r['sentences_per_s']:.1f} | {r['sentences_per_s'] / torch_speed[strategy]:.2f}x "
            f"| {p50} | {p95} | {r['bleu']:.2f} | {r['bleu_delta']:+.2f} | {r['same_as_torch']:.1f}% |"
        )
    return "\n".join(lines) + (f"\n\n{n} sentences, {args.threads} thread(s), fastest of {args.repeats} passes; "
                                f"latency over {min(n, args.latency_sentences)} sentences")


def environment(args: argparse.Namespace, run: Any) -> dict[str, Any]:
    import onnxruntime
    import torch

    return {"run_dir": str(args.run_dir), "checkpoint": run.checkpoint.name, "split": args.split,
            "threads": args.threads, "workers": args.workers, "repeats": args.repeats, "batch_size": args.batch_size, "beam": args.beam_size, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version(), "machine": platform.processor()
            or platform.machine(), "cpu": cpu_id()}


def cpu_id() -> str:
    """The CPU as /proc/cpuinfo names it, with its family and model numbers: the same model name
    ("AMD EPYC" on this VM) covers generations whose libraries pick different kernels."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from seqkit.openmp import set_thread_wait

    wait = set_thread_wait()  # the seqkit command's OpenMP default (seqkit.openmp), before torch loads
    print(f"torch threads wait: {wait}", file=sys.stderr)
    import datasets

    from seqkit.data import load_split
    from seqkit.runs import load_run

    datasets.disable_progress_bars()
    args = parse_args(argv)
    run = load_run(args.run_dir, args.checkpoint, "cpu")
    corpus = load_split(run.recipe.data, args.split, run.recipe.base_dir, cache_dir=args.run_dir / "cache")
    src, refs = corpus.src[: args.limit], corpus.tgt[: args.limit]
    with tempfile.TemporaryDirectory(prefix="bench_decode-") as tmp:
        fns = backends(args, run, args.export_dir or Path(tmp))
        rows = measure_all(fns, run, args, src, refs)
    agreement(rows)
    print(table(rows, args, len(src)))
    report = {"environment": {**environment(args, run), "thread_wait": wait}, "sentences": len(src),
              "results": [{"backend": b, "strategy": s, **{k: v for k, v in r.items() if k != "tokens"}}
                          for (b, s), r in rows.items()]}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
