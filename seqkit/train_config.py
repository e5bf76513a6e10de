"""The recipe's ``train:`` section (:class:`TrainConfig`) and its optimizer and schedule parts.

Torch-free, like every recipe section's config, so that ``seqkit recipe check`` and the runtime
read a recipe without importing torch; :mod:`seqkit.train` and :mod:`seqkit.optim` use them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seqkit.devices import DEVICE_HELP, DEVICE_PATTERN


class OptimizerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["adam", "adamw", "sgd"] = "adam"
    # Bounded so that a typo (weight_decay 1e308, betas [2, 5]) fails at load, not as a torch traceback.
    lr: float = Field(1e-3, gt=0, le=100, allow_inf_nan=False)
    weight_decay: float = Field(0.0, ge=0, le=1)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    momentum: float = Field(0.0, ge=0, lt=1)  # sgd only


class ScheduleConfig(BaseModel):
    """``train.schedule``: the learning rate at optimizer step s (1-based), with lr the optimizer's
    and w = warmup_steps (formulas in docs/recipes.md, "Learning-rate schedules")."""

    model_config = ConfigDict(extra="forbid")

    # constant: lr (after linear warmup); inverse_sqrt: lr * sqrt(warmup / step) after warmup;
    # plateau: multiply by `factor` when the validation metric has not improved `patience` times.
    # OpenNMT-py's decay_method: noam (lr * model_size^-0.5 * min(s^-0.5, s * w^-1.5)), noamwd
    # (noam * exponential's decay), rsqrt (lr / sqrt(max(s, w))), exponential (its decay_method
    # none: lr * factor^n, n = decays passed: the first at start_decay_steps, then every decay_steps).
    # linear, cosine (fairseq, JoeyNMT): after linear warmup, from lr to min_lr at total_steps.
    type: Literal["constant", "inverse_sqrt", "plateau", "noam", "noamwd", "rsqrt", "exponential", "linear",
                  "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0, le=10**9)
    factor: float = Field(0.5, gt=0, lt=1)  # plateau, exponential, noamwd: the multiplier of each decay
    patience: int = Field(2, ge=1)
    min_lr: float = Field(1e-6, ge=0, allow_inf_nan=False)  # plateau's floor; linear/cosine's end
    model_size: int | None = Field(None, gt=0, le=10**6)  # noam, noamwd: d_model (OpenNMT-py: the hidden size)
    decay_steps: int = Field(10_000, gt=0, le=10**9)  # exponential, noamwd: steps between decays
    start_decay_steps: int = Field(0, ge=0, le=10**9)  # exponential, noamwd: the step of the first decay
    total_steps: int | None = Field(None, gt=0, le=10**12)  # linear, cosine: where min_lr is reached (default train.max_steps)

    @model_validator(mode="after")
    def _needs(self) -> ScheduleConfig:
        if self.type in ("noam", "noamwd") and (self.model_size is None or self.warmup_steps == 0):
            raise ValueError(f"type '{self.type}' needs model_size (the model's hidden size, as OpenNMT-py's "
                             "decay uses it) and warmup_steps > 0")
        if self.type in ("linear", "cosine") and self.total_steps is not None and self.total_steps <= self.warmup_steps:
            raise ValueError(f"total_steps ({self.total_steps}) must be more than warmup_steps ({self.warmup_steps})")
        return self


# Validation metrics where lower is better (early_stopping_metric); every other one: higher.
LOWER_IS_BETTER = frozenset({"loss", "ppl", "bits_per_char"})

class SubwordSampling(BaseModel):
    """``train.subword_sampling``: each epoch segments the training pairs anew with the
    tokenizer's sampling (sentencepiece: unigram subword regularization or BPE-dropout).
    Validation, evaluation, translation and exported models keep the deterministic segmentation."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.1, gt=0, le=1, allow_inf_nan=False)  # unigram: smoothing; bpe: merge-dropout probability
    # unigram: sample among the n best segmentations; -1: all of them. 64 is Kudo (2018)'s l=64: with
    # -1, alpha 0.1 doubled the pieces per sentence on Multi30k and cost 19 BLEU (docs/benchmarks.md).
    nbest_size: int = Field(64, ge=-1, le=10_000)
    sides: Literal["both", "source", "target"] = "both"

    @field_validator("nbest_size")
    @classmethod
    def _samples(cls, value: int) -> int:
        if value in (0, 1):
            raise ValueError(f"nbest_size {value} would not sample; use -1 (all segmentations) or 2 and more")
        return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


