"""Evaluation and the front ends the CLI decodes with: a run directory decodes with torch, an
exported model directory with onnxruntime, through the same Translator, Generator or
TextClassifier. Torch-free: a run directory is opened through :mod:`seqkit.runs` (the torch
boundary), an exported model through :mod:`seqkit.runtime`; the run's task (seqkit.tasks)
supplies its front end and its evaluation."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from seqkit import metrics as M
from seqkit.data import load_split
from seqkit.ensemble import ensemble_translator
from seqkit.errors import CheckpointError, InputError
from seqkit.inference import Candidate, pharaoh_alignment
from seqkit.recipe import load_recipe
from seqkit.rundir import CACHE_DIR, METRICS_FILE, RECIPE_FILE
from seqkit.runtime import load_model
from seqkit.runtime.format import CONFIG_FILE, ENSEMBLE_FILE, is_ensemble
from seqkit.tasks import TASKS, FrontEnd, entry, load_task
from seqkit.textio import open_output, read_aligned

# What each command says when the model's front end is not the one it needs.
_WRONG_FRONT_END = {
    "translator": "{dir}: a {task} model cannot translate; use `seqkit generate`",
    "generator": "{dir}: a {task} model does not generate from a prompt; use `seqkit translate`",
}


def is_exported(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def model_task(model_dir: Path) -> str | None:
    """The task of an exported model (config.json) or a run (recipe.yaml); None if unreadable.
    Reads one small file; opening the model still checks it (and its manifest) in full."""
    if is_exported(model_dir) and is_ensemble(model_dir):
        path = model_dir / ENSEMBLE_FILE
    else:
        path = model_dir / (CONFIG_FILE if is_exported(model_dir) else RECIPE_FILE)
    try:
        text = path.read_text(encoding="utf-8")
        tree = json.loads(text) if is_exported(model_dir) else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None  # opening the model reports the broken file
    task = tree.get("task") if isinstance(tree, dict) else None
    return task if isinstance(task, str) else None


def front_end_of(model_dir: Path) -> FrontEnd | None:
    """What the model in ``model_dir`` answers (seqkit.tasks.TaskEntry.front_end); None if unknown."""
    task = model_task(model_dir) if model_dir.is_dir() else None
    return TASKS[task].front_end if task in TASKS else None


def is_classifier(model_dir: Path) -> bool:
    """True for an exported classifier or a classification run."""
    return front_end_of(model_dir) == "classifier"


def _open_run(model_dir: Path, which: str, device: str) -> Any:
    # The torch boundary: a run directory decodes with torch, an exported model without it.
    from seqkit.runs import load_run

    return load_run(model_dir, which, device)


def open_front_end(model_dir: Path, want: FrontEnd, options: dict[str, Any], *, device: str = "cpu",
                   which: str = "best", shortlist: bool | None = None, threads: int | None = None) -> Any:
    """A Translator, Generator or TextClassifier (``want``) over an exported model (onnxruntime)
    or a run directory (torch, its ``which`` checkpoint). ``options``: search overrides, and
    batch_size. ``shortlist``: an export's vocabulary shortlist (None: its default; load_model).
    ``threads``: onnxruntime's intra-op threads per session, or torch's (None: their defaults)."""
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: no such model or run directory")
    if is_exported(model_dir):
        model = load_model(model_dir, device=device, shortlist=shortlist, threads=threads)
        if want == "classifier":
            return model.classifier(options.get("batch_size"))
        return model.translator(**options) if want == "translator" else model.generator(**options)
    task = model_task(model_dir)
    if task in TASKS and entry(task).front_end != want and want in _WRONG_FRONT_END:
        raise CheckpointError(_WRONG_FRONT_END[want].format(dir=model_dir, task=task))
    run = _open_run(model_dir, which, device)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return load_task(run.recipe.task).front_end(run, options)


def open_translator(model_dir: Path, search_overrides: dict[str, Any], device: str = "cpu",
                    which: str = "best", shortlist: bool | None = None, workers: int = 1) -> Any:
    """A Translator over an exported model (onnxruntime) or a run directory (torch).
    ``workers`` > 1: that many batches at once (Translator), the CPU's cores shared among them."""
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    translator = open_front_end(model_dir, "translator", search_overrides, device=device, which=which,
                                shortlist=shortlist, threads=threads)
    translator.workers = workers
    return translator


def open_generator(model_dir: Path, overrides: dict[str, Any], which: str, device: str) -> Any:
    """A Generator over an exported language model (onnxruntime) or a run directory (torch)."""
    return open_front_end(model_dir, "generator", overrides, device=device, which=which)


