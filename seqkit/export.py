"""Export a trained run to ONNX for the torch-free runtime, and prove the export right.

``export_run(run_dir, out_dir)`` writes the directory described in :mod:`seqkit.runtime.format`
(graph names and dynamic axes are declared there, once). The export verifies itself before it
is published:

1. The sample inputs go through torch and through onnxruntime: every encoder output and every
   output of several decoder steps must agree within ``ATOL + RTOL * |torch|``; a failure names
   the output, the step and the max absolute difference.
2. Greedy decoding of the sample sentences through :class:`seqkit.models.TorchStepper` and the
   runtime's :class:`~seqkit.runtime.stepper.OrtStepper` must give identical ids.
3. With ``quantize="int8"`` the fp32 graphs pass 1-2 first; the int8 graphs' differences and
   greedy agreement are then only reported (int8 changes the outputs), in manifest.json.

Everything is written to a temporary sibling directory that is renamed to ``out_dir`` only
after all checks pass, so ``out_dir`` never holds a half-written or unverified model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqkit import __version__
from seqkit.errors import ModelError, SeqkitError
from seqkit.export_graphs import add_top_k_outputs, quantize_graphs
from seqkit.inference import encode_source, pad_batch
from seqkit.models import LanguageModel, Seq2Seq, TorchStepper, run_encoder
from seqkit.runtime import format as fmt
from seqkit.runtime.stepper import (
    OrtStepper,
    make_stepper,
    open_session,
    session_options,
)
from seqkit.search import SearchConfig, TopKStepFunction, greedy, sample, top_k_rows

log = logging.getLogger("seqkit")

QUANTIZE_CHOICES = ("int8",)
EXPORTABLE_TASKS = ("translation", "summarization", "lm", "classification")
MIN_OPSET = 13  # opsets 11-12 reject the int64 sequence lengths the recurrent encoders pass
ATOL, RTOL = 1e-4, 1e-4  # fp32 parity: |torch - onnxruntime| <= ATOL + RTOL * |torch|
PARITY_STEPS = 5  # decoder steps compared output by output
MAX_SAMPLES = 32  # sample sentences (one decoding batch)


class _EncoderGraph(nn.Module):
    """encoder.onnx: (src, src_lengths) -> (*memory, *state)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        enc = run_encoder(self.model.encoder, src, src_lengths)
        memory, state = self.model.decoder.init(enc, src.size(0))
        if not memory:
            # Without attention the padded per-position outputs go unused, and the legacy
            # exporter fails on a packed RNN whose padded output is dropped
            # (vector::_M_range_check). Adding 0 * their sum keeps the node alive, values unchanged.
            state = (state[0] + 0.0 * enc.memory.sum(), *state[1:])
        return (*memory, *state)


