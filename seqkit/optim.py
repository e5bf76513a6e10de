"""Optimizers and learning-rate schedules, as ``train.optimizer`` and ``train.schedule`` configure them."""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("seqkit")


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


class LRSchedule:
    """Learning rate as a function of the step, plus plateau state (JSON-serializable)."""

    def __init__(self, cfg: ScheduleConfig, base_lr: float):
        self.cfg, self.base_lr = cfg, base_lr
        self.scale, self.best, self.bad = 1.0, None, 0

    def lr(self, step: int) -> float:
        warm = self.cfg.warmup_steps
        if warm and step < warm:
            factor = (step + 1) / warm
        elif self.cfg.type == "inverse_sqrt" and warm:
            factor = math.sqrt(warm / max(step, 1))
        else:
            factor = 1.0
        lr = self.base_lr * factor * self.scale
        return max(lr, self.cfg.min_lr) if self.cfg.type == "plateau" else lr

    def observe(self, score: float, higher_is_better: bool) -> None:
        if self.cfg.type != "plateau":
            return
        improved = self.best is None or (score > self.best if higher_is_better else score < self.best)
        if improved:
            self.best, self.bad = score, 0
            return
        self.bad += 1
        if self.bad >= self.cfg.patience:
            self.scale *= self.cfg.factor
            self.bad = 0
            log.info("plateau: learning rate scaled to %.3g x base", self.scale)

    def state(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load(self, state: dict[str, Any]) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], state["bad"]


def build_optimizer(cfg: OptimizerConfig, params: Any) -> torch.optim.Optimizer:
    if cfg.type == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.type == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
