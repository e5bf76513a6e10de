"""Optimizers, learning-rate schedules and early stopping, as ``train.optimizer``,
``train.schedule`` and ``train.early_stopping`` (:mod:`seqkit.train_config`) configure them."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from seqkit.errors import RecipeError
from seqkit.train_config import OptimizerConfig, ScheduleConfig

log = logging.getLogger("seqkit")


class LRSchedule:
    """Learning rate as a function of the step, plus plateau state (JSON-serializable).

    ``step`` counts the optimizer steps taken before this one (0 for the first); ``end`` is where
    linear/cosine decay reaches min_lr (:meth:`TrainConfig.schedule_end`).
    """

    def __init__(self, cfg: ScheduleConfig, base_lr: float, end: int | None = None):
        self.cfg, self.base_lr, self.end = cfg, base_lr, end
        self.scale, self.best, self.bad = 1.0, None, 0
        if cfg.type in ("linear", "cosine") and (end is None or end <= cfg.warmup_steps):
            raise ValueError(f"schedule {cfg.type!r} needs an end step after warmup_steps, got {end}")

    def lr(self, step: int) -> float:
        cfg, warm, s = self.cfg, self.cfg.warmup_steps, step + 1
        if cfg.type in ("noam", "noamwd", "rsqrt", "exponential"):
            return self.base_lr * _OPENNMT[cfg.type](cfg, s)
        if warm and step < warm:
            return self.base_lr * (step + 1) / warm
        if cfg.type in ("linear", "cosine"):
            done = min(1.0, (step - warm) / (self.end - warm))  # type: ignore[operator]  # end checked above
            left = 1.0 - done if cfg.type == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))
            return cfg.min_lr + (self.base_lr - cfg.min_lr) * left
        factor = math.sqrt(warm / max(step, 1)) if cfg.type == "inverse_sqrt" and warm else 1.0
        lr = self.base_lr * factor * self.scale
        return max(lr, cfg.min_lr) if cfg.type == "plateau" else lr

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


class EarlyStop:
    """Validations since ``metric`` last improved (JSON state, saved in every checkpoint)."""

    def __init__(self, metric: str, higher_is_better: bool):
        self.metric, self.higher_is_better = metric, higher_is_better
        self.best: float | None = None
        self.stale = 0

    def observe(self, metrics: dict[str, Any]) -> None:
        score = metrics.get(self.metric)
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            names = ", ".join(k for k, v in metrics.items() if isinstance(v, float) and k != "valid_seconds")
            raise RecipeError(f"train.early_stopping_metric: {self.metric!r} is not a number of the validation "
                              f"log line; it has {names}")
        if self.best is None or (score > self.best if self.higher_is_better else score < self.best):
            self.best, self.stale = float(score), 0
        else:
            self.stale += 1

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "stale": self.stale}

    def load(self, state: dict[str, Any]) -> None:
        self.best, self.stale = state["best"], state["stale"]


def _decays(cfg: ScheduleConfig, s: int) -> float:
    """OpenNMT-py's exponential decay: factor ** n, n = 1 at start_decay_steps, + 1 every decay_steps."""
    return cfg.factor ** (max(s - cfg.start_decay_steps + cfg.decay_steps, 0) // cfg.decay_steps)


def _noam(cfg: ScheduleConfig, s: int) -> float:
    return cfg.model_size ** -0.5 * min(s ** -0.5, s * cfg.warmup_steps ** -1.5)  # type: ignore[operator]  # validated


# OpenNMT-py's decay_method formulas (onmt/utils/optimizers.py), as factors of lr at step s >= 1.
_OPENNMT = {
    "noam": _noam,
    "noamwd": lambda cfg, s: _noam(cfg, s) * _decays(cfg, s),
    "rsqrt": lambda cfg, s: 1.0 / math.sqrt(max(s, cfg.warmup_steps)),
    "exponential": _decays,
}


def build_optimizer(cfg: OptimizerConfig, params: Any) -> torch.optim.Optimizer:
    if cfg.type == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.type == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