class _StepGraph(nn.Module):
    """decoder_step.onnx / lm_step.onnx: log_softmax runs in the graph, in float32."""

    def __init__(self, model: Seq2Seq | LanguageModel, n_memory: int, has_attention: bool):
        super().__init__()
        self.model, self.n_memory, self.has_attention = model, n_memory, has_attention

    def forward(self, y_prev: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        logits, attn, state = self.model.step(y_prev, flat[: self.n_memory], flat[self.n_memory :])
        head = [torch.log_softmax(logits.float(), dim=-1)]
        if self.has_attention:
            head.append(attn.float())
        return (*head, *state)


# -- shapes: which dims are batch / source length, found by running two batch sizes ---------
_PROBES = ((3, 7), (2, 5))  # (batch, source length); distinct, so every dynamic dim shows


def probe_batch(batch: int, length: int, vocab: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """A source batch (B, S) of random ids (specials avoided where the vocabulary allows) with
    lengths S, S-1, ... so the longest row fills the batch."""
    gen = torch.Generator().manual_seed(batch * 100 + length)
    low = 4 if vocab > 4 else 0
    src = torch.randint(low, vocab, (batch, length), generator=gen)
    lengths = torch.tensor([max(1, length - i) for i in range(batch)])
    src = src.masked_fill(torch.arange(length)[None] >= lengths[:, None], pad_id)
    return src, lengths


def _initial(model: Seq2Seq | LanguageModel, batch: int, length: int, vocab: int, pad_id: int) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    with torch.no_grad():  # not inference_mode: the exporter traces these tensors afterwards
        if isinstance(model, LanguageModel):
            return (), model.init_state(batch)
        return model.encode(*probe_batch(batch, length, vocab, pad_id))


def tensor_specs(model: Seq2Seq | LanguageModel, src_vocab: int, pad_id: int) -> tuple[list[fmt.TensorSpec], list[fmt.TensorSpec]]:
    """(memory specs, state specs): each dim fixed, "batch" or "src_len"; checked against the
    decoder contract (memory batch on dim 0, state batch on ``state_batch_dims``)."""
    (b1, s1), (b2, s2) = _PROBES
    first, second = _initial(model, b1, s1, src_vocab, pad_id), _initial(model, b2, s2, src_vocab, pad_id)
    specs: list[list[fmt.TensorSpec]] = [[], []]
    expected = [(0,) * len(first[0]), tuple(model.state_batch_dims)]
    for group, (name_of, a_group, b_group) in enumerate(((fmt.memory_name, first[0], second[0]),
                                                         (fmt.state_name, first[1], second[1]))):
        for i, (a, b) in enumerate(zip(a_group, b_group)):
            name = name_of(i)
            shape: list[fmt.Dim] = []
            for da, db in zip(a.shape, b.shape):
                if da == db:
                    shape.append(int(da))
                elif (da, db) == (b1, b2):
                    shape.append(fmt.BATCH)
                elif (da, db) == (s1, s2):
                    shape.append(fmt.SRC_LEN)
                else:
                    raise ModelError(f"{name}: dimension varies with the input ({da} vs {db}) but is neither batch nor source length")
            if shape.count(fmt.BATCH) != 1 or shape.index(fmt.BATCH) != expected[group][i]:
                raise ModelError(f"{name}: shape {shape} does not put the batch on dim {expected[group][i]} as the decoder declares")
            if a.dtype != torch.float32:
                raise ModelError(f"{name}: dtype {a.dtype}; exported memory and state must be float32")
            specs[group].append(fmt.TensorSpec(name=name, shape=shape))
    if isinstance(model, LanguageModel) and any(bool(s.any()) for s in first[1]):
        raise ModelError("the language model's initial state is not zero; the runtime starts from zeros")
    return specs[0], specs[1]


def _has_attention(model: Seq2Seq | LanguageModel, src_vocab: int, pad_id: int, bos_id: int) -> bool:
    if isinstance(model, LanguageModel):
        return False
    memory, state = _initial(model, *_PROBES[0], src_vocab, pad_id)
    with torch.no_grad():
        _, attn, _ = model.step(torch.full((_PROBES[0][0],), bos_id), memory, state)
    return attn.size(-1) > 0


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the exporter's C++ shape-inference notices (written to fd 2, past Python's
    warnings); parity is checked on the outputs instead. What was written is logged at debug."""
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.debug("torch.onnx.export: %s", sink.read().decode("utf-8", "replace"))


def _export_graph(module: nn.Module, args: tuple[Tensor, ...], path: Path, io: fmt.GraphIO, opset: int) -> None:
    try:
        with _quiet_stderr():
            torch.onnx.export(module.eval(), args, str(path), dynamo=False, opset_version=opset,
                              input_names=list(io.inputs), output_names=list(io.outputs), dynamic_axes=io.dynamic_axes)
    except SeqkitError:
        raise
    except Exception as exc:
        raise ModelError(f"{path.name}: torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc


def export_graphs(model: Seq2Seq | LanguageModel, config: fmt.ExportConfig, out: Path) -> None:
    """Write the graph files of ``config.graph_files`` into ``out``."""
    src_vocab, pad = config.src_vocab_size or config.tgt_vocab_size, config.src_pad_id or 0
    memory, state = _initial(model, *_PROBES[0], src_vocab, pad)
    if isinstance(model, Seq2Seq):
        _export_graph(_EncoderGraph(model), probe_batch(*_PROBES[0], src_vocab, pad), out / fmt.ENCODER_FILE,
                      fmt.encoder_io(config.memory, config.state), config.opset)
    y_prev = torch.full((_PROBES[0][0],), config.special_ids.bos)
    step = _StepGraph(model, len(memory), config.has_attention)
    _export_graph(step, (y_prev, *memory, *state), out / config.graph_files["step"],
                  fmt.step_io(config.memory, config.state, config.has_attention), config.opset)
    if config.step_top_k:
        add_top_k_outputs(out / config.graph_files["step"])


def open_stepper(config: fmt.ExportConfig, out: Path) -> OrtStepper:
    options, sessions = session_options(1), {}
    for role, name in config.graph_files.items():
        try:
            sessions[role] = open_session(out / name, options)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise ModelError(f"{name}: the exported graph does not load in onnxruntime: {exc}") from None
    return make_stepper(config, sessions.get("encoder"), sessions["step"])


def build_config(run: Any, model: Seq2Seq | LanguageModel, opset: int, quantize: str | None) -> fmt.ExportConfig:
    recipe, src_tok, tgt_tok = run.recipe, run.src_tok, run.tgt_tok
    src_vocab = src_tok.vocab_size if src_tok is not None else None
    pad = src_tok.pad_id if src_tok is not None else tgt_tok.pad_id
    memory, state = tensor_specs(model, src_vocab or tgt_tok.vocab_size, pad)
    return fmt.ExportConfig(
        task=recipe.task, model_kind="lm" if isinstance(model, LanguageModel) else "seq2seq",
        special_ids=fmt.SpecialIds(pad=tgt_tok.pad_id, unk=tgt_tok.unk_id, bos=tgt_tok.bos_id, eos=tgt_tok.eos_id),
        src_pad_id=src_tok.pad_id if src_tok is not None else None, src_vocab_size=src_vocab,
        tgt_vocab_size=tgt_tok.vocab_size, max_src_len=recipe.data.max_src_len,
        has_attention=_has_attention(model, src_vocab or tgt_tok.vocab_size, pad, tgt_tok.bos_id),
        memory=memory, state=state, search=recipe.search.model_dump(mode="json"), opset=opset,
        quantized=quantize, step_top_k=True,  # type: ignore[arg-type]
    )


def export_run(run_dir: str | Path, out_dir: str | Path, *, opset: int = 17, quantize: str | None = None,
               which: str = "best", check_sentences: list[str] | None = None) -> Path:
    """Export the ``which`` checkpoint of ``run_dir`` to ``out_dir``; returns ``out_dir``.

    ``check_sentences``: sample inputs for the parity check (default: the run's validation
    sources, or random ids when the data cannot be read). Raises ModelError, leaving nothing
    at ``out_dir``, when export or verification fails or ``out_dir`` already holds files.
    """
    from seqkit.recipe import load_recipe
    from seqkit.runs import RECIPE_FILE, is_run_dir, load_run
    from seqkit.tokenizers import save_tokenizers

    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ModelError(f"quantize: unknown '{quantize}'; choices: {', '.join(QUANTIZE_CHOICES)}")
    if opset < MIN_OPSET:
        raise ModelError(f"opset {opset} is too old; seqkit exports with opset >= {MIN_OPSET}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out}: already exists; remove it or choose another output directory")
    if is_run_dir(Path(run_dir)):  # else load_run names what is missing
        task = load_recipe(Path(run_dir) / RECIPE_FILE, [f"run_dir={run_dir}"]).task
        if task not in EXPORTABLE_TASKS:
            raise ModelError(f"{run_dir}: task '{task}' cannot be exported; "
                             f"exportable tasks: {', '.join(EXPORTABLE_TASKS)}")
        if task == "classification":  # one graph, no decoder: seqkit/export_classifier.py
            from seqkit.export_classifier import export_classifier

            return export_classifier(Path(run_dir), out, opset=opset, quantize=quantize, which=which,
                                     check_sentences=check_sentences)
    run = load_run(Path(run_dir), which, "cpu")
    model = run.model.float().eval()
    with staging_dir(out) as tmp:
        config = build_config(run, model, opset, quantize)
        export_graphs(model, config, tmp)
        save_tokenizers(tmp / fmt.TOKENIZER_DIR, run.src_tok, run.tgt_tok)
        (tmp / fmt.CONFIG_FILE).write_text(config.model_dump_json(indent=1) + "\n", encoding="utf-8")
        samples = sample_inputs(run, check_sentences)
        report = {"checkpoint": run.checkpoint.name, "samples": samples.description,
                  "fp32": verify_export(model, config, open_stepper(config, tmp), samples, strict=True)}
        if quantize:
            quantize_graphs(config, tmp)
            report["int8"] = verify_export(model, config, open_stepper(config, tmp), samples, strict=False)
        seal_and_publish(tmp, out, opset=opset, quantize=quantize, report=report)
    log.info("exported %s (%s) to %s", run.checkpoint, quantize or "fp32", out)
    return out


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``out`` to build an export in; removed if the block fails, so a
    failed export leaves nothing behind (``seal_and_publish`` moves it into place)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def seal_and_publish(tmp: Path, out: Path, *, opset: int, quantize: str | None, report: dict[str, Any]) -> None:
    """Write the manifest (sha256 of every file), re-open the directory as the runtime will,
    then move it into place."""
    from seqkit.runtime import load_model

    manifest = fmt.Manifest(seqkit_version=__version__, opset=opset, quantized=quantize,  # type: ignore[arg-type]
                            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            files=fmt.hash_files(tmp), verification=report)
    fmt.write_manifest(tmp, manifest)
    load_model(tmp, threads=1)
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(tmp, out)


# -- verification: torch vs onnxruntime on the same inputs -------------------------------------
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

    from seqkit.data import load_split

    datasets.disable_progress_bars()
    try:
        corpus = load_split(run.recipe.data, "valid", run.recipe.base_dir, cache_dir=run.run_dir / "cache")
    except SeqkitError as exc:
        log.info("export check: validation data unavailable (%s); using random ids", exc)
        return []
    lines = corpus.src if corpus.src is not None else (corpus.text or "").splitlines()
    return [line for line in lines if line.strip()][:MAX_SAMPLES]


class _Diffs:
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


def compare_steps(torch_fn: Any, ort_fn: OrtStepper, config: fmt.ExportConfig, samples: Samples, diffs: _Diffs) -> None:
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


def _check_top_k(top: Any, lp_ort: np.ndarray, lp_torch: np.ndarray, config: fmt.ExportConfig, t: int, diffs: _Diffs) -> None:
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
    diffs = _Diffs(strict)
    compare_steps(torch_fn, ort_fn, config, samples, diffs)
    want, got = greedy_ids(torch_fn, config, samples), greedy_ids(ort_fn, config, samples)
    same = [a == b for a, b in zip(want, got)]
    if strict and not all(same):
        i = same.index(False)
        raise ModelError(f"parity: greedy decoding of sample {i} differs: torch {want[i]} vs onnxruntime {got[i]}")
    return {"max_abs_diff": {k: float(f"{v:.3g}") for k, v in diffs.max_abs.items()},
            "greedy_identical": f"{sum(same)}/{len(same)}"}
