"""How many words a run's vocabulary misses, per pair of files: what copying has to cover.

    python tools/oov_rates.py RUN_DIR SRC TGT [SRC TGT ...]

For each (source, target) pair of files (.gz allowed) and the word or char tokenizer saved in
RUN_DIR/tokenizer: the share of source tokens outside the vocabulary (within data.max_src_len),
the share of target tokens outside it, and the share of target tokens outside it that occur in
their own source: the words only ``model.decoder.copy_oov`` can emit. Run it on the training
files too: a word tokenizer counts both sides of a training pair, so a rare word that a training
headline copies from its source is counted twice and lands in the vocabulary, and the training
data then holds no such word at all (docs/benchmarks.md, ``train.oov_dropout``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rates(tok: object, src: list[str], tgt: list[str], max_src_len: int) -> dict[str, float]:
    """Percent of source tokens, target tokens, and target tokens copyable, outside the vocabulary."""
    unk = tok.unk_id  # type: ignore[attr-defined]
    n_src = n_tgt = src_unk = tgt_unk = copyable = 0
    for s, t in zip(src, tgt):
        s_words = tok.tokenize(s)[: max_src_len - 1]  # type: ignore[attr-defined]
        s_ids = tok.encode(s)[: max_src_len - 1]  # type: ignore[attr-defined]
        unknown_src = {w for w, i in zip(s_words, s_ids) if i == unk}
        n_src += len(s_ids)
        src_unk += sum(i == unk for i in s_ids)
        for w, i in zip(tok.tokenize(t), tok.encode(t)):  # type: ignore[attr-defined]
            n_tgt += 1
            tgt_unk += i == unk
            copyable += i == unk and w in unknown_src
    pct = lambda k, n: round(100.0 * k / max(n, 1), 2)  # noqa: E731
    return {"pairs": len(src), "source_unknown_pct": pct(src_unk, n_src), "target_unknown_pct": pct(tgt_unk, n_tgt),
            "target_copyable_pct": pct(copyable, n_tgt)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("files", type=Path, nargs="+", help="source and target file, in pairs")
    args = p.parse_args(argv)
    if len(args.files) % 2:
        p.error("files come in pairs: SRC TGT [SRC TGT ...]")
    sys.path.insert(0, str(ROOT))
    from seqkit.errors import SeqkitError
    from seqkit.recipe import load_recipe
    from seqkit.textio import read_aligned
    from seqkit.tokenizers import load_tokenizers

    recipe = load_recipe(args.run_dir / "recipe.yaml")
    src_tok, _ = load_tokenizers(args.run_dir / "tokenizer")
    if src_tok is None or not hasattr(src_tok, "tokenize"):
        p.error(f"{args.run_dir}: needs a run with a word or char source tokenizer")
    print("| source file | pairs | source tokens unknown | target tokens unknown | target tokens unknown and in their source |")
    print("|---|---:|---:|---:|---:|")
    for src_path, tgt_path in zip(args.files[::2], args.files[1::2]):
        try:
            src, (tgt,) = read_aligned(src_path, [tgt_path], "one target line per source line")
        except SeqkitError as exc:  # the file, and what is wrong with it
            p.error(str(exc))
        r = rates(src_tok, src, tgt, recipe.data.max_src_len)
        print(f"| {src_path} | {r['pairs']} | {r['source_unknown_pct']}% | {r['target_unknown_pct']}% "
              f"| {r['target_copyable_pct']}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
