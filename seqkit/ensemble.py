"""Ensemble decoding: several models of one target vocabulary behind one step function.

Each step averages the members' log-probabilities (OpenNMT-py's default rule, the geometric
mean of their distributions), renormalized so that scores stay log-probabilities; fairseq
averages the probabilities themselves instead. It is a
:class:`~seqkit.search.StepFunction` like any single model, so greedy, beam and sampling run
unchanged and members may mix torch run directories and exported models. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seqkit.errors import InputError
from seqkit.inference import Translator
from seqkit.search import StepFunction


class EnsembleStepper:
    """The mean of ``members``' step log-probabilities; attention is the first member's."""

    def __init__(self, members: Sequence[StepFunction]):
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = list(members)

    def start(self, src: np.ndarray, lengths: np.ndarray) -> tuple[Any, Any]:
        starts = [m.start(src, lengths) for m in self.members]
        return tuple(s[0] for s in starts), tuple(s[1] for s in starts)

    def step(self, y_prev: np.ndarray, memory: Any, state: Any) -> tuple[np.ndarray, np.ndarray | None, Any]:
        outs = [m.step(y_prev, mem, st) for m, mem, st in zip(self.members, memory, state)]
        mean = outs[0][0].astype(np.float32, copy=True)  # (N, V), in place from here on
        for out in outs[1:]:
            mean += out[0]
        mean /= len(outs)
        # Renormalize: the mean of log-distributions is not itself one. float32 as the members'
        # own log_softmax; the sum of exp(x - max) lies in [1, V], so nothing underflows there.
        peak = mean.max(axis=1, keepdims=True)
        shifted = mean - peak
        log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)
        shifted -= log_z
        return shifted, outs[0][1], tuple(o[2] for o in outs)

    def select_memory(self, memory: Any, index: np.ndarray) -> Any:
        return tuple(m.select_memory(mem, index) for m, mem in zip(self.members, memory))

    def select_state(self, state: Any, index: np.ndarray) -> Any:
        return tuple(m.select_state(st, index) for m, st in zip(self.members, state))


def check_same_vocabulary(names: Sequence[str], translators: Sequence[Any]) -> None:
    """Members must share the target vocabulary (ids mean the same tokens) and read sources alike."""
    first = translators[0]
    probe = "Ein Hund läuft über die Wiese. A dog runs 12 km."
    for name, other in zip(names[1:], translators[1:]):
        tgt_a, tgt_b = first.tgt_tokenizer, other.tgt_tokenizer
        same_tgt = (tgt_a.vocab_size == tgt_b.vocab_size and tgt_a.encode(probe) == tgt_b.encode(probe)
                    and (tgt_a.bos_id, tgt_a.eos_id, tgt_a.pad_id) == (tgt_b.bos_id, tgt_b.eos_id, tgt_b.pad_id))
        if not same_tgt:
            raise InputError(f"{name}: its target vocabulary differs from {names[0]}'s ({tgt_b.vocab_size} vs "
                             f"{tgt_a.vocab_size} entries, or other ids); an ensemble averages over one vocabulary")
        if first.copy_oov != other.copy_oov:
            raise InputError(f"{name}: model.decoder.copy_oov differs from {names[0]}'s; ensemble members must "
                             "share one output vocabulary (with or without the source's unknown words)")
        if first.src_tokenizer.encode(probe) != other.src_tokenizer.encode(probe):
            raise InputError(f"{name}: its source tokenizer differs from {names[0]}'s; ensemble members must read "
                             "the same source ids")


def ensemble_translator(names: Sequence[str], translators: Sequence[Any]) -> Any:
    """One Translator decoding with every member: the first one's tokenizers and search settings."""
    check_same_vocabulary(names, translators)
    first = translators[0]
    return Translator(EnsembleStepper([t.fn for t in translators]), first.src_tokenizer, first.tgt_tokenizer,
                      first.config, max_src_len=first.max_src_len, copy_oov=first.copy_oov)
