"""One float32 product of a decoding step, through each library that could compute it, in one run.

    python tools/bench_products.py [--rows 160] [--inner 256] [--out 8000] [--threads 1 2]

The output layer of a beam-5 step over 32 sentences is a (160 x 256) x (256 x 8,000) product
(plus bias). torch computes it with MKL's sgemm (``torch.addmm``, what ``nn.Linear`` runs), or,
inside :class:`seqkit.cpu_kernels.OneDnnDecoding`, with oneDNN's inner product on a weight packed
once; numpy uses its BLAS (OpenBLAS in the PyPI wheels) and onnxruntime its MLAS, with the session
options seqkit's runtime uses (threads that sleep while they wait). Reports ms and
GFLOP/s per call (best of ``--repeats`` timings of ``--calls`` calls) and each result's largest
difference from torch's.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/ is not a package
from profile_decode import product_session  # noqa: E402


def best_ms(fn: Callable[[], object], calls: int, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return 1000 * min(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=160)
    p.add_argument("--inner", type=int, default=256)
    p.add_argument("--out", type=int, default=8000)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    import torch

    from seqkit.cpu_kernels import onednn_available

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, args.inner, generator=gen)
    w = torch.randn(args.out, args.inner, generator=gen) / args.inner ** 0.5
    b = torch.randn(args.out, generator=gen)
    x_np, wt_np, b_np = x.numpy(), np.ascontiguousarray(w.numpy().T), b.numpy()
    flop = 2 * args.rows * args.inner * args.out
    print(f"({args.rows} x {args.inner}) x ({args.inner} x {args.out}) + bias, float32; torch {torch.__version__}, "
          f"numpy {np.__version__}\n")
    print("| library | threads | ms per call | GFLOP/s | max abs diff from torch |\n|---|---:|---:|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        ref = torch.addmm(b, x, w.t()).numpy()
        rows: list[tuple[str, Callable[[], object], Callable[[], np.ndarray]]] = [
            ("torch addmm (MKL sgemm)", lambda: torch.addmm(b, x, w.t()), lambda: torch.addmm(b, x, w.t()).numpy())]
        if onednn_available():
            packed = torch.ops.mkldnn._reorder_linear_weight(w)
            onednn = lambda: torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], "")  # noqa: E731
            rows.append(("torch oneDNN inner product, packed weight", onednn, lambda: onednn().numpy()))
        rows.append(("numpy matmul (its BLAS)", lambda: x_np @ wt_np + b_np, lambda: x_np @ wt_np + b_np))
        session = product_session(wt_np, args.rows, threads, bias=b_np)  # as seqkit.runtime runs it
        gemm = lambda: session.run(None, {"A": x_np})[0]  # noqa: E731
        rows.append(("onnxruntime Gemm (MLAS)", gemm, gemm))
        for name, fn, value in rows:
            ms = best_ms(fn, args.calls, args.repeats)
            diff = float(np.abs(value() - ref).max())
            print(f"| {name} | {threads} | {ms:.2f} | {flop / ms / 1e6:.0f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
