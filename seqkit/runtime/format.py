"""The exported model directory: file names, graph input/output names, config.json, manifest.json.

Everything both sides of the format need lives here, declared once: :mod:`seqkit.export`
writes with these names and :mod:`seqkit.runtime` reads with them. Imports no torch.

Layout (``MODEL_DIR``)::

    encoder.onnx          seq2seq only: (src, src_lengths) -> (memory_i..., state_i...)
    decoder_step.onnx     seq2seq: (y_prev, memory_i..., state_i...) -> (log_probs, [attention], state_out_i...)
    decoder_step_shortlist.onnx   seq2seq with a vocabulary shortlist: decoder_step.onnx's inputs
                          + candidates (C,) int64 [+ rows_weight, rows_bias[, rows_scale]]
                          -> the same outputs over the C candidate columns
    shortlist.npz         the shortlist the runtime takes a batch's candidates from (seqkit.shortlist)
    shortlist_rows.npz    the output layer's rows the runtime feeds that graph (shortlist.rows "fed")
    lm_step.onnx          language model: (y_prev, state_i...) -> (log_probs, state_out_i...)
    classifier.onnx       classifier: (src, src_lengths) -> probs (B, C); labels in config.json
    tokenizer/src/ tokenizer/tgt/   as written by seqkit.tokenizers.save_tokenizers (LM: tgt only)
    config.json           ExportConfig: task, special ids, vocabularies, search defaults, names
    manifest.json         Manifest: sha256 of every other file, seqkit version, opset, created

An exported ensemble (``seqkit export A B -o DIR``) is a directory of complete exported models
(``member-1/``, ``member-2/``, ...: each with its own config and manifest), an ``ensemble.json``
(:class:`EnsembleSpec`) naming them, and a manifest over every file, the members' included.
``load_model`` opens it as one model whose steps average the members' log-probabilities.

Shapes: B = rows (sentences, or sentences x beam), S = source length, V = target vocabulary.
``log_probs`` (B, V) float32 is log_softmax of the logits, computed inside the graph.
``attention`` (B, S) float32 is present only when the decoder attends (``has_attention``).
With ``step_top_k`` (exports since this field exists) a step graph also takes ``top_k`` (1,)
int64 and ``eos_id`` () int64 and returns ``top_log_probs`` (B, k) float32 and ``top_ids``
(B, k) int64 (ONNX TopK of ``log_probs``: best first, ties to the lower id) and
``eos_log_probs`` (B,) float32, so beam search need not fetch the (B, V) rows.
The shortlist step graph (``config.shortlist``) takes ``candidates`` (C,) int64 ascending
vocabulary ids: its ``log_probs`` (B, C) are log-probabilities of those columns, ``eos_id``
is the column of eos among them, and ``top_ids`` are vocabulary ids (mapped back in the graph).
With ``shortlist.rows`` "fed" the graph holds no output layer: the runtime takes its rows from
``shortlist_rows.npz`` once per batch (:class:`seqkit.runtime.rows.OutputRows`), those of the
candidates and then of ``shortlist.rest_sample`` = R vocabulary ids outside them (evenly spaced
over the rest), and feeds ``rows_weight`` (H, C + R) and ``rows_bias`` (C + R,) float32,
log((V - C) / R) added to the rest's biases; the graph takes one product and one log_softmax
over the C + R columns and keeps the first C: the softmax's normalizer over the whole vocabulary,
estimated as the candidates' own sum plus (V - C) / R times the sample's. In an int8 export
``rows_weight`` is int8 with ``rows_scale`` (C + R,) float32 per column (w = scale * q) and the
product is com.microsoft DynamicQuantizeMatMul. ``rest_sample`` 0 feeds the candidates' rows
alone. "graph" (exports before the field, whose ``rest_sample`` is 0) gathers the rows from the
graph's own weights at every step and normalizes over the candidates alone, which overstates
every log-probability by the mass outside them.
``probs`` (B, C) float32 is softmax of a classifier's logits over its C labels, in the graph.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seqkit.errors import ModelError
from seqkit.rundir import sha256_file
from seqkit.safepath import inside, regular_file
from seqkit.tasks import check_task_name

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
TOKENIZER_DIR = "tokenizer"
ENCODER_FILE = "encoder.onnx"
DECODER_STEP_FILE = "decoder_step.onnx"
LM_STEP_FILE = "lm_step.onnx"
CLASSIFIER_FILE = "classifier.onnx"
SHORTLIST_STEP_FILE = "decoder_step_shortlist.onnx"
SHORTLIST_FILE = "shortlist.npz"
SHORTLIST_ROWS_FILE = "shortlist_rows.npz"
ENSEMBLE_FILE = "ensemble.json"

# Input and output names of the graphs. Dynamic axes use these symbolic dimension names.
SRC, SRC_LENGTHS, Y_PREV, LOG_PROBS, ATTENTION = "src", "src_lengths", "y_prev", "log_probs", "attention"
PROBS = "probs"
TOP_K, EOS_ID, TOP_LOG_PROBS, TOP_IDS, EOS_LOG_PROBS = "top_k", "eos_id", "top_log_probs", "top_ids", "eos_log_probs"
CANDIDATES = "candidates"
# The output layer's rows fed to a "fed" shortlist graph (candidates', then the rest sample's).
ROWS_WEIGHT, ROWS_BIAS, ROWS_SCALE = "rows_weight", "rows_bias", "rows_scale"
BATCH, SRC_LEN = "batch", "src_len"
EXTENDED_VOCAB = "extended_vocab"  # log_probs columns with copy_oov: V + S


def known_format(value: int) -> int:
    if value != FORMAT_VERSION:
        raise ValueError(f"this seqkit reads format {FORMAT_VERSION}, the model is format {value}; "
                         "export it again with this seqkit, or install the seqkit that made it")
    return value


def memory_name(i: int) -> str:
    return f"memory_{i}"


def state_name(i: int) -> str:
    return f"state_{i}"


def state_out_name(i: int) -> str:
    return f"state_out_{i}"


# A dimension of a recorded tensor: an int when fixed, BATCH / SRC_LEN when dynamic.
Dim = int | Literal["batch", "src_len"]


class TensorSpec(BaseModel):
    """One memory or state tensor as the graphs exchange it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[Dim]  # e.g. [2, "batch", 512] for an LSTM hidden state (L, B, H)
    dtype: str = "float32"

    @property
    def batch_dim(self) -> int:
        """The axis beam search reorders (the position of "batch" in shape)."""
        return self.shape.index(BATCH)

    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}


