"""BentoML's request timeout without holding every request for the length of the timeout.

BentoML 1.4's `TimeoutMiddleware` (bentoml/_internal/server/http/traffic.py) arms a timer per
request with `loop.call_later(timeout, ...)` and never cancels it. An asyncio timer keeps a copy
of the contextvars context it was armed in until it fires, and that context holds the request's
OpenTelemetry server span (its attributes, its parent context) and everything else the outer
middlewares put there. So each request stayed in memory for the whole `traffic.timeout` (600 s
for the public service, 120 s for the scorer) after it was answered: the public worker's RSS
grew with traffic (about 35 MB a minute at concurrency 16 in benchmarks/soak.py) and went down
only ten minutes after the traffic stopped. A heap probe counted one live `_Span`, `Context` and
`TimerHandle` per request answered, all allocated under that `call_later`.

`patch_timeout_middleware()` replaces the middleware's `__call__` (once per process, at import of
serving.service, before BentoML builds the app) with the same logic whose timer runs in an empty
context and is cancelled as soon as the request is done; asyncio drops cancelled timers from its
heap once they are more than half of it, so what is left is bounded by the requests in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from bentoml._internal.server.http.traffic import TimeoutMiddleware
from starlette.responses import JSONResponse


async def _call(self: Any, scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    # an empty context: the timer holds the waiter, never the request's context (its span)
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter,
                            context=contextvars.Context())

    async def _send(message: dict) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    try:
        await waiter
    except TimeoutError:  # asyncio.TimeoutError is TimeoutError on 3.11
        if fut.cancel():
            resp = JSONResponse(
                {"error": f"Not able to process the request in {self.timeout} seconds"},
                status_code=504)
            await resp(scope, receive, send)
    else:
        await fut  # wait for the future to finish
    finally:
        timer.cancel()


def patch_timeout_middleware() -> None:
    """Install the timer-releasing `__call__` on BentoML's TimeoutMiddleware (idempotent)."""
    if getattr(TimeoutMiddleware, "_releases_timer", False):
        return
    TimeoutMiddleware.__call__ = _call
    TimeoutMiddleware._releases_timer = True
