"""Where an exported model's decoding time goes, and how far the machine's matrix throughput
would let it go: onnxruntime's own profiler over a real decode, with the work of every node.

    python tools/profile_decode.py MODEL_DIR --src test.de [--limit N] [--beam-size 5]
        [--batch-size 32] [--threads 2] [--shortlist | --no-shortlist] [--json out.json]

MODEL_DIR is an export (``seqkit export``). The tool decodes --src twice with seqkit's own
search (seqkit.runtime, the export's search settings with the beam and batch given here):

1. unprofiled, timing the whole pass and, separately, the time spent inside onnxruntime's
   ``run`` calls (encoder and step graph): the rest is seqkit's numpy search and Python;
2. with onnxruntime's profiler on (``SessionOptions.enable_profiling``), which records every
   node's kernel time and input shapes. The tool counts the floating-point work of the matrix
   nodes from those shapes (MatMul, Gemm, LSTM, GRU, RNN and their int8 forms: 2 FLOPs per
   multiply-add; a MatMulInteger's int8 work is counted in the same unit) and sums time per
   operator type.

Then it measures what this machine's onnxruntime reaches on one matrix product of the decode's
most common shape (a one-node MatMul graph, same threads): GFLOP/s at that shape. Dividing the
decode's FLOPs by that rate gives a floor: the time the matrix work alone needs at the
throughput onnxruntime gets from these cores on this shape, with every other node, copy and
Python line free. ``--peer-seconds S`` (e.g. OpenNMT-py's model time on the same input) prints
the largest speed-up over S that floor allows.

The profiler adds a little time per node, so the per-operator times are shares of the profiled
pass; the unprofiled pass gives the real times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Recurrent nodes and their gates; the other matrix nodes are products A (..., K) x B (K, N).
RECURRENT_GATES = {"LSTM": 4, "DynamicQuantizeLSTM": 4, "GRU": 3, "RNN": 1}
PRODUCT_OPS = {"MatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm",
               "FusedMatMul", "FusedGemm"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path)
    p.add_argument("--src", type=Path, required=True, help="Source lines to decode (plain or .gz).")
    p.add_argument("--limit", type=int, default=None, help="Only the first N lines.")
    p.add_argument("--beam-size", type=int, default=5, help="1: greedy.")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shortlist", action=argparse.BooleanOptionalAction, default=None,
                   help="Decode over the export's shortlist (default: as its config.json says).")
    p.add_argument("--peer-seconds", type=float, default=None,
                   help="A peer's time for the same input: the floor's largest speed-up over it is printed.")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


# --- counting the work of a node from its profiled input shapes ---------------------------------

def _shapes(arg: list[dict[str, list[int]]]) -> list[list[int]]:
    """ORT's input_type_shape: [{"float": [2, 3]}, {"int64": [5]}, ...] -> [[2, 3], [5], ...]."""
    return [next(iter(entry.values())) for entry in arg]


def _product_dims(op: str, inputs: list[list[int]], outputs: list[list[int]]) -> tuple[int, int, int] | None:
    """(M, K, N) of a product node from A (..., K) and its output (..., N), A's leading dims
    flattened into M (1 for a 1-D output); a Gemm's A may be transposed (K, M). None otherwise."""
    if op not in PRODUCT_OPS or not inputs or not outputs or not inputs[0] or not outputs[0]:
        return None
    a, out = inputs[0], outputs[0]
    k = a[0] if op in {"Gemm", "FusedGemm", "QGemm"} and len(a) == 2 and a[0] != out[0] else a[-1]
    return math.prod(out[:-1]), k, out[-1]


def node_flops(op: str, inputs: list[list[int]], outputs: list[list[int]]) -> float:
    """2 x multiply-adds of a matrix node (0 for any other node). The profile lists a node's
    non-constant inputs only (weights are initializers), so the shapes used are: a product's A
    and output (:func:`_product_dims`); a recurrent node X (seq, batch, in) and its output Y
    (seq, dirs, batch, H), with RECURRENT_GATES gates."""
    gates = RECURRENT_GATES.get(op)
    if gates:
        if inputs and outputs and len(inputs[0]) == 3 and len(outputs[0]) == 4:
            (seq, batch, width), (_, dirs, _, hidden) = inputs[0], outputs[0]
            return 2.0 * seq * batch * dirs * gates * hidden * (width + hidden)
        return 0.0
    dims = _product_dims(op, inputs, outputs)
    return 2.0 * math.prod(dims) if dims else 0.0


