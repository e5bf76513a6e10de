"""Translation and summarization: a source line to a target line (``model.encoder`` +
``model.decoder``, :class:`seqkit.models.Seq2Seq`).

Training uses token-budget buckets of (source, target) pairs (:class:`Seq2SeqTask`), from
memory or, with ``data.streaming``, from the tokenized Arrow cache (:class:`StreamingSeq2SeqTask`).
Validation reports loss and perplexity, and the metric of the task on greedy (or beam)
decodes: BLEU/chrF for translation, ROUGE for summarization. Evaluation decodes a split with the
run's search settings; summarization also scores the lead baseline.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqkit import metrics as M
from seqkit import oov
from seqkit.batching import bucket_batches, collate, encode_source
from seqkit.data import load_split
from seqkit.errors import DataError, SeqkitError
from seqkit.export_seq2seq import export_seq2seq
from seqkit.inference import Translator
from seqkit.loss import coverage_loss, smoothed_loss
from seqkit.models import TorchStepper
from seqkit.rundir import TOKENIZER_DIR
from seqkit.streaming import StreamBatches
from seqkit.subword import EpochSegmentation
from seqkit.tasks.common import ModelSizes, Vocab, pair_tokenizers, to_device
from seqkit.tokenizers import load_tokenizers

log = logging.getLogger("seqkit")


class Seq2SeqTask:
    """Translation / summarization: token-budget buckets of (source, target) pairs."""

    def __init__(self, recipe: Any, model: torch.nn.Module, src_tok: Any, tgt_tok: Any,
                 train: Any, valid: Any | None, device: torch.device):
        self.recipe, self.model, self.device = recipe, model, device
        self.src_tok, self.tgt_tok = src_tok, tgt_tok
        self.valid = valid
        self.train_cfg = recipe.train
        data = recipe.data
        self.src_ids, self.tgt_ids = [], []
        texts: tuple[list[str], list[str]] = ([], [])  # the kept pairs' text (subword sampling)
        dropped = 0
        for src, tgt in zip(train.src, train.tgt):
            s_ids, s_trunc = encode_source(src_tok, src, data.max_src_len)
            t_ids = tgt_tok.encode(tgt)
            if (s_trunc and not data.truncate_src) or len(t_ids) + 1 > data.max_tgt_len or not t_ids:
                dropped += 1
                continue
            s_ids, t_ids = self._extend(src, s_ids, tgt, t_ids)
            self.src_ids.append(s_ids)
            self.tgt_ids.append(t_ids)
            texts[0].append(src)
            texts[1].append(tgt)
        if not self.src_ids:
            raise DataError(f"data.train: no pair fits max_src_len={data.max_src_len} / max_tgt_len={data.max_tgt_len}")
        if dropped:
            log.info("dropped %d of %d training pairs longer than the length limits", dropped, len(train.src))
        sampling = self.train_cfg.subword_sampling
        self.segmentation = None if sampling is None else EpochSegmentation(
            sampling, src_tok, tgt_tok, texts, (self.src_ids, self.tgt_ids), (data.max_src_len, data.max_tgt_len),
            data.truncate_src)
        self._set_lengths()
        self._epoch_batches: tuple[int, list[np.ndarray]] | None = None

    def _extend(self, src: str, s_ids: list[int], tgt: str, t_ids: list[int]) -> tuple[list[int], list[int]]:
        """The pair in its source's extended vocabulary (``model.decoder.copy_oov``, seqkit.oov)."""
        if not oov.enabled(self.recipe.model):
            return s_ids, t_ids
        extended = oov.extend_source(self.src_tok, src, s_ids)
        return extended.ids, oov.extend_target(self.tgt_tok, tgt, t_ids, extended)

    def _set_lengths(self) -> None:
        self.src_len = np.array([len(s) for s in self.src_ids])
        self.tgt_len = np.array([len(t) + 1 for t in self.tgt_ids])

    def batches(self, epoch: int, seed: int) -> list[np.ndarray]:
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            if self.segmentation is not None:  # train.subword_sampling: this epoch's segmentation
                self.src_ids, self.tgt_ids = self.segmentation.epoch(epoch, seed)
                self._set_lengths()
            order = bucket_batches(self.src_len, self.tgt_len, self.train_cfg.batch_tokens,
                                   shuffle=True, seed=seed, epoch=epoch)
            self._epoch_batches = (epoch, order)
        return self._epoch_batches[1]

    def end_epoch(self) -> None:
        self._epoch_batches = None

    def _tensors(self, src_ids: list[list[int]], tgt_ids: list[list[int]],
                 drop_seed: list[int] | None = None) -> dict[str, torch.Tensor]:
        """The batch on the device; ``drop_seed`` (training): seeds the draws of ``train.word_dropout``
        and ``train.oov_dropout``."""
        tok = self.tgt_tok
        rate = self.train_cfg.oov_dropout
        if drop_seed is not None and rate > 0:
            rng = np.random.default_rng([self.recipe.seed, *drop_seed, 1])
            specials = (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id)
            pairs = [oov.hide_words(s, t, tok.vocab_size, rng.random(len(s)), rate, specials)
                     for s, t in zip(src_ids, tgt_ids)]
            src_ids, tgt_ids = [p[0] for p in pairs], [p[1] for p in pairs]
        batch = collate(src_ids, tgt_ids, tok.pad_id, tok.bos_id, tok.eos_id)
        p = self.train_cfg.word_dropout
        if drop_seed is not None and p > 0:  # decoder inputs after bos become unk
            drop = np.random.default_rng([self.recipe.seed, *drop_seed]).random(batch.tgt_in.shape) < p
            drop[:, 0] = False
            batch.tgt_in[drop & (batch.tgt_in != tok.pad_id)] = tok.unk_id
        dev = self.device
        return {
            "src": to_device(batch.src, dev),
            "src_lengths": torch.from_numpy(batch.src_lengths),  # packing wants lengths on CPU
            "tgt_in": to_device(batch.tgt_in, dev),
            "tgt_out": to_device(batch.tgt_out, dev),
            "ntokens": int(batch.ntokens),
        }

    def _loss_on(self, t: dict[str, torch.Tensor], smoothing: float, model: torch.nn.Module | None = None,
                 coverage: float = 0.0) -> tuple[torch.Tensor, int, torch.Tensor]:
        model = self.model if model is None else model
        # logits (B, T, V [+ S with copy_oov]), attention (B, T, S)
        logits, attention = model(t["src"], t["src_lengths"], t["tgt_in"], return_attention=True)
        loss, nll = smoothed_loss(logits.reshape(-1, logits.size(-1)), t["tgt_out"].reshape(-1),
                                  self.tgt_tok.pad_id, smoothing)
        if coverage > 0:  # train.coverage_loss
            loss = loss + coverage * coverage_loss(attention, t["tgt_out"] != self.tgt_tok.pad_id)
        return loss, t["ntokens"], nll

    def loss(self, index: np.ndarray, model: torch.nn.Module | None = None) -> tuple[torch.Tensor, int, torch.Tensor]:
        """(summed smoothed loss, target tokens, summed NLL) of batch ``index``; the forward runs
        through ``model`` (the Trainer's: this model, or its DDP wrapper)."""
        t = self._tensors([self.src_ids[i] for i in index], [self.tgt_ids[i] for i in index], index.tolist())
        return self._loss_on(t, self.train_cfg.label_smoothing, model, self.train_cfg.coverage_loss)

    @torch.inference_mode()
    def validate(self, cfg: Any) -> dict[str, Any]:
        self.model.eval()
        data = self.recipe.data
        src = [encode_source(self.src_tok, s, data.max_src_len)[0] for s in self.valid.src]
        tgt = [self.tgt_tok.encode(t)[: data.max_tgt_len - 1] for t in self.valid.tgt]
        pairs = [self._extend(*texts) for texts in zip(self.valid.src, src, self.valid.tgt, tgt)]
        src, tgt = [p[0] for p in pairs], [p[1] for p in pairs]
        lengths = np.array([max(len(s), len(t) + 1) for s, t in zip(src, tgt)])
        order = bucket_batches(lengths, lengths, cfg.batch_tokens, shuffle=False, seed=0, epoch=0)
        nll, ntok = 0.0, 0
        for index in order:
            t = self._tensors([src[i] for i in index], [tgt[i] for i in index])
            _, n, batch_nll = self._loss_on(t, 0.0)
            nll += float(batch_nll.detach())
            ntok += n
        loss = nll / max(ntok, 1)
        metrics: dict[str, Any] = {"loss": loss, "ppl": math.exp(min(loss, 50))}
        metrics.update(self.decode_metrics(cfg))
        return metrics

    def decode_metrics(self, cfg: Any) -> dict[str, Any]:
        n = cfg.valid_metric_max_sentences or len(self.valid.src)
        hyps = translate_lines(self.model, self.src_tok, self.tgt_tok, self.recipe, self.valid.src[:n],
                               strategy=cfg.valid_strategy, device=self.device)
        refs = self.valid.tgt[:n]
        if self.recipe.task == "summarization":
            return {k: float(v) for k, v in M.rouge(hyps, refs).items()}
        bleu, chrf = M.bleu(hyps, refs), M.chrf(hyps, refs)
        return {"bleu": float(bleu.score), "chrf": float(chrf.score)}


