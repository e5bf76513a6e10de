"""Training progress for a person and for a log: a tqdm bar when stderr is a terminal, a plain
line every ``train.log_every`` steps otherwise (and always in train.log), and the throughput
window behind the ``train`` events of metrics.jsonl.

The bar measures the budget that will stop the run: of ``max_steps``, ``max_time`` and
``max_epochs``, whichever is nearest to done. Log lines print above the bar (tqdm's
``logging_redirect_tqdm``), never through it, and a log file never receives ``\\r`` frames.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, TextIO

log = logging.getLogger("seqkit")
progress_log = logging.getLogger("seqkit.progress")  # the periodic training lines

# Libraries that chatter on their own loggers about things the user did not ask for.
QUIET_LOGGERS = ("datasets", "sacrebleu", "filelock", "fsspec", "urllib3", "huggingface_hub")


def configure_logging(verbose: bool = False, stream: TextIO | None = None) -> None:
    """The CLI's logging: ``LEVEL message`` lines on stderr; third-party chatter at ERROR."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s",
                        stream=stream or sys.stderr)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.ERROR)


def budget(cfg: Any, trainer: Any, n_batches: int) -> tuple[float, str]:
    """(fraction done, description) of the budget nearest to stopping the run."""
    candidates = []
    if cfg.max_steps is not None:
        candidates.append((trainer.step / cfg.max_steps, f"step {trainer.step}/{cfg.max_steps}"))
    if cfg.max_time is not None:
        candidates.append((trainer.elapsed / cfg.max_time,
                           f"{trainer.elapsed / 60:.1f}/{cfg.max_time / 60:.1f} min"))
    if cfg.max_epochs is not None:
        epochs = trainer.epoch + trainer.batch_in_epoch / max(n_batches, 1)
        candidates.append((epochs / cfg.max_epochs, f"epoch {epochs:.2f}/{cfg.max_epochs}"))
    if not candidates:  # no budget: only early stopping or Ctrl-C ends the run
        return 0.0, f"step {trainer.step}"
    fraction, text = max(candidates)
    return min(fraction, 1.0), text


class Progress:
    """The bar (a terminal, ``train.progress`` on, rank 0) plus running throughput for the log."""

    BAR_STEPS = 1000  # the bar's resolution: thousandths of the budget

    def __init__(self, cfg: Any, step: int, bar: bool = True, stream: TextIO | None = None):
        self.cfg = cfg
        self.window_tokens, self.window_seconds, self.window_nll = 0, 0.0, 0.0
        self.last_lr = 0.0
        self.bar = None
        stream = stream or sys.stderr
        if cfg.progress and bar and stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.BAR_STEPS, file=stream, dynamic_ncols=True, mininterval=1.0,
                            bar_format="{percentage:3.0f}%|{bar}| {postfix}")
        self._route_lines(to_file_only=self.bar is not None)

    @staticmethod
    def _route_lines(to_file_only: bool) -> None:
        # With a bar on screen the periodic lines would repeat it: they go to train.log only.
        progress_log.propagate = not to_file_only
        progress_log.handlers = [h for h in log.handlers if isinstance(h, logging.FileHandler)] if to_file_only else []

    @contextlib.contextmanager
    def above_bar(self) -> Iterator[None]:
        """Log records print above the bar instead of through it while the bar is shown."""
        if self.bar is None:
            yield
            return
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            yield

    def update(self, trainer: Any, stats: dict[str, float], n_batches: int = 0) -> None:
        self.window_tokens += stats["tokens"]
        self.window_seconds += stats["seconds"]
        self.window_nll += stats["nll"]
        self.last_lr = stats["lr"]
        if self.bar is not None:
            fraction, text = budget(self.cfg, trainer, n_batches)
            snap = self._rates()
            self.bar.set_postfix_str(f"{text} | ep {trainer.epoch} | loss {snap['loss']:.3f} | "
                                     f"{snap['tok_s']:.0f} tok/s | lr {self.last_lr:.2g}", refresh=False)
            self.bar.update(int(fraction * self.BAR_STEPS) - self.bar.n)

    def log_line(self, trainer: Any, snap: dict[str, float], n_batches: int = 0) -> None:
        """The plain progress line of a log_every step (stderr without a bar; train.log always)."""
        _, text = budget(self.cfg, trainer, n_batches)
        progress_log.info("step %d train: loss %.4f, %.0f tok/s, lr %.3g (%s)", trainer.step, snap["loss"],
                          snap["tok_s"], snap["lr"], text)

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
        self._route_lines(to_file_only=False)
