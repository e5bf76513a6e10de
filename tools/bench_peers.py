"""seqkit against OpenNMT-py on the same data, architecture, threads and batch, in one run.

    python tools/bench_peers.py setup                       # OpenNMT-py 3.5.1 into .peer-venv/onmt
    python tools/bench_peers.py train-peer RUN_DIR --steps 1216 --work W   # OpenNMT-py's model
    python tools/bench_peers.py decode RUN_DIR --work W [--threads 2] [--json out.json]
    python tools/bench_peers.py train-speed RUN_DIR --work W [--steps 150] [--json out.json]

``setup`` makes a venv of its own for the peer: torch 2.13.0 first (OpenNMT-py 3.5.1 pins
torch<2.3, so it is installed with ``--no-deps``), then the peer's other requirements by name.

The data are the run's recipe splits cut into the run's own sentencepiece pieces, so both
toolkits read the same tokens (OpenNMT-py trains on the pieces as words, no transforms; its
output pieces are joined back with the same sentencepiece model before sacrebleu scores them).

``train-peer`` trains OpenNMT-py's default RNN architecture (``brnn`` 2 layers x 128 per direction,
2 x 256 LSTM decoder, Luong ``general`` attention, input feeding, 256-dim tied embeddings,
dropout 0.3, label smoothing 0.1, Adam 0.002, 3,000-token batches) for ``--steps`` optimizer
steps: give it the steps the seqkit model made, and both models have seen the same batches' worth
of data whatever the machine's load.

``decode`` translates the test split with both: OpenNMT-py's inference engine (what
``onmt_translate`` runs; decoding time alone, model loading excluded), before and after seqkit's
backends (the faster of the two counts), and seqkit's torch, onnxruntime fp32 and int8 backends,
with and without the export's vocabulary shortlist (as tools/bench_decode.py measures them), greedy and beam 5, batch 32
sentences, the same thread count; BLEU of each, and batch-1 latency p50/p95 over the first
``--latency-sentences`` lines (OpenNMT-py driven sentence by sentence through its Python API).

``train-speed`` trains each toolkit for ``--steps`` steps from scratch on ``--threads`` threads,
the toolkits taking turns: OpenNMT-py, seqkit with ``--recipe`` (default: the run's), seqkit
on OpenNMT-py's architecture in fp32 (as OpenNMT-py trains on a CPU: its mixed precision is CUDA
autocast) and in bf16 (seqkit's CPU default where native); with ``--malloc-defaults`` each seqkit
run again with glibc's malloc as it comes (what ``seqkit.cpu_memory.keep_freed_memory`` gains); it reports target
tokens per second of the steps after the first ``--warmup`` (each toolkit's own log), the
process's CPU share and peak RSS (``/usr/bin/time -v``).

Each toolkit runs with its own OpenMP defaults: OpenNMT-py with the environment this script was
started in, seqkit with what the ``seqkit`` command sets (``seqkit.openmp``: a short spin when idle) unless
that environment says otherwise. Export ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` to give both
the same.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / ".peer-venv" / "onmt"
ONMT_VERSION = "3.5.1"
# OpenNMT-py 3.5.1's requirements but torch (installed first, 2.13.0): its setup.py install_requires.
ONMT_REQUIREMENTS = ["configargparse", "ctranslate2>=4,<5", "tensorboard>=2.3", "flask", "waitress",
                     "pyonmttok>=1.37,<2", "pyyaml", "sacrebleu", "rapidfuzz", "pyahocorasick", "fasttext-wheel",
                     "spacy", "six", "sentencepiece"]
SPLITS = ("train", "valid", "test")
# OpenNMT-py 3.5.1 calls torch.load without weights_only=False, which torch >= 2.6 refuses for its
# own checkpoints (they pickle an argparse.Namespace); these are files it wrote itself here.
ONMT_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
PEER_ENVIRON = dict(os.environ)  # the peer's environment: without seqkit's OpenMP default (main)


def peer_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def setup(venv: Path) -> None:
    if not peer_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(peer_python(venv)), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "--no-deps", f"OpenNMT-py=={ONMT_VERSION}"], check=True)
    subprocess.run([*pip, *ONMT_REQUIREMENTS], check=True)
    subprocess.run([str(peer_python(venv)), "-c", "import onmt.bin.train, onmt.bin.translate; print('OpenNMT-py', onmt.__version__)"],
                   check=True)


# -- data ---------------------------------------------------------------------------------------
def prepare_data(run_dir: Path, work: Path) -> dict[str, tuple[Path, Path]]:
    """The recipe's splits as sentencepiece pieces (one sentence per line): {split: (src, tgt)}."""
    import sentencepiece as spm

    from seqkit.data import load_split
    from seqkit.recipe import load_recipe

    out = {s: (work / f"{s}.src.sp", work / f"{s}.tgt.sp") for s in SPLITS}
    if all(p.exists() for pair in out.values() for p in pair):
        return out
    recipe = load_recipe(run_dir / "recipe.yaml", [f"run_dir={run_dir}"])
    sp_src = spm.SentencePieceProcessor(model_file=str(run_dir / "tokenizer" / "src" / "spm.model"))
    tgt_dir = run_dir / "tokenizer" / "tgt"
    sp_tgt = spm.SentencePieceProcessor(model_file=str((tgt_dir if tgt_dir.is_dir() else run_dir / "tokenizer" / "src")
                                                      / "spm.model"))
    work.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        corpus = load_split(recipe.data, split, recipe.base_dir, cache_dir=run_dir / "cache")
        for side, lines, sp in (("src", corpus.src, sp_src), ("tgt", corpus.tgt, sp_tgt)):
            pieces = sp.encode(list(lines), out_type=str)
            path = work / f"{split}.{side}.sp"
            path.write_text("".join(" ".join(map(hide_space, p)) + "\n" for p in pieces), encoding="utf-8")
        (work / f"{split}.tgt.txt").write_text("".join(t + "\n" for t in corpus.tgt), encoding="utf-8")
        (work / f"{split}.src.txt").write_text("".join(t + "\n" for t in corpus.src), encoding="utf-8")
    return out


