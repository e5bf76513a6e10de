"""Best checkpoint vs checkpoint average vs moving average vs ensemble, BLEU and decode time, in one run.

    python tools/bench_combine.py RUN_A RUN_B [--work DIR] [--threads 2] [--json out.json]

RUN_A and RUN_B are two runs of one recipe with different seeds (trained with
``train.save_every`` so that they keep enough checkpoints, and ``train.ema`` for the EMA row).
On the recipe's test split, with its search settings (beam 5 for recipes/translate.yaml), the
script scores:

- A's best checkpoint (by validation BLEU) and its last one;
- the average of A's last 5 checkpoints (``seqkit average RUN_A --last 5``);
- A's moving average of the weights at its last checkpoint (``seqkit average RUN_A --ema --last 1``);
- B's best checkpoint, and the ensemble of A's and B's best checkpoints (torch);
- the same single model and ensemble exported (fp32, onnxruntime), for the decode-time ratio.

Decode speed is measured apart from the scores: the single model and the ensemble, torch and
onnxruntime, decode the whole split in turns, ``--repeats`` passes each, the fastest pass
counting (the machine may be shared); compare them as ratios. Prints markdown tables; --json
writes all numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--work", type=Path, default=None, help="where averages and exports go (default: a temp dir)")
    p.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    p.add_argument("--last", type=int, default=5, help="checkpoints in the average")
    p.add_argument("--repeats", type=int, default=3, help="speed passes per configuration (the fastest counts)")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def row(name: str, result: dict[str, Any], models: str) -> dict[str, Any]:
    return {"row": name, "models": models, "bleu": result["bleu"], "chrf": result["chrf"],
            "sentences": result["sentences"],
            "checkpoint": result.get("checkpoint"), "bleu_signature": str(result["bleu_signature"])}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from seqkit.average import average_run, expand_sources
    from seqkit.ema import EMA_FILE
    from seqkit.evaluate import evaluate_ensemble_split, evaluate_files, evaluate_run
    from seqkit.export import export_run
    from seqkit.recipe import load_recipe

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_combine_"))
    work.mkdir(parents=True, exist_ok=True)
    run_a, run_b = args.run_a.resolve(), args.run_b.resolve()
    recipe = load_recipe(run_a / "recipe.yaml", [f"run_dir={run_a}"])
    test = recipe.data.test
    src, ref = recipe.base_dir / test.src, recipe.base_dir / test.tgt
    search = {"strategy": recipe.search.strategy, "beam_size": recipe.search.beam_size}

    def split(run: Path, which: str = "best") -> dict[str, Any]:
        return evaluate_run(run, split="test", which=which, beam_size=None, strategy=None, output=None, device="cpu")

    def once(path: Path, make) -> Path:
        if not path.exists():
            make(path)
        return path

    rows = []
    rows.append(row("best checkpoint (A)", split(run_a), "A"))
    rows.append(row("last checkpoint (A)", split(run_a, "last"), "A"))
    avg = once(work / f"avg{args.last}-a",
               lambda p: average_run(expand_sources([run_a], last=args.last, steps=None), p))
    rows.append(row(f"average of the last {args.last} checkpoints (A)", split(avg), "A"))
    last_ckpt = expand_sources([run_a], last=1, steps=None, at_least=1)
    if (last_ckpt[0] / EMA_FILE).is_file():
        ema = once(work / "ema-a", lambda p: average_run(last_ckpt, p, weights=EMA_FILE))
        rows.append(row("moving average of the weights, train.ema (A)", split(ema), "A"))
    rows.append(row("best checkpoint (B)", split(run_b), "B"))
    ens = evaluate_ensemble_split([run_a, run_b], split="test", which="best", overrides=search, output=None,
                                  device="cpu")
    rows.append(row("ensemble of A and B (best checkpoints, torch)", ens, "A+B"))
    exp_a = once(work / "export-a", lambda p: export_run(run_a, p))
    exp_b = once(work / "export-b", lambda p: export_run(run_b, p))
    for name, members in (("A exported (fp32, onnxruntime)", [exp_a]),
                          ("ensemble of A and B exported (fp32, onnxruntime)", [exp_a, exp_b])):
        result = evaluate_files(members if len(members) > 1 else members[0], src, [ref], overrides=search,
                                device="cpu", output=None)
        rows.append(row(name, result, "+".join("AB"[i] for i in range(len(members)))))

    speed = decode_speed({"torch": [run_a, run_b], "onnxruntime fp32": [exp_a, exp_b]}, src, search, args)
    print(f"{recipe.description}; test split {src.name} ({rows[0]['sentences']} sentences), "
          f"{search['strategy']} {search['beam_size']}, {args.threads} threads, {platform.processor() or platform.machine()}")
    print("\n| model | BLEU | chrF | checkpoint |\n|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['row']} | {r['bleu']:.2f} | {r['chrf']:.2f} | {r['checkpoint'] or ''} |")
    print(f"\nsignature: {rows[0]['bleu_signature']}")
    print(f"\n| decoding the split (fastest of {args.repeats}) | single model s | ensemble of 2 s | ensemble / single |")
    print("|---|---:|---:|---:|")
    for backend, r in speed.items():
        print(f"| {backend} | {r['single_s']:.2f} | {r['ensemble_s']:.2f} | {r['ratio']:.2f}x |")
    ratios = {backend: r["ratio"] for backend, r in speed.items()}
    if args.json:
        args.json.write_text(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                         "runs": [str(run_a), str(run_b)], "threads": args.threads,
                                         "search": search, "rows": rows, "speed": speed,
                                         "ensemble_time_ratio": ratios}, indent=1))
    return 0


def decode_speed(members: dict[str, list[Path]], src: Path, search: dict[str, Any],
                 args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Per backend: the fastest of --repeats passes over the split, single model (the first
    member) and the ensemble of all, every configuration taking its turn in each pass."""
    import time

    from seqkit.ensemble import ensemble_translator
    from seqkit.evaluate import open_translator
    from seqkit.textio import read_lines

    lines = read_lines(src)
    translators = {}
    for backend, dirs in members.items():
        opened = [open_translator(d, search) for d in dirs]
        translators[(backend, "single")] = opened[0]
        translators[(backend, "ensemble")] = ensemble_translator([str(d) for d in dirs], opened)
    best = {key: float("inf") for key in translators}
    for key, tr in translators.items():
        tr.translate(lines[:32])  # warm-up
    for _ in range(args.repeats):
        for key, tr in translators.items():
            start = time.perf_counter()
            tr.translate(lines)
            best[key] = min(best[key], time.perf_counter() - start)
    return {backend: {"single_s": round(best[(backend, "single")], 2), "ensemble_s": round(best[(backend, "ensemble")], 2),
                      "ratio": round(best[(backend, "ensemble")] / best[(backend, "single")], 2)} for backend in members}


if __name__ == "__main__":
    sys.exit(main())
