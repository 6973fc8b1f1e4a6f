"""Run one function over items on a few threads, stopping at the first failure. What pull and
push need of concurrent.futures, without its import (it pulls in logging: ~6 ms per
command)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
_END = object()


def run_all(fn: Callable[[T], object], items: Iterable[T], workers: int,
            stop: threading.Event | None = None,
            quiet: tuple[type[BaseException], ...] = ()) -> None:
    """Call fn(item) for every item, in their order, on up to `workers` threads. The first
    failure sets `stop` (work in progress may watch it to quit early), no further item is
    started, and once every thread has ended that failure is raised. Failures of the `quiet`
    types (the way cancelled work ends) are never the one raised. Ctrl-C in the caller sets
    `stop` too and waits for the threads before going on."""
    stop = stop or threading.Event()
    todo = iter(items)
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        while not stop.is_set():
            with lock:
                item = next(todo, _END)
            if item is _END:
                return
            try:
                fn(item)  # type: ignore[arg-type]
            except BaseException as e:  # noqa: BLE001 - handed to the caller below
                with lock:
                    failures.append(e)
                stop.set()
                return

    threads = [threading.Thread(target=worker, name=f"imagetool-worker-{i}", daemon=True)
               for i in range(max(1, workers))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:
        stop.set()
        for t in threads:
            t.join()
        raise
    real = [e for e in failures if not isinstance(e, quiet)]
    if real:
        raise real[0]