class SpecialIds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pad: int
    unk: int
    bos: int
    eos: int


class ShortlistInfo(BaseModel):
    """config.json ``shortlist``: the vocabulary shortlist shipped with a seq2seq export."""

    model_config = ConfigDict(extra="forbid")

    default: bool  # used unless the caller says otherwise (the validation check at export decided)
    per_source: int = Field(ge=1)
    frequent: int = Field(ge=0)
    # Validation BLEU of the exported graphs without and with the shortlist, and the sentences decoded.
    bleu_off: float
    bleu_on: float
    sentences: int = Field(ge=0)
    # Ids outside the candidates whose logits (their rows fed with the candidates') estimate the
    # rest of the softmax normalizer; 0: normalized over the candidates (exports before this field).
    rest_sample: int = Field(0, ge=0)
    # Where the shortlist graph's output rows come from: "graph" (gathered from its own weights at
    # every step; exports before this field) or "fed" (shortlist_rows.npz, once per batch).
    rows: Literal["graph", "fed"] = "graph"

    @model_validator(mode="after")
    def _sample_needs_fed_rows(self) -> ShortlistInfo:
        if self.rest_sample and self.rows != "fed":
            raise ValueError(f"rest_sample {self.rest_sample} needs rows 'fed' (a 'graph' shortlist scores its candidates only)")
        return self


