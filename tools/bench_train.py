"""Training throughput: seqkit's trainer vs straightforward PyTorch loops, in one process.

    python tools/bench_train.py recipes/translate.yaml --batches 12 --rounds 3

Every contender trains on the same real batches (the recipe's token-budget buckets over its
training data), interleaved round-robin so machine noise hits all of them alike. Reports
target tokens/s (non-pad target tokens incl. eos per second of optimizer steps), the ratio to
the bare stepwise loop, the batcher's padding waste and the process's peak RSS.

Contenders:
- seqkit (recipe):        seqkit's Trainer step on the recipe's model (fused decoder path when
                          the recipe has no input feeding), with the recipe's train.amp
- seqkit fp32:            the same with train.amp=none (only when the recipe sets amp), to
                          compare like with like with the fp32 bare loops
- seqkit input-feeding:   the same with model.decoder.input_feeding=true (stepwise decoder)
- bare stepwise:          tutorial-style loop, input feeding, one nn.LSTM call per target step
- bare fused:             tutorial-style loop, no input feeding, one nn.LSTM call per sequence
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_models import BareSeq2Seq, bare_train_step  # noqa: E402

from seqkit.batching import padding_waste  # noqa: E402
from seqkit.recipe import load_recipe  # noqa: E402
from seqkit.runs import build_task, seed_everything  # noqa: E402
from seqkit.train import Trainer  # noqa: E402


def seqkit_contender(recipe_path: Path, overrides: list[str], workdir: Path, device: torch.device):
    recipe = load_recipe(recipe_path, [*overrides, f"run_dir={workdir}"])
    seed_everything(recipe.seed)
    workdir.mkdir(parents=True, exist_ok=True)
    task = build_task(recipe, workdir, resume=False, device=device)
    trainer = Trainer(task, recipe.train_cfg, workdir, seed=recipe.seed, metric=("loss", False))
    return recipe, task, trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", type=Path, nargs="?", default=Path("recipes/translate.yaml"))
    ap.add_argument("--batches", type=int, default=10, help="batches per contender per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))

    recipe, task, trainer = seqkit_contender(args.recipe, ["train.progress=false"], tmp / "fused", device)
    _, _, trainer_if = seqkit_contender(args.recipe, ["model.decoder.input_feeding=true"], tmp / "if", device)
    amp = recipe.train_cfg.amp
    if amp != "none":  # the same trainer without autocast, to compare like with like with the fp32 bare loops
        _, _, trainer_fp32 = seqkit_contender(args.recipe, ["train.amp=none"], tmp / "fp32", device)
    batches = task.batches(0, recipe.seed)[: args.batches]
    waste = padding_waste(task.batches(0, recipe.seed), task.src_len, task.tgt_len)

    enc, dec = recipe.model_cfg.encoder, recipe.model_cfg.decoder
    bare = {}
    for name, stepwise in (("bare stepwise (input feeding)", True), ("bare fused (no input feeding)", False)):
        torch.manual_seed(recipe.seed)
        model = BareSeq2Seq(task.tgt_tok.vocab_size, emb=enc["embedding_dim"], enc_hidden=enc["hidden_size"],
                            dec_hidden=dec["hidden_size"], layers=enc["num_layers"], dropout=dec["dropout"],
                            stepwise=stepwise).to(device)
        bare[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))

    def run_seqkit(tr):
        def go(index):
            stats = tr._train_step([index])
            return stats["tokens"]
        return go

    def run_bare(model, opt):
        def go(index):
            t = task._tensors([task.src_ids[i] for i in index], [task.tgt_ids[i] for i in index])
            model.train()
            bare_train_step(model, opt, t)
            return t["ntokens"]
        return go

    active = trainer._amp_dtype is not None
    label = f"amp {amp}" if active else "fp32"
    contenders = {f"seqkit (recipe: fused, no input feeding, {label})": run_seqkit(trainer)}
    if amp != "none":
        contenders["seqkit fused, fp32 (train.amp=none)"] = run_seqkit(trainer_fp32)
    contenders[f"seqkit input-feeding, {label}"] = run_seqkit(trainer_if)
    contenders.update({name: run_bare(m, o) for name, (m, o) in bare.items()})
    for fn in contenders.values():  # warm-up
        fn(batches[0])
    tokens = dict.fromkeys(contenders, 0)
    seconds = dict.fromkeys(contenders, 0.0)
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for index in batches:
                tokens[name] += fn(index)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - start

    rates = {name: tokens[name] / seconds[name] for name in contenders}
    base = rates["bare stepwise (input feeding)"]
    fused = rates["bare fused (no input feeding)"]
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"# bench_train {date.today()} {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {device}, torch {torch.__version__}")
    print(f"recipe {args.recipe}, {len(batches)} batches x {args.rounds} rounds, "
          f"batch_tokens {recipe.train_cfg.batch_tokens}, padding waste {waste:.1%}, peak RSS {rss_gib:.2f} GiB\n")
    print("| contender | target tok/s | vs bare stepwise | vs bare fused |")
    print("|---|---:|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {rate / fused:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "padding_waste": waste, "peak_rss_gib": rss_gib}, indent=1))


if __name__ == "__main__":
    main()
