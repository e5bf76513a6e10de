"""Tasks: one module per task behind one protocol, and the one table from ``recipe.task`` to it.

A task says how it builds its training data and model from a typed recipe, how it reopens a
trained run, its torch front end, how it is evaluated and exported, and the metric it selects
checkpoints on. ``seqkit.runs``, ``seqkit.evaluate``, ``seqkit.cli`` and ``seqkit.export`` look
the task up in :data:`TASKS` and hold no task-specific branches.

This module is torch-free: a table entry carries what the torch-free paths need (the metric,
what the model's front end is, how it is scored on files), and names the module that implements
the rest, imported on first use (:func:`load_task`), like an entry-point plugin. Adding a task is
one new module that defines ``TASK`` (a :class:`Task`) plus one entry here; docs/architecture.md
walks through an example.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic_core import PydanticCustomError

# What a task's model answers, and so which commands serve it: a translator maps a line to a
# line (translate, score), a generator continues a prompt (generate, score), a classifier gives
# a label per line (translate). The model kind is what seqkit.models builds for it.
FrontEnd = Literal["translator", "generator", "classifier"]
ModelKind = Literal["seq2seq", "lm", "classifier"]


@dataclass(frozen=True)
class TaskEntry:
    """One row of the task table: the torch-free facts about a task, and its module."""

    module: str  # defines TASK, a Task; imported on first use
    metric: tuple[str, bool]  # the validation metric checkpoints are selected on, higher is better
    front_end: FrontEnd
    model: ModelKind
    # The metrics of `seqkit evaluate --src/--ref` (seqkit.metrics.file_metrics), and whether
    # several --ref files may be given; None: the task is not scored on line pairs.
    file_metrics: str | None = None
    multi_reference: bool = False
    # Whether data.valid must be configured (a language model can cut it from the training text).
    needs_valid: bool = True
    streams: bool = False  # trains from data.streaming (the training split stays on disk)
    # The numbers of its validation log line (train.early_stopping_metric names one); empty: not
    # listed, so the name is checked at the first validation instead of at load.
    valid_metrics: tuple[str, ...] = ()


TASKS: dict[str, TaskEntry] = {
    "translation": TaskEntry("seqkit.tasks.seq2seq", ("bleu", True), "translator", "seq2seq",
                             file_metrics="bleu_chrf", multi_reference=True, streams=True,
                             valid_metrics=("loss", "ppl", "bleu", "chrf")),
    "summarization": TaskEntry("seqkit.tasks.seq2seq", ("rouge2", True), "translator", "seq2seq",
                               file_metrics="rouge", streams=True,
                               valid_metrics=("loss", "ppl", "rouge1", "rouge2", "rougeL")),
    "lm": TaskEntry("seqkit.tasks.lm", ("loss", False), "generator", "lm", needs_valid=False,
                    valid_metrics=("loss", "ppl", "bits_per_char")),
    "classification": TaskEntry("seqkit.tasks.classification", ("accuracy", True), "classifier", "classifier",
                                file_metrics="accuracy", valid_metrics=("loss", "accuracy", "macro_f1")),
}


class Task(Protocol):
    """What a task module's ``TASK`` provides (all torch-side; the table entry holds the rest).

    ``run`` is a :class:`seqkit.runs.LoadedRun`; ``data`` a data source,
    :class:`seqkit.runs.InMemoryData` or :class:`seqkit.streaming.StreamingData` (``train``,
    ``valid``, ``streaming``, ``tokenizer_corpus()``, and ``stream(src_tok, tgt_tok)`` when
    streaming); ``vocab`` a :class:`seqkit.tasks.common.Vocab`.
    """

    def prepare_vocab(self, recipe: Any, run_dir: Path, data: Any, resume: bool) -> Any:
        """The tokenizers (and labels) for training: trained on ``data`` and saved into
        ``run_dir``, or read back from it on resume. Returns a Vocab."""

    def open_vocab(self, run_dir: Path) -> Any:
        """The tokenizers (and labels) a trained run saved. Returns a Vocab."""

    def trainable(self, recipe: Any, model: Any, vocab: Any, data: Any, device: Any) -> Any:
        """The Trainer's adapter: ``batches(epoch, seed)``, ``end_epoch()``, ``loss(batch, model)``
        (the forward through ``model``, the Trainer's step hook's), ``validate(cfg)``, ``model``,
        ``device`` (see :class:`seqkit.train.Trainer`)."""

    def front_end(self, run: Any, options: dict[str, Any]) -> Any:
        """The torch front end: a Translator, Generator or TextClassifier (as the entry says);
        ``options``: search overrides (SearchConfig fields), and ``batch_size``."""

    def evaluate(self, run: Any, corpus: Any, *, strategy: str | None, beam_size: int | None,
                 output: Path | None) -> dict[str, Any]:
        """``seqkit evaluate RUN --split``: the metrics on ``corpus`` (a seqkit.data.Corpus)."""

    def export(self, run: Any, out: Path, *, opset: int, quantize: str | None,
               check_sentences: list[str] | None) -> dict[str, Any]:
        """Write the exported files into ``out`` (a staging directory) and verify them; returns
        the verification report for manifest.json."""


def check_task_name(value: Any) -> str:
    """A pydantic validator's check of a ``task`` value: one of the table's names, else the
    error a Literal of them gives (so messages list the choices, with a did-you-mean)."""
    if not isinstance(value, str) or value not in TASKS:
        names = [repr(n) for n in TASKS]
        expected = " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
    return value


def entry(name: str) -> TaskEntry:
    """The table entry of task ``name`` (a validated recipe's task is always in the table)."""
    return TASKS[name]


def load_task(name: str) -> Task:
    """The implementation of task ``name``: its module's ``TASK``, the module imported now."""
    return importlib.import_module(TASKS[name].module).TASK