class ExportConfig(BaseModel):
    """config.json: what the runtime needs besides the graphs and the tokenizers."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    task: str  # a name in seqkit.tasks.TASKS
    model_kind: Literal["seq2seq", "lm", "classifier"]
    special_ids: SpecialIds  # of the target tokenizer (what search uses); classifier: the source one
    src_pad_id: int | None  # padding of the source batch; None for a language model
    src_vocab_size: int | None = Field(ge=1)
    tgt_vocab_size: int = Field(ge=1)  # classifier: the number of labels
    max_src_len: int = Field(ge=2, le=1_000_000)  # tokens, eos included; longer lines are truncated with a warning
    has_attention: bool
    memory: list[TensorSpec]  # batch on dim 0; empty without attention and for a language model
    state: list[TensorSpec]
    search: dict[str, Any]  # the recipe's search section (seqkit.search.SearchConfig fields)
    opset: int
    quantized: Literal["int8"] | None = None
    # The step graph has the top_k/eos_id inputs and top_log_probs/top_ids/eos_log_probs outputs;
    # False for exports made before they existed (search then reads whole log_probs rows).
    step_top_k: bool = False
    # model.decoder.copy_oov: log_probs has tgt_vocab_size + S columns, ids from tgt_vocab_size on
    # a sentence's own unknown source words (seqkit.oov); source ids are fed extended the same way.
    copy_oov: bool = False
    # Classifier only: label strings in class-id order (index = column of ``probs``).
    labels: list[str] | None = None
    shortlist: ShortlistInfo | None = None  # seq2seq only; None: no shortlist graph

    @field_validator("task", mode="before")
    @classmethod
    def _known_task(cls, value: Any) -> str:
        return check_task_name(value)

    @field_validator("format_version")
    @classmethod
    def _known_format(cls, value: int) -> int:
        return known_format(value)

    @model_validator(mode="after")
    def _labels_iff_classifier(self) -> ExportConfig:
        if (self.model_kind == "classifier") != (self.labels is not None):
            raise ValueError("labels are required for model_kind 'classifier' and only for it")
        if self.labels is not None and len(self.labels) != self.tgt_vocab_size:
            raise ValueError(f"{len(self.labels)} labels but tgt_vocab_size {self.tgt_vocab_size}")
        if self.shortlist is not None and (self.model_kind != "seq2seq" or not self.step_top_k):
            raise ValueError("shortlist is for seq2seq exports with step_top_k only")
        return self

    @property
    def graph_files(self) -> dict[str, str]:
        """Role -> file name: {"encoder", "step"[, "step_shortlist"]} for seq2seq, {"step"} for a language model,
        {"classifier"} for a classifier."""
        if self.model_kind == "lm":
            return {"step": LM_STEP_FILE}
        if self.model_kind == "classifier":
            return {"classifier": CLASSIFIER_FILE}
        files = {"encoder": ENCODER_FILE, "step": DECODER_STEP_FILE}
        if self.shortlist is not None:
            files["step_shortlist"] = SHORTLIST_STEP_FILE
        return files


class GraphIO(BaseModel):
    """Input and output names of one graph with their dynamic axes (index -> symbolic name)."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, dict[int, str]]
    outputs: dict[str, dict[int, str]]

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {**self.inputs, **self.outputs}


def encoder_io(memory: list[TensorSpec], state: list[TensorSpec]) -> GraphIO:
    """encoder.onnx: src (B, S) int64, src_lengths (B,) int64 -> memory_i..., state_i..."""
    outputs = {t.name: t.dynamic_axes() for t in (*memory, *state)}
    return GraphIO(inputs={SRC: {0: BATCH, 1: SRC_LEN}, SRC_LENGTHS: {0: BATCH}}, outputs=outputs)


def step_io(memory: list[TensorSpec], state: list[TensorSpec], has_attention: bool, copy_oov: bool = False) -> GraphIO:
    """decoder_step.onnx / lm_step.onnx: y_prev (B,) int64, memory_i..., state_i... ->
    log_probs (B, V) (B, V + S with copy_oov), [attention (B, S)], state_out_i... (same shapes
    as state_i)."""
    inputs = {Y_PREV: {0: BATCH}, **{t.name: t.dynamic_axes() for t in (*memory, *state)}}
    outputs: dict[str, dict[int, str]] = {LOG_PROBS: {0: BATCH, 1: EXTENDED_VOCAB} if copy_oov else {0: BATCH}}
    if has_attention:
        outputs[ATTENTION] = {0: BATCH, 1: SRC_LEN}
    for i, t in enumerate(state):
        outputs[state_out_name(i)] = t.dynamic_axes()
    return GraphIO(inputs=inputs, outputs=outputs)


def shortlist_step_io(memory: list[TensorSpec], state: list[TensorSpec], has_attention: bool,
                      fed: bool = False, quantized: bool = False) -> GraphIO:
    """decoder_step_shortlist.onnx: step_io's inputs + candidates (C,) int64 [+ the fed rows:
    rows_weight (H, C + R), rows_bias (C + R,)[, rows_scale (C + R,) with int8 weights]];
    log_probs (B, C)."""
    io = step_io(memory, state, has_attention)
    io.inputs[CANDIDATES] = {0: CANDIDATES}
    if fed:
        io.inputs[ROWS_WEIGHT], io.inputs[ROWS_BIAS] = {1: "rows"}, {0: "rows"}
        if quantized:
            io.inputs[ROWS_SCALE] = {0: "rows"}
    io.outputs[LOG_PROBS] = {0: BATCH, 1: CANDIDATES}
    return io


