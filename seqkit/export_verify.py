"""Export verification: the same inputs through torch and onnxruntime (see :mod:`seqkit.export`).

Strict mode (fp32) raises :class:`~seqkit.errors.ModelError` naming the output, where it was
compared and the max absolute difference beyond ``ATOL + RTOL * |torch|``, or the first sample
whose greedy ids differ; non-strict mode (int8) only reports, for manifest.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqkit import oov
from seqkit.batching import encode_source, pad_batch
from seqkit.data import load_split
from seqkit.errors import ModelError, SeqkitError
from seqkit.models import LanguageModel, Seq2Seq, TorchStepper
from seqkit.runtime import format as fmt
from seqkit.runtime.stepper import OrtStepper
from seqkit.search import SearchConfig, TopKStepFunction, greedy, sample, top_k_rows

log = logging.getLogger("seqkit")

ATOL, RTOL = 1e-4, 1e-4  # fp32 parity: |torch - onnxruntime| <= ATOL + RTOL * |torch|
PARITY_STEPS = 5  # decoder steps compared output by output
MAX_SAMPLES = 32  # sample sentences (one decoding batch)


@dataclass
class Samples:
    """Sample inputs: source ids (eos included) for seq2seq, prompt ids for a language model."""

    ids: list[list[int]]
    description: str


def sample_inputs(run: Any, check_sentences: list[str] | None) -> Samples:
    """``check_sentences`` when given, else the run's validation data, else random ids."""
    texts, where = (list(check_sentences), "check_sentences") if check_sentences else (_valid_texts(run), "valid split")
    is_lm = run.recipe.task == "lm"
    tok = run.tgt_tok if is_lm else run.src_tok
    ids = []
    for text in texts:
        row = tok.encode(text)[:24] if is_lm else encode_source(tok, text, run.recipe.data.max_src_len)[0]
        if not is_lm and oov.enabled(run.recipe.model):  # the source's unknown words as the model reads them
            row = oov.extend_source(tok, text, row).ids
        if len(row) > (0 if is_lm else 1):
            ids.append(row)
    if ids:
        return Samples(ids[:MAX_SAMPLES], f"{len(ids[:MAX_SAMPLES])} sentences from {where}")
    gen = np.random.default_rng(0)
    low = 4 if tok.vocab_size > 8 else 0
    rows = [gen.integers(low, tok.vocab_size, gen.integers(3, 12)).tolist() for _ in range(8)]
    return Samples([r if is_lm else r + [tok.eos_id] for r in rows], "8 rows of random ids")


def _valid_texts(run: Any) -> list[str]:
    import datasets

    datasets.disable_progress_bars()
    try:
        corpus = load_split(run.recipe.data, "valid", run.recipe.base_dir, cache_dir=run.run_dir / "cache")
    except SeqkitError as exc:
        log.info("export check: validation data unavailable (%s); using random ids", exc)
        return []
    lines = corpus.src if corpus.src is not None else (corpus.text or "").splitlines()
    return [line for line in lines if line.strip()][:MAX_SAMPLES]


class Diffs:
    """Max |torch - onnxruntime| per output name; strict mode raises on the first excess."""

    def __init__(self, strict: bool):
        self.strict, self.max_abs = strict, {}

    def check(self, name: str, where: str, want: Any, got: np.ndarray | None) -> None:
        want = want.detach().cpu().numpy() if isinstance(want, Tensor) else want
        if want is None or got is None:
            if (want is None) != (got is None):
                raise ModelError(f"parity: output '{name}' ({where}) exists in only one of torch and onnxruntime")
            return
        if want.shape != got.shape:
            raise ModelError(f"parity: output '{name}' ({where}) has shape {got.shape} in onnxruntime, {want.shape} in torch")
        diff = np.abs(got.astype(np.float64) - want)
        finite = np.isfinite(want)
        if (np.isfinite(got) != finite).any() or (got[~finite] != want[~finite]).any():
            raise ModelError(f"parity: output '{name}' ({where}): inf/nan positions differ")
        worst = float(diff[finite].max(initial=0.0))
        self.max_abs[name] = max(self.max_abs.get(name, 0.0), worst)
        if self.strict and (diff[finite] > ATOL + RTOL * np.abs(want[finite])).any():
            raise ModelError(f"parity: output '{name}' ({where}) differs from torch by max |diff| = {worst:.3g}, "
                             f"beyond tolerance {ATOL:g} + {RTOL:g} * |torch|")


