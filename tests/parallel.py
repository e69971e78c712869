"""Slow test preparations that check results, not speed, run two processes at a time.

Tracing and compiling a framework is mostly one thread; the backends' batteries, the layer
checks and the layer examples each start one process per framework, so on two cores two of them
side by side take about half the time."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def two_at_a_time(work: Callable[[str], T], names: Iterable[str]) -> dict[str, Future[T]]:
    """``work(name)`` for every name, two at a time, started now; the caller waits for each
    result where it needs it (a test module that runs later finds its result ready)."""
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="two-at-a-time")
    futures = {name: pool.submit(work, name) for name in names}
    pool.shutdown(wait=False)
    return futures
