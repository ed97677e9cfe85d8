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
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["INLINE_DECODE_BYTES", "PROCESS_DECODE_BYTES", "decode_pool", "off_loop", "off_process"]

# Work on up to this many bytes (or BYTES elements x 16) stays on the event loop.
INLINE_DECODE_BYTES = 64 * 1024
# JSON bodies above this are parsed in the process pool (about 20 ms of orjson + numpy here).
PROCESS_DECODE_BYTES = 512 * 1024
_THREADS: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
_PROCESSES: dict[str, concurrent.futures.ProcessPoolExecutor] = {}


def decode_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process's decode threads (two), made on first use."""
    pool = _THREADS.get("pool")
    if pool is None:
        pool = _THREADS.setdefault(
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
    pool = _PROCESSES.get("process")
    if pool is None:
        import multiprocessing

        method = (
            "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        )
        context = multiprocessing.get_context(method)
        if sys.version_info >= (3, 11):  # max_tasks_per_child is new in 3.11
            made = concurrent.futures.ProcessPoolExecutor(
                2, mp_context=context, max_tasks_per_child=16
            )
        else:  # pragma: no cover - Python 3.10: the decode processes are not renewed
            made = concurrent.futures.ProcessPoolExecutor(2, mp_context=context)
        pool = _PROCESSES.setdefault("process", made)
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
        _PROCESSES.pop("process", None)  # a decode process died (e.g. killed for memory): renew it
        from .errors import ServeError

        raise ServeError("the request could not be decoded; retry") from None


def shutdown() -> None:
    """Stop the decode threads and processes (at server shutdown)."""
    pools: list[concurrent.futures.Executor] = [*_THREADS.values(), *_PROCESSES.values()]
    _THREADS.clear()
    _PROCESSES.clear()
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)
