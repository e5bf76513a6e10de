"""A held-out slice of a parallel corpus by topic: the pairs whose *source* matches a pattern.

    python tools/holdout_split.py OUT_DIR [--pattern REGEX | --random N [--seed S]] [--src F --tgt F]

Writes OUT_DIR/train.{src,tgt}.gz (the pairs whose source does not match) and
OUT_DIR/heldout.{src,tgt}.gz (those that do), gzip, line order kept. The default is the
Gigaword sample of recipes/summarize.yaml and a China/Taiwan/Hong Kong pattern: a model trained
on the rest has seen none of that news (docs/benchmarks.md, the generalization check). Only the
source decides, so the slice is chosen without looking at the headlines. ``--random N`` holds out
N pairs drawn uniformly instead (one fold of a k-fold split: unseen pairs of the same
distribution), seeded by ``--seed``. Also written: OUT_DIR/heldout-unseen.{src,tgt}.gz, the
held-out pairs whose headline does not occur verbatim among the kept pairs' headlines (the
Gigaword training file repeats stories, so a random slice shares many headlines with the rest).
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "recipes" / "data" / "gigaword"
CHINA = r"\b(china|chinese|beijing|taiwan|hong kong|shanghai)\b"


def split(src: list[str], tgt: list[str], pattern: str) -> tuple[list[int], list[int]]:
    """(kept indices, held-out indices): held out where ``pattern`` matches the source line."""
    regex = re.compile(pattern)
    held = [i for i, line in enumerate(src) if regex.search(line)]
    chosen = set(held)
    return [i for i in range(len(src)) if i not in chosen], held


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--pattern", default=CHINA)
    p.add_argument("--random", type=int, help="hold out this many pairs drawn at random instead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--src", type=Path, default=DATA / "train.src.gz")
    p.add_argument("--tgt", type=Path, default=DATA / "train.tgt.gz")
    args = p.parse_args(argv)
    src, tgt = (gzip.open(f, "rt", encoding="utf-8").read().splitlines() for f in (args.src, args.tgt))
    if len(src) != len(tgt):
        raise SystemExit(f"{args.src} has {len(src)} lines but {args.tgt} has {len(tgt)}")
    if args.random is not None:
        chosen = set(random.Random(args.seed).sample(range(len(src)), args.random))
        kept, held = [i for i in range(len(src)) if i not in chosen], sorted(chosen)
        args.pattern = f"random {args.random}, seed {args.seed}"
    else:
        kept, held = split(src, tgt, args.pattern)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    seen = {tgt[i] for i in kept}
    unseen = [i for i in held if tgt[i] not in seen]
    for name, index in (("train", kept), ("heldout", held), ("heldout-unseen", unseen)):
        for side, lines in (("src", src), ("tgt", tgt)):
            with gzip.open(args.out_dir / f"{name}.{side}.gz", "wt", encoding="utf-8") as f:
                f.writelines(lines[i] + "\n" for i in index)
    print(f"{len(kept)} training pairs, {len(held)} held out ({args.pattern}), {len(unseen)} of them with a "
          f"headline the training pairs do not hold -> {args.out_dir}")


if __name__ == "__main__":
    main()