def open_step_model(model_dir: Path, device: str = "cpu", which: str = "best") -> tuple[Any, Any, Any, str, Any]:
    """(step function, source tokenizer (None for a language model), target tokenizer, task,
    SearchConfig) of a run directory (torch) or an exported model (onnxruntime)."""
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: no such model or run directory")
    if is_classifier(model_dir):
        raise InputError(f"{model_dir}: a classification model has no output sequence to score; "
                         "use `seqkit evaluate` (accuracy) or `seqkit translate --scores` (probabilities)")
    if is_exported(model_dir):
        # forced decoding scores any token: the full vocabulary, never the shortlist
        model = load_model(model_dir, device=device, shortlist=False)
        return model.stepper, model.src_tokenizer, model.tgt_tokenizer, model.config.task, model.search_config()
    run = _open_run(model_dir, which, device)
    return run.stepper(), run.src_tok, run.tgt_tok, run.recipe.task, run.recipe.search


class LineModel:
    """What ``seqkit translate`` and ``evaluate --src`` need of any model: output lines for a
    chunk of input lines (docs/cli.md, "Output formats").

    A classifier gives its label per line (``probability<TAB>label`` with scores); a seq2seq
    model its best text (``log_prob<TAB>score<TAB>text`` with scores), or with ``n_best`` > 1
    exactly n_best rows ``line<TAB>rank<TAB>log_prob<TAB>score<TAB>text`` per input line (an
    empty input line too). ``last_results`` keeps the last chunk's TranslationResults (the
    attention plot reads them).
    """

    def __init__(self, model_dir: Path | list[Path], overrides: dict[str, Any], *, batch_size: int | None,
                 device: str, attention: bool = False, which: str = "best", alignments: bool = False,
                 shortlist: bool | None = None, workers: int = 1):
        self.attention, self.last_results, self.n_best = attention or alignments, [], 1
        self.alignments = alignments
        self.classifier = self.translator = None
        members = list(model_dir) if isinstance(model_dir, (list, tuple)) else [model_dir]
        model_dir = members[0]
        given = {**overrides, **({"batch_size": batch_size} if batch_size else {})}
        if len(members) > 1:  # an ensemble (seqkit.ensemble): seq2seq members only
            if any(is_classifier(m) for m in members):
                raise InputError("an ensemble decodes seq2seq models; a classification model cannot be a member")
            # members average whole rows over the full vocabulary, as load_model's ensembles do
            self.translator = ensemble_translator([str(m) for m in members],
                                                  [open_translator(m, given, device=device, which=which, shortlist=False,
                                                                   workers=workers) for m in members])
            self.translator.workers = workers
            self.n_best = self.translator.config.n_best
            return
        if is_classifier(model_dir):
            if attention or alignments:
                flag = "--attention-plot" if attention else "--alignments"
                raise InputError(f"{flag}: a classification model has no source x target attention")
            if overrides:
                raise InputError(f"search options ({', '.join(overrides)}) do not apply to a classification model")
            self.classifier = open_front_end(model_dir, "classifier", {"batch_size": batch_size} if batch_size else {},
                                             device=device, which=which)
        else:
            self.translator = open_translator(model_dir, given, device=device, which=which, shortlist=shortlist,
                                              workers=workers)
            self.n_best = self.translator.config.n_best
        if alignments and self.n_best > 1:
            raise InputError("--alignments: prints the best hypothesis' alignment, one per line; not with --n-best")

    def texts(self, lines: list[str], first_line: int = 1) -> list[str]:
        """The label or best text of each line."""
        if self.classifier is not None:
            return [r.label for r in self.classifier.classify(lines, first_line=first_line)]
        return [r.text for r in self._translate(lines, first_line)]

    def output_lines(self, lines: list[str], first_line: int = 1, scores: bool = False) -> list[str]:
        if self.classifier is not None:
            labelled = self.classifier.classify(lines, first_line=first_line)
            return [f"{r.probability:.4f}\t{r.label}" if scores else r.label for r in labelled]
        results = self._translate(lines, first_line)
        if self.n_best == 1:
            texts = [f"{r.text} ||| {pharaoh_alignment(r)}" if self.alignments else r.text for r in results]
            return [f"{r.log_prob:.4f}\t{r.score:.4f}\t{t}" if scores else t for r, t in zip(results, texts)]
        rows = []
        for i, result in enumerate(results):
            candidates = list(result.n_best) + [Candidate("", 0.0, 0.0)] * (self.n_best - len(result.n_best))
            rows += [f"{first_line + i}\t{rank}\t{c.log_prob:.4f}\t{c.score:.4f}\t{c.text}"
                     for rank, c in enumerate(candidates[: self.n_best], 1)]
        return rows

    def _translate(self, lines: list[str], first_line: int) -> list[Any]:
        self.last_results = self.translator.translate(lines, return_attention=self.attention, first_line=first_line)
        return self.last_results


