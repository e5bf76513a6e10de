"""A toy task, ``copy``: a line of tokens in, the same line out. It is the worked example of
docs/architecture.md ("Adding a task"): this one module plus one entry in seqkit.tasks.TASKS,
and train, evaluate, export and translate serve it (tests/test_task_table.py registers it).

Data: ``data.format: text``, one sequence a line (empty lines skipped) in ``train``, ``valid``
and ``test``. The model is a seq2seq model; the metric is exact-match accuracy (0-1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqkit import metrics as M
from seqkit.export_seq2seq import export_seq2seq
from seqkit.tasks import TaskEntry
from seqkit.tasks.common import Vocab, pair_tokenizers
from seqkit.tasks.seq2seq import TASK as SEQ2SEQ
from seqkit.tasks.seq2seq import Seq2SeqTask, seq2seq_sizes, translate_lines
from seqkit.tokenizers import load_tokenizers

# The table entry: what the torch-free paths need, and where the rest lives.
ENTRY = TaskEntry("copy_task", ("accuracy", True), front_end="translator", model="seq2seq", file_metrics="accuracy")


class Pairs:
    """A text split as the pairs a seq2seq adapter reads: each line is its own target."""

    def __init__(self, corpus: Any):
        self.name = corpus.name
        self.src = self.tgt = [line for line in corpus.text.splitlines() if line.strip()]


class CopyAdapter(Seq2SeqTask):
    """Seq2SeqTask, validated on exact-match accuracy of greedy copies."""

    def decode_metrics(self, cfg: Any) -> dict[str, Any]:
        hyps = translate_lines(self.model, self.src_tok, self.tgt_tok, self.recipe, self.valid.src,
                               strategy="greedy", device=self.device)
        return {"accuracy": M.accuracy(hyps, self.valid.tgt)}


class Copy:
    """The :class:`seqkit.tasks.Task` of ``task: copy``."""

    def prepare_vocab(self, recipe: Any, run_dir: Path, data: Any, resume: bool) -> Vocab:
        lines = Pairs(data.tokenizer_corpus()).src
        src_tok, tgt_tok = pair_tokenizers(recipe, run_dir, lambda: (lines, lines), resume)
        return Vocab(src_tok, tgt_tok, None, seq2seq_sizes(src_tok, tgt_tok))

    def open_vocab(self, run_dir: Path) -> Vocab:
        src_tok, tgt_tok = load_tokenizers(run_dir / "tokenizer")
        return Vocab(src_tok, tgt_tok, None, seq2seq_sizes(src_tok, tgt_tok))

    def trainable(self, recipe: Any, model: Any, vocab: Vocab, data: Any, device: Any) -> CopyAdapter:
        return CopyAdapter(recipe, model, vocab.src_tok, vocab.tgt_tok, Pairs(data.train), Pairs(data.valid), device)

    def front_end(self, run: Any, options: dict[str, Any]) -> Any:
        return SEQ2SEQ.front_end(run, options)  # a Translator, as for translation

    def evaluate(self, run: Any, corpus: Any, *, strategy: str | None, beam_size: int | None,
                 output: Path | None) -> dict[str, Any]:
        pairs = Pairs(corpus)
        hyps = translate_lines(run.model, run.src_tok, run.tgt_tok, run.recipe, pairs.src, strategy=strategy,
                               device=run.device, beam_size=beam_size)
        return {"split": corpus.name, "checkpoint": run.checkpoint.name, "sentences": len(hyps),
                "accuracy": M.accuracy(hyps, pairs.tgt)}

    def export(self, run: Any, out: Path, *, opset: int, quantize: str | None,
               check_sentences: list[str] | None) -> dict[str, Any]:
        return export_seq2seq(run, out, opset=opset, quantize=quantize, check_sentences=check_sentences)


TASK = Copy()
