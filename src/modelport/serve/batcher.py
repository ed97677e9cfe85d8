"""Dynamic batching: concurrent requests for one model merged into one call and split back.

A ``Batcher`` wraps a ``run(feed) -> outputs`` callable. Requests wait in a bounded queue; worker
tasks (one per instance) take the queued requests whose inputs can be stacked (same shapes after
the batch axis), up to ``max_batch_size`` rows, concatenate them, make one call and hand each
request its slice of the outputs. It checks that the outputs keep one row per input row.

With ``max_queue_delay_s`` 0 a batch is whatever is queued when a worker is free: at low load a
request runs alone and at once, under load batches grow by themselves. Calls run in a thread pool,
or on the event loop itself (``inline``) for models so small that a thread hand-off costs more
than the call.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ModelNotReadyError, QueueFullError

__all__ = ["Batcher"]

log = logging.getLogger("modelport.serve")

Feed = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]


@dataclass(slots=True)
class _Item:
    feed: Feed
    rows: int
    key: object  # _batch_key's merge key: compared with ==
    future: asyncio.Future[Outputs]
    enqueued: float


class Batcher:
    """Queue, merge and run requests for one model version.

    run: the model call, ``run(feed) -> {output name: array}``; thread-safe when instances > 1.
    max_batch_size: most rows per call (1 = no merging; a larger single request still runs).
    max_queue_delay_s: how long a lone request may wait for company (0 = never wait).
    max_queue_size: requests that may wait; ``submit`` raises QueueFullError beyond it.
    instances: calls that may run at once. inline: run calls on the event loop.
    on_batch: called after each call with (rows, [seconds each request waited]).
    name: what the log calls this model (e.g. "mlp version 2").
    """

    def __init__(
        self,
        run: Callable[[Feed], Outputs],
        *,
        max_batch_size: int = 1,
        max_queue_delay_s: float = 0.0,
        max_queue_size: int = 512,
        instances: int = 1,
        inline: bool = False,
        on_batch: Callable[[int, list[float]], None] | None = None,
        name: str = "",
    ) -> None:
        self._run = run
        self.name = name or "model"
        self.max_batch_size = max_batch_size
        self._delay = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self.instances = 1 if inline else instances
        self.inline = inline
        self._on_batch = on_batch
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_rows = 0
        self._running = 0
        self._closing = False
        self._wakeup = asyncio.Event()  # thread mode: work was queued (or closing)
        self._full = asyncio.Event()  # thread mode: a full batch is queued
        self._workers: list[asyncio.Task[None]] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False  # inline: a flush is scheduled
        self._timer: asyncio.TimerHandle | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker tasks (thread mode) on the running event loop."""
        self._loop = asyncio.get_running_loop()
        if self.inline:
            return
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.instances, thread_name_prefix="modelport-run"
        )
        self._workers = [self._loop.create_task(self._worker()) for _ in range(self.instances)]

    async def close(self) -> None:
        """Stop taking requests, finish those queued and running, then stop the workers."""
        self._closing = True
        if self.inline:
            if self._timer is not None:
                self._timer.cancel()
            while self._queue:
                self._flush()
            return
        self._wakeup.set()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        for item in self._queue:  # only left when the workers died
            if not item.future.done():
                item.future.set_exception(ModelNotReadyError("the model was unloaded"))
        self._queue.clear()

    @property
    def pending(self) -> int:
        """Requests queued, not yet started."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._running > 0

    # --- requests -------------------------------------------------------------------------

    def submit(self, feed: Feed) -> asyncio.Future[Outputs]:
        """Queue one request; the future resolves to its outputs. Must be called on the loop."""
        if self._closing or self._loop is None:
            raise ModelNotReadyError("the model is being unloaded; retry to reach its successor")
        if len(self._queue) >= self.max_queue_size:
            raise QueueFullError(
                f"the model's queue is full ({self.max_queue_size} requests waiting); retry later"
            )
        rows, key = _batch_key(feed) if self.max_batch_size > 1 else (1, None)
        loop = self._loop
        item = _Item(feed, rows, key, loop.create_future(), loop.time())
        self._queue.append(item)
        self._queued_rows += rows
        if self.inline:
            self._schedule()
            return item.future
        self._wakeup.set()
        if self._queued_rows >= self.max_batch_size:
            self._full.set()
        return item.future

    # --- inline: a flush callback on the loop ----------------------------------------------

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self.name}: the batcher was not started")
        return self._loop

    def _schedule(self) -> None:
        """Run the queue on a later loop turn: handlers woken in this turn can join the batch."""
        loop = self._started_loop()
        full = self._queued_rows >= self.max_batch_size
        if self._scheduled:
            if full and self._timer is not None:  # stop waiting for company
                self._timer.cancel()
                self._timer = None
                loop.call_soon(self._flush)
            return
        self._scheduled = True
        if self._delay > 0 and not full:
            self._timer = loop.call_at(self._queue[0].enqueued + self._delay, self._flush)
        else:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        self._timer = None
        items = self._take()
        if items:
            now = self._started_loop().time()
            waits = [now - it.enqueued for it in items]
            self._running += len(items)
            try:
                results = self._call(items)
            finally:
                self._running -= len(items)
            self._deliver(items, results, waits)
        if self._queue and not self._closing:
            self._schedule()

    # --- workers (thread mode) ------------------------------------------------------------

    async def _worker(self) -> None:
        loop = self._started_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._delay > 0 and self._queued_rows < self.max_batch_size and not self._closing:
                remaining = self._queue[0].enqueued + self._delay - loop.time()
                if remaining > 0:
                    self._full.clear()
                    timer = loop.call_later(remaining, self._full.set)
                    await self._full.wait()
                    timer.cancel()
            items = self._take()
            if items:
                await self._execute(items)

    def _take(self) -> list[_Item]:
        """Pop the oldest live request and every queued one that stacks with it, in order."""
        queue = self._queue
        while queue and queue[0].future.done():  # timed out or cancelled while queued
            self._queued_rows -= queue.popleft().rows
        if not queue:
            return []
        first = queue.popleft()
        self._queued_rows -= first.rows
        batch, rows = [first], first.rows
        if self.max_batch_size > 1 and queue:
            kept: collections.deque[_Item] = collections.deque()
            while queue and rows < self.max_batch_size:
                item = queue.popleft()
                if item.future.done():
                    self._queued_rows -= item.rows
                elif item.key == first.key and rows + item.rows <= self.max_batch_size:
                    batch.append(item)
                    rows += item.rows
                    self._queued_rows -= item.rows
                else:
                    kept.append(item)
            kept.extend(queue)
            self._queue = kept
        return batch

    async def _execute(self, items: list[_Item]) -> None:
        loop = self._started_loop()
        now = loop.time()
        waits = [now - it.enqueued for it in items]
        self._running += len(items)
        try:
            results = await loop.run_in_executor(self._executor, self._call, items)
        except BaseException as exc:  # the executor was shut down under us
            results = [exc] * len(items)
        finally:
            self._running -= len(items)
        self._deliver(items, results, waits)

    def _deliver(
        self, items: list[_Item], results: Sequence[Outputs | BaseException], waits: list[float]
    ) -> None:
        for item, result in zip(items, results, strict=True):
            fut = item.future
            if fut.done():
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
        if self._on_batch is not None:
            self._on_batch(sum(it.rows for it in items), waits)

    def _call(self, items: list[_Item]) -> list[Outputs | BaseException]:
        """Run the batch; if a merged batch fails (or its outputs cannot be split by rows), run
        its requests one by one so that a bad request fails alone."""
        if len(items) == 1:
            return [self._call_one(items[0].feed)]
        names = list(items[0].feed)
        feed = {n: np.concatenate([it.feed[n] for it in items]) for n in names}
        total = sum(it.rows for it in items)
        try:
            outputs = self._run(feed)
        except Exception as exc:
            return self._alone(items, total, f"it failed ({_short(exc)})")
        bad = [k for k, v in outputs.items() if np.ndim(v) == 0 or v.shape[0] != total]
        if bad:
            return self._alone(
                items, total, f"outputs {bad} do not have one row per input row ({total})"
            )
        results: list[Outputs | BaseException] = []
        start = 0
        for it in items:
            stop = start + it.rows
            results.append({k: v[start:stop] for k, v in outputs.items()})
            start = stop
        return results

    def _alone(self, items: list[_Item], rows: int, why: str) -> list[Outputs | BaseException]:
        log.warning(
            "%s: a merged batch of %d requests (%d rows) was not used because %s; running "
            "each request alone",
            self.name,
            len(items),
            rows,
            why,
        )
        return [self._call_one(it.feed) for it in items]

    def _call_one(self, feed: Feed) -> Outputs | BaseException:
        try:
            return self._run(feed)
        except Exception as exc:
            return exc


def _batch_key(feed: Feed) -> tuple[int, object]:
    """(rows, merge key) of a request: requests merge only when their keys are equal.

    The key holds every input's shape after axis 0 and its dtype. A request whose inputs do not
    all have the same number of rows on axis 0, or that has no rows, gets a key of its own (a
    fresh object), so it is never merged with anyone and cannot shift another request's rows.
    """
    arrays = list(feed.values())
    if not arrays or any(a.ndim == 0 for a in arrays):
        return 1, object()
    counts = {int(a.shape[0]) for a in arrays}
    if len(counts) != 1 or 0 in counts:
        return max(counts) or 1, object()
    return counts.pop(), tuple((a.shape[1:], a.dtype) for a in arrays)


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
