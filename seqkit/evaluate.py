"""Evaluation and translation front ends shared by the CLI: a run directory decodes with
torch, an exported model directory with onnxruntime, through the same Translator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from seqkit.errors import CheckpointError, InputError
from seqkit.inference import Candidate


def is_exported(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def model_task(model_dir: Path) -> str | None:
    """The task of an exported model (config.json) or a run (recipe.yaml); None if unreadable.
    Reads one small file; opening the model still checks it (and its manifest) in full."""
    import yaml

    from seqkit.runtime.format import CONFIG_FILE, ENSEMBLE_FILE, is_ensemble

    if is_exported(model_dir) and is_ensemble(model_dir):
        path = model_dir / ENSEMBLE_FILE
    else:
        path = model_dir / (CONFIG_FILE if is_exported(model_dir) else "recipe.yaml")
    try:
        text = path.read_text(encoding="utf-8")
        tree = json.loads(text) if is_exported(model_dir) else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None  # opening the model reports the broken file
    task = tree.get("task") if isinstance(tree, dict) else None
    return task if isinstance(task, str) else None


def is_classifier(model_dir: Path) -> bool:
    """True for an exported classifier or a classification run."""
    return model_dir.is_dir() and model_task(model_dir) == "classification"


def open_classifier(model_dir: Path, *, batch_size: int | None = None, device: str = "cpu",
                    which: str = "best") -> Any:
    """A TextClassifier over an exported classifier (onnxruntime) or a classification run
    (torch, its best checkpoint)."""
    if is_exported(model_dir):
        from seqkit.runtime import load_model

        return load_model(model_dir, device=device).classifier(batch_size)
    from seqkit.classify import load_classifier_run, text_classifier
    from seqkit.devices import torch_device

    torch_device(device)
    run, labels = load_classifier_run(model_dir, which, device)
    return text_classifier(run, labels, batch_size)


def open_translator(model_dir: Path, search_overrides: dict[str, Any], device: str = "cpu",
                    which: str = "best") -> Any:
    """A Translator over an exported model (onnxruntime) or a run directory (torch)."""
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: no such model or run directory")
    if is_exported(model_dir):
        from seqkit.runtime import load_model

        return load_model(model_dir, device=device).translator(**search_overrides)
    from seqkit.devices import torch_device
    from seqkit.inference import Translator
    from seqkit.models import TorchStepper
    from seqkit.runs import load_run

    dev = torch_device(device)
    run = load_run(model_dir, which, str(dev))
    if run.recipe.task not in ("translation", "summarization"):
        raise CheckpointError(f"{model_dir}: a {run.recipe.task} model cannot translate; use `seqkit generate`")
    search = run.recipe.search.with_overrides(**search_overrides)
    return Translator(TorchStepper(run.model, dev), run.src_tok, run.tgt_tok, search)


def open_generator(model_dir: Path, overrides: dict[str, Any], which: str, device: str) -> Any:
    """A Generator over an exported language model (onnxruntime) or a run directory (torch)."""
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: no such model or run directory")
    if is_exported(model_dir):
        from seqkit.runtime import load_model

        return load_model(model_dir, device=device).generator(**overrides)
    from seqkit.classify import is_classification_run
    from seqkit.devices import torch_device
    from seqkit.inference import Generator
    from seqkit.models import TorchStepper
    from seqkit.runs import load_run

    dev = torch_device(device)
    if is_classification_run(model_dir):
        raise CheckpointError(f"{model_dir}: a classification model does not generate from a prompt; "
                              "use `seqkit translate`")
    run = load_run(model_dir, which, str(dev))
    if run.recipe.task != "lm":
        raise CheckpointError(f"{model_dir}: a {run.recipe.task} model does not generate from a prompt; use `seqkit translate`")
    search = run.recipe.search.with_overrides(**overrides)
    return Generator(TorchStepper(run.model, dev), run.tgt_tok, search)


def open_step_model(model_dir: Path, device: str = "cpu", which: str = "best") -> tuple[Any, Any, Any, str, Any]:
    """(step function, source tokenizer (None for a language model), target tokenizer, task,
    SearchConfig) of a run directory (torch) or an exported model (onnxruntime)."""
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: no such model or run directory")
    if is_classifier(model_dir):
        raise InputError(f"{model_dir}: a classification model has no output sequence to score; "
                         "use `seqkit evaluate` (accuracy) or `seqkit translate --scores` (probabilities)")
    if is_exported(model_dir):
        from seqkit.runtime import load_model

        model = load_model(model_dir, device=device)
        return model.stepper, model.src_tokenizer, model.tgt_tokenizer, model.config.task, model.search_config()
    from seqkit.devices import torch_device
    from seqkit.models import TorchStepper
    from seqkit.runs import load_run

    dev = torch_device(device)
    run = load_run(model_dir, which, str(dev))
    return TorchStepper(run.model, dev), run.src_tok, run.tgt_tok, run.recipe.task, run.recipe.search


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
                 device: str, attention: bool = False, which: str = "best"):
        self.attention, self.last_results, self.n_best = attention, [], 1
        self.classifier = self.translator = None
        members = list(model_dir) if isinstance(model_dir, (list, tuple)) else [model_dir]
        model_dir = members[0]
        given = {**overrides, **({"batch_size": batch_size} if batch_size else {})}
        if len(members) > 1:  # an ensemble (seqkit.ensemble): seq2seq members only
            if any(is_classifier(m) for m in members):
                raise InputError("an ensemble decodes seq2seq models; a classification model cannot be a member")
            from seqkit.ensemble import ensemble_translator

            self.translator = ensemble_translator([str(m) for m in members],
                                                  [open_translator(m, given, device=device, which=which)
                                                   for m in members])
            self.n_best = self.translator.config.n_best
            return
        if is_classifier(model_dir):
            if attention:
                raise InputError("--attention-plot: a classification model has no source x target attention")
            if overrides:
                raise InputError(f"search options ({', '.join(overrides)}) do not apply to a classification model")
            self.classifier = open_classifier(model_dir, batch_size=batch_size, device=device, which=which)
        else:
            self.translator = open_translator(model_dir, given, device=device, which=which)
            self.n_best = self.translator.config.n_best

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
            return [f"{r.log_prob:.4f}\t{r.score:.4f}\t{r.text}" if scores else r.text for r in results]
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
    """Decode a split with the run's search settings and score it.

    Summarization also scores the lead baseline (:func:`lead_baseline`) on the same split, as
    ``lead_rouge1/2/L``; classification reports accuracy and macro-F1 instead of decoding.
    """
    import torch

    from seqkit import metrics as M
    from seqkit.classify import evaluate_classifier, is_classification_run
    from seqkit.data import load_split
    from seqkit.runs import load_run
    from seqkit.tasks import translate_lines

    if is_classification_run(run_dir):
        return evaluate_classifier(run_dir, split=split, which=which, output=output, device=device)
    run = load_run(run_dir, which, device)
    recipe = run.recipe
    if getattr(recipe.data, split) is None and recipe.task != "lm":
        raise CheckpointError(f"{run_dir}: the recipe has no data.{split} split")
    corpus = load_split(recipe.data, split, recipe.base_dir, cache_dir=run_dir / "cache")
    if recipe.task == "lm":
        from seqkit.lm import evaluate_lm

        return evaluate_lm(run, corpus)
    strategy = strategy or ("beam" if (beam_size or recipe.search.beam_size) > 1 else "greedy")
    start = time.perf_counter()
    hyps = translate_lines(run.model, run.src_tok, run.tgt_tok, recipe, corpus.src, strategy=strategy,
                           device=torch.device(device), beam_size=beam_size)
    seconds = time.perf_counter() - start
    if output is not None:
        output.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    result: dict[str, Any] = {"split": split, "checkpoint": run.checkpoint.name, "sentences": len(hyps),
                              "strategy": strategy, "beam_size": beam_size or recipe.search.beam_size,
                              "decode_seconds": round(seconds, 2)}
    if recipe.task == "summarization":
        result.update(M.rouge(hyps, corpus.tgt))
        train = load_split(recipe.data, "train", recipe.base_dir, cache_dir=run_dir / "cache")
        n_words = lead_words(train.tgt)
        lead = M.rouge(lead_baseline(corpus.src, n_words), corpus.tgt)
        result.update({"lead_words": n_words, **{f"lead_{k}": v for k, v in lead.items()}})
    else:
        bleu, chrf = M.bleu(hyps, corpus.tgt), M.chrf(hyps, corpus.tgt)
        result.update({"bleu": round(bleu.score, 2), "bleu_signature": str(bleu.signature),
                       "chrf": round(chrf.score, 2), "chrf_signature": str(chrf.signature)})
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": "evaluate", **result}) + "\n")
    return result


def lead_words(references: list[str]) -> int:
    """N for the lead baseline: the mean number of words of the (training) references, rounded."""
    return max(1, round(sum(len(r.split()) for r in references) / max(len(references), 1)))


def lead_baseline(sources: list[str], n_words: int) -> list[str]:
    """The first ``n_words`` whitespace-separated words of each source (the "lead-N" summary)."""
    return [" ".join(s.split()[:n_words]) for s in sources]


def evaluate_files(model_dir: Path | list[Path], src: Path, refs: list[Path], *, overrides: dict[str, Any],
                   device: str, output: Path | None, which: str = "best") -> dict[str, Any]:
    """Any model (a run directory, or an export in fp32 or int8; several: an ensemble) on any
    files: the task's metrics with their signatures. Several ``refs`` give multi-reference BLEU/chrF."""
    from seqkit.textio import read_aligned

    members = list(model_dir) if isinstance(model_dir, (list, tuple)) else [model_dir]
    task = ensemble_task(members)
    if task == "lm":
        raise InputError(f"{members[0]}: a language model is scored on text, not on --src/--ref pairs: "
                         "use `seqkit evaluate RUN_DIR --split test` (loss, bits per character)")
    if not refs:
        raise InputError("--src needs at least one --ref file: one reference line per source line")
    if len(refs) > 1 and task != "translation":
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
    from seqkit.data import load_split
    from seqkit.recipe import load_recipe

    task = ensemble_task(members)
    if task not in ("translation", "summarization"):
        raise InputError(f"an ensemble decodes translation and summarization models, not {task}")
    run = members[0]
    recipe = load_recipe(run / "recipe.yaml", [f"run_dir={run}"])
    if getattr(recipe.data, split) is None:
        raise CheckpointError(f"{run}: the recipe has no data.{split} split")
    corpus = load_split(recipe.data, split, recipe.base_dir, cache_dir=run / "cache")
    head = {"model": [str(m) for m in members], "split": split}
    return _decode_and_score(members, task, corpus.src, [corpus.tgt], head, overrides=overrides, device=device,
                             output=output, which=which)


