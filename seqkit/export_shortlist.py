"""The vocabulary shortlist of a seq2seq export (:mod:`seqkit.shortlist`): built from the run's
training pairs, traced as ``decoder_step_shortlist.onnx``, and checked on the validation set,
which decides whether the runtime uses it by default."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqkit import metrics
from seqkit.batching import encode_source
from seqkit.data import load_split
from seqkit.errors import DataError, ModelError, SeqkitError
from seqkit.export_trace import trace_graph
from seqkit.graph_edits import add_top_k_outputs, int8_row_products
from seqkit.inference import Translator
from seqkit.models import Seq2Seq
from seqkit.runtime import format as fmt
from seqkit.runtime.rows import OutputRows
from seqkit.runtime.stepper import OrtStepper
from seqkit.shortlist import Shortlist, ShortlistConfig, build_shortlist, default_on
from seqkit.streaming import sample_split

log = logging.getLogger("seqkit")

# Where new exports' shortlist graph takes the output layer's rows from (format.ShortlistInfo.rows):
# fed once per batch; "graph" is the layout of exports before it (kept loadable, and tested).
ROWS = "fed"


def unsupported(model: Any) -> str | None:
    """Why ``model`` cannot have a shortlist graph, or None: the output layer must be a plain
    nn.Linear (``decoder.output``) over the target vocabulary, without a copy mechanism."""
    if not isinstance(model, Seq2Seq):
        return "only seq2seq models have one"
    if not isinstance(getattr(model.decoder, "output", None), nn.Linear):
        return "the decoder has no nn.Linear output layer (decoder.output)"
    if getattr(model.decoder, "copy", None) is not None:
        return "a copy (pointer-generator) output mixes in the whole vocabulary"
    return None


def build(run: Any, config: ShortlistConfig) -> Shortlist:
    """The shortlist of ``run``'s training pairs (as the model saw them: source eos included;
    with data.streaming the first data.tokenizer_sample pairs, as its tokenizer learnt from)."""
    recipe, src_tok, tgt_tok = run.recipe, run.src_tok, run.tgt_tok
    start = time.perf_counter()
    if recipe.data.streaming:  # a corpus larger than memory: never loaded whole
        corpus = sample_split(recipe.data, recipe.base_dir)
    else:
        corpus = load_split(recipe.data, "train", recipe.base_dir, cache_dir=run.run_dir / "cache")
    if corpus.src is None or corpus.tgt is None:  # e.g. format text: a task that builds its pairs itself
        raise DataError(f"data.format {recipe.data.format}: the training split has no (source, target) pairs")
    max_src = recipe.data.max_src_len
    pairs = [(encode_source(src_tok, s, max_src)[0], tgt_tok.encode(t)) for s, t in zip(corpus.src, corpus.tgt)]
    specials = [tgt_tok.eos_id, tgt_tok.unk_id]
    table = build_shortlist(pairs, src_tok.vocab_size, tgt_tok.vocab_size, config, specials)
    log.info("shortlist: %d training pairs, %d per source piece + %d always, in %.1fs", len(pairs),
             config.per_source, len(table.always), time.perf_counter() - start)
    return table


class _CandidateOutput(nn.Module):
    """The output layer over the candidate rows only: x (..., E) -> logits (..., C), the rows
    gathered from the layer's weights (exports before fed rows) or (``fed``) graph inputs
    themselves: weight (E, C + R) and bias (C + R,), the candidates' and the rest sample's."""

    def __init__(self, full: nn.Linear):
        super().__init__()
        self.full = full
        self.candidates: Tensor | None = None
        self.fed: tuple[Tensor, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.fed is not None:
            return torch.matmul(x, self.fed[0]) + self.fed[1]
        weight = self.full.weight.index_select(0, self.candidates)
        bias = self.full.bias.index_select(0, self.candidates) if self.full.bias is not None else None
        return nn.functional.linear(x, weight, bias)


def output_rows(model: Seq2Seq) -> OutputRows:
    """The decoder's output layer as shortlist_rows.npz holds it (float32; no bias: zeros)."""
    layer = model.decoder.output
    weight = layer.weight.detach().float().cpu().numpy()
    bias = layer.bias.detach().float().cpu().numpy() if layer.bias is not None else np.zeros(len(weight), np.float32)
    return OutputRows(np.ascontiguousarray(weight), bias)


@contextlib.contextmanager
def _over_candidates(model: Seq2Seq) -> Iterator[_CandidateOutput]:
    """Swap the decoder's output layer for a _CandidateOutput for the block (tracing)."""
    full = model.decoder.output
    layer = _CandidateOutput(full)
    model.decoder.output = layer
    try:
        yield layer
    finally:
        model.decoder.output = full