def evaluate_run(run_dir: Path, *, split: str, which: str, beam_size: int | None, strategy: str | None,
                 output: Path | None, device: str) -> dict[str, Any]:
    """Score the run on its recipe's ``split`` with the task's evaluation (a seq2seq model
    decodes with the run's search settings; see each task module). Appends an ``evaluate``
    event to the run's metrics.jsonl and returns it."""
    run = _open_run(run_dir, which, device)
    recipe = run.recipe
    if getattr(recipe.data, split) is None and entry(recipe.task).needs_valid:
        raise CheckpointError(f"{run_dir}: the recipe has no data.{split} split")
    corpus = load_split(recipe.data, split, recipe.base_dir, cache_dir=run_dir / CACHE_DIR)
    result = load_task(recipe.task).evaluate(run, corpus, strategy=strategy, beam_size=beam_size, output=output)
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": "evaluate", **result}) + "\n")
    return result


def evaluate_files(model_dir: Path | list[Path], src: Path, refs: list[Path], *, overrides: dict[str, Any],
                   device: str, output: Path | None, which: str = "best") -> dict[str, Any]:
    """Any model (a run directory, or an export in fp32 or int8; several: an ensemble) on any
    files: the task's metrics with their signatures. Several ``refs`` give multi-reference BLEU/chrF."""
    members = list(model_dir) if isinstance(model_dir, (list, tuple)) else [model_dir]
    task = ensemble_task(members)
    about = TASKS.get(task)
    if about is not None and about.file_metrics is None:
        raise InputError(f"{members[0]}: a language model is scored on text, not on --src/--ref pairs: "
                         "use `seqkit evaluate RUN_DIR --split test` (loss, bits per character)")
    if not refs:
        raise InputError("--src needs at least one --ref file: one reference line per source line")
    if len(refs) > 1 and not (about is not None and about.multi_reference):
        raise InputError(f"--ref given {len(refs)} times: several references are for BLEU/chrF (translation) only")
    sources, references = read_aligned(src, refs, "a reference file holds one line per source line")
    head = {"model": str(members[0]) if len(members) == 1 else [str(m) for m in members], "src": str(src),
            "refs": [str(r) for r in refs]}
    return _decode_and_score(members, task, sources, references, head, overrides=overrides, device=device,
                             output=output, which=which)


def ensemble_task(members: list[Path]) -> str:
    """The task every model of ``members`` shares (one model: its task)."""
    tasks = []
    for member in members:
        task = model_task(member) if member.is_dir() else None
        if task is None:
            raise CheckpointError(f"{member}: not a run directory or an exported model")
        tasks.append(task)
    odd = next((i for i, task in enumerate(tasks) if task != tasks[0]), None)
    if odd is not None:
        raise InputError(f"{members[odd]}: a {tasks[odd]} model cannot join an ensemble of {tasks[0]} models")
    return tasks[0]


def evaluate_ensemble_split(members: list[Path], *, split: str, which: str, overrides: dict[str, Any],
                            output: Path | None, device: str) -> dict[str, Any]:
    """Several models as an ensemble on the first one's (a run directory's) recipe split."""
    task = ensemble_task(members)
    if task not in TASKS or entry(task).front_end != "translator":
        raise InputError(f"an ensemble decodes translation and summarization models, not {task}")
    run = members[0]
    recipe = load_recipe(run / RECIPE_FILE, [f"run_dir={run}"])
    if getattr(recipe.data, split) is None:
        raise CheckpointError(f"{run}: the recipe has no data.{split} split")
    corpus = load_split(recipe.data, split, recipe.base_dir, cache_dir=run / CACHE_DIR)
    head = {"model": [str(m) for m in members], "split": split}
    return _decode_and_score(members, task, corpus.src, [corpus.tgt], head, overrides=overrides, device=device,
                             output=output, which=which)


def _decode_and_score(members: list[Path], task: str, sources: list[str], references: list[list[str]],
                      head: dict[str, Any], *, overrides: dict[str, Any], device: str, output: Path | None,
                      which: str) -> dict[str, Any]:
    """Decode ``sources`` with the model (or ensemble) and score the lines with the task's
    metric set (seqkit.tasks.TaskEntry.file_metrics)."""
    about = TASKS.get(task)
    classifies = about is not None and about.front_end == "classifier"
    model = LineModel(members, overrides if classifies else {**overrides, "n_best": 1},
                      batch_size=None, device=device, which=which)
    start = time.perf_counter()
    hyps = model.texts(sources)
    result: dict[str, Any] = {**head, "sentences": len(hyps), "decode_seconds": round(time.perf_counter() - start, 2)}
    if model.translator is not None:
        cfg = model.translator.config
        result.update(strategy=cfg.strategy, beam_size=cfg.beam_size)
    if about is not None and about.file_metrics is not None:
        result.update(M.file_metrics(about.file_metrics, hyps, references))
    if output is not None:
        with open_output(output) as out:
            out.writelines(h + "\n" for h in hyps)
    return result
