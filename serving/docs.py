"""The API documentation pages: our OpenAPI document at /docs.json and a docs page at / and
/docs that works offline and loads nothing from another site.

BentoML's own page loads Google Tag Manager (an inline script and a third-party iframe), links
to GitHub, Slack and Twitter, and its Swagger UI asks validator.swagger.io to check the
document. This page uses the Swagger UI files BentoML ships (/static_content/), configured by a
script file of ours (no inline script, so the guard's CSP holds) without the validator or the
top bar; /docs.json is BentoML's document rewritten by `serving.openapi.document`, with the
request examples the service gives (`openapi_examples`) and the served model's features and
value columns, so the document states the contract of the model served now.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from serving.guard import Message, Receive, Scope, Send
from serving.openapi import TITLE, document

log = logging.getLogger(__name__)

PAGE_PATHS = ("/", "/docs")
SCRIPT_PATH = "/docs.js"

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{TITLE}</title>
  <link rel="stylesheet" href="./static_content/swagger-ui.css">
  <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="./static_content/swagger-ui-bundle.js"></script>
  <script src="./docs.js"></script>
</body>
</html>
""".encode()

SCRIPT = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "./docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: "none",
    defaultModelsExpandDepth: 0,
    tryItOutEnabled: false,
  });
});
"""


def _examples() -> dict[str, Any]:
    import bentoml

    try:
        return bentoml.get_current_service().openapi_examples()
    except Exception:  # the document without examples beats no document
        log.exception("the OpenAPI examples could not be built")
        return {}


def _served() -> dict[str, Any]:
    """The served model's contract: its feature spec and the value columns a batch job may
    name (`document`'s `model` and `value_columns`)."""
    import bentoml

    try:
        service = bentoml.get_current_service()
        s = service.settings
        return {"model": service.holder.current.model.spec,
                "value_columns": sorted(service.value_columns()),
                "limits": {"max_id_chars": s.max_id_chars}}
    except Exception:  # the document without the model's features beats no document
        log.exception("the served model's features could not be read for the OpenAPI document")
        return {}


class ApiDocs:
    """ASGI middleware: serves the docs page and its script, and rewrites /docs.json."""

    def __init__(self, app: Callable, examples: Callable[[], dict[str, Any]] = _examples,
                 served: Callable[[], dict[str, Any]] = _served):
        self.app = app
        self.examples = examples
        self.served = served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in PAGE_PATHS:
            await _send(send, scope, PAGE, b"text/html; charset=utf-8")
        elif path == SCRIPT_PATH:
            await _send(send, scope, SCRIPT, b"text/javascript; charset=utf-8")
        elif path == "/docs.json":
            await self.app(scope, receive, self._documented(send))
        else:
            await self.app(scope, receive, send)

    def _documented(self, send: Send) -> Send:
        """Hold back BentoML's 200 document and send ours."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 200:
                start = message
                return
            if start is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                spec = document(json.loads(b"".join(chunks)), self.examples(), **self.served())
                payload = json.dumps(spec).encode()
                headers = [(k, v) for k, v in start.get("headers", [])
                           if k.lower() != b"content-length"]
                await send({**start, "headers": [
                    *headers, (b"content-length", str(len(payload)).encode())]})
                await send({"type": "http.response.body", "body": payload})
                return
            await send(message)
        return wrapped


async def _send(send: Send, scope: Scope, body: bytes, kind: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