def parse_duration(value: Any) -> float | None:
    """``90``/``90s`` -> 90.0, ``15m`` -> 900.0, ``1.5h`` -> 5400.0 seconds."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like 90s, 15m or 2h, got {value!r}")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


class TrainConfig(BaseModel):
    """The recipe's ``train:`` section; every default lives here."""

    model_config = ConfigDict(extra="forbid")

    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    batch_tokens: int = Field(4096, gt=0, le=10**8)  # padded tokens per batch (seq2seq)
    batch_size: int = Field(64, gt=0, le=10**6)  # streams per batch (language model)
    bptt: int = Field(128, gt=0, le=10**6)  # truncated-BPTT length (language model)
    accumulate: int = Field(1, ge=1, le=10**6)  # batches per optimizer step
    clip_grad_norm: float | None = Field(1.0, gt=0, allow_inf_nan=False)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    # Translation/summarization: each decoder input token (not bos) becomes unk with this
    # probability during training (word dropout, Bowman et al. 2016); validation reads them all.
    word_dropout: float = Field(0.0, ge=0, lt=1)
    # With model.decoder.copy_oov: each known source word of a training pair becomes an unknown
    # one (read as unk, emitted only by copying, in the target too) with this probability.
    oov_dropout: float = Field(0.0, ge=0, lt=1)
    # Weight of See et al.'s coverage loss, sum_t sum_i min(a_t,i, cov_t,i) per target token;
    # needs model.decoder.coverage: true. 0 = coverage without the loss.
    coverage_loss: float = Field(0.0, ge=0, le=100, allow_inf_nan=False)
    max_steps: int | None = Field(None, gt=0)
    max_epochs: int | None = Field(30, gt=0)
    max_time: float | None = Field(None, gt=0, allow_inf_nan=False)  # seconds; YAML accepts 90s / 15m / 2h
    valid_every: int = Field(1000, gt=0)  # optimizer steps between validations
    save_every: int | None = Field(None, gt=0)  # steps between checkpoints besides validations (none: only those)
    valid_metric_max_sentences: int | None = Field(None, gt=0)  # decode only the first N for the metric
    valid_strategy: Literal["greedy", "beam"] = "greedy"  # decoding used for the validation metric
    early_stopping: int | None = Field(None, gt=0)  # validations without improvement before stopping
    # The validation metric early_stopping watches (a name of the validation log line, e.g. loss,
    # ppl, chrf); None: the one checkpoints are selected on. Lower is better for LOWER_IS_BETTER.
    early_stopping_metric: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    subword_sampling: SubwordSampling | None = None  # translation/summarization, in-memory data
    # Most recent checkpoints kept besides best: enough for `seqkit average --last 5` (docs/cli.md).
    keep_checkpoints: int = Field(5, ge=1)
    ema: float | None = Field(None, gt=0, lt=1)  # decay of a moving average of the weights, saved beside them
    # Validate, early-stop and choose `best` on that moving average instead of the live weights;
    # evaluate, translate, export and serve of the run then load the averaged weights.
    validate_ema: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["none", "bf16", "fp16"] = "none"  # autocast: bf16 on GPU or a CPU with native bf16; fp16 GPU only
    num_threads: int | None = Field(None, gt=0, le=1024)  # torch intra-op threads on CPU (10^6 segfaults torch)
    log_every: int = Field(50, gt=0)
    max_bad_steps: int = Field(5, ge=1)  # consecutive non-finite losses before aborting
    progress: bool = True

    @model_validator(mode="after")
    def _schedule_end(self) -> TrainConfig:
        if self.validate_ema and self.ema is None:
            raise ValueError("validate_ema needs ema: the moving average of the weights it validates "
                             "(set train.ema, e.g. 0.999, or validate_ema: false)")
        if self.early_stopping_metric is not None and self.early_stopping is None:
            raise ValueError("early_stopping_metric needs early_stopping: the validations without improvement "
                             "to stop after")
        schedule = self.schedule
        if schedule.type in ("linear", "cosine") and schedule.total_steps is None:
            if self.max_steps is None:
                raise ValueError(f"schedule type '{schedule.type}' needs schedule.total_steps or max_steps: the "
                                 "step where the learning rate reaches min_lr")
            if self.max_steps <= schedule.warmup_steps:
                raise ValueError(f"schedule type '{schedule.type}' decays until max_steps ({self.max_steps}), which "
                                 f"must be more than schedule.warmup_steps ({schedule.warmup_steps})")
        return self

    def schedule_end(self) -> int | None:
        """The step linear/cosine decay ends at: schedule.total_steps, else max_steps."""
        return self.schedule.total_steps if self.schedule.total_steps is not None else self.max_steps

    @field_validator("max_time", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return parse_duration(value)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not DEVICE_PATTERN.fullmatch(value):
            raise ValueError(f"expected {DEVICE_HELP}, got {value!r}")
        return value
