"""Task adapters: what the generic Trainer needs from each task (batches, loss, validation).

``Seq2SeqTask`` serves translation and summarization; ``LMTask`` the character-level (or any
token-level) language model trained by truncated BPTT over contiguous streams.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from seqkit.batching import bucket_batches, collate
from seqkit.errors import DataError
from seqkit.loss import smoothed_loss

log = logging.getLogger("seqkit")


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host batch as a tensor on ``device``. On CUDA it is staged in pinned (page-locked)
    memory and copied without blocking, so the copy overlaps the GPU's queued work; on the CPU
    the tensor shares the array's memory."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


class Seq2SeqTask:
    """Translation / summarization: token-budget buckets of (source, target) pairs."""

    def __init__(self, recipe: Any, model: torch.nn.Module, src_tok: Any, tgt_tok: Any,
                 train: Any, valid: Any | None, device: torch.device):
        from seqkit.inference import encode_source

        self.recipe, self.model, self.device = recipe, model, device
        self.src_tok, self.tgt_tok = src_tok, tgt_tok
        self.valid = valid
        self.train_cfg = recipe.train
        data = recipe.data
        self.src_ids, self.tgt_ids = [], []
        dropped = 0
        for src, tgt in zip(train.src, train.tgt):
            s_ids, s_trunc = encode_source(src_tok, src, data.max_src_len)
            t_ids = tgt_tok.encode(tgt)
            if (s_trunc and not data.truncate_src) or len(t_ids) + 1 > data.max_tgt_len or not t_ids:
                dropped += 1
                continue
            self.src_ids.append(s_ids)
            self.tgt_ids.append(t_ids)
        if not self.src_ids:
            raise DataError(f"data.train: no pair fits max_src_len={data.max_src_len} / max_tgt_len={data.max_tgt_len}")
        if dropped:
            log.info("dropped %d of %d training pairs longer than the length limits", dropped, len(train.src))
        self.src_len = np.array([len(s) for s in self.src_ids])
        self.tgt_len = np.array([len(t) + 1 for t in self.tgt_ids])
        self._epoch_batches: tuple[int, list[np.ndarray]] | None = None

    def batches(self, epoch: int, seed: int) -> list[np.ndarray]:
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            order = bucket_batches(self.src_len, self.tgt_len, self.train_cfg.batch_tokens,
                                   shuffle=True, seed=seed, epoch=epoch)
            self._epoch_batches = (epoch, order)
        return self._epoch_batches[1]

    def end_epoch(self) -> None:
        self._epoch_batches = None

    def _tensors(self, src_ids: list[list[int]], tgt_ids: list[list[int]]) -> dict[str, torch.Tensor]:
        tok = self.tgt_tok
        batch = collate(src_ids, tgt_ids, tok.pad_id, tok.bos_id, tok.eos_id)
        dev = self.device
        return {
            "src": to_device(batch.src, dev),
            "src_lengths": torch.from_numpy(batch.src_lengths),  # packing wants lengths on CPU
            "tgt_in": to_device(batch.tgt_in, dev),
            "tgt_out": to_device(batch.tgt_out, dev),
            "ntokens": int(batch.ntokens),
        }

    def _loss_on(self, t: dict[str, torch.Tensor], smoothing: float) -> tuple[torch.Tensor, int, torch.Tensor]:
        logits = self.model(t["src"], t["src_lengths"], t["tgt_in"])  # (B, T, V)
        loss, nll = smoothed_loss(logits.reshape(-1, logits.size(-1)), t["tgt_out"].reshape(-1),
                                  self.tgt_tok.pad_id, smoothing)
        return loss, t["ntokens"], nll

    def loss(self, index: np.ndarray) -> tuple[torch.Tensor, int, torch.Tensor]:
        t = self._tensors([self.src_ids[i] for i in index], [self.tgt_ids[i] for i in index])
        return self._loss_on(t, self.train_cfg.label_smoothing)

    @torch.inference_mode()
    def validate(self, cfg: Any) -> dict[str, Any]:
        from seqkit.inference import encode_source

        self.model.eval()
        data = self.recipe.data
        src = [encode_source(self.src_tok, s, data.max_src_len)[0] for s in self.valid.src]
        tgt = [self.tgt_tok.encode(t)[: data.max_tgt_len - 1] for t in self.valid.tgt]
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
        from seqkit import metrics as M

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
    from seqkit.inference import Translator
    from seqkit.models import TorchStepper

    search = recipe.search.model_copy(update={k: v for k, v in search_overrides.items() if v is not None})
    if strategy is not None:
        search = search.model_copy(update={"strategy": strategy})
    model.eval()
    translator = Translator(TorchStepper(model, device), src_tok, tgt_tok, search)
    return [r.text for r in translator.translate(lines)]