# A piece may hold a whitespace character (a no-break space, a tab) that OpenNMT-py would split
# on, or that breaks its vocabulary file: it travels as <0xNN> and is restored before decoding.
def hide_space(piece: str) -> str:
    return re.sub(r"\s", lambda m: f"<0x{ord(m.group()):02X}>", piece)


def restore_space(piece: str) -> str:
    return re.sub(r"<0x([0-9A-F]+)>", lambda m: chr(int(m.group(1), 16)), piece)


def onmt_config(work: Path, steps: int, seed: int = 1) -> Path:
    import yaml

    cfg = {
        "save_data": str(work / "onmt"), "src_vocab": str(work / "onmt.vocab"), "share_vocab": True,
        "src_vocab_size": 10000, "tgt_vocab_size": 10000, "overwrite": True,
        "data": {"corpus_1": {"path_src": str(work / "train.src.sp"), "path_tgt": str(work / "train.tgt.sp")},
                 "valid": {"path_src": str(work / "valid.src.sp"), "path_tgt": str(work / "valid.tgt.sp")}},
        "transforms": ["filtertoolong"], "src_seq_length": 80, "tgt_seq_length": 80,
        "save_model": str(work / "onmt-model"), "save_checkpoint_steps": steps, "train_steps": steps,
        "valid_steps": 10 * steps, "report_every": 25, "seed": seed,
        "encoder_type": "brnn", "decoder_type": "rnn", "rnn_type": "LSTM", "layers": 2, "hidden_size": 256,
        "word_vec_size": 256, "global_attention": "general", "input_feed": 1, "dropout": [0.3],
        "share_decoder_embeddings": True, "optim": "adam", "learning_rate": 0.002, "max_grad_norm": 1.0,
        "label_smoothing": 0.1, "batch_type": "tokens", "batch_size": 3000, "valid_batch_size": 32,
        "world_size": 1, "gpu_ranks": [],
    }
    path = work / f"onmt-{steps}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


# The seqkit overrides that give OpenNMT-py's architecture above (a 2 x 128 biLSTM's final states,
# concatenated, are the decoder's 256-wide initial state: OpenNMT-py's brnn without a bridge).
ONMT_ARCH = ["model.encoder.hidden_size=128", "model.encoder.embedding_dim=256", "model.encoder.num_layers=2",
             "model.decoder.hidden_size=256", "model.decoder.num_layers=2", "model.decoder.input_feeding=true",
             "model.decoder.attention.type=luong-general", "model.decoder.bridge=copy",
             "model.decoder.tie_embeddings=true", "train.amp=none"]


