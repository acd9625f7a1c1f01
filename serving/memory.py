"""Give freed heap memory back to the system. After a large request (a body near the size
limit, a long history) glibc keeps the freed pages in its heap, so a worker's RSS keeps its
high-water mark; `malloc_trim(0)` releases what is free. It is cheap (milliseconds) and runs
every `interval_s` in a daemon thread. Without glibc (musl, macOS) it does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

log = logging.getLogger(__name__)


def _libc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def start_trimming(interval_s: float = 30.0) -> threading.Thread | None:
    trim = _libc_trim()
    if trim is None:
        log.info("no malloc_trim here; freed memory stays with the process")
        return None

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            trim(0)

    thread = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    thread.start()
    return thread


def start_heap_probe(role: str) -> threading.Thread | None:
    """Debug only: with CHURN_DEBUG_HEAP=<dir>, trace allocations (tracemalloc, 25 frames) and
    every CHURN_DEBUG_HEAP_S seconds (default 60) write <dir>/<role>-<pid>-<n>.snap (a
    tracemalloc snapshot, for benchmarks/heapdiff.py) and <n>.types.json (live objects per
    type from gc). Costs time and memory; never set it in production."""
    import os

    where = os.environ.get("CHURN_DEBUG_HEAP")
    if not where:
        return None
    import collections
    import gc
    import json
    import tracemalloc
    from pathlib import Path

    out = Path(where)
    out.mkdir(parents=True, exist_ok=True)
    every = float(os.environ.get("CHURN_DEBUG_HEAP_S", "60"))
    tracemalloc.start(25)
    log.warning("heap probe on: snapshots of %s every %.0f s in %s", role, every, out)

    def loop() -> None:
        n = 0
        while True:
            time.sleep(every)
            gc.collect()
            stem = out / f"{role}-{os.getpid()}-{n:03d}"
            tracemalloc.take_snapshot().dump(f"{stem}.snap")
            counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
            stem.with_suffix(".types.json").write_text(json.dumps(dict(counts.most_common(300))))
            n += 1

    thread = threading.Thread(target=loop, name="heap-probe", daemon=True)
    thread.start()
    return thread
