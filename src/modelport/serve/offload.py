"""Large decodes (inflation, big JSON, BYTES tensors) off the event loop.

Small bodies are decoded on the loop (a thread hand-off costs more than the work); larger ones in
a pool of two threads, so that the loop keeps answering health checks and small requests, and so
that a few hostile bodies cannot hold more than two decodes' memory at a time.

Parsing JSON (orjson) and turning its lists into numpy arrays are single C calls that hold the
GIL: in a thread they still stall the loop for their whole length (measured: 5.9 MB of JSON
numbers, 0.33 s). JSON bodies above ``PROCESS_DECODE_BYTES`` are therefore decoded in a small
process pool, which sends back numpy arrays (cheap to pickle).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process
from collections.abc import Callable
from typing import Any

__all__ = ["INLINE_DECODE_BYTES", "PROCESS_DECODE_BYTES", "decode_pool", "off_loop", "off_process"]

# Work on up to this many bytes (or BYTES elements x 16) stays on the event loop.
INLINE_DECODE_BYTES = 64 * 1024
# JSON bodies above this are parsed in the process pool (about 20 ms of orjson + numpy here).
PROCESS_DECODE_BYTES = 512 * 1024
_POOL: dict[str, concurrent.futures.Executor] = {}


def decode_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process's decode threads (two), made on first use."""
    pool = _POOL.get("pool")
    if pool is None:
        pool = _POOL.setdefault(
            "pool",
            concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="modelport-decode"),
        )
    return pool


async def off_loop(size: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on the loop when ``size`` is small, else in the decode pool."""
    if size <= INLINE_DECODE_BYTES:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(decode_pool(), fn, *args)


def process_pool() -> concurrent.futures.ProcessPoolExecutor:
    """Two decode processes (forkserver: no fork of a threaded server), each replaced after 16
    bodies so that the memory a huge JSON body made it grow is given back."""
    pool = _POOL.get("process")
    if pool is None:
        import multiprocessing

        method = (
            "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        )
        pool = _POOL.setdefault(
            "process",
            concurrent.futures.ProcessPoolExecutor(
                2, mp_context=multiprocessing.get_context(method), max_tasks_per_child=16
            ),
        )
    return pool


async def off_process(size: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` (a module-level function: it is pickled) in the decode processes when
    ``size`` is over PROCESS_DECODE_BYTES, else as ``off_loop`` would run it."""
    if size <= PROCESS_DECODE_BYTES:
        return await off_loop(size, fn, *args)
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(process_pool(), fn, *args)
    except concurrent.futures.process.BrokenProcessPool:
        _POOL.pop("process", None)  # a decode process died (e.g. killed for memory): renew it
        from .errors import ServeError

        raise ServeError("the request could not be decoded; retry") from None


def shutdown() -> None:
    """Stop the decode threads and processes (at server shutdown)."""
    for key in ("pool", "process"):
        pool = _POOL.pop(key, None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