def _decode_and_score(members: list[Path], task: str, sources: list[str], references: list[list[str]],
                      head: dict[str, Any], *, overrides: dict[str, Any], device: str, output: Path | None,
                      which: str) -> dict[str, Any]:
    from seqkit import metrics as M
    from seqkit.textio import open_output

    model = LineModel(members, {**overrides, "n_best": 1} if task != "classification" else overrides,
                      batch_size=None, device=device, which=which)
    start = time.perf_counter()
    hyps = model.texts(sources)
    result: dict[str, Any] = {**head, "sentences": len(hyps), "decode_seconds": round(time.perf_counter() - start, 2)}
    if model.translator is not None:
        cfg = model.translator.config
        result.update(strategy=cfg.strategy, beam_size=cfg.beam_size)
    if task == "classification":
        result.update(accuracy=M.accuracy(hyps, references[0]), macro_f1=M.macro_f1(hyps, references[0]))
    elif task == "summarization":
        result.update(M.rouge(hyps, references[0]))
    else:
        bleu, chrf = M.bleu(hyps, references), M.chrf(hyps, references)
        result.update(bleu=round(bleu.score, 2), bleu_signature=bleu.signature, chrf=round(chrf.score, 2),
                      chrf_signature=chrf.signature)
    if output is not None:
        with open_output(output) as out:
            out.writelines(h + "\n" for h in hyps)
    return result