def matmul_shape(op: str, inputs: list[list[int]], outputs: list[list[int]]) -> tuple[int, int, int] | None:
    """(M, K, N) of a product node with an output of 2 or more dims, else None."""
    return _product_dims(op, inputs, outputs) if outputs and len(outputs[0]) >= 2 else None


def read_profile(path: Path) -> list[dict[str, Any]]:
    """The Node events of an onnxruntime profile: op, time (s), FLOPs, (M, K, N) if a product."""
    events = json.loads(path.read_text())
    nodes = []
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        op = args.get("op_name", "?")
        ins, outs = _shapes(args.get("input_type_shape", [])), _shapes(args.get("output_type_shape", []))
        nodes.append({"op": op, "seconds": e["dur"] / 1e6, "flops": node_flops(op, ins, outs),
                      "mkn": matmul_shape(op, ins, outs)})
    return nodes


# --- decoding -------------------------------------------------------------------------------

class TimedSession:
    """An InferenceSession whose ``run`` calls are timed (the stepper calls nothing else)."""

    def __init__(self, session: Any):
        self.session, self.seconds, self.calls = session, 0.0, 0

    def run(self, names: Any, feeds: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.session.run(names, feeds)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def open_model(args: argparse.Namespace, profile_dir: Path | None) -> Any:
    """load_model with every session profiled (into profile_dir) when profile_dir is given."""
    import seqkit.runtime as runtime

    if profile_dir is None:
        return runtime.load_model(args.model_dir, threads=args.threads, shortlist=args.shortlist)
    plain = runtime.session_options

    def profiled(*a: Any, **k: Any) -> Any:
        opts = plain(*a, **k)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_dir / "ort")
        return opts

    runtime.session_options = profiled
    try:
        return runtime.load_model(args.model_dir, threads=args.threads, shortlist=args.shortlist)
    finally:
        runtime.session_options = plain


def sessions_of(stepper: Any) -> dict[str, Any]:
    out = {"step": stepper.step_session}
    if getattr(stepper, "encoder", None) is not None:
        out["encoder"] = stepper.encoder
    return out


def decode(model: Any, lines: list[str], args: argparse.Namespace) -> tuple[float, dict[str, TimedSession], list[str]]:
    """One pass: wall seconds, the timed sessions, the outputs."""
    stepper = model.stepper
    timed = {role: TimedSession(s) for role, s in sessions_of(stepper).items()}
    stepper.step_session = timed["step"]
    if "encoder" in timed:
        stepper.encoder = timed["encoder"]
    strategy = "greedy" if args.beam_size == 1 else "beam"
    translator = model.translator(strategy=strategy, beam_size=max(args.beam_size, 1), n_best=1,
                                  batch_size=args.batch_size)
    start = time.perf_counter()
    out = [r.text for r in translator.translate(lines)]
    seconds = time.perf_counter() - start
    stepper.step_session = timed["step"].session
    if "encoder" in timed:
        stepper.encoder = timed["encoder"].session
    return seconds, timed, out


# --- the machine's matrix throughput ------------------------------------------------------