def timed(cmd: list[str], log: Path, env: dict[str, str] | None = None,
          base: dict[str, str] | None = None) -> dict[str, Any]:
    """Run cmd under /usr/bin/time -v (environment ``base``, default ours, updated by ``env``);
    its output into log. CPU share and peak RSS."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        done = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=fh, stderr=subprocess.STDOUT,
                              env={**(os.environ if base is None else base), **(env or {})})
    text = log.read_text(encoding="utf-8", errors="replace")
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[:3])} failed (exit {done.returncode}); see {log}")
    cpu = re.search(r"Percent of CPU this job got: (\d+)%", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall_s": round(time.perf_counter() - start, 1), "cpu_percent": int(cpu.group(1)) if cpu else None,
            "peak_rss_gib": round(int(rss.group(1)) / 2**20, 2) if rss else None, "log": str(log)}


def train_peer(run_dir: Path, work: Path, venv: Path, steps: int, tag: str = "", threads: int | None = None) -> dict[str, Any]:
    prepare_data(run_dir, work)
    cfg = onmt_config(work, steps)
    py = str(peer_python(venv))
    subprocess.run([py, "-m", "onmt.bin.build_vocab", "-config", str(cfg), "-n_sample", "-1"], check=True,
                   capture_output=True)
    env = {**ONMT_ENV, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {})}
    result = timed([py, "-m", "onmt.bin.train", "-config", str(cfg)], work / f"onmt-train{tag}-{steps}.log", env,
                   base=PEER_ENVIRON)
    # "Step 50/ 1216; acc: ..; ppl: ..; xent: ..; lr: ..; 2671/2532 tok/s;    28 sec;"
    rates = [(int(m.group(1)), float(m.group(3))) for m in
             re.finditer(r"Step\s+(\d+)/\s*\d+;.*?(\d+)/\s*(\d+) tok/s", Path(result["log"]).read_text())]
    result["tgt_tok_s_by_step"] = rates
    return result


def train_seqkit(recipe: Path, work: Path, steps: int, extra: list[str], tag: str,
                 env: dict[str, str] | None = None) -> dict[str, Any]:
    """``recipe`` trained for ``steps`` steps (no validation, no checkpoint before the last step);
    ``env``: added to the command's environment."""
    out = work / f"seqkit-{tag}"
    sets = [f"run_dir={out}", f"train.max_steps={steps}", "train.max_time=null", "train.log_every=25",
            f"train.valid_every={10 * steps}", f"train.save_every={10 * steps}", "train.progress=false", *extra]
    cmd = [str(Path(sys.executable).parent / "seqkit"), "train", str(recipe)]
    for s in sets:
        cmd += ["--set", s]
    if out.exists():
        import shutil

        shutil.rmtree(out)
    result = timed(cmd, work / f"seqkit-train-{tag}.log", env)
    rates = [(int(m.group(1)), float(m.group(2))) for m in
             re.finditer(r"step (\d+) train: loss [\d.]+, (\d+) tok/s", Path(result["log"]).read_text())]
    result["tgt_tok_s_by_step"] = rates
    return result


# A glibc tunable at its default value: seqkit.cpu_memory.keep_freed_memory then leaves malloc as it
# comes (any glibc.malloc setting counts as the user's), and this one changes nothing else.
MALLOC_DEFAULTS = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=7"}


def steady_rate(rates: list[tuple[int, float]], warmup: int) -> float | None:
    after = [r for s, r in rates if s > warmup]
    return round(sum(after) / len(after)) if after else None