def translate_lines(model: torch.nn.Module, src_tok: Any, tgt_tok: Any, recipe: Any, lines: list[str],
                    *, strategy: str | None = None, device: torch.device, **search_overrides: Any) -> list[str]:
    """Decode ``lines`` with the torch model through the shared (torch-free) Translator."""
    search = recipe.search.model_copy(update={k: v for k, v in search_overrides.items() if v is not None})
    if strategy is not None:
        search = search.model_copy(update={"strategy": strategy})
    model.eval()
    translator = Translator(TorchStepper(model, device), src_tok, tgt_tok, search, copy_oov=oov.enabled(recipe.model))
    return [r.text for r in translator.translate(lines)]


class StreamingSeq2SeqTask(Seq2SeqTask):
    """:class:`Seq2SeqTask` whose training pairs stay in the Arrow file (``data.streaming``;
    :class:`seqkit.streaming.StreamingData`)."""

    def __init__(self, recipe: Any, model: Any, src_tok: Any, tgt_tok: Any, stream: Any, valid: Any, device: Any):
        self.recipe, self.model, self.device = recipe, model, device
        self.src_tok, self.tgt_tok, self.valid = src_tok, tgt_tok, valid
        self.train_cfg = recipe.train
        self.stream = stream
        self._epoch_batches: tuple[int, StreamBatches] | None = None  # type: ignore[assignment]

    def batches(self, epoch: int, seed: int) -> StreamBatches:  # type: ignore[override]
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            self._epoch_batches = (epoch, StreamBatches(self.stream, epoch, seed))
        return self._epoch_batches[1]

    def loss(self, index: np.ndarray, model: Any = None) -> Any:
        src, tgt = self.stream.rows(index)
        return self._loss_on(self._tensors(src, tgt, index.tolist()), self.train_cfg.label_smoothing, model,
                             self.train_cfg.coverage_loss)


