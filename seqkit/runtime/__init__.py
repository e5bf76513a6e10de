"""Torch-free inference on an exported model directory (see :mod:`seqkit.runtime.format`).

::

    from seqkit.runtime import load_model
    model = load_model("models/translate")            # checks manifest.json first
    model.translate(["Ein Hund läuft."])              # the recipe's search defaults
    model.translator(strategy="greedy").translate(lines)   # TranslationResult objects
    load_model("models/lm").generate("ROMEO:", max_tokens=200, seed=1)
    load_model("models/classify").classify(["Great phone."])   # [("1", 0.93)]: (label, probability)
    load_model("models/ensemble").translate(lines)    # an exported ensemble (seqkit export A B -o DIR)

This package imports no torch, directly or through anything it imports (a test proves it):
onnxruntime runs the graphs, :mod:`seqkit.search` decodes in numpy, and the tokenizers load
through the registry's entry points, so third-party tokenizer plugins work as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqkit.devices import ort_providers
from seqkit.ensemble import EnsembleStepper, check_same_vocabulary
from seqkit.errors import ModelError
from seqkit.inference import Generator, TextClassifier, Translator, as_lines
from seqkit.runtime.checks import check_graphs, check_search, check_tokenizers
from seqkit.runtime.classifier import OrtClassifier
from seqkit.runtime.format import (
    SHORTLIST_FILE,
    SHORTLIST_ROWS_FILE,
    TOKENIZER_DIR,
    ExportConfig,
    Manifest,
    is_ensemble,
    read_config,
    read_ensemble,
    read_manifest,
    verify_manifest,
)
from seqkit.runtime.rows import OutputRows
from seqkit.runtime.stepper import (
    OrtStepper,
    make_stepper,
    open_session,
    session_options,
)
from seqkit.search import SearchConfig, resolve_search
from seqkit.shortlist import Shortlist
from seqkit.tokenizers import load_tokenizer, load_tokenizers

__all__ = ["OrtClassifier", "OrtStepper", "RuntimeModel", "load_model"]


class RuntimeModel:
    """An exported model, ready to decode: sessions, tokenizers, config, stepper.

    A classifier has no stepper (None) and no target tokenizer; ``probs_fn`` runs its graph.
    An ensemble's stepper is an :class:`~seqkit.ensemble.EnsembleStepper` over ``members`` (each
    a RuntimeModel); its config, tokenizers and search defaults are its first member's.
    """

    def __init__(self, model_dir: Path, config: ExportConfig, manifest: Manifest, stepper: Any,
                 src_tokenizer: Any, tgt_tokenizer: Any, probs_fn: OrtClassifier | None = None,
                 members: Sequence[RuntimeModel] = ()):
        self.model_dir, self.config, self.manifest, self.stepper = model_dir, config, manifest, stepper
        self.src_tokenizer, self.tgt_tokenizer, self.probs_fn = src_tokenizer, tgt_tokenizer, probs_fn
        self.members = list(members)

    @property
    def copy_oov(self) -> bool:
        """Whether its outputs extend the vocabulary with the source's unknown words (seqkit.oov)."""
        return self.config.copy_oov

    def search_config(self, **overrides: Any) -> SearchConfig:
        """The exported search defaults with ``overrides`` (SearchConfig fields) applied."""
        return resolve_search(self.config.search, overrides)

    def translator(self, *, workers: int = 1, **search_overrides: Any) -> Translator:
        """A Translator with the search defaults + overrides. ``workers`` > 1 decodes that many
        batches at once, one thread each (load the model with ``threads`` = cores / workers)."""
        if self.config.model_kind == "classifier":
            raise ModelError(f"{self.model_dir}: a classification model labels lines instead of translating them; "
                             "use classify() / classifier()")
        if self.config.model_kind != "seq2seq":
            raise ModelError(f"{self.model_dir}: a language model (task {self.config.task}) cannot translate; "
                             "use `seqkit generate`")
        return Translator(self.stepper, self.src_tokenizer, self.tgt_tokenizer, self.search_config(**search_overrides),
                          copy_oov=self.config.copy_oov, workers=workers)

    def generator(self, **search_overrides: Any) -> Generator:
        if self.config.model_kind != "lm":
            raise ModelError(f"{self.model_dir}: a {self.config.task} model does not generate from a prompt; "
                             "use `seqkit translate`")
        return Generator(self.stepper, self.tgt_tokenizer, self.search_config(**search_overrides))

    def classifier(self, batch_size: int | None = None) -> TextClassifier:
        """A :class:`seqkit.inference.TextClassifier` over this classifier (``batch_size`` lines per run)."""
        if self.probs_fn is None or self.config.labels is None:
            use = "translate" if self.config.model_kind == "seq2seq" else "generate"
            raise ModelError(f"{self.model_dir}: a {self.config.task} model does not classify; use `seqkit {use}`")
        options = {} if batch_size is None else {"batch_size": batch_size}
        return TextClassifier(self.probs_fn, self.src_tokenizer, self.config.labels, max_src_len=self.config.max_src_len,
                              **options)

    def classify(self, lines: str | Sequence[str]) -> tuple[str, float] | list[tuple[str, float]]:
        """(label, probability) per line; an empty line gives ("", 0.0). One str: one pair."""
        lines, single = as_lines(lines)
        pairs = [(r.label, r.probability) for r in self.classifier().classify(lines)]
        return pairs[0] if single else pairs

    def translate(self, lines: str | Sequence[str], **search_overrides: Any) -> str | list[str]:
        """Best hypothesis per line (empty line -> ""), decoded with the search defaults +
        overrides. One str gives one str; a list of lines, a list."""
        lines, single = as_lines(lines)
        texts = [r.text for r in self.translator(**search_overrides).translate(lines)]
        return texts[0] if single else texts

    def generate(self, prompt: str = "", *, max_tokens: int | None = None, temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> str:
        """prompt + sampled continuation (see :meth:`seqkit.inference.Generator.generate`)."""
        return self.generator().generate(prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                         top_p=top_p, seed=seed)


def load_model(model_dir: str | Path, *, threads: int | None = None, sequential: bool = True,
               device: str = "cpu", shortlist: bool | None = None) -> RuntimeModel:
    """Open an exported model directory after checking every file against manifest.json.

    ``threads``: onnxruntime intra-op threads per session (None: onnxruntime's default).
    ``shortlist``: decode over the export's vocabulary shortlist (True), the full vocabulary
    (False), or as config.json's ``shortlist.default`` says (None; docs/export.md). True for an
    export without a shortlist is a ModelError; an ensemble's members decode without.
    ``device``: cpu, or cuda / cuda:N through onnxruntime's CUDA provider (onnxruntime-gpu);
    an unknown device, or cuda where that provider is missing, is a SeqkitError.
    Raises ModelError naming the file for a missing, modified or unlisted file.
    """
    providers = ort_providers(device)
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelError(f"{root}: no such model directory")
    manifest = verify_manifest(root)
    if is_ensemble(root):
        return _load_ensemble(root, manifest, providers, threads=threads, sequential=sequential, shortlist=False)
    return _open_verified(root, manifest, providers, threads=threads, sequential=sequential, shortlist=shortlist)


def _open_verified(root: Path, manifest: Manifest, providers: list, *, threads: int | None,
                   sequential: bool, shortlist: bool | None) -> RuntimeModel:
    """load_model after the manifest check: config, sessions, tokenizers and their checks."""
    config = read_config(root)
    check_search(root, config)
    options = session_options(threads, sequential=sequential)
    sessions = {}
    for role, name in config.graph_files.items():
        try:
            sessions[role] = open_session(root / name, options, providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(f"{root / name}: onnxruntime cannot load it: {str(exc)[:300]}") from None
    check_graphs(root, config, sessions)
    if config.model_kind == "classifier":  # a source tokenizer only
        src_dir = root / TOKENIZER_DIR / "src"
        if not src_dir.is_dir():
            raise ModelError(f"{src_dir}: missing source tokenizer")
        src_tok = load_tokenizer(src_dir)
        check_tokenizers(root, config, src_tok, None)
        return RuntimeModel(root, config, manifest, None, src_tok, None, OrtClassifier(sessions["classifier"]))
    stepper = make_stepper(config, sessions.get("encoder"), sessions["step"],
                           _shortlist(root, config, sessions, shortlist))
    src_tok, tgt_tok = load_tokenizers(root / TOKENIZER_DIR)
    if config.model_kind == "seq2seq" and src_tok is None:
        raise ModelError(f"{root / TOKENIZER_DIR / 'src'}: missing source tokenizer")
    check_tokenizers(root, config, src_tok, tgt_tok)
    return RuntimeModel(root, config, manifest, stepper, src_tok, tgt_tok)


def _shortlist(root: Path, config: ExportConfig, sessions: dict[str, Any],
               wanted: bool | None) -> tuple[Any, Shortlist, OutputRows | None] | None:
    """(shortlist step session, Shortlist, the rows it is fed or None) when the model decodes
    over its shortlist, else None."""
    if config.shortlist is None:
        if wanted:
            raise ModelError(f"{root}: this export has no vocabulary shortlist; export it again with "
                             "export.shortlist.mode auto or on")
        return None
    if not (config.shortlist.default if wanted is None else wanted):
        return None
    try:
        table = Shortlist.load(root / SHORTLIST_FILE, config.src_vocab_size or 0, config.tgt_vocab_size)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{root / SHORTLIST_FILE}: not a shortlist of this model: {exc}") from None
    rows = None
    if config.shortlist.rows == "fed":
        try:
            rows = OutputRows.load(root / SHORTLIST_ROWS_FILE, config.tgt_vocab_size)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{root / SHORTLIST_ROWS_FILE}: not the output rows of this model: {exc}") from None
        if (rows.scale is not None) != (config.quantized is not None):
            raise ModelError(f"{root / SHORTLIST_ROWS_FILE}: {rows.weight.dtype} rows in an export whose config.json "
                             f"says quantized: {config.quantized}")
    return sessions["step_shortlist"], table, rows


def _load_ensemble(root: Path, manifest: Manifest, providers: list, **options: Any) -> RuntimeModel:
    """An exported ensemble: every member opened (and checked: config, graphs, tokenizers) as a
    model of its own, then one RuntimeModel whose steps average theirs. The ensemble's manifest
    already hashed every member file, so the members' own manifests are read, not re-hashed."""
    spec = read_ensemble(root)
    members = []
    for name in spec.members:
        member_dir = root / name
        if not member_dir.is_dir() or is_ensemble(member_dir):
            raise ModelError(f"{member_dir}: listed in {root / 'ensemble.json'} but not an exported model")
        members.append(_open_verified(member_dir, read_manifest(member_dir), providers, **options))
    first = members[0]
    if any(m.config.model_kind != "seq2seq" for m in members):
        raise ModelError(f"{root}: every ensemble member must be a seq2seq model")
    check_same_vocabulary([str(m.model_dir) for m in members], members)
    return RuntimeModel(root, first.config, manifest, EnsembleStepper([m.stepper for m in members]),
                        first.src_tokenizer, first.tgt_tokenizer, members=members)
