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