def train_speed(args: argparse.Namespace) -> dict[str, Any]:
    work = args.work / "speed"
    work.mkdir(parents=True, exist_ok=True)
    prepare_data(args.run_dir, args.work)
    for name in ("train", "valid", "test"):
        for side in ("src", "tgt"):
            link = work / f"{name}.{side}.sp"
            if not link.exists():
                link.symlink_to(args.work / f"{name}.{side}.sp")
    recipe = args.recipe or args.run_dir / "recipe.yaml"
    threads = [f"train.num_threads={args.threads}"]  # the peer gets OMP_NUM_THREADS of the same
    onmt_bf16 = [s for s in ONMT_ARCH if not s.startswith("train.amp=")] + ["train.amp=bf16"]
    seqkit_rows = [("the recipe", [], "recipe"), ("OpenNMT-py's architecture", ONMT_ARCH, "onmt-arch"),
                   ("OpenNMT-py's architecture in bf16", onmt_bf16, "onmt-arch-bf16")]
    rows = {"OpenNMT-py (brnn, input feeding)": train_peer(args.run_dir, work, args.venv, args.steps, "-speed", args.threads)}
    for name, sets, tag in seqkit_rows:
        rows[f"seqkit, {name}"] = train_seqkit(recipe, work, args.steps, [*sets, *threads], tag)
        if args.malloc_defaults:  # the same run with glibc's malloc as it comes (seqkit.cpu_memory)
            rows[f"seqkit, {name}, glibc malloc defaults"] = train_seqkit(recipe, work, args.steps, [*sets, *threads],
                                                                          f"{tag}-malloc", MALLOC_DEFAULTS)
    for r in rows.values():
        r["tgt_tok_s"] = steady_rate(r["tgt_tok_s_by_step"], args.warmup)
    peer = rows["OpenNMT-py (brnn, input feeding)"]["tgt_tok_s"]
    print(f"\n| training, {args.steps} steps | target tok/s | vs OpenNMT-py | CPU | peak RSS |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        ratio = f"{r['tgt_tok_s'] / peer:.2f}x" if peer and r["tgt_tok_s"] else "-"
        print(f"| {name} | {r['tgt_tok_s']} | {ratio} | {r['cpu_percent']}% | {r['peak_rss_gib']} GiB |")
    return rows


# -- decoding -----------------------------------------------------------------------------------
# Run in the peer's venv: OpenNMT-py's own inference engine (what onmt_translate runs), timed here
# around the decoding of the whole file (fastest of REPEATS) and of each of the first LATENCY lines
# alone. argv: REPEATS LATENCY OUT.json, then onmt_translate's options.
ONMT_DRIVER = r"""
import json, sys, time
from onmt.inference_engine import InferenceEnginePY
from onmt.opts import translate_opts
from onmt.utils.parse import ArgumentParser
repeats, latency, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
parser = ArgumentParser()
translate_opts(parser)
opt = parser.parse_args(sys.argv[4:])
ArgumentParser.validate_translate_opts(opt)
ArgumentParser._get_all_transform_translate(opt)
ArgumentParser._validate_transforms_opts(opt)
ArgumentParser.validate_translate_opts_dynamic(opt)
engine = InferenceEnginePY(opt)
lines = open(opt.src, encoding="utf-8").read().splitlines()
engine.infer_list(lines[:32])  # warm-up, as tools/bench_decode.py does
best = float("inf")
for _ in range(repeats):
    start = time.perf_counter()
    _, preds = engine.infer_list(lines)
    best = min(best, time.perf_counter() - start)
opt.batch_size = 1
engine = InferenceEnginePY(opt)
times = []
for line in lines[:latency]:
    start = time.perf_counter()
    engine.infer_list([line])
    times.append(time.perf_counter() - start)
json.dump({"seconds": best, "latency_s": times, "hyps": [p[0] for p in preds]}, open(out, "w"))
"""


def bleu(hyps: list[str], refs: list[str]) -> float:
    from seqkit import metrics as M

    return round(M.bleu(hyps, refs).score, 2)


def onmt_decode(args: argparse.Namespace, model: Path, beam: int) -> dict[str, Any]:
    import sentencepiece as spm

    work, py = args.work, str(peer_python(args.venv))
    script, out = work / "onmt_driver.py", work / f"onmt-beam{beam}.json"
    script.write_text(ONMT_DRIVER, encoding="utf-8")
    env = {**PEER_ENVIRON, **ONMT_ENV, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    cmd = [py, str(script), str(args.repeats), str(args.latency_sentences), str(out), "-model", str(model),
           "-src", str(work / "test.src.sp"), "-beam_size", str(beam), "-batch_size", "32", "-batch_type", "sents",
           "-output", str(work / f"onmt-beam{beam}.pred.txt")]  # its default is pred.txt in the working directory
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    if done.returncode != 0:
        raise SystemExit(f"error: OpenNMT-py decoding failed: {done.stderr.strip().splitlines()[-1][:300]}")
    got = json.loads(out.read_text(encoding="utf-8"))
    sp = spm.SentencePieceProcessor(model_file=str(args.run_dir / "tokenizer" / "src" / "spm.model"))
    hyps = [sp.decode([restore_space(p) for p in h.split()]) for h in got["hyps"]]
    refs = (work / "test.tgt.txt").read_text(encoding="utf-8").splitlines()
    return {"seconds": got["seconds"], "bleu": bleu(hyps, refs), "latency_ms": percentiles(got["latency_s"])}


def percentiles(seconds: list[float]) -> dict[str, float]:
    import numpy as np

    ms = np.array(seconds) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1)}