def compare_steps(torch_fn: Any, ort_fn: OrtStepper, config: fmt.ExportConfig, samples: Samples, diffs: Diffs) -> None:
    """Encoder outputs, then PARITY_STEPS decoder steps, each fed the same previous tokens."""
    is_lm = config.model_kind == "lm"
    src, lengths = pad_batch(samples.ids, config.src_pad_id if not is_lm else config.special_ids.pad)
    start = (np.zeros((len(samples.ids), 0), dtype=np.int64), np.zeros(len(samples.ids), dtype=np.int64)) if is_lm else (src, lengths)
    mem_t, st_t = torch_fn.start(*start)
    mem_o, st_o = ort_fn.start(*start)
    for spec, want, got in zip(config.memory + config.state, (*mem_t, *st_t), (*mem_o, *st_o)):
        diffs.check(spec.name, "encoder", want, got)
    y = np.full(len(samples.ids), config.special_ids.bos, dtype=np.int64)
    for t in range(PARITY_STEPS):
        if is_lm:
            y = src[:, min(t, src.shape[1] - 1)]
        lp_t, at_t, st_t = torch_fn.step(y, mem_t, st_t)
        top = ort_fn.step_top_k(y, mem_o, st_o, 10, config.special_ids.eos)[0] if isinstance(ort_fn, TopKStepFunction) else None
        lp_o, at_o, st_o = ort_fn.step(y, mem_o, st_o)
        diffs.check(fmt.LOG_PROBS, f"step {t}", lp_t, lp_o)
        diffs.check(fmt.ATTENTION, f"step {t}", at_t, at_o)
        for i, (want, got) in enumerate(zip(st_t, st_o)):
            diffs.check(fmt.state_out_name(i), f"step {t}", want, got)
        if top is not None:
            _check_top_k(top, lp_o, lp_t, config, t, diffs)
        y = lp_t.argmax(axis=1)


def _check_top_k(top: Any, lp_ort: np.ndarray, lp_torch: np.ndarray, config: fmt.ExportConfig, t: int, diffs: Diffs) -> None:
    """The top-k outputs must be exactly the stable top-k of the graph's own log_probs (so both
    search paths agree), and their values within tolerance of torch's at the same ids."""
    want = top_k_rows(lp_ort, 10, config.special_ids.eos)
    for name, a, b in ((fmt.TOP_IDS, top.ids, want.ids), (fmt.TOP_LOG_PROBS, top.log_probs, want.log_probs),
                       (fmt.EOS_LOG_PROBS, top.eos, want.eos)):
        if a.shape != b.shape or not np.array_equal(a, b):
            raise ModelError(f"parity: output '{name}' (step {t}) is not the top-k of the graph's own log_probs")
    diffs.check(fmt.TOP_LOG_PROBS, f"step {t}", np.take_along_axis(lp_torch, top.ids, axis=1), top.log_probs)


def greedy_ids(fn: Any, config: fmt.ExportConfig, samples: Samples) -> list[list[int]]:
    """Greedy ids per sample: search.greedy for seq2seq, top-1 continuation of each prompt for an LM."""
    ids, search = config.special_ids, SearchConfig.model_validate(config.search)
    if config.model_kind == "lm":
        empty = np.zeros((len(samples.ids), 0), dtype=np.int64)
        hyps = sample(fn, empty, np.zeros(len(samples.ids), dtype=np.int64), bos_id=ids.bos, eos_id=ids.eos,
                      max_len=32, top_k=1, seed=0, prefix=samples.ids)
    else:
        src, lengths = pad_batch(samples.ids, config.src_pad_id)  # type: ignore[arg-type]
        hyps = greedy(fn, src, lengths, bos_id=ids.bos, eos_id=ids.eos, max_len=search.max_lengths(lengths))
    return [h.tokens for h in hyps]


def verify_export(model: Seq2Seq | LanguageModel, config: fmt.ExportConfig, ort_fn: OrtStepper, samples: Samples,
                  *, strict: bool) -> dict[str, Any]:
    """Compare torch and onnxruntime on ``samples``; strict: raise ModelError on any difference
    beyond tolerance or any greedy mismatch. Returns the report stored in manifest.json."""
    torch_fn = TorchStepper(model, torch.device("cpu"))
    diffs = Diffs(strict)
    compare_steps(torch_fn, ort_fn, config, samples, diffs)
    want, got = greedy_ids(torch_fn, config, samples), greedy_ids(ort_fn, config, samples)
    same = [a == b for a, b in zip(want, got)]
    if strict and not all(same):
        i = same.index(False)
        raise ModelError(f"parity: greedy decoding of sample {i} differs: torch {want[i]} vs onnxruntime {got[i]}")
    return {"max_abs_diff": {k: float(f"{v:.3g}") for k, v in diffs.max_abs.items()},
            "greedy_identical": f"{sum(same)}/{len(same)}"}
