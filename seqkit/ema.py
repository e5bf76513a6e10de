"""An exponential moving average of the weights during training (``train.ema``).

Each optimizer step moves a float32 shadow copy of every floating-point weight towards the live
one: ``shadow = d * shadow + (1 - d) * weight`` with ``d = min(train.ema, (1 + n) / (10 + n))``
after ``n`` steps, so the first steps are not averaged with the random initialisation for long
(TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` warm-up). The shadow weights are saved
in each checkpoint as ``ema.safetensors`` beside the raw ``model.safetensors`` and restored on
resume, which trains on the raw weights. Validation, early stopping and ``best`` use the raw
weights too unless ``train.validate_ema``: then each validation runs with the shadow weights
swapped in (:meth:`WeightEMA.applied`), and a run directory decodes with its checkpoint's
``ema.safetensors`` (seqkit.runs.load_run). ``seqkit average RUN --ema --last 1 -o OUT`` turns
the average of any run into a run directory that evaluate, translate and export open.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file

from seqkit.checkpoint import model_tensors
from seqkit.errors import CheckpointError
from seqkit.rundir import EMA_FILE

log = logging.getLogger("seqkit")


class WeightEMA:
    """The moving average of ``model``'s floating-point tensors, updated in place."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        state = model.state_dict()  # tensors that share the parameters' storage
        self.names = [name for name, t in model_tensors(model).items() if t.is_floating_point()]
        self._live = [state[name] for name in self.names]
        self.shadow = [t.detach().float().clone() for t in self._live]

    def update(self, step: int) -> None:
        """Fold in the weights after optimizer step ``step`` (1 for the first)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for shadow, live in zip(self.shadow, self._live):
                shadow.lerp_(live.float(), 1.0 - decay)

    def tensors(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """What ``ema.safetensors`` holds: the shadow weights in the model's own dtypes, plus
        any non-float tensors as they are, so the file loads like ``model.safetensors``."""
        out = model_tensors(model)
        for name, shadow in zip(self.names, self.shadow):
            out[name] = shadow.to(out[name].dtype).cpu().contiguous()
        return out

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model holds the moving average; its own weights come back after."""
        with torch.no_grad():
            saved = [live.clone() for live in self._live]
            for shadow, live in zip(self.shadow, self._live):
                live.copy_(shadow.to(live.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for kept, live in zip(saved, self._live):
                    live.copy_(kept)

    def load(self, checkpoint: Path) -> None:
        """Restore the shadow weights saved in ``checkpoint``; start from the live weights when
        the checkpoint has none (``train.ema`` switched on for a resumed run)."""
        path = checkpoint / EMA_FILE
        if not path.is_file():
            log.warning("train.ema: %s holds no moving average; it starts from the resumed weights", checkpoint.name)
            for shadow, live in zip(self.shadow, self._live):
                shadow.copy_(live.float())
            return
        saved = load_file(str(path))
        for i, name in enumerate(self.names):
            if name not in saved or tuple(saved[name].shape) != tuple(self.shadow[i].shape):
                raise CheckpointError(f"{path}: tensor '{name}' is missing or shaped differently from the model")
            self.shadow[i].copy_(saved[name].float())
