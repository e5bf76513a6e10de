"""The training loop: one Trainer for every task (the task adapter supplies batches and loss).

Checkpoints are safetensors + JSON written atomically (:mod:`seqkit.checkpoint`); ``resume``
continues the exact step, optimizer, schedule, RNG and data position (epoch, batch index).
Under ``torchrun`` the same loop runs in every process; :mod:`seqkit.distributed` supplies the
DDP step and the rank-0-only writing (docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import torch

from seqkit import checkpoint as ckpt
from seqkit import distributed
from seqkit.devices import torch_device
from seqkit.ema import EMA_FILE, WeightEMA
from seqkit.errors import CheckpointError, SeqkitError
from seqkit.optim import EarlyStop, LRSchedule, build_optimizer
from seqkit.progress import Progress
from seqkit.train_config import LOWER_IS_BETTER, TrainConfig

log = logging.getLogger("seqkit")


def pick_device(name: str) -> torch.device:
    return torch_device(name, "train.device")


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype that ``train.amp`` gives on ``device``; None means fp32.

    bf16 runs on CUDA and on CPUs with native bf16 instructions (avx512_bf16 or AMX, where
    oneDNN's bf16 kernels are fast); elsewhere it would be emulated and slower, so training
    stays fp32 with a warning. fp16 is CUDA only (it needs the gradient scaler).
    """
    if amp == "none":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if device.type == "cpu" and amp == "bf16":
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.bfloat16
        log.warning("train.amp: bf16 needs a CPU with native bf16 (avx512_bf16 or AMX); this one has none, "
                    "so training runs in fp32")
        return None
    log.warning(f"train.amp: {amp} runs on CUDA only; training on {device.type} runs in fp32")
    return None


