"""Calls made while trying the service: a request with the header `X-Churn-Test: 1` (or any
request while CHURN_TEST_TRAFFIC is set) is answered as usual, and its predictions are logged
marked as a test, which `churn monitor` leaves out."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from starlette.types import Receive, Scope, Send

HEADER = b"x-churn-test"
_TRUE = {b"1", b"true", b"yes"}

_marked: ContextVar[bool] = ContextVar("churn_test_call", default=False)


def is_test_call() -> bool:
    """Whether the request being answered was marked as a test call."""
    return _marked.get()


def marked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == HEADER and v.strip().lower() in _TRUE for k, v in headers)


class TestTraffic:
    """ASGI middleware: remembers for the request's handler whether the request is a test call
    (the handler runs in the same context, so it sees the mark)."""

    __test__ = False  # not a pytest class

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _marked.set(marked(scope.get("headers") or []))
        try:
            await self.app(scope, receive, send)
        finally:
            _marked.reset(token)
