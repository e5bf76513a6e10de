"""Optimizers and learning-rate schedules, as ``train.optimizer`` and ``train.schedule``
(:mod:`seqkit.train_config`) configure them."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from seqkit.train_config import OptimizerConfig, ScheduleConfig

log = logging.getLogger("seqkit")


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