class Trainer:
    """Runs ``task`` (a task's adapter, :meth:`seqkit.tasks.Task.trainable`) for ``cfg`` and
    writes into ``run_dir``."""

    def __init__(self, task: Any, cfg: TrainConfig, run_dir: Path, *, seed: int, metric: tuple[str, bool],
                 dist: distributed.DistContext | None = None):
        self.task, self.cfg, self.run_dir = task, cfg, run_dir
        self.metric_name, self.higher_is_better = metric
        self.device = task.device
        self.model = task.model
        self.optimizer = build_optimizer(cfg.optimizer, self.model.parameters())
        self.schedule = LRSchedule(cfg.schedule, cfg.optimizer.lr, cfg.schedule_end())
        self.seed = seed
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.elapsed = 0.0  # wall-clock seconds in fit() (training + validation), summed across resumes
        self._clock: tuple[float, float] | None = None  # (perf_counter at fit start, elapsed then)
        self.best: float | None = None
        self.stale = 0  # validations without improvement
        # What train.early_stopping watches: the checkpoint metric, or train.early_stopping_metric.
        self.stop = EarlyStop(cfg.early_stopping_metric or self.metric_name,
                              self.higher_is_better if cfg.early_stopping_metric is None
                              else cfg.early_stopping_metric not in LOWER_IS_BETTER)
        self.history_tokens = 0
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" and self.device.type == "cuda" else None
        self._amp_dtype = amp_dtype(cfg.amp, self.device)
        self._interrupted = False
        self._bad_in_a_row = 0  # consecutive skipped (non-finite) steps
        self._writer = None
        self.dist = dist  # None: one process; else torchrun rank (see seqkit.distributed)
        self.is_main = dist is None or dist.is_main  # only rank 0 writes into run_dir
        # The step hook: where the forward runs, and what crosses processes (seqkit.distributed).
        self.steps: LocalSteps | distributed.DDPTraining = (
            distributed.DDPTraining(dist, self.model, task) if dist is not None else LocalSteps(self.model))
        self._ema = WeightEMA(self.model, cfg.ema) if cfg.ema else None

    # -- resume ------------------------------------------------------------------------------
    def resume(self) -> None:
        path = ckpt.resolve_checkpoint(self.run_dir, "last")
        state = ckpt.load_checkpoint_state(path)
        if "averaged_from" in state:
            raise CheckpointError(f"{path}: an average of checkpoints (seqkit average) holds no optimizer or "
                                  "data position to resume from; resume one of the runs it was made from")
        ckpt.check_resume_state(state, path)
        ckpt.load_model_tensors(self.model, path / "model.safetensors")
        ckpt.load_optimizer(self.optimizer, path, state["optimizer"])
        if self._ema is not None:
            self._ema.load(path)
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.elapsed, self.best, self.stale = state["elapsed"], state["best"], state["stale"]
        # Checkpoints from before early_stopping_metric tracked only the checkpoint metric.
        self.stop.load(state.get("early_stopping", {"best": self.best, "stale": self.stale}))
        self.history_tokens = state.get("tokens", 0)
        self.schedule.load(state["schedule"])
        ckpt.set_rng_state(state["rng"])
        if self.dist is not None:
            distributed.restore_rng(self.dist, state, self.seed)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path.name, self.step, self.epoch, self.batch_in_epoch)

    def _state(self, metrics: dict[str, Any]) -> dict[str, Any]:
        state = {
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "elapsed": self.elapsed,
            "best": self.best, "stale": self.stale, "tokens": self.history_tokens,
            "schedule": self.schedule.state(), "metrics": metrics, "early_stopping": self.stop.state(),
        }
        if self.dist is not None:  # a collective: every rank calls save()
            state["rng_ranks"] = distributed.gather_rng(self.dist)
        return state

    def save(self, metrics: dict[str, Any], is_best: bool = False) -> None:
        pointers = ("last", "best") if is_best else ("last",)
        state = self._state(metrics)
        if self.is_main:
            extra = {EMA_FILE: self._ema.tensors(self.model)} if self._ema is not None else None
            ckpt.save_checkpoint(self.run_dir / "checkpoints", self.step, self.model, self.optimizer,
                                 state, pointers=pointers, keep=self.cfg.keep_checkpoints, extra=extra)

    # -- logging -------------------------------------------------------------------------------
    def _log_event(self, event: dict[str, Any]) -> None:
        if not self.is_main:
            return
        event = {"step": self.step, "epoch": self.epoch, "time": round(self.elapsed, 2), **event}
        try:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(event) + "\n")
        except OSError as exc:
            raise CheckpointError(f"{self.run_dir / 'metrics.jsonl'}: cannot write: {exc.strerror or exc}") from None
        if self._writer is not None:
            for key, value in event.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self._writer.add_scalar(f"{event.get('split', 'train')}/{key}", value, self.step)

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional: metrics.jsonl always has the numbers
            log.warning("tensorboard not installed; logging to metrics.jsonl only")
            return
        self._writer = SummaryWriter(str(self.run_dir / "tb"))

    # -- the loop -------------------------------------------------------------------------------
    def _done(self) -> str | None:
        cfg = self.cfg
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            return f"reached max_steps={cfg.max_steps}"
        if cfg.max_time is not None and self.elapsed >= cfg.max_time:
            return f"reached max_time={cfg.max_time:.0f}s"
        if cfg.max_epochs is not None and self.epoch >= cfg.max_epochs:
            return f"reached max_epochs={cfg.max_epochs}"
        if cfg.early_stopping is not None and self.stop.stale >= cfg.early_stopping:
            return f"early stopping: {self.stop.metric} did not improve for {self.stop.stale} validations"
        if self._interrupted:
            return "interrupted"
        return None

    def fit(self) -> dict[str, Any]:
        """Train until a limit is reached; returns the last validation metrics."""
        if self.is_main:
            self._open_tensorboard()
        # SIGTERM (systemd, docker stop, a batch scheduler) gets the same save-then-exit as Ctrl-C.
        previous = {sig: signal.signal(sig, self._on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)}
        progress = Progress(self.cfg, self.step, bar=self.is_main)
        self._clock = (time.perf_counter(), self.elapsed)
        try:
            with progress.above_bar():
                reason, last_metrics = self._loop(progress)
                log.info("stopping: %s", reason)
                if self.steps.distributed and self._interrupted:
                    # torchrun SIGKILLs its workers 30 s after forwarding Ctrl-C: save, skip validation.
                    last_metrics = {"step": self.step, "interrupted": True}
                    self.save(last_metrics)
                elif not last_metrics or last_metrics.get("step") != self.step:
                    last_metrics = self.validate_and_save()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            progress.close()
            if self._writer is not None:
                self._writer.close()
        return last_metrics

    def _loop(self, progress: Progress) -> tuple[str, dict[str, Any]]:
        """Steps, logging and validations until a budget ends the run: (why it stopped, last metrics)."""
        span = self.steps.span(self.cfg.accumulate)
        last_metrics: dict[str, Any] = {}
        reason = self._done()
        while reason is None:
            batches = self.task.batches(self.epoch, self.seed)
            while self.batch_in_epoch < len(batches) and reason is None:
                group = batches[self.batch_in_epoch : self.batch_in_epoch + span]
                before = self.step
                stats = self._train_step(group)
                self._tick()
                self.batch_in_epoch += len(group)
                progress.update(self, stats, len(batches))
                if self.step > before and self.step % self.cfg.log_every == 0:
                    snap = progress.snapshot()
                    progress.log_line(self, snap, len(batches))
                    self._log_event({"split": "train", **snap})
                stepped = self.step > before
                if stepped and self.step % self.cfg.valid_every == 0:
                    last_metrics = self.validate_and_save()  # shares the clock under DDP itself
                else:
                    if stepped and self.cfg.save_every and self.step % self.cfg.save_every == 0:
                        self.save({"step": self.step})  # a checkpoint for averaging, no validation
                    if self.steps.distributed:
                        self._share_stop()
                reason = self._done()
            if self.batch_in_epoch >= len(batches):
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                self.task.end_epoch()
                reason = self._done()
        return reason, last_metrics

    def close(self) -> None:
        """Free the DDP wrapper before the process group is destroyed (see distributed.teardown)."""
        self.steps.close()

    def _tick(self) -> None:
        start, base = self._clock
        self.elapsed = base + time.perf_counter() - start

    def set_elapsed(self, seconds: float) -> None:
        """Move the training clock (under DDP: to the slowest rank's), later ticks counting on from it."""
        self.elapsed = seconds
        if self._clock is not None:
            self._clock = (time.perf_counter(), seconds)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._interrupted:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        self._interrupted = True
        log.warning("interrupt: finishing this step, saving a checkpoint, then exiting (Ctrl-C again to abort)")

    def _share_stop(self) -> None:
        """Under DDP: every rank takes the interrupt any rank saw, and the slowest rank's clock."""
        self._interrupted, elapsed = self.steps.share_stop(self._interrupted, self.elapsed)
        self.set_elapsed(elapsed)

    def _train_step(self, group: list[Any]) -> dict[str, float]:
        """One optimizer step over ``group`` (``steps.span`` batches of the epoch's order): the
        batches this process runs, each backward in the hook's context, the totals reduced by it."""
        start = time.perf_counter()
        lr = self._start_step()
        work = self.steps.local_work(group)
        total_loss, total_tokens, bad = 0.0, 0, False
        for i, (batch, weight) in enumerate(work):
            with self.steps.backward_context(last=i == len(work) - 1):
                with self._autocast():
                    loss_sum, ntokens, nll_sum = self.task.loss(batch, self.steps.model)
                loss = loss_sum / max(ntokens, 1) * weight
                bad = bad or not bool(torch.isfinite(loss))
                self._backward(loss)
            if weight > 0:
                total_loss += float(nll_sum.detach())
                total_tokens += int(ntokens)
        total_loss, total_tokens, bad = self.steps.reduce(total_loss, total_tokens, bad)
        if bad:  # a non-finite loss anywhere: the step is skipped (on every rank)
            self.optimizer.zero_grad(set_to_none=True)
            return self._bad_step(start)
        return self._apply_gradients(start, lr, total_loss, total_tokens)

    def _start_step(self) -> float:
        self.model.train()
        lr = self.schedule.lr(self.step)
        for pg in self.optimizer.param_groups:
            pg["lr"] = lr
        return lr

    def _autocast(self) -> torch.autocast:
        dtype = self._amp_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def _apply_gradients(self, start: float, lr: float, total_loss: float, total_tokens: int) -> dict[str, float]:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.clip_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
            if not torch.isfinite(norm):
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler:
                    return self._overflow_step()
                return self._bad_step(start)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self._ema is not None:
            self._ema.update(self.step)
        self._bad_in_a_row = 0
        self.history_tokens += total_tokens
        seconds = time.perf_counter() - start
        return {"nll": total_loss, "tokens": total_tokens, "seconds": seconds, "lr": lr}

    def _overflow_step(self) -> dict[str, float]:
        """fp16: the scaled gradients overflowed (a finite loss, inf gradients). That is the grad
        scaler's normal search for its scale, not divergence: skip the step and let the scaler
        lower its scale (unscale_ recorded the infs). Counting these as bad steps would abort a
        healthy run in its first steps, and skipping update() would keep the scale that overflowed."""
        self.scaler.update()
        log.debug("fp16 gradient overflow at step %d: step skipped, grad scale now %g", self.step, self.scaler.get_scale())
        return {"nll": 0.0, "tokens": 0, "seconds": 0.0, "lr": 0.0}

    def _bad_step(self, start: float) -> dict[str, float]:
        self._bad_in_a_row += 1
        log.warning("non-finite loss or gradient at step %d: step skipped (%d in a row)", self.step, self._bad_in_a_row)
        if self._bad_in_a_row >= self.cfg.max_bad_steps:
            raise SeqkitError(
                f"training diverged: {self._bad_in_a_row} consecutive non-finite losses at step {self.step}; "
                "lower train.optimizer.lr, set train.clip_grad_norm, or check the data. "
                "The last good checkpoint is untouched."
            )
        return {"nll": 0.0, "tokens": 0, "seconds": 0.0, "lr": 0.0}

    def validate_and_save(self) -> dict[str, Any]:
        start = time.perf_counter()
        metrics: dict[str, Any] = {}
        if self.is_main:  # under DDP rank 0 validates alone and shares the numbers
            averaged = self._ema.applied() if self._ema is not None and self.cfg.validate_ema else contextlib.nullcontext()
            with averaged:
                metrics = self.task.validate(self.cfg)
            metrics["valid_seconds"] = round(time.perf_counter() - start, 2)
            metrics["step"] = self.step
            if self.device.type == "cuda":  # the only record of it: nothing else watches the GPU
                metrics["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
        if self.dist is not None:
            metrics = distributed.broadcast(self.dist, metrics)
        score = metrics[self.metric_name]
        improved = self.best is None or (score > self.best if self.higher_is_better else score < self.best)
        if improved:
            self.best, self.stale = score, 0
        else:
            self.stale += 1
        self.stop.observe(metrics)
        self.schedule.observe(score, self.higher_is_better)
        if self._clock is not None:  # the checkpoint's clock includes this validation (resume and max_time)
            self._tick()
            if self.steps.distributed:  # every rank is here: save the shared clock that decides max_time
                self._share_stop()
        self._log_event({"split": "valid", **metrics})
        summary = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        log.info("step %d valid: %s%s", self.step, summary, " (best)" if improved else "")
        self.save(metrics, is_best=improved)
        return metrics


class LocalSteps:
    """The Trainer's step hook in one process; :class:`seqkit.distributed.DDPTraining` is the
    other. A hook says where the training forward runs (``model``), how many batches of the
    epoch's order one step takes (``span``), which of them run here and with what weight
    (``local_work``), the context each backward runs in (``backward_context``: DDP all-reduces
    the gradients on the last one only), and how the step's totals combine across processes
    (``reduce``, ``share_stop``)."""

    distributed = False

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def span(self, accumulate: int) -> int:
        return accumulate

    def local_work(self, group: list[Any]) -> list[tuple[Any, float]]:
        """(batch, loss weight) pairs: every batch here, the mean over the group."""
        return [(batch, 1.0 / len(group)) for batch in group]

    def backward_context(self, last: bool) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def reduce(self, nll: float, tokens: int, bad: bool) -> tuple[float, int, bool]:
        return nll, tokens, bad

    def share_stop(self, interrupted: bool, elapsed: float) -> tuple[bool, float]:
        return interrupted, elapsed

    def close(self) -> None:
        """Nothing to free in one process."""


def check_run_dir_writable(run_dir: Path) -> None:
    """Fail before any training if the run directory cannot be written (or the disk is full)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        with open(probe, "wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
        probe.unlink()
    except OSError as exc:
        raise CheckpointError(f"run directory {run_dir} is not writable: {exc.strerror or exc}") from None
