"""Streaming a corpus larger than the budget: peak RSS and tokenization throughput (issue 7).

    python tools/bench_streaming.py --size 2G --steps 20 [--json] [--workdir /tmp/seqkit-bench-stream]

Generates a synthetic parallel corpus of about ``--size`` bytes (both sides together; random
words from a Zipf-distributed vocabulary of pseudo-words; the target is the source, word-mapped
and reversed) under ``--workdir`` (reused if already there), then runs ``seqkit train`` with
``data.streaming: true`` in a subprocess: sentencepiece trained on the first
``data.tokenizer_sample`` pairs, the whole training file tokenized into the Arrow cache, then
``--steps`` optimizer steps of a small GRU model. While it runs, the child's /proc status is
sampled every 0.2 s (VmRSS, RssAnon, RssFile); its peak RSS is ``ru_maxrss`` of the child.
Prints one markdown table row (or a JSON object with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)B?", text.strip().upper())
    if not match:
        raise SystemExit(f"--size: expected e.g. 2G, 500M, 20000K; got {text!r}")
    return int(float(match.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[match.group(2)])


def _vocab(rng: np.random.Generator, n: int = 30_000) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = {"".join(rng.choice(letters, size=int(rng.integers(2, 11)))) for _ in range(n * 2)}
    return np.array(sorted(words)[:n], dtype=object)


def write_corpus(directory: Path, size: int, seed: int = 0) -> dict[str, int]:
    """train.{src,tgt} (about ``size`` bytes in all) and valid.{src,tgt} (500 pairs)."""
    marker = directory / "corpus.json"
    if marker.is_file() and json.loads(marker.read_text()).get("requested") == size:
        return json.loads(marker.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    src_words = _vocab(rng)
    tgt_words = src_words[rng.permutation(len(src_words))]  # a fixed word-to-word "translation"
    p = 1.0 / np.arange(1, len(src_words) + 1) ** 1.1
    p /= p.sum()
    start, written, pairs = time.perf_counter(), 0, 0
    with open(directory / "train.src", "w") as fs, open(directory / "train.tgt", "w") as ft:
        while written < size:
            lengths = rng.integers(5, 31, size=20_000)
            ids = rng.choice(len(src_words), size=int(lengths.sum()), p=p)
            cuts = np.cumsum(lengths)[:-1]
            src_lines = [" ".join(src_words[part]) for part in np.split(ids, cuts)]
            tgt_lines = [" ".join(tgt_words[part[::-1]]) for part in np.split(ids, cuts)]
            block_s, block_t = "\n".join(src_lines) + "\n", "\n".join(tgt_lines) + "\n"
            fs.write(block_s)
            ft.write(block_t)
            written += len(block_s) + len(block_t)
            pairs += len(src_lines)
    for name in ("valid.src", "valid.tgt"):
        side = "train." + name.split(".")[1]
        with open(directory / side) as fh, open(directory / name, "w") as out:
            out.writelines(line for _, line in zip(range(500), fh))
    info = {"requested": size, "bytes": written, "pairs": pairs, "seconds": round(time.perf_counter() - start, 1)}
    marker.write_text(json.dumps(info))
    return info


def recipe_tree(data: Path, run_dir: Path, steps: int, threads: int, tokenizer: str) -> dict:
    spec = ({"type": "sentencepiece", "vocab_size": 8000, "num_threads": threads} if tokenizer == "sentencepiece"
            else {"type": "word", "max_vocab": 8000})
    return {
        "task": "translation",
        "run_dir": str(run_dir),
        "data": {"format": "parallel", "streaming": True, "shuffle_buffer": 100_000,
                 "train": {"src": str(data / "train.src"), "tgt": str(data / "train.tgt")},
                 "valid": {"src": str(data / "valid.src"), "tgt": str(data / "valid.tgt")}},
        "tokenizer": {"shared": True, "source": spec},
        "model": {"encoder": {"type": "gru", "embedding_dim": 64, "hidden_size": 64},
                  "decoder": {"type": "gru", "embedding_dim": 64, "hidden_size": 64,
                              "attention": {"type": "luong-general"}}},
        "train": {"batch_tokens": 4096, "max_steps": steps, "valid_every": steps, "log_every": steps,
                  "valid_metric_max_sentences": 20, "progress": False, "num_threads": threads, "device": "cpu"},
    }


def _status(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: int(v) * 1024 for k, v in re.findall(r"^(VmRSS|RssAnon|RssFile):\s+(\d+) kB", text, re.MULTILINE)}


# Log lines that start each phase of the child (seqkit/streaming.py, seqkit/train.py).
PHASES = (("tokenizer training", "training tokenizers"), ("tokenization", "streaming: tokenizing"),
          ("training", "training on "))


def _phase(log: Path) -> str:
    text = log.read_text(errors="replace")
    seen = [name for name, marker in PHASES if marker in text]
    return seen[-1] if seen else "startup"


def run_training(recipe: Path, log: Path) -> dict[str, Any]:
    """seqkit train in a child process; peak memory from ru_maxrss and /proc samples per phase."""
    start, peaks = time.perf_counter(), {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    phases: dict[str, int] = {}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "seqkit.cli", "train", str(recipe)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            status = _status(proc.pid)
            for key, value in status.items():
                peaks[key] = max(peaks[key], value)
            phase = _phase(log)
            phases[phase] = max(phases.get(phase, 0), status.get("VmRSS", 0))
            time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"seqkit train failed ({proc.returncode}); see {log}:\n" + log.read_text()[-3000:])
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    return {"seconds": time.perf_counter() - start, "peak_rss": maxrss, "peak_sampled_rss": peaks["VmRSS"],
            "peak_anon": peaks["RssAnon"], "peak_file": peaks["RssFile"], "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="2G", help="corpus size, both sides together (2G, 500M, ...)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps after tokenization")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/seqkit-bench-stream"))
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--tokenizer", choices=("sentencepiece", "word"), default="sentencepiece",
                        help="sentencepiece (vocab 8000, trained on the first 200k pairs) or word (max_vocab 8000)")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of a markdown row")
    args = parser.parse_args()
    size = parse_size(args.size)
    corpus = write_corpus(args.workdir / f"corpus-{size}", size)
    run_dir = args.workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: tokenizer training and tokenization included
    recipe = args.workdir / "stream.yaml"
    recipe.write_text(yaml.safe_dump(recipe_tree(args.workdir / f"corpus-{size}", run_dir, args.steps, args.threads,
                                               args.tokenizer)))
    result = run_training(recipe, args.workdir / "train.out")
    (cache,) = [p for p in (run_dir / "cache" / "streaming").iterdir() if not p.name.startswith(".")]
    meta = json.loads((cache / "meta.json").read_text())
    arrow = (cache / "train.arrow").stat().st_size
    row = {
        "date": date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores", "corpus_bytes": corpus["bytes"], "pairs": meta["pairs"],
        "examples": meta["examples"], "tokenizer": args.tokenizer, "arrow_bytes": arrow, "tokenize_seconds": meta["seconds"],
        "tokenize_mb_per_s": round(meta["input_bytes"] / 1e6 / meta["seconds"], 2),
        "tokenize_pairs_per_s": round(meta["pairs"] / meta["seconds"]), "steps": args.steps,
        "total_seconds": round(result["seconds"], 1), "peak_rss_gib": round(result["peak_rss"] / GIB, 3),
        "peak_anon_gib": round(result["peak_anon"] / GIB, 3), "peak_file_gib": round(result["peak_file"] / GIB, 3),
        "peak_rss_gib_by_phase": {k: round(v / GIB, 3) for k, v in result["phases"].items()},
    }
    if args.json:
        print(json.dumps(row))
        return
    print(f"| {row['corpus_bytes'] / 1e9:.2f} GB, {row['pairs'] / 1e6:.2f}M pairs | {args.tokenizer} | "
          f"{row['tokenize_seconds']:.0f} s ({row['tokenize_mb_per_s']:.1f} MB/s, {row['tokenize_pairs_per_s']:,} pairs/s) | "
          f"{row['arrow_bytes'] / 1e9:.2f} GB | {args.steps} | {row['total_seconds']:.0f} s | "
          f"**{row['peak_rss_gib']:.2f} GiB** (anon {row['peak_anon_gib']:.2f}, file-backed {row['peak_file_gib']:.2f}) | "
          + ", ".join(f"{k} {v:.2f}" for k, v in row["peak_rss_gib_by_phase"].items()) + " |")


if __name__ == "__main__":
    main()
