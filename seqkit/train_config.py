"""The recipe's ``train:`` section (:class:`TrainConfig`) and its optimizer and schedule parts.

Torch-free, like every recipe section's config, so that ``seqkit recipe check`` and the runtime
read a recipe without importing torch; :mod:`seqkit.train` and :mod:`seqkit.optim` use them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    model_config = ConfigDict(extra="forbid")

    # constant: lr (after linear warmup); inverse_sqrt: lr * sqrt(warmup / step) after warmup;
    # plateau: multiply by `factor` when the validation metric has not improved `patience` times.
    type: Literal["constant", "inverse_sqrt", "plateau"] = "constant"
    warmup_steps: int = Field(0, ge=0, le=10**9)
    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(2, ge=1)
    min_lr: float = Field(1e-6, ge=0, allow_inf_nan=False)


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
    max_steps: int | None = Field(None, gt=0)
    max_epochs: int | None = Field(30, gt=0)
    max_time: float | None = Field(None, gt=0, allow_inf_nan=False)  # seconds; YAML accepts 90s / 15m / 2h
    valid_every: int = Field(1000, gt=0)  # optimizer steps between validations
    save_every: int | None = Field(None, gt=0)  # steps between checkpoints besides validations (none: only those)
    valid_metric_max_sentences: int | None = Field(None, gt=0)  # decode only the first N for the metric
    valid_strategy: Literal["greedy", "beam"] = "greedy"  # decoding used for the validation metric
    early_stopping: int | None = Field(None, gt=0)  # validations without improvement before stopping
    # Most recent checkpoints kept besides best: enough for `seqkit average --last 5` (docs/cli.md).
    keep_checkpoints: int = Field(5, ge=1)
    ema: float | None = Field(None, gt=0, lt=1)  # decay of a moving average of the weights, saved beside them
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["none", "bf16", "fp16"] = "none"  # autocast: bf16 on GPU or a CPU with native bf16; fp16 GPU only
    num_threads: int | None = Field(None, gt=0, le=1024)  # torch intra-op threads on CPU (10^6 segfaults torch)
    log_every: int = Field(50, gt=0)
    max_bad_steps: int = Field(5, ge=1)  # consecutive non-finite losses before aborting
    progress: bool = True

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
