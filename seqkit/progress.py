"""The training progress bar (tqdm, when ``train.progress``) and the throughput window behind
the ``train`` events of metrics.jsonl."""

from __future__ import annotations

from typing import Any


class Progress:
    """tqdm bar (when enabled) plus running throughput for the log."""

    def __init__(self, cfg: Any, step: int, bar: bool = True):
        self.cfg = cfg
        self.window_tokens, self.window_seconds, self.window_nll = 0, 0.0, 0.0
        self.bar = None
        if cfg.progress and bar:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.max_steps, initial=step, unit="step", dynamic_ncols=True, mininterval=1.0)

    def update(self, trainer: Any, stats: dict[str, float]) -> None:
        self.window_tokens += stats["tokens"]
        self.window_seconds += stats["seconds"]
        self.window_nll += stats["nll"]
        self.last_lr = stats["lr"]
        self.trainer = trainer
        if self.bar is not None:
            self.bar.update(1)
            if trainer.step % 10 == 0:
                snap = self._rates()
                eta = ""
                if self.cfg.max_time:
                    eta = f"{max(self.cfg.max_time - trainer.elapsed, 0) / 60:.1f}m left"
                self.bar.set_postfix_str(f"ep {trainer.epoch} loss {snap['loss']:.3f} {snap['tok_s']:.0f} tok/s lr {self.last_lr:.2g} {eta}")

    def _rates(self) -> dict[str, float]:
        tokens = max(self.window_tokens, 1)
        return {"loss": self.window_nll / tokens, "tok_s": self.window_tokens / max(self.window_seconds, 1e-9)}

    def snapshot(self) -> dict[str, float]:
        snap = {**self._rates(), "lr": self.last_lr}
        self.window_tokens, self.window_seconds, self.window_nll = 0, 0.0, 0.0
        return snap

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
