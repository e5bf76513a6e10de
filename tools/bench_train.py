"""Training throughput: seqkit's trainer vs straightforward PyTorch loops, in one process.

    OMP_WAIT_POLICY=PASSIVE python tools/bench_train.py recipes/translate.yaml --batches 10 --rounds 3

Every contender trains on the same real batches (the recipe's token-budget buckets over its
training data), interleaved round-robin so machine noise hits all of them alike. Reports
target tokens/s (non-pad target tokens incl. eos per second of optimizer steps), the ratio to
the bare stepwise loop, the batcher's padding waste, and the peak RSS of seqkit's trainer.

Contenders:
- seqkit fused, fp32:     seqkit's Trainer step on the recipe's model with train.amp=none (the
                          fused decoder path when the recipe has no input feeding)
- seqkit fused, bf16:     the same with train.amp=bf16 autocast, only where it is native (CUDA,
                          or a CPU with avx512_bf16/AMX; see seqkit.train.amp_dtype)
- seqkit input-feeding:   fp32 with model.decoder.input_feeding=true (stepwise decoder)
- bare stepwise:          tutorial-style loop, input feeding, one nn.LSTM call per target step
- bare fused:             tutorial-style loop, no input feeding, one nn.LSTM call per sequence
- seqkit fused, fp32, unbucketed: seqkit fp32 on batches packed to the same token budget in
                          random order instead of by length (what bucketing saves)
- with --compile:         the seqkit fused contenders again with torch.compile(dynamic=True) on
                          the model, warmed up (compiled) on every benchmark batch before timing
The bare loops are plain fp32: that is the baseline the issues define.

Also reported: the padding waste of bucketed and unbucketed batches, and the encoder's forward
and backward through a packed sequence vs the padded batch (what packing costs or saves).

Peak memory: ru_maxrss is per process, so each seqkit precision also trains ``--memory-steps``
batches (the epoch's first ones) in a fresh child process that reports its own peak RSS.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

# The checkout this script lives in, ahead of any installed seqkit (`python tools/x.py` puts
# only tools/ on sys.path, so an editable install elsewhere would be measured instead).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from bare_models import BareSeq2Seq, bare_train_step  # noqa: E402

from seqkit.batching import _pack, padding_waste  # noqa: E402
from seqkit.recipe import load_recipe  # noqa: E402
from seqkit.runs import build_task, seed_everything  # noqa: E402
from seqkit.train import Trainer, amp_dtype  # noqa: E402


def seqkit_contender(recipe_path: Path, overrides: list[str], workdir: Path, device: torch.device,
                     tokenizer_from: Path | None = None):
    """A Trainer on the recipe (plus overrides) in ``workdir``; reuses a trained tokenizer."""
    recipe = load_recipe(recipe_path, [*overrides, "train.progress=false", f"run_dir={workdir}"])
    seed_everything(recipe.seed)
    workdir.mkdir(parents=True, exist_ok=True)
    if tokenizer_from is not None and not (workdir / "tokenizer").exists():
        shutil.copytree(tokenizer_from, workdir / "tokenizer")  # same data, same tokenizer: skip retraining
    task = build_task(recipe, workdir, resume=False, device=device)
    trainer = Trainer(task, recipe.train, workdir, seed=recipe.seed, metric=("loss", False))
    return recipe, task, trainer


def peak_rss_gib() -> float:
    """This process's peak RSS. VmHWM belongs to the address space, so unlike ru_maxrss (kept
    across fork and exec) a child started by a big parent does not inherit the parent's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def memory_child(args: argparse.Namespace, device: torch.device) -> None:
    """Train ``--memory-steps`` batches with train.amp=``--memory-amp``; print this process's peak RSS."""
    workdir = Path(tempfile.mkdtemp(prefix="bench_train_mem_"))
    recipe, task, trainer = seqkit_contender(args.recipe, [f"train.amp={args.memory_amp}"], workdir, device,
                                             args.tokenizer_from)
    batches = task.batches(0, recipe.seed)
    start, steps = time.perf_counter(), 0
    while steps < args.memory_steps:  # into the next epoch when the first is shorter
        for index in batches[: args.memory_steps - steps]:
            trainer._train_step([index])
            steps += 1
        batches = task.batches(trainer.epoch + steps // max(len(batches), 1), recipe.seed)
    gpu = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    print(json.dumps({"amp": args.memory_amp, "steps": steps, "peak_rss_gib": peak_rss_gib(),
                      "peak_gpu_allocated_gib": gpu, "seconds": time.perf_counter() - start}))


def measure_memory(args: argparse.Namespace, amps: list[str], tokenizer: Path) -> dict[str, float]:
    """Peak RSS (GiB) of a fresh process training ``--memory-steps`` batches, per train.amp
    (on CUDA also the peak of torch's allocated GPU memory)."""
    peaks = {}
    for amp in amps:
        cmd = [sys.executable, __file__, str(args.recipe), "--device", args.device, "--memory-amp", amp,
               "--memory-steps", str(args.memory_steps), "--tokenizer-from", str(tokenizer)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        child = json.loads(out.strip().splitlines()[-1])
        peaks[amp] = child["peak_rss_gib"]
        if child["peak_gpu_allocated_gib"] is not None:
            peaks[f"{amp}, GPU allocated"] = child["peak_gpu_allocated_gib"]
    return peaks


def bare_contenders(recipe, task, device: torch.device) -> dict:
    enc, dec = recipe.model.encoder, recipe.model.decoder
    contenders = {}
    for name, stepwise in (("bare stepwise (input feeding)", True), ("bare fused (no input feeding)", False)):
        torch.manual_seed(recipe.seed)
        model = BareSeq2Seq(task.tgt_tok.vocab_size, emb=enc["embedding_dim"], enc_hidden=enc["hidden_size"],
                            dec_hidden=dec["hidden_size"], layers=enc["num_layers"], dropout=dec["dropout"],
                            stepwise=stepwise).to(device)
        contenders[name] = run_bare(task, model, torch.optim.Adam(model.parameters(), lr=1e-3))
    return contenders


def run_seqkit(trainer: Trainer):
    def go(index):
        return trainer._train_step([index])["tokens"]
    return go


def batch_tensors(task, index) -> dict:
    """The padded tensors of one batch of example indices, as the trainer builds them."""
    return task._tensors([task.src_ids[i] for i in index], [task.tgt_ids[i] for i in index])


def run_bare(task, model, opt):
    def go(index):
        t = batch_tensors(task, index)
        model.train()
        bare_train_step(model, opt, t)
        return t["ntokens"]
    return go


def unbucketed_batches(task, recipe) -> list:
    """Batches under the recipe's token budget, filled in random order rather than by length."""
    cost = np.maximum(task.src_len, task.tgt_len + 1)
    order = np.random.default_rng(recipe.seed).permutation(len(cost))
    return [order[a:b] for a, b in _pack(cost[order], recipe.train.batch_tokens, len(cost))]


def on_batches(go, batches: list):
    """A contender that trains on its own batch list, one batch per call, in turn."""
    cycle = itertools.cycle(batches)
    return lambda _index: go(next(cycle))


def compiled(trainer: Trainer, batches: list) -> tuple:
    """run_seqkit with torch.compile(dynamic=True) on the trainer's model, compiled on every
    benchmark batch first; also returns the warm-up seconds (compilation included)."""
    trainer.task.model.compile(dynamic=True)
    go = run_seqkit(trainer)
    start = time.perf_counter()
    for index in batches:
        go(index)
    return go, time.perf_counter() - start


def encoder_packing(task, batches: list, rounds: int) -> dict[str, float]:
    """ms per batch of the encoder's forward + backward: through a packed sequence (seqkit) vs
    the padded batch straight into the same nn.LSTM (its backward direction then starts on pads)."""
    enc = task.model.encoder
    enc.train()

    def packed(t):
        out = enc(t["src"], t["src_lengths"])
        (out.memory.sum() + out.hidden.sum()).backward()

    def padded(t):  # the same dropouts as the encoder's forward
        out, final = enc.rnn(enc.embedding_dropout(enc.embedding(t["src"])))
        hidden = final[0] if isinstance(final, tuple) else final  # LSTM: (h, c)
        (enc.output_dropout(out).sum() + hidden.sum()).backward()

    tensors = [batch_tensors(task, index) for index in batches]
    seconds = {"packed": 0.0, "padded": 0.0}
    for fn in (packed, padded):
        fn(tensors[0])  # warm-up
    for _ in range(rounds):
        for name, fn in (("packed", packed), ("padded", padded)):
            start = time.perf_counter()
            for t in tensors:
                fn(t)
            seconds[name] += time.perf_counter() - start
    enc.zero_grad(set_to_none=True)
    return {name: 1000 * sec / (rounds * len(tensors)) for name, sec in seconds.items()}


def interleave(contenders: dict, batches: list, rounds: int, device: torch.device) -> dict[str, float]:
    """Target tokens/s per contender, round-robin over ``rounds`` so noise hits all alike."""
    for fn in contenders.values():  # warm-up
        fn(batches[0])
    tokens = dict.fromkeys(contenders, 0)
    seconds = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for index in batches:
                tokens[name] += fn(index)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - start
    return {name: tokens[name] / seconds[name] for name in contenders}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", type=Path, nargs="?", default=Path("recipes/translate.yaml"))
    ap.add_argument("--batches", type=int, default=10, help="batches per contender per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory-steps", type=int, default=100, help="steps per peak-RSS child (0: skip)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true", help="add torch.compile'd seqkit contenders")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--memory-amp", default=None, help=argparse.SUPPRESS)  # internal: run as a memory child
    ap.add_argument("--tokenizer-from", type=Path, default=None, help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.memory_amp is not None:
        return memory_child(args, device)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    recipe, task, trainer = seqkit_contender(args.recipe, ["train.amp=none"], tmp / "fp32", device)
    tokenizer = tmp / "fp32" / "tokenizer"
    contenders = {"seqkit fused, fp32": run_seqkit(trainer)}
    amps = ["none"]
    if amp_dtype("bf16", device) is not None:
        _, _, trainer_bf16 = seqkit_contender(args.recipe, ["train.amp=bf16"], tmp / "bf16", device, tokenizer)
        contenders["seqkit fused, bf16 autocast"] = run_seqkit(trainer_bf16)
        amps.append("bf16")
    _, _, trainer_if = seqkit_contender(args.recipe, ["train.amp=none", "model.decoder.input_feeding=true"],
                                        tmp / "if", device, tokenizer)
    contenders["seqkit input-feeding, fp32"] = run_seqkit(trainer_if)
    contenders.update(bare_contenders(recipe, task, device))
    batches = task.batches(0, recipe.seed)[: args.batches]
    shuffled = unbucketed_batches(task, recipe)
    _, _, trainer_unb = seqkit_contender(args.recipe, ["train.amp=none"], tmp / "unbucketed", device, tokenizer)
    contenders["seqkit fused, fp32, unbucketed"] = on_batches(run_seqkit(trainer_unb), shuffled[: args.batches])
    waste = {"bucketed": padding_waste(task.batches(0, recipe.seed), task.src_len, task.tgt_len),
             "unbucketed": padding_waste(shuffled, task.src_len, task.tgt_len)}
    warmup = {}
    if args.compile:
        for amp in amps:
            _, _, trainer_c = seqkit_contender(args.recipe, [f"train.amp={amp}"], tmp / f"compile-{amp}", device, tokenizer)
            label = "fp32" if amp == "none" else "bf16 autocast"
            name = f"seqkit fused, {label}, torch.compile"
            contenders[name], warmup[name] = compiled(trainer_c, batches)
    rates = interleave(contenders, batches, args.rounds, device)
    packing = encoder_packing(task, batches, args.rounds)
    bench_rss = peak_rss_gib()
    peaks = measure_memory(args, amps, tokenizer) if args.memory_steps > 0 else {}
    report(args, recipe, device, rates, waste, bench_rss, peaks, warmup, packing)


def report(args, recipe, device, rates, waste, bench_rss, peaks, warmup, packing) -> None:
    base = rates["bare stepwise (input feeding)"]
    fused = rates["bare fused (no input feeding)"]
    print(f"# bench_train {date.today()} {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {device}, torch {torch.__version__}")
    print(f"recipe {args.recipe}, {args.batches} batches x {args.rounds} rounds, "
          f"batch_tokens {recipe.train.batch_tokens}, padding waste {waste['bucketed']:.1%} "
          f"(unbucketed: {waste['unbucketed']:.1%}), "
          f"peak RSS of this process (all contenders) {bench_rss:.2f} GiB\n")
    print("| contender | target tok/s | vs bare stepwise | vs bare fused |")
    print("|---|---:|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {rate / fused:.2f}x |")
    for name, sec in warmup.items():
        print(f"\n{name}: {sec:.1f} s to compile and run the {args.batches} batches once before timing", end="")
    print(f"\nencoder forward + backward per batch: packed {packing['packed']:.1f} ms, "
          f"padded {packing['padded']:.1f} ms", end="")
    for amp, gib in peaks.items():
        what = "peak GPU memory allocated by torch" if "GPU" in amp else "peak RSS"
        print(f"\n{what} of seqkit's trainer alone, train.amp={amp.split(',')[0]}, {args.memory_steps} steps: "
              f"{gib:.2f} GiB", end="")
    print()
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "padding_waste": waste, "bench_peak_rss_gib": bench_rss,
                                         "compile_warmup_s": warmup, "encoder_ms_per_batch": packing,
                                         "trainer_peak_rss_gib": peaks, "memory_steps": args.memory_steps},
                                        indent=1))


if __name__ == "__main__":
    main()
