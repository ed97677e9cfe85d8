"""Large decodes (inflation, big JSON, BYTES tensors) off the event loop.

Small bodies are decoded on the loop (a thread hand-off costs more than the work); larger ones in
a pool of two threads, so that the loop keeps answering health checks and small requests, and so
that a few hostile bodies cannot hold more than two decodes' memory at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

__all__ = ["INLINE_DECODE_BYTES", "decode_pool", "off_loop"]

# Work on up to this many bytes (or BYTES elements x 16) stays on the event loop.
INLINE_DECODE_BYTES = 64 * 1024
_POOL: dict[str, concurrent.futures.ThreadPoolExecutor] = {}


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