def lead_words(references: list[str]) -> int:
    """N for the lead baseline: the mean number of words of the (training) references, rounded."""
    return max(1, round(sum(len(r.split()) for r in references) / max(len(references), 1)))


def lead_baseline(sources: list[str], n_words: int) -> list[str]:
    """The first ``n_words`` whitespace-separated words of each source (the "lead-N" summary)."""
    return [" ".join(s.split()[:n_words]) for s in sources]


def seq2seq_sizes(src_tok: Any, tgt_tok: Any) -> ModelSizes:
    return ModelSizes(src_tok.vocab_size, tgt_tok.vocab_size, tgt_tok.pad_id)


class _Seq2Seq:
    """The :class:`seqkit.tasks.Task` of translation and summarization."""

    def prepare_vocab(self, recipe: Any, run_dir: Path, data: Any, resume: bool) -> Vocab:
        def texts() -> tuple[list[str], list[str]]:
            corpus = data.tokenizer_corpus()
            return corpus.src, corpus.tgt

        src_tok, tgt_tok = pair_tokenizers(recipe, run_dir, texts, resume)
        return Vocab(src_tok, tgt_tok, None, seq2seq_sizes(src_tok, tgt_tok))

    def open_vocab(self, run_dir: Path) -> Vocab:
        src_tok, tgt_tok = load_tokenizers(run_dir / TOKENIZER_DIR)
        return Vocab(src_tok, tgt_tok, None, seq2seq_sizes(src_tok, tgt_tok))

    def trainable(self, recipe: Any, model: Any, vocab: Vocab, data: Any, device: Any) -> Seq2SeqTask:
        if data.valid is None:
            raise SeqkitError("data.valid: a validation split is required for translation/summarization recipes")
        if data.streaming:  # the training split stays on disk (seqkit/streaming.py)
            return StreamingSeq2SeqTask(recipe, model, vocab.src_tok, vocab.tgt_tok,
                                        data.stream(vocab.src_tok, vocab.tgt_tok), data.valid, device)
        return Seq2SeqTask(recipe, model, vocab.src_tok, vocab.tgt_tok, data.train, data.valid, device)

    def front_end(self, run: Any, options: dict[str, Any]) -> Translator:
        search = run.recipe.search.with_overrides(**options)
        return Translator(TorchStepper(run.model, run.device), run.src_tok, run.tgt_tok, search,
                          copy_oov=oov.enabled(run.recipe.model))

    def evaluate(self, run: Any, corpus: Any, *, strategy: str | None, beam_size: int | None,
                 output: Path | None) -> dict[str, Any]:
        recipe = run.recipe
        strategy = strategy or ("beam" if (beam_size or recipe.search.beam_size) > 1 else "greedy")
        start = time.perf_counter()
        hyps = translate_lines(run.model, run.src_tok, run.tgt_tok, recipe, corpus.src, strategy=strategy,
                               device=run.device, beam_size=beam_size)
        seconds = time.perf_counter() - start
        if output is not None:
            output.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        result: dict[str, Any] = {"split": corpus.name, "checkpoint": run.checkpoint.name, "sentences": len(hyps),
                                  "strategy": strategy, "beam_size": beam_size or recipe.search.beam_size,
                                  "decode_seconds": round(seconds, 2)}
        if recipe.task == "summarization":
            result.update(M.rouge(hyps, corpus.tgt))
            result["repeated_trigrams"] = M.repeated_ngrams(hyps, 3)  # per headline
            train = load_split(recipe.data, "train", recipe.base_dir, cache_dir=run.run_dir / "cache")
            n_words = lead_words(train.tgt)
            lead = M.rouge(lead_baseline(corpus.src, n_words), corpus.tgt)
            result.update({"lead_words": n_words, **{f"lead_{k}": v for k, v in lead.items()}})
        else:
            bleu, chrf = M.bleu(hyps, corpus.tgt), M.chrf(hyps, corpus.tgt)
            result.update({"bleu": round(bleu.score, 2), "bleu_signature": str(bleu.signature),
                           "chrf": round(chrf.score, 2), "chrf_signature": str(chrf.signature)})
        return result

    def export(self, run: Any, out: Path, *, opset: int, quantize: str | None,
               check_sentences: list[str] | None) -> dict[str, Any]:
        return export_seq2seq(run, out, opset=opset, quantize=quantize, check_sentences=check_sentences)


TASK = _Seq2Seq()
