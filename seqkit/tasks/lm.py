"""Language-model task: truncated BPTT over contiguous token streams (the char-rnn way).

The training text is encoded once (the target tokenizer; no bos/eos: the text is one stream)
and cut into ``train.batch_size`` contiguous rows; batch k holds columns
``[k * bptt, (k + 1) * bptt)`` of every row (:func:`seqkit.batching.lm_stream_batches`), so row
b of batch k + 1 continues row b of batch k.

Hidden state. The final state of batch k, detached from the graph, is the initial state of
batch k + 1: gradients flow back ``bptt`` steps, information flows across the whole epoch.
The state starts from zeros whenever a batch does not follow the previous one: at the start of
every epoch, and on resume (the state is not checkpointed: a resumed run restarts it from
zeros at the batch it resumes from, which costs a few dozen characters of context per stream).

Each epoch shifts the streams by a random offset in ``[0, bptt)`` (seeded by ``(seed, epoch)``,
so resuming reproduces it): the chunk boundaries differ from epoch to epoch.

Under torchrun (:mod:`seqkit.distributed`) ``train.batch_size`` is per process: the text is cut
into ``batch_size * world_size`` rows and each process trains its own ``batch_size`` of them
(:meth:`LMTask.shard`), so the carried state never crosses processes.

Loss. Plain NLL: ``train.label_smoothing`` is a seq2seq setting and is *not* applied here, so
the training loss and the validation ``loss`` are the same quantity, nats per token (nats per
character with a character tokenizer). Validation runs over the whole validation text (for
``format: text`` without a valid split: the last ``data.valid_fraction`` of the text) as
``EVAL_STREAMS`` streams with carried state and reports ``loss``, ``ppl`` and ``bits_per_char``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqkit.batching import lm_stream_batches
from seqkit.errors import DataError
from seqkit.export_seq2seq import export_seq2seq
from seqkit.inference import Generator
from seqkit.loss import smoothed_loss
from seqkit.models import TorchStepper
from seqkit.rundir import TOKENIZER_DIR
from seqkit.tasks.common import ModelSizes, Vocab, pair_tokenizers, to_device
from seqkit.tokenizers import load_tokenizers

log = logging.getLogger("seqkit")

# Streams used to score a held-out text. Each stream starts from a zero state, so fewer
# streams lose less context at stream starts; 16 keeps validation of tinyshakespeare's 111k
# characters to a few seconds of batched forward passes.
EVAL_STREAMS = 16


def encode_stream(tokenizer: Any, text: str, what: str) -> np.ndarray:
    """The text's ids as one int64 stream (no bos/eos). ``what`` names the text in errors."""
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    if len(ids) < 2:
        raise DataError(f"{what}: the text encodes to {len(ids)} token(s); a language model needs at least 2")
    return ids