def seqkit_decode(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """tools/bench_decode.py's rows (torch, onnxruntime fp32 and int8; greedy and beam 5)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_decode  # noqa: E402  (tools/ is not a package)

    report = bench_decode.main([str(args.run_dir), "--threads", str(args.threads), "--repeats", str(args.repeats),
                                "--export-dir", str(args.work / "exports"), "--latency-sentences",
                                str(args.latency_sentences), "--beam-size", "5", "--batch-size", "32",
                                "--workers", str(args.workers)])
    rows = {}
    for r in report["results"]:
        label = "greedy" if r["strategy"] == "greedy" else "beam 5"
        rows[f"seqkit {r['backend']}, {label}"] = {
            "seconds": r["seconds"], "bleu": round(r["bleu"], 2),
            "latency_ms": {"p50": round(r["p50_ms"], 1), "p95": round(r["p95_ms"], 1)} if r["p50_ms"] else {}}
    return rows


def decode(args: argparse.Namespace) -> dict[str, Any]:
    prepare_data(args.run_dir, args.work)
    model = args.peer_model or args.work / f"onmt-model_step_{args.steps}.pt"
    if not model.exists():
        raise SystemExit(f"error: {model}: no OpenNMT-py model; run `train-peer` first or give --peer-model")
    rows: dict[str, Any] = {}
    for beam in (1, 5):
        rows[f"OpenNMT-py, {'greedy' if beam == 1 else 'beam 5'}"] = onmt_decode(args, model, beam)
    rows.update(seqkit_decode(args))
    for beam in (1, 5):  # again after seqkit, so a change of load hits both: the faster pass counts
        name, again = f"OpenNMT-py, {'greedy' if beam == 1 else 'beam 5'}", onmt_decode(args, model, beam)
        first = rows.pop(name)
        rows[name] = {**min(first, again, key=lambda r: r["seconds"]), "passes_s": [first["seconds"], again["seconds"]]}
    print("\n| decoding test (batch 32, %d threads) | model s | vs OpenNMT-py | BLEU | batch-1 p50 / p95 ms |" % args.threads)
    print("|---|---:|---:|---:|---:|")
    for label in ("greedy", "beam 5"):
        peer = rows[f"OpenNMT-py, {label}"]["seconds"]
        for name, r in rows.items():
            if name.endswith(label):
                lat = r.get("latency_ms") or {}
                print(f"| {name} | {r['seconds']:.2f} | {peer / r['seconds']:.2f}x | {r['bleu']:.2f} | "
                      f"{lat.get('p50', '-')} / {lat.get('p95', '-')} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["setup", "train-peer", "decode", "train-speed"])
    p.add_argument("run_dir", nargs="?", type=Path, default=ROOT / "runs" / "translate")
    p.add_argument("--venv", type=Path, default=PEER_VENV)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "peers")
    p.add_argument("--steps", type=int, default=1216, help="optimizer steps (train-peer: of the peer model; "
                   "train-speed: of each timed run, default 150 there)")
    p.add_argument("--warmup", type=int, default=25, help="train-speed: steps left out of the rate")
    p.add_argument("--peer-model", type=Path, default=None)
    p.add_argument("--recipe", type=Path, default=None, help="train-speed: the recipe seqkit trains (default: the run's "
                   "recipe.yaml; the shipped one: recipes/translate.yaml)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--malloc-defaults", action="store_true", help="train-speed: each seqkit row again with glibc's "
                   "malloc as it comes (seqkit train otherwise keeps freed blocks: seqkit.cpu_memory)")
    p.add_argument("--workers", type=int, default=1, help="decode: also seqkit's torch and onnxruntime backends with this many "
                   "batches at once, --threads / N threads each (tools/bench_decode.py --workers)")
    p.add_argument("--latency-sentences", type=int, default=100)
    p.add_argument("--repeats", type=int, default=1, help="decode: seqkit passes per backend (the fastest counts)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    from seqkit.openmp import set_thread_wait

    print(f"seqkit's torch threads wait: {set_thread_wait()}", file=sys.stderr)  # before torch loads
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_decode import cpu_id  # noqa: E402  (tools/ is not a package)

    print(f"cpu: {cpu_id()}", file=sys.stderr)  # the library kernels, and so the ratios, follow the CPU generation
    if args.command == "setup":
        setup(args.venv)
        return 0
    args.run_dir = args.run_dir.resolve()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.command == "train-peer":
        result: Any = train_peer(args.run_dir, args.work, args.venv, args.steps)
        print(json.dumps({k: v for k, v in result.items() if k != "tgt_tok_s_by_step"}, indent=1))
    elif args.command == "decode":
        result = decode(args)
    else:
        if args.steps == 1216:
            args.steps = 150
        result = train_speed(args)
    if args.json:
        result = {**result, "cpu": cpu_id()} if isinstance(result, dict) else result
        args.json.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
