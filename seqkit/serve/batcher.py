"""A bounded request queue with one model worker that merges compatible requests into one call.

The HTTP handlers run on the event loop; the model runs in one worker thread, so a long batch
never delays ``/healthz`` or the parsing of new requests. While the worker is busy, requests
wait in the queue; when it is free it takes the oldest request plus every queued request with
the same ``key`` (same endpoint and search options), up to ``max_items`` texts, and decodes
them in one call. Under light load each request therefore runs alone (no added latency); under
heavy load batches grow by themselves. A full queue is refused at once (:class:`Overloaded`)
instead of growing without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

# Runs in the worker thread: items of one or more requests -> one result per item, in order.
RunFn = Callable[[list[Any]], Sequence[Any]]


class Overloaded(Exception):
    """The queue holds ``max_queue`` requests already; the client should retry later."""


@dataclass
class _Job:
    key: Hashable | None  # jobs with equal non-None keys may share one model call
    items: list[Any]
    run: RunFn
    future: asyncio.Future = field(repr=False)


class Batcher:
    """One worker task (on the event loop) feeding one model thread.

    ``max_items``: the most texts merged into one model call (a single request may exceed it;
    it then runs alone). ``max_queue``: requests waiting, beyond which :meth:`submit` raises
    :class:`Overloaded`.
    """

    def __init__(self, *, max_items: int, max_queue: int):
        if max_items < 1 or max_queue < 1:
            raise ValueError("max_items and max_queue must be >= 1")
        self.max_items, self.max_queue = max_items, max_queue
        self._pending: deque[_Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.in_flight = 0  # requests in the model call now
        self.calls = 0  # model calls so far (merged requests count once)
        self.requests = 0  # requests answered so far (results or errors)

    @property
    def depth(self) -> int:
        """Requests waiting (not counting those being decoded now)."""
        return len(self._pending)

    def start(self) -> None:
        """Start the worker on the running event loop (the app's lifespan calls this)."""
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqkit-model")
        self._task = asyncio.get_running_loop().create_task(self._work(), name="seqkit-batcher")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(Overloaded("server shutting down"))
        self._pending.clear()
        assert self._executor is not None
        self._executor.shutdown(wait=True)
        self._task = self._executor = self._wakeup = None

    async def submit(self, key: Hashable | None, items: list[Any], run: RunFn) -> list[Any]:
        """Queue ``items`` and wait for their results (``run``'s exception is re-raised here)."""
        if self._task is None or self._wakeup is None:
            raise RuntimeError("Batcher.start() was not called (the app's lifespan starts it)")
        if len(self._pending) >= self.max_queue:
            raise Overloaded(f"{len(self._pending)} requests are queued (limit {self.max_queue}); retry later")
        job = _Job(key, list(items), run, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wakeup.set()
        return await job.future

    def _take(self) -> list[_Job]:
        """The oldest live job plus queued jobs with its key, up to max_items texts in all."""
        while self._pending and self._pending[0].future.done():  # cancelled: client went away
            self._pending.popleft()
        if not self._pending:
            return []
        first = self._pending.popleft()
        batch, total = [first], len(first.items)
        if first.key is None:
            return batch
        kept: deque[_Job] = deque()
        while self._pending:
            job = self._pending.popleft()
            if job.key == first.key and not job.future.done() and total + len(job.items) <= self.max_items:
                batch.append(job)
                total += len(job.items)
            else:
                kept.append(job)
        self._pending = kept
        return batch

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            batch = self._take()
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self.in_flight = len(batch)
            try:
                await self._execute(batch)
            finally:
                self.in_flight = 0

    async def _execute(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        items = [item for job in batch for item in job.items]
        self.calls += 1
        try:
            results = await loop.run_in_executor(self._executor, batch[0].run, items)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            if len(batch) > 1:  # one bad request must not fail the requests merged with it
                for job in batch:
                    await self._execute([job])
                return
            self._finish(batch[0], exc=exc)
            return
        if len(results) != len(items):
            error = RuntimeError(f"model returned {len(results)} results for {len(items)} inputs")
            for job in batch:
                self._finish(job, exc=error)
            return
        start = 0
        for job in batch:
            self._finish(job, result=list(results[start:start + len(job.items)]))
            start += len(job.items)

    def _finish(self, job: _Job, *, result: list[Any] | None = None, exc: BaseException | None = None) -> None:
        self.requests += 1
        if job.future.done():
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