def classifier_io() -> GraphIO:
    """classifier.onnx: src (B, S) int64, src_lengths (B,) int64 -> probs (B, C) float32."""
    return GraphIO(inputs={SRC: {0: BATCH, 1: SRC_LEN}, SRC_LENGTHS: {0: BATCH}}, outputs={PROBS: {0: BATCH}})


def read_config(model_dir: Path) -> ExportConfig:
    path = Path(model_dir) / CONFIG_FILE
    try:
        return ExportConfig.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ModelError(f"{path}: missing (not an exported seqkit model?)") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ModelError(f"{path}: {where}: {first['msg'].removeprefix('Value error, ')}") from None


# -- ensembles ------------------------------------------------------------------------------------
class EnsembleSpec(BaseModel):
    """ensemble.json: the member directories (``member-N`` beside it), decoded as one model."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    task: Literal["translation", "summarization"]
    members: list[Annotated[str, Field(pattern=r"^member-[1-9][0-9]{0,3}$")]] = Field(min_length=2)

    @field_validator("format_version")
    @classmethod
    def _known(cls, value: int) -> int:
        return known_format(value)


def is_ensemble(model_dir: Path) -> bool:
    return (Path(model_dir) / ENSEMBLE_FILE).is_file()


def read_ensemble(model_dir: Path) -> EnsembleSpec:
    path = Path(model_dir) / ENSEMBLE_FILE
    try:
        return EnsembleSpec.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ModelError(f"{path}: {where}: {first['msg'].removeprefix('Value error, ')}") from None


# -- manifest ------------------------------------------------------------------------------------
class Manifest(BaseModel):
    """manifest.json: the sha256 of every other file (paths relative, '/'-separated)."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    seqkit_version: str
    opset: int
    created: str  # ISO 8601, UTC
    quantized: Literal["int8"] | None = None
    files: dict[str, str]
    # What export measured: max |torch - onnxruntime| per output, greedy agreement, ...
    verification: dict[str, Any] = Field(default_factory=dict)


def model_files(model_dir: Path) -> list[str]:
    """Every file under model_dir except the manifest, as sorted relative '/' paths.

    Symlinks are not followed out of the directory: one whose target resolves outside it (file or
    directory) is a ModelError, and one to a directory is not walked into.
    """
    root = Path(model_dir)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if path.is_symlink():
                inside(root, path.relative_to(root).as_posix(), str(root))
        for name in filenames:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != MANIFEST_FILE:
                found.append(rel)
    return sorted(found)


def hash_files(model_dir: Path) -> dict[str, str]:
    return {name: sha256_file(Path(model_dir) / name) for name in model_files(model_dir)}


def write_manifest(model_dir: Path, manifest: Manifest) -> None:
    (Path(model_dir) / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=1) + "\n", encoding="utf-8")


def read_manifest(model_dir: Path) -> Manifest:
    """manifest.json parsed, nothing hashed (``verify_manifest`` checks the files too)."""
    root = Path(model_dir)
    path = inside(root, MANIFEST_FILE, str(root))
    if not path.is_file():
        raise ModelError(f"{path}: missing; {root} is not an exported seqkit model (see `seqkit export`)")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise ModelError(f"{path}: unreadable manifest ({exc.errors()[0]['msg']})") from None


def verify_manifest(model_dir: Path) -> Manifest:
    """Read manifest.json and check it against the directory.

    Raises ModelError naming the file: manifest missing or unreadable, a listed file missing,
    a sha256 mismatch, or a file the manifest does not list (a file added after export).
    """
    root = Path(model_dir)
    manifest = read_manifest(root)
    path = root / MANIFEST_FILE
    for name, digest in manifest.files.items():
        # Checked before anything is opened, and worded alike whether or not an outside file exists.
        fpath = inside(root, name, f"{path}: files")
        if not regular_file(fpath):
            raise ModelError(f"{fpath}: listed in {MANIFEST_FILE} but missing")
        if sha256_file(fpath) != digest:
            raise ModelError(f"{fpath}: sha256 mismatch with {MANIFEST_FILE}; the file is corrupt or was modified")
    extra = [name for name in model_files(root) if name not in manifest.files]
    if extra:
        raise ModelError(f"{root / extra[0]}: not listed in {MANIFEST_FILE} (added after export?)")
    return manifest
