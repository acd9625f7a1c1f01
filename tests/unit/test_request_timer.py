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


class Held:
    """Stands for the span: one per request, set in the context outside the timeout."""


async def answer(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_answered_requests_leave_no_timer_nor_context_behind():
    app = TimeoutMiddleware(answer, timeout=600)
    refs: list[weakref.ref] = []

    async def one_request():
        held = Held()
        refs.append(weakref.ref(held))
        current.set(held)  # as OpenTelemetry's middleware attaches the server span

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        await app({"type": "http", "path": "/predict"}, receive, send)

    async def main() -> int:
        for _ in range(500):
            # each request in its own task and context, as uvicorn runs them
            await asyncio.get_running_loop().create_task(one_request(),
                                                         context=contextvars.Context())
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        return sum(1 for h in loop._scheduled if not h.cancelled())

    armed = asyncio.run(main())
    gc.collect()
    assert armed == 0
    assert sum(r() is not None for r in refs) == 0


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
