"""The search step-function protocol over onnxruntime sessions, in numpy. Imports no torch.

:class:`OrtStepper` is to an exported model what :class:`seqkit.models.TorchStepper` is to a
torch one, so :mod:`seqkit.search` (greedy, beam, sampling) runs unchanged on either.
Memory and state are tuples of numpy arrays named and shaped as config.json records them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from seqkit.runtime.format import (
    ATTENTION,
    BATCH,
    CANDIDATES,
    EOS_ID,
    EOS_LOG_PROBS,
    LOG_PROBS,
    ROWS_BIAS,
    ROWS_SCALE,
    ROWS_WEIGHT,
    SRC,
    SRC_LENGTHS,
    TOP_IDS,
    TOP_K,
    TOP_LOG_PROBS,
    Y_PREV,
    ExportConfig,
    state_out_name,
)
from seqkit.runtime.rows import OutputRows
from seqkit.search import TopK
from seqkit.shortlist import Shortlist

State = tuple[np.ndarray, ...]


def session_options(threads: int | None = None, *, sequential: bool = True) -> ort.SessionOptions:
    """ORT_ENABLE_ALL graph optimizations; ``threads`` intra-op threads (None: onnxruntime's
    default, one per physical core). The step graph is one chain (embedding, RNN layers,
    attention, projection), so the parallel execution mode has nothing to overlap: measured
    within 2% of sequential on the Multi30k model (tools/bench_decode.py
    --compare-execution-mode); sequential is the default and avoids an inter-op thread pool.

    The pool's threads sleep while they wait instead of spinning, unless OMP_WAIT_POLICY is
    ACTIVE (a variable torch's OpenMP threads read too; seqkit.openmp). Spinning was slower on the
    2-core VM both idle (beam 5 fp32 3.14 s against 2.38 s) and loaded (load ~9: 200 sentences
    2.4-2.6 s against 1.1 s); docs/recipes.md."""
    opts = ort.SessionOptions()
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() != "ACTIVE":
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL if sequential else ort.ExecutionMode.ORT_PARALLEL
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # warnings about unused initializers etc. are not for users
    return opts


def open_session(path: Path, options: ort.SessionOptions, providers: list | None = None) -> ort.InferenceSession:
    """``providers``: from :func:`seqkit.devices.ort_providers` (default: the CPU)."""
    return ort.InferenceSession(str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"])


class OrtStepper:
    """StepFunction over ``encoder`` (None for a language model) and ``step`` sessions.

    ``start`` runs the encoder once per batch (a language model starts from zero state);
    ``step`` runs the step graph once per decoding step over all live rows.
    """

    def __init__(self, config: ExportConfig, encoder: ort.InferenceSession | None, step: ort.InferenceSession):
        if (encoder is None) != (config.model_kind == "lm"):
            raise ValueError("a seq2seq model needs an encoder session; a language model has none")
        self.config, self.encoder, self.step_session = config, encoder, step
        self.memory_names = [t.name for t in config.memory]
        self.state_names = [t.name for t in config.state]
        self.memory_batch_dims = tuple(t.batch_dim for t in config.memory)
        self.state_batch_dims = tuple(t.batch_dim for t in config.state)
        n_state = len(config.state)
        self.step_outputs = [LOG_PROBS] + ([ATTENTION] if config.has_attention else []) + [
            state_out_name(i) for i in range(n_state)
        ]

    def start(self, src: np.ndarray, lengths: np.ndarray) -> tuple[State, State]:
        """src (B, S) int64 (LM: (B, 0)), lengths (B,) int64 -> (memory, state)."""
        batch = int(src.shape[0])
        if self.encoder is None:
            return (), self.zero_state(batch)
        feeds = {SRC: np.ascontiguousarray(src, dtype=np.int64), SRC_LENGTHS: np.ascontiguousarray(lengths, dtype=np.int64)}
        flat = self.encoder.run(self.memory_names + self.state_names, feeds)
        n = len(self.memory_names)
        return tuple(flat[:n]), tuple(flat[n:])

    def zero_state(self, batch: int) -> State:
        """The initial language-model state: zeros (export checks the torch model's is zero)."""
        return tuple(
            np.zeros([batch if d == BATCH else d for d in t.shape], dtype=t.dtype)  # type: ignore[misc]
            for t in self.config.state
        )

    def step(self, y_prev: np.ndarray, memory: State, state: State) -> tuple[np.ndarray, np.ndarray | None, State]:
        """y_prev (N,) int64 -> (log_probs (N, V) float32, attention (N, S) float32 or None, state)."""
        out = self._run([LOG_PROBS], y_prev, memory, state, 1, 0)
        return out[0], *self._attention_and_state(out[1:])

    def _run(self, heads: list[str], y_prev: np.ndarray, memory: State, state: State, k: int, eos_id: int) -> list[np.ndarray]:
        """The step graph's ``heads`` outputs, then attention (if any) and the new state."""
        return self.step_session.run(heads + self.step_outputs[1:], self._feeds(y_prev, memory, state, k, eos_id))

    def _feeds(self, y_prev: np.ndarray, memory: State, state: State, k: int, eos_id: int) -> dict[str, np.ndarray]:
        feeds = {Y_PREV: np.ascontiguousarray(y_prev, dtype=np.int64)}
        feeds.update(zip(self.memory_names, memory))
        feeds.update(zip(self.state_names, state))
        if self.config.step_top_k:  # graph inputs must be fed even when their outputs are not read
            feeds[TOP_K] = np.array([k], dtype=np.int64)
            feeds[EOS_ID] = np.array(eos_id, dtype=np.int64)
        return feeds

    def _attention_and_state(self, out: list[np.ndarray]) -> tuple[np.ndarray | None, State]:
        if self.config.has_attention:
            return out[0], tuple(out[1:])
        return None, tuple(out)

    def select_memory(self, memory: State, index: np.ndarray) -> State:
        """Gather batch rows of every memory tensor: index (N',) int64."""
        return tuple(np.take(m, index, axis=d) for m, d in zip(memory, self.memory_batch_dims))

    def select_state(self, state: State, index: np.ndarray) -> State:
        """Gather batch rows of every state tensor along its recorded batch dim."""
        return tuple(np.take(s, index, axis=d) for s, d in zip(state, self.state_batch_dims))


class OrtTopKStepper(OrtStepper):
    """OrtStepper over a step graph with ``step_top_k`` outputs: also a TopKStepFunction, so
    beam search fetches (N, k) instead of (N, V) scores per step."""

    def __init__(self, config: ExportConfig, encoder: ort.InferenceSession | None, step: ort.InferenceSession):
        if not config.step_top_k:
            raise ValueError("this export's step graph has no top_k outputs; use OrtStepper")
        super().__init__(config, encoder, step)

    def step_top_k(self, y_prev: np.ndarray, memory: State, state: State, k: int, eos_id: int) -> tuple[TopK, np.ndarray | None, State]:
        """y_prev (N,) int64 -> (TopK (N, min(k, width)) of ``step``'s log-probs, attention, state)."""
        # ONNX TopK rejects k > V; with copy_oov a row has V + S columns (S: the memory's source length).
        width = self.config.tgt_vocab_size + (int(memory[0].shape[1]) if self.config.copy_oov else 0)
        k = min(k, width)
        out = self._run([TOP_LOG_PROBS, TOP_IDS, EOS_LOG_PROBS], y_prev, memory, state, k, eos_id)
        return TopK(out[0], out[1], out[2]), *self._attention_and_state(out[3:])


class OrtShortlistStepper(OrtTopKStepper):
    """OrtTopKStepper over the shortlist step graph: each batch's candidates (seqkit.shortlist)
    and, where the graph takes the output layer's rows as inputs (``rows``: seqkit.runtime.rows),
    its rest_sample ids and the rows of both are taken from its source in ``start`` and travel
    at the end of memory, so search, which treats memory as opaque, needs no change
    (:meth:`shortlist_of` reads them back). ``step`` returns whole (N, V) rows with -inf outside
    the candidates; ``step_top_k`` vocabulary ids (the graph maps them back)."""

    def __init__(self, config: ExportConfig, encoder: ort.InferenceSession, step: ort.InferenceSession,
                 shortlist: Shortlist, rows: OutputRows | None = None):
        super().__init__(config, encoder, step)
        self.shortlist, self.rows = shortlist, rows
        # Rest-sample ids per batch (an export's choice; only a graph fed its rows scores them).
        self.rest_size = config.shortlist.rest_sample if config.shortlist is not None and rows is not None else 0
        self.fed_names: list[str] = []
        if rows is not None:
            self.fed_names = [ROWS_WEIGHT, ROWS_BIAS] + ([ROWS_SCALE] if rows.scale is not None else [])
        self.n_tail = 2 + len(self.fed_names)  # candidates, rest, fed rows

    def start(self, src: np.ndarray, lengths: np.ndarray) -> tuple[State, State]:
        memory, state = super().start(src, lengths)
        candidates = self.shortlist.candidates(src, lengths)
        rest = Shortlist.rest_sample(candidates, self.rest_size, self.config.tgt_vocab_size)
        fed: tuple[np.ndarray, ...] = ()
        if self.rows is not None:
            fed = self.rows.take(candidates, rest if self.rest_size else None, self.config.tgt_vocab_size)
        return (*memory, candidates, rest, *fed), state

    def shortlist_of(self, memory: State) -> tuple[np.ndarray, np.ndarray]:
        """(candidates, rest_sample ids) of a batch, from its memory."""
        candidates, rest = memory[len(memory) - self.n_tail : len(memory) - self.n_tail + 2]
        return candidates, rest

    def step(self, y_prev: np.ndarray, memory: State, state: State) -> tuple[np.ndarray, np.ndarray | None, State]:
        candidates, _ = self.shortlist_of(memory)
        out = self._run([LOG_PROBS], y_prev, memory, state, 1, 0)
        rows = np.full((len(y_prev), self.config.tgt_vocab_size), -np.inf, dtype=np.float32)
        rows[:, candidates] = out[0]
        return rows, *self._attention_and_state(out[1:])

    def step_top_k(self, y_prev: np.ndarray, memory: State, state: State, k: int, eos_id: int) -> tuple[TopK, np.ndarray | None, State]:
        candidates, _ = self.shortlist_of(memory)
        k = min(k, len(candidates))
        column = int(np.searchsorted(candidates, eos_id))  # eos is always a candidate (a special id)
        out = self._run([TOP_LOG_PROBS, TOP_IDS, EOS_LOG_PROBS], y_prev, memory, state, k, column)
        return TopK(out[0], out[1], out[2]), *self._attention_and_state(out[3:])

    def _feeds(self, y_prev: np.ndarray, memory: State, state: State, k: int, eos_id: int) -> dict[str, np.ndarray]:
        """The step graph's feeds, the candidates (and fed rows) among them."""
        model, tail = memory[: len(memory) - self.n_tail], memory[len(memory) - self.n_tail :]
        return {**super()._feeds(y_prev, model, state, k, eos_id), CANDIDATES: tail[0],
                **dict(zip(self.fed_names, tail[2:]))}

    def select_memory(self, memory: State, index: np.ndarray) -> State:
        cut = len(memory) - self.n_tail
        return (*super().select_memory(memory[:cut], index), *memory[cut:])


def make_stepper(config: ExportConfig, encoder: ort.InferenceSession | None, step: ort.InferenceSession,
                 shortlist: tuple[ort.InferenceSession, Shortlist, OutputRows | None] | None = None) -> OrtStepper:
    """The stepper an export supports: OrtTopKStepper when its step graph has top_k outputs;
    OrtShortlistStepper over ``shortlist`` (its step session, the shortlist and, where the graph
    takes them as inputs, the output layer's rows) when given."""
    if shortlist is not None and encoder is not None:
        return OrtShortlistStepper(config, encoder, *shortlist)
    return (OrtTopKStepper if config.step_top_k else OrtStepper)(config, encoder, step)