def product_session(b: np.ndarray, m: int, threads: int, bias: np.ndarray | None = None) -> Any:
    """An onnxruntime session, with seqkit's runtime options, of one float32 product A (M, K) x b
    (K, N), b a constant: a MatMul, or a Gemm adding ``bias`` (N,). Its input is "A"."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from seqkit.runtime.stepper import session_options

    (k, n), weights = b.shape, [numpy_helper.from_array(b, "B")]
    if bias is None:
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
    else:
        node = helper.make_node("Gemm", ["A", "B", "C"], ["Y"])
        weights.append(numpy_helper.from_array(bias, "C"))
    graph = helper.make_graph([node], "product", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), sess_options=session_options(threads),
                                providers=["CPUExecutionProvider"])


def matmul_rate(m: int, k: int, n: int, threads: int, seconds: float = 2.0) -> float:
    """GFLOP/s of onnxruntime on one (M, K) x (K, N) float32 MatMul graph, B a constant."""
    rng = np.random.default_rng(0)
    session = product_session(rng.standard_normal((k, n)).astype(np.float32), m, threads)
    a = rng.standard_normal((m, k)).astype(np.float32)
    for _ in range(20):
        session.run(None, {"A": a})
    best = math.inf
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(20):
            session.run(None, {"A": a})
        best = min(best, (time.perf_counter() - start) / 20)
    return 2.0 * m * k * n / best / 1e9


# --- report ---------------------------------------------------------------------------------

def summarize(nodes: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    per_op: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "flops": 0.0, "calls": 0})
    for n in nodes:
        row = per_op[n["op"]]
        row["seconds"] += n["seconds"]
        row["flops"] += n["flops"]
        row["calls"] += 1
    return dict(per_op)


def report(args: argparse.Namespace, plain: dict[str, Any], per_op: dict[str, dict[str, float]],
           shape: tuple[int, int, int], rate: float) -> dict[str, Any]:
    node_seconds = sum(r["seconds"] for r in per_op.values())
    flops = sum(r["flops"] for r in per_op.values())
    floor = flops / (rate * 1e9)
    print(f"\n{args.model_dir} on {plain['lines']} lines of {args.src}, beam {args.beam_size}, batch "
          f"{args.batch_size}, {args.threads} threads, shortlist {plain['shortlist']}")
    print(f"unprofiled pass: {plain['seconds']:.2f} s; inside onnxruntime run(): {plain['ort_seconds']:.2f} s "
          f"({100 * plain['ort_seconds'] / plain['seconds']:.0f}%: encoder {plain['encoder_seconds']:.2f} s, "
          f"step {plain['step_seconds']:.2f} s over {plain['step_calls']} steps); search and Python "
          f"{plain['seconds'] - plain['ort_seconds']:.2f} s")
    print(f"\nprofiled pass, node kernel time {node_seconds:.2f} s, {flops / 1e9:.1f} GFLOP in matrix nodes\n")
    print("| operator | calls | kernel time (s) | share | GFLOP | GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for op, r in sorted(per_op.items(), key=lambda kv: -kv[1]["seconds"])[:14]:
        gfs = f"{r['flops'] / r['seconds'] / 1e9:.1f}" if r["flops"] else ""
        gf = f"{r['flops'] / 1e9:.2f}" if r["flops"] else ""
        print(f"| {op} | {r['calls']} | {r['seconds']:.3f} | {100 * r['seconds'] / node_seconds:.1f}% | {gf} | {gfs} |")
    m, k, n = shape
    print(f"\nonnxruntime MatMul ({m} x {k}) x ({k} x {n}), the decode's most common product shape, "
          f"{args.threads} threads: {rate:.1f} GFLOP/s")
    print(f"floor: {flops / 1e9:.1f} GFLOP at {rate:.1f} GFLOP/s = {floor:.2f} s "
          f"({100 * floor / plain['seconds']:.0f}% of the unprofiled pass)")
    out = {"plain": plain, "per_op": per_op, "node_seconds": node_seconds, "gflop": flops / 1e9,
           "matmul_shape": list(shape), "matmul_gflops": rate, "floor_seconds": floor}
    if args.peer_seconds:
        print(f"peer {args.peer_seconds:.2f} s: the floor allows at most {args.peer_seconds / floor:.2f}x; "
              f"this pass is {args.peer_seconds / plain['seconds']:.2f}x")
        out["peer_seconds"] = args.peer_seconds
        out["max_speedup"] = args.peer_seconds / floor
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from seqkit.textio import read_lines

    lines = read_lines(args.src)[: args.limit]
    model = open_model(args, None)
    decode(model, lines[: min(len(lines), 2 * args.batch_size)], args)  # warm-up
    seconds, timed, outputs = decode(model, lines, args)
    plain = {"lines": len(lines), "seconds": seconds, "shortlist": type(model.stepper).__name__ == "OrtShortlistStepper",
             "ort_seconds": sum(t.seconds for t in timed.values()),
             "encoder_seconds": timed["encoder"].seconds if "encoder" in timed else 0.0,
             "step_seconds": timed["step"].seconds, "step_calls": timed["step"].calls}
    with tempfile.TemporaryDirectory() as tmp:
        profiled = open_model(args, Path(tmp))
        _, _, profiled_out = decode(profiled, lines, args)
        if profiled_out != outputs:
            sys.exit("error: the profiled pass decoded differently from the unprofiled one")
        nodes = []
        for session in sessions_of(profiled.stepper).values():
            nodes += read_profile(Path(session.end_profiling()))
    shapes = Counter(n["mkn"] for n in nodes if n["mkn"] is not None and n["flops"])
    shape = shapes.most_common(1)[0][0]
    rate = matmul_rate(*shape, threads=args.threads)
    result = report(args, plain, summarize(nodes), shape, rate)
    result["environment"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                             "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                             "loadavg_1min": os.getloadavg()[0]}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=list) + "\n")
    return result


if __name__ == "__main__":
    main()
