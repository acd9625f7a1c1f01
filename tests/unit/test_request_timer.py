"""BentoML's per-request timeout must not keep an answered request alive (issue 26, point 1).

Its TimeoutMiddleware armed `loop.call_later(timeout, ...)` per request and never cancelled it;
the timer kept the request's contextvars context, with the OpenTelemetry server span an outer
middleware put there, for the whole timeout (600 s on the public service)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref

from bentoml._internal.server.http.traffic import TimeoutMiddleware

import serving.service  # noqa: F401  (installs the fix, as in the workers)

current = contextvars.ContextVar("current_request_object")
handled = contextvars.ContextVar("handled_request_object")


class Held:
    """Stands for what a request's context holds: one per request."""


async def answer(scope, receive, send):
    """An endpoint as ours: its request in its context, and a timeout of its own
    (anyio.fail_after, aiohttp's) armed and cancelled while it runs."""
    inner = Held()
    scope["refs"].append(weakref.ref(inner))
    handled.set(inner)
    asyncio.get_running_loop().call_later(60, lambda: None).cancel()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_answered_requests_leave_no_timer_nor_context_behind():
    """Without the fix: 500 timers still armed and the 500 outer objects alive."""
    app = TimeoutMiddleware(answer, timeout=600)
    refs: list[weakref.ref] = []

    async def one_request():
        outer = Held()
        refs.append(weakref.ref(outer))
        current.set(outer)  # as OpenTelemetry's middleware attaches the server span

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        await app({"type": "http", "path": "/predict", "refs": refs}, receive, send)

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        for _ in range(500):
            # each request in its own task and context, as uvicorn runs them
            await loop.create_task(one_request(), context=contextvars.Context())
        await asyncio.sleep(0)
        gc.collect()
        return (sum(1 for h in loop._scheduled if not h.cancelled()),
                sum(r() is not None for r in refs))

    armed, alive = asyncio.run(main())
    assert armed == 0
    assert alive == 0


def test_a_request_past_the_timeout_still_gets_a_504():
    async def slow(scope, receive, send):
        await asyncio.sleep(5)

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(TimeoutMiddleware(slow, timeout=0.05)({"type": "http", "path": "/"}, receive,
                                                      send))
    assert sent[0]["status"] == 504