class _ShortlistStepGraph(nn.Module):
    """decoder_step_shortlist.onnx: decoder_step.onnx's graph over the candidates. Rows fed
    (``fed``): one log_softmax over the fed candidate and rest columns, the first C kept (the
    rest's biases carry the sample's scale); rows gathered in the graph (the layout of exports
    before fed rows): the softmax normalized over the candidates alone."""

    def __init__(self, model: Seq2Seq, n_memory: int, has_attention: bool, layer: _CandidateOutput, fed: bool):
        super().__init__()
        self.model, self.n_memory, self.has_attention, self.layer, self.fed = model, n_memory, has_attention, layer, fed

    def forward(self, y_prev: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        if self.fed:
            *flat, candidates, weight, bias = flat
            self.layer.fed = (weight, bias)
        else:
            *flat, candidates = flat
        self.layer.candidates = candidates  # the traced input itself, so the graph reads it
        logits, attn, state = self.model.step(y_prev, tuple(flat[: self.n_memory]), tuple(flat[self.n_memory :]))
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        head = [log_probs.narrow(-1, 0, candidates.shape[0]) if self.fed else log_probs]
        if self.has_attention:
            head.append(attn.float())
        return (*head, *state)


def trace(model: Seq2Seq, config: fmt.ExportConfig, args: tuple[Tensor, ...], n_memory: int, out: Path) -> None:
    """Write decoder_step_shortlist.onnx (and, its rows fed, shortlist_rows.npz); ``args`` are
    the step graph's probe inputs."""
    assert config.shortlist is not None
    vocab = config.tgt_vocab_size
    candidates = torch.arange(0, vocab, 2)  # every other id: a strict subset
    fed = config.shortlist.rows == "fed"
    io = fmt.shortlist_step_io(config.memory, config.state, config.has_attention, fed=fed)
    extra = [candidates]
    if fed:
        table = output_rows(model)
        table.save(out / fmt.SHORTLIST_ROWS_FILE)
        rest = np.arange(1, vocab, 4)  # half the others
        extra += [torch.from_numpy(a) for a in table.take(candidates.numpy(), rest, vocab)]
    path = out / fmt.SHORTLIST_STEP_FILE
    with _over_candidates(model) as layer:
        trace_graph(_ShortlistStepGraph(model, n_memory, config.has_attention, layer, fed), (*args, *extra), path,
                    io, config.opset)
    add_top_k_outputs(path, map_ids=True)


def quantize_rows(config: fmt.ExportConfig, out: Path) -> None:
    """An int8 export with fed rows, before its graphs are quantized: shortlist_rows.npz as int8
    per vocabulary id, and the shortlist graph's products over them as DynamicQuantizeMatMul."""
    if config.shortlist is None or config.shortlist.rows != "fed":
        return
    path = out / fmt.SHORTLIST_ROWS_FILE
    full = OutputRows.load(path, config.tgt_vocab_size)
    OutputRows.quantized(full.weight, full.bias).save(path)
    int8_row_products(out / fmt.SHORTLIST_STEP_FILE)


def check(run: Any, config: fmt.ExportConfig, full: OrtStepper, short: OrtStepper,
          settings: ShortlistConfig) -> dict[str, Any]:
    """Decode the validation sources with and without the shortlist (the recipe's search);
    -> {"bleu_off", "bleu_on", "sentences", "seconds_off", "seconds_on"}."""
    try:
        corpus = load_split(run.recipe.data, "valid", run.recipe.base_dir, cache_dir=run.run_dir / "cache")
    except SeqkitError as exc:
        raise ModelError(f"export.shortlist: the validation check needs the validation split: {exc}") from None
    n = settings.check_sentences or len(corpus.src)
    src, refs = list(corpus.src[:n]), list(corpus.tgt[:n])
    result: dict[str, Any] = {"sentences": len(src)}
    for name, fn in (("off", full), ("on", short)):
        start = time.perf_counter()
        hyps = [r.text for r in Translator(fn, run.src_tok, run.tgt_tok, run.recipe.search).translate(src)]
        result[f"seconds_{name}"] = round(time.perf_counter() - start, 2)
        result[f"bleu_{name}"] = round(metrics.bleu(hyps, refs).score, 2) if src else 0.0
    result["default"] = default_on(settings.mode, result["bleu_off"], result["bleu_on"], settings.max_bleu_loss)
    log.info("shortlist check on %d validation sentences: BLEU %.2f without, %.2f with (%.1fs vs %.1fs); %s by default",
             len(src), result["bleu_off"], result["bleu_on"], result["seconds_off"], result["seconds_on"],
             "on" if result["default"] else "off")
    return result


def info(settings: ShortlistConfig, table: Shortlist, checked: dict[str, Any]) -> fmt.ShortlistInfo:
    return fmt.ShortlistInfo(default=checked["default"], per_source=settings.per_source, frequent=settings.frequent,
                             bleu_off=checked["bleu_off"], bleu_on=checked["bleu_on"], sentences=checked["sentences"],
                             rest_sample=settings.rest_sample, rows=ROWS)
