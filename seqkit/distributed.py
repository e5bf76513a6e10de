"""Data-parallel training under ``torchrun``: DistributedDataParallel over gloo (CPU) or nccl (GPU).

``seqkit train`` runs unchanged under ``torchrun --nproc-per-node N`` (and multi-node torchrun).
torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) switches it on; with one
process nothing here runs and training is exactly the single-process loop, unless
``SEQKIT_FORCE_DDP=1`` asks for the process group and the DDP wrapper anyway (how
tools/gpu_check.sh runs nccl on a machine with one GPU).

What a global step means. Every rank builds the same batch order (same seed, same epoch). A
global step consumes the next ``accumulate * world_size`` batches of that order, split into
contiguous, nearly equal parts, one per rank. Each batch's mean loss is weighted by
``world_size / G`` (G = batches in the global group) and DDP averages gradients over ranks, so
the step's gradient is the plain mean over the G batches: exactly what one process computes with
``train.accumulate = accumulate * world_size`` (up to float summation order, and dropout masks,
which come from per-rank random streams). At an epoch's end a group may hold fewer batches
than ranks; a rank without a batch runs a zero-weighted forward/backward so that every rank
joins the gradient all-reduce. The data position (epoch, batch index) counts batches of the
single-process order, so a run may be resumed with a different number of processes.

Language models (:class:`seqkit.tasks.lm.LMTask`) shard differently: a task with a ``shard(rank,
world)`` method splits each batch itself (there: the streams, ``train.batch_size`` per rank,
``batch_size * world_size`` in all), and every rank works through the same batch indices, so the
hidden state carried across chunks stays on one rank.

Side effects: rank 0 alone writes the run directory (recipe copy, tokenizer, labels,
checkpoints, metrics.jsonl, train.log, tb/); the other ranks build their task after a barrier,
reading what rank 0 wrote, so a multi-node run needs ``run_dir`` on a shared filesystem.
Validation runs on rank 0 and its metrics are broadcast, so best/stale/plateau decisions are
identical everywhere. Stop conditions that only one rank can see (an interrupt, the wall clock
of ``train.max_time``) are max-reduced after every step.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import inspect
import logging
import os
import socket
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from seqkit.devices import torch_device
from seqkit.errors import SeqkitError

log = logging.getLogger("seqkit")

T = TypeVar("T")

# Ranks other than 0 wait in a collective while rank 0 validates (decoding a whole validation
# set) or trains the tokenizer, which can take minutes; torch's default NCCL timeout is 10 min.
# A crashed rank is noticed by torchrun itself, which stops the others, so a long timeout costs
# nothing in the failure case.
COLLECTIVE_TIMEOUT_S = 3600
FORCE_DDP_ENV = "SEQKIT_FORCE_DDP"  # "1": DDP even for a one-process torchrun


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun job (``world_size > 1``, or 1 under SEQKIT_FORCE_DDP)."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str  # gloo | nccl

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_env(environ: Mapping[str, str] = os.environ) -> tuple[int, int, int] | None:
    """(rank, local_rank, world_size) from torchrun's variables; None for a single process
    (also for a one-process torchrun, unless ``SEQKIT_FORCE_DDP=1``)."""
    if "WORLD_SIZE" not in environ:
        return None
    try:
        world = int(environ["WORLD_SIZE"])
        rank, local_rank = int(environ.get("RANK", "0")), int(environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise SeqkitError(
            f"WORLD_SIZE={environ.get('WORLD_SIZE')!r}, RANK={environ.get('RANK')!r}, "
            f"LOCAL_RANK={environ.get('LOCAL_RANK')!r}: expected integers (as torchrun sets them)"
        ) from None
    if world < 1 or (world == 1 and environ.get(FORCE_DDP_ENV) != "1"):
        return None
    if not 0 <= rank < world:
        raise SeqkitError(f"RANK={rank} is outside [0, WORLD_SIZE={world})")
    return rank, local_rank, world


def resolve_device(name: str, local_rank: int) -> tuple[torch.device, str]:
    """(device, backend) for one torchrun process given ``train.device``."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu"), "gloo"
    if name in ("auto", "cuda"):
        torch_device("cuda", "train.device")  # refuses a torch without CUDA or a machine without a GPU
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise SeqkitError(
                f"LOCAL_RANK={local_rank} but this node has {count} visible GPU(s): "
                f"launch at most {count} processes per node (torchrun --nproc-per-node {count})"
            )
        return torch.device("cuda", local_rank), "nccl"
    raise SeqkitError(
        f"train.device: {name} cannot be used under torchrun: each process takes cuda:LOCAL_RANK, "
        "so set train.device to auto, cuda or cpu"
    )