def detach_state(state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(s.detach() for s in state)


class LMTask:
    """The Trainer's adapter for ``task: lm`` (see the module docstring for the scheme)."""

    def __init__(self, recipe: Any, model: torch.nn.Module, tgt_tok: Any, train: Any, valid: Any | None,
                 device: torch.device):
        self.recipe, self.model, self.device, self.tok = recipe, model, device, tgt_tok
        self.train_cfg = recipe.train
        self.ids = encode_stream(tgt_tok, train.text, "data.train")
        self.valid_ids = encode_stream(tgt_tok, valid.text, "data.valid") if valid is not None else None
        self.chars_per_token = len(valid.text) / len(self.valid_ids) if valid is not None else 1.0
        self._rank, self._world = 0, 1  # data-parallel shard (seqkit.distributed): streams of this rank
        self._check_length()
        self._epoch: int | None = None
        self._streams: tuple[torch.Tensor, torch.Tensor] | None = None  # (inputs, targets), each (B, N)
        self._state: tuple[torch.Tensor, ...] | None = None
        self._next_chunk = -1  # the chunk whose input continues the carried state

    def _check_length(self) -> None:
        cfg, streams = self.train_cfg, self.train_cfg.batch_size * self._world
        # Each stream must hold at least one full chunk, after the epoch offset (< bptt).
        if (len(self.ids) - cfg.bptt) // streams < cfg.bptt:
            per_rank = f" per process x {self._world} processes" if self._world > 1 else ""
            raise DataError(
                f"data.train: {len(self.ids)} tokens are too few for train.batch_size={cfg.batch_size}{per_rank} "
                f"streams of at least train.bptt={cfg.bptt} tokens; lower them"
            )

    def shard(self, rank: int, world: int) -> None:
        """Under DDP: cut ``batch_size * world`` streams, keep rows ``[rank * B, (rank + 1) * B)``.

        Every rank then trains on the same chunk indices of its own streams, so the carried state
        stays on one rank and a W-process run equals one process with ``batch_size * W`` streams.
        """
        self._rank, self._world = rank, world
        self._check_length()
        self.end_epoch()

    # -- what the Trainer calls ----------------------------------------------------------------
    def batches(self, epoch: int, seed: int) -> list[int]:
        """Chunk indices of this epoch, in stream order (they must not be shuffled)."""
        cfg = self.train_cfg
        if self._epoch != epoch:
            offset = int(np.random.default_rng([seed, epoch, 7]).integers(0, cfg.bptt))
            ids, streams = self.ids[offset:], cfg.batch_size * self._world
            n = (len(ids) - 1) // streams
            rows = slice(self._rank * cfg.batch_size, (self._rank + 1) * cfg.batch_size)
            inputs = ids[: streams * n].reshape(streams, n)[rows]
            targets = ids[1 : streams * n + 1].reshape(streams, n)[rows]
            self._streams = (to_device(inputs, self.device), to_device(targets, self.device))
            self._epoch, self._next_chunk, self._state = epoch, -1, None
        n_cols = self._streams[0].size(1)
        return list(range(-(-n_cols // cfg.bptt)))

    def end_epoch(self) -> None:
        self._epoch, self._streams, self._state, self._next_chunk = None, None, None, -1

    def loss(self, chunk: int, model: torch.nn.Module | None = None) -> tuple[torch.Tensor, int, torch.Tensor]:
        """Summed NLL over chunk ``chunk`` (B, <=bptt) of the streams; carries the state on. The
        forward runs through ``model`` (the Trainer's: this model, or its DDP wrapper)."""
        bptt = self.train_cfg.bptt
        inputs, targets = (s[:, chunk * bptt : (chunk + 1) * bptt] for s in self._streams)  # (B, T)
        state = self._state if chunk == self._next_chunk else None
        if state is None and chunk > 0:
            log.debug("lm: chunk %d starts from a zero state (resumed mid-epoch)", chunk)
        logits, state = (self.model if model is None else model)(inputs, state)  # (B, T, V)
        self._state, self._next_chunk = detach_state(state), chunk + 1
        loss, nll = smoothed_loss(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), self.tok.pad_id, 0.0)
        return loss, int(targets.numel()), nll

    @torch.inference_mode()
    def validate(self, cfg: Any) -> dict[str, Any]:
        if self.valid_ids is None:
            raise DataError("data.valid: a language model needs validation text")
        nll, n = stream_nll(self.model, self.valid_ids, cfg.bptt, self.device)
        return lm_metrics(nll, n, self.chars_per_token)


def stream_nll(model: torch.nn.Module, ids: np.ndarray, bptt: int, device: torch.device,
               streams: int = EVAL_STREAMS) -> tuple[float, int]:
    """(summed NLL in nats, number of scored tokens) of ``ids`` under ``model`` (eval mode).

    ``streams`` contiguous rows (fewer for a short text), state carried across chunks of
    ``bptt``; every token but the first of each row is scored once.
    """
    model.eval()
    streams = max(1, min(streams, (len(ids) - 1) // 2))
    state, nll, n = None, 0.0, 0
    with torch.inference_mode():
        for inputs, targets in lm_stream_batches(ids, streams, bptt):
            x, y = to_device(inputs, device), to_device(targets, device)
            logits, state = model(x, state)  # (B, T, V)
            nll += float(torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                                           y.reshape(-1), reduction="sum"))
            n += int(y.numel())
    return nll, n


def lm_metrics(nll: float, tokens: int, chars_per_token: float) -> dict[str, Any]:
    """loss (nats/token), ppl (per token) and bits_per_char (total bits / characters).

    ``chars_per_token``: characters of the scored text per token, 1.0 for a character
    tokenizer, so there ``bits_per_char == loss / ln 2`` exactly.
    """
    loss = nll / max(tokens, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "bits_per_char": loss / chars_per_token / math.log(2),
            "tokens": tokens}


def evaluate_lm(run: Any, corpus: Any) -> dict[str, Any]:
    """``seqkit evaluate`` for a language model: NLL of ``corpus.text`` (a :class:`LoadedRun`)."""
    ids = encode_stream(run.tgt_tok, corpus.text, f"data.{corpus.name}")
    nll, n = stream_nll(run.model, ids, run.recipe.train.bptt, run.device)
    return {"split": corpus.name, "checkpoint": run.checkpoint.name, "chars": len(corpus.text),
            **lm_metrics(nll, n, len(corpus.text) / len(ids))}


def _vocab(src_tok: Any, tgt_tok: Any) -> Vocab:
    return Vocab(None, tgt_tok, None, ModelSizes(None, tgt_tok.vocab_size, tgt_tok.pad_id))


class _LanguageModelling:
    """The :class:`seqkit.tasks.Task` of ``task: lm``."""

    def prepare_vocab(self, recipe: Any, run_dir: Path, data: Any, resume: bool) -> Vocab:
        return _vocab(*pair_tokenizers(recipe, run_dir, lambda: (None, [data.tokenizer_corpus().text]), resume))

    def open_vocab(self, run_dir: Path) -> Vocab:
        return _vocab(*load_tokenizers(run_dir / TOKENIZER_DIR))

    def trainable(self, recipe: Any, model: Any, vocab: Vocab, data: Any, device: Any) -> LMTask:
        return LMTask(recipe, model, vocab.tgt_tok, data.train, data.valid, device)

    def front_end(self, run: Any, options: dict[str, Any]) -> Generator:
        return Generator(TorchStepper(run.model, run.device), run.tgt_tok, run.recipe.search.with_overrides(**options))

    def evaluate(self, run: Any, corpus: Any, *, strategy: str | None, beam_size: int | None,
                 output: Path | None) -> dict[str, Any]:
        return evaluate_lm(run, corpus)

    def export(self, run: Any, out: Path, *, opset: int, quantize: str | None,
               check_sentences: list[str] | None) -> dict[str, Any]:
        return export_seq2seq(run, out, opset=opset, quantize=quantize, check_sentences=check_sentences)


TASK = _LanguageModelling()
