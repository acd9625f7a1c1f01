"""/readyz that says why: BentoML answers it from `__is_ready__` with a fixed text; while the
registry cannot be read, the answer (200 until CHURN_MAX_POLL_AGE_S, 503 after) is instead the
one plain line that says why, the line /model shows as `poll_error` and the log has."""

from __future__ import annotations

from collections.abc import Callable

from serving.guard import Message, Receive, Scope, Send

READY_PATH = "/readyz"


def _poll_error() -> str | None:
    import bentoml

    try:
        return bentoml.get_current_service().holder.last_error
    except Exception:  # no service instance yet: BentoML's own answer stands
        return None


class Readiness:
    """ASGI middleware: the status of BentoML's /readyz, with the registry's problem as body."""

    def __init__(self, app: Callable, problem: Callable[[], str | None] = _poll_error):
        self.app = app
        self.problem = problem

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = self.problem() if scope["type"] == "http" and scope["path"] == READY_PATH \
            else None
        if not problem:
            await self.app(scope, receive, send)
            return
        start: Message | None = None

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            if message.get("more_body", False):
                return
            ready = "ready" if start["status"] < 400 else "not ready"
            payload = f"{ready}: {problem}\n".encode()
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() not in (b"content-length", b"content-type")]
            await send({**start, "headers": [
                *headers, (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD"
                        else payload})
        await self.app(scope, receive, wrapped)