def setup(device_name: str) -> DistContext | None:
    """Join the torchrun job (init_process_group); None when not launched with several processes."""
    env = torchrun_env()
    if env is None:
        return None
    rank, local_rank, world = env
    if not dist.is_available():
        raise SeqkitError("torchrun launched several processes but this torch build has no torch.distributed")
    device, backend = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    if rank != 0:  # one copy of the log is enough; warnings and errors still show from every rank
        log.setLevel(logging.WARNING)
    log.info("distributed: %d processes, backend %s, rank 0 on %s", world, backend, device)
    return DistContext(rank, local_rank, world, device, backend)


def teardown(ctx: DistContext | None) -> None:
    """Leave the job; call :meth:`DDPTraining.close` first.

    The order matters. DDP's C++ ``Reducer`` holds a reference to the process group, and pybind
    frees a Reducer with the GIL held. If that reference is the group's last, the gloo group's
    destructor runs under the GIL and joins its worker threads. A worker may still be dropping the
    finished work of the last collective, whose tensors came from Python, and that needs the GIL:
    a deadlock, seen as a rank that never exits after training (rank 0 had printed its result).
    Freeing the wrapper while torch's own Python handle still holds the group makes that handle
    the last reference, and its destructor releases the GIL before joining the threads.
    """
    if ctx is not None and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext | None) -> None:
    if ctx is not None:
        # gloo barriers ignore device_ids; nccl wants this rank's GPU to avoid a guess (and a warning).
        dist.barrier(device_ids=[ctx.device.index] if ctx.backend == "nccl" else None)


def main_first(ctx: DistContext | None, build: Callable[[bool], T], run_dir: Path) -> T:
    """``build(first)`` on rank 0, then on the other ranks with ``first=False``, after a barrier.

    Rank 0 writes what the task needs (tokenizer, labels, data cache); the others only read it.
    """
    if ctx is None or ctx.is_main:
        result = build(True)
        barrier(ctx)
        return result
    barrier(ctx)
    if not (run_dir / "recipe.yaml").is_file():
        raise SeqkitError(
            f"rank {ctx.rank} on {socket.gethostname()} cannot see {run_dir / 'recipe.yaml'}, which rank 0 wrote: "
            "with torchrun across nodes, run_dir must be on a filesystem shared by every node"
        )
    return build(False)


def broadcast(ctx: DistContext, value: T) -> T:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.backend == "nccl" else None)
    return box[0]


def seed_rank(ctx: DistContext | None, seed: int) -> None:
    """Give ranks > 0 their own torch random stream (dropout); rank 0 keeps the single-process one."""
    if ctx is not None and not ctx.is_main:
        torch.manual_seed(seed * 1_000_003 + ctx.rank)


# -- per-rank RNG in checkpoints ----------------------------------------------------------------
def _rng_state(device: torch.device) -> dict[str, str]:
    out = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii")}
    if device.type == "cuda":
        out["cuda"] = base64.b64encode(torch.cuda.get_rng_state(device).numpy().tobytes()).decode("ascii")
    return out


def _set_rng_state(saved: dict[str, str], device: torch.device) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(tensor(saved["torch"]))
    if device.type == "cuda" and "cuda" in saved:
        torch.cuda.set_rng_state(tensor(saved["cuda"]), device)


