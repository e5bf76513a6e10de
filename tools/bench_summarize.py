"""Summarization quality in one run: the model through torch, its fp32 and int8 exports through
onnxruntime, and the lead baseline, on a recipe split or on any source/reference files.

    python tools/bench_summarize.py RUN_DIR [--split test | --src F --ref F] [--export-dir DIR]
                                    [--no-export] [--threads 2] [--json out.json]

For each system: ROUGE-1/2/L F1 (seqkit.metrics.rouge, as `seqkit evaluate`) and the repetition
rate (repeated word trigrams per headline, seqkit.metrics.repeated_ngrams), decoded with the
run's search settings, once more with ``no_repeat_ngram_size: 0`` (the recipe's trigram block
makes repetition 0 by construction, so that row shows what the model itself does) and greedily
(no block either). The
lead-N baseline takes N from the run's training headlines, as `seqkit evaluate` does. The exports
are written by seqkit.export.export_run (with its own parity check) into --export-dir
(default: a temporary directory) and reused when they are already there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--src", type=Path, help="source file (.gz allowed) instead of the recipe's split")
    p.add_argument("--ref", type=Path, help="reference file aligned with --src")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--export-dir", type=Path)
    p.add_argument("--no-export", action="store_true", help="torch and lead only")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


def read_pairs(args: argparse.Namespace, run: Any) -> tuple[list[str], list[str], str]:
    from seqkit.corpus import parallel_pairs, unzip
    from seqkit.data import load_split

    if args.src is not None:
        src, ref = unzip(parallel_pairs(args.src, args.ref, "--src", whole=True))
        return src, ref, str(args.src)
    corpus = load_split(run.recipe.data, args.split, run.recipe.base_dir, cache_dir=run.run_dir / "cache")
    return corpus.src, corpus.tgt, f"{args.split} split"


def score(hyps: list[str], refs: list[str]) -> dict[str, float]:
    from seqkit import metrics as M

    return {**{k: round(v, 2) for k, v in M.rouge(hyps, refs).items()},
            "repeated_trigrams": round(M.repeated_ngrams(hyps, 3), 4)}


def exports(args: argparse.Namespace, tmp: Path) -> dict[str, Path]:
    from seqkit.export import export_run

    base = args.export_dir or tmp
    out = {}
    for name, quantize in (("onnxruntime fp32", None), ("onnxruntime int8", "int8")):
        path = base / ("fp32" if quantize is None else "int8")
        if not (path / "manifest.json").exists():
            export_run(args.run_dir, path, quantize=quantize, which=args.checkpoint)
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from seqkit import oov
    from seqkit.inference import Translator
    from seqkit.models import TorchStepper
    from seqkit.runs import load_run
    from seqkit.runtime import load_model
    from seqkit.tasks.seq2seq import lead_baseline, lead_words
    from seqkit.data import load_split

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    run = load_run(args.run_dir, args.checkpoint)
    src, refs, where = read_pairs(args, run)
    train = load_split(run.recipe.data, "train", run.recipe.base_dir, cache_dir=run.run_dir / "cache")
    n_words = lead_words(train.tgt)
    rows: dict[str, dict[str, Any]] = {f"lead-{n_words}": score(lead_baseline(src, n_words), refs)}
    outputs: dict[str, list[str]] = {}
    searches = {"": {}, " (no trigram block)": {"no_repeat_ngram_size": 0}, " (greedy)": {"strategy": "greedy"}}
    for suffix, override in searches.items():
        search = run.recipe.search.model_copy(update=override)
        translator = Translator(TorchStepper(run.model), run.src_tok, run.tgt_tok, search, copy_oov=oov.enabled(run.recipe.model))
        outputs["torch" + suffix] = [r.text for r in translator.translate(src)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in ({} if args.no_export else exports(args, Path(tmp))).items():
            model = load_model(path, threads=args.threads)
            for suffix, override in searches.items():
                outputs[name + suffix] = model.translate(src, **override)
    for name, hyps in outputs.items():
        rows[name] = score(hyps, refs)
        if not name.startswith("torch"):  # the same search through torch
            twin = "torch" + next((suffix for suffix in searches if suffix and name.endswith(suffix)), "")
            rows[name]["identical_to_torch"] = f"{sum(a == b for a, b in zip(hyps, outputs[twin]))}/{len(hyps)}"
    report = {"run_dir": str(args.run_dir), "checkpoint": run.checkpoint.name, "data": where, "pairs": len(src),
              "search": run.recipe.search.model_dump(mode="json"), "systems": rows}
    print(f"{where}, {len(src)} pairs, checkpoint {run.checkpoint.name}\n")
    print("| system | ROUGE-1 | ROUGE-2 | ROUGE-L | repeated trigrams / headline | same as torch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} | {r['repeated_trigrams']:.3f} | "
              f"{r.get('identical_to_torch', '')} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