def gather_rng(ctx: DistContext) -> list[dict[str, str]]:
    """Every rank's RNG state, in rank order (a collective: all ranks call it)."""
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, _rng_state(ctx.device))
    return out


def restore_rng(ctx: DistContext, state: dict[str, Any], seed: int) -> None:
    """Per-rank RNG from a checkpoint; a checkpoint of another world size reseeds ranks > 0."""
    saved = state.get("rng_ranks")
    if saved is not None and len(saved) == ctx.world_size:
        _set_rng_state(saved[ctx.rank], ctx.device)
    elif not ctx.is_main:
        torch.manual_seed(seed * 1_000_003 + ctx.rank + ctx.world_size * state["step"])


# -- the training step ---------------------------------------------------------------------------
def local_part(group: Sequence[T], rank: int, world: int) -> list[T]:
    """Rank ``rank``'s contiguous share of a global group (sizes differ by at most one)."""
    n = len(group)
    return list(group[rank * n // world : (rank + 1) * n // world])


class DDPTraining:
    """The Trainer's step hook under torchrun (one instance per process; the protocol is
    :class:`seqkit.train.LocalSteps`'s): the forward through DistributedDataParallel, this
    rank's part of each step, one gradient all-reduce per step, the totals and the stop flags
    shared."""

    distributed = True

    def __init__(self, ctx: DistContext, model: torch.nn.Module, task: Any):
        from torch.nn.parallel import DistributedDataParallel

        self.ctx, self.task = ctx, task
        # No module here has buffers that need syncing (no batch norm); syncing them every forward
        # would also turn rank 0's validation forward into a collective the other ranks never join.
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})  # the older name (torch < 2.13)
        self.ddp = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                                           **no_sync)
        shard = getattr(task, "shard", None)
        self.task_shards = shard is not None
        if shard is not None:
            shard(ctx.rank, ctx.world_size)

    def close(self) -> None:
        """Free the DDP wrapper (and its C++ Reducer) now, while the process group is alive."""
        if self.ddp is None:
            return
        ref = weakref.ref(self.ddp)
        self.ddp = None
        gc.collect()
        if ref() is not None:  # someone still holds it: teardown may hang in the Reducer's destructor
            log.warning("distributed: the DDP wrapper is still referenced after training; exiting may hang")

    def span(self, accumulate: int) -> int:
        """Batches of the shared order that one global step consumes."""
        return accumulate if self.task_shards else accumulate * self.ctx.world_size

    @property
    def model(self) -> torch.nn.Module:
        """The training forward runs through the DDP wrapper (its hooks all-reduce the gradients)."""
        return self.ddp

    def local_work(self, group: list[Any]) -> list[tuple[Any, float]]:
        """(batch, loss weight) pairs this rank runs of ``group`` (``span`` batches of the shared
        order). A rank with no batch still joins the all-reduce, with a zero-weighted copy of batch 0."""
        if self.task_shards:
            local, weight = group, 1.0 / len(group)
        else:
            local, weight = local_part(group, self.ctx.rank, self.ctx.world_size), self.ctx.world_size / len(group)
        return [(b, weight) for b in local] or [(group[0], 0.0)]

    def backward_context(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """All-reduce the gradients once, on the last backward of the step."""
        return contextlib.nullcontext() if last else self.ddp.no_sync()

    def reduce(self, nll: float, tokens: int, bad: bool) -> tuple[float, int, bool]:
        """The step's totals summed over the ranks; bad if any rank saw a non-finite loss, so
        every rank skips the step together."""
        totals = torch.tensor([nll, tokens, float(bad)], dtype=torch.float64, device=self.ctx.device)
        dist.all_reduce(totals)
        return float(totals[0]), int(totals[1]), totals[2].item() > 0

    def share_stop(self, interrupted: bool, elapsed: float) -> tuple[bool, float]:
        """Share what only one rank may know: an interrupt, and the wall clock for max_time."""
        flags = torch.tensor([float(interrupted), elapsed], dtype=torch.float64, device=self.ctx.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return bool(flags[0].item()), float(flags[1].item())
