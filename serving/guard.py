"""The service's outer wall: one ASGI middleware that every request passes before BentoML or the
reviewer page sees it.

In order, for each HTTP request:
1. **Host allow-list** (`allowed_hosts`, "*" by default; `churn serve` on loopback narrows it to
   loopback names): a DNS-rebinding page reaches the service under a foreign Host name, so a
   name that is not served is a 400.
2. **Credentials**, once `api_keys` is set: the API and /metrics want `Authorization: Bearer
   <key>` or `X-API-Key: <key>`; /review wants one of `review_keys` (or, without any, an API key)
   as the HTTP Basic password, so a browser can show its login box. Health checks and the API
   docs stay open; they hold no customer data.
3. **Origin** on state-changing methods: a browser always sends Origin with a cross-site POST,
   so one that is neither this service's own origin nor in `allowed_origins` is refused (403).
4. **JSON only** on the JSON endpoints (415 otherwise): `text/plain` is what a hostile page can
   POST without a CORS preflight.
   /batch/submit takes multipart/form-data only, with the same 415 otherwise.
5. **Body size**: refused (413, with the limit) from Content-Length before a byte is read, and
   while reading when the length is not declared; JSON bodies are then handed on whole.
   /batch/submit streams its own upload to disk and enforces its own larger bound. A 413
   closes the connection (`Connection: close`): the rest of the body is never read.
6. **One error shape**: every error answer outside /review (an HTML page) leaves as
   `{"error", "field", "detail"}` (serving.errors), whoever produced it: pydantic's validation
   errors through BentoML, Starlette's plain-text 404 and 405, and our own refusals.

Every response, error or not, carries CSP, X-Frame-Options, nosniff and Referrer-Policy.
"""

from __future__ import annotations

import hmac
import json
import logging
from base64 import b64decode
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from scoring.settings import Settings, get_settings
from serving.errors import error_body, for_status, normalized

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN_PATHS = ("/livez", "/readyz", "/healthz", "/docs", "/docs.json", "/static_content/")
JSON_PATHS = ("/predict", "/predict_features", "/explain")
UPLOAD_PATH = "/batch/submit"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
     b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class BodyTooLarge(Exception):
    """Raised from `receive` once a body without Content-Length passes its bound."""

    def __init__(self, limit: int):
        super().__init__(f"the request body is larger than the limit of {limit} bytes")
        self.limit = limit


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def host_name(host: str) -> str:
    """The name of a Host header without its port: `[::1]:3000` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """`*` allows any; `.example.com` or `*.example.com` any subdomain."""
    name = host_name(host)
    for given in allowed:
        pattern = given.strip().lower()
        if pattern in ("*", name):
            return True
        suffix = pattern.removeprefix("*")
        if suffix.startswith(".") and name.endswith(suffix):
            return True
    return False


def _key_in(candidate: str | None, keys: tuple[str, ...]) -> bool:
    """Constant-time membership, so the time taken does not reveal a key's prefix."""
    if not candidate:
        return False
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate.encode(), key.encode())
    return found


def _bearer(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return token.strip()
    return headers.get("x-api-key")


def _basic_password(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return b64decode(token.strip(), validate=True).decode().partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return None


def _same_origin(origin: str, host: str) -> bool:
    """An Origin `http://localhost:3000` matches the Host header `localhost:3000`."""
    _, sep, rest = origin.partition("://")
    return bool(sep) and rest.rstrip("/").lower() == host.strip().lower()


class Guard:
    """The ASGI middleware; BentoML adds it with `add_asgi_middleware(Guard)`."""

    def __init__(self, app: Callable, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings or get_settings()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        problem = self.refusal(scope)
        if problem is not None:
            status, body, extra = problem
            await _send_json(send, status, body, extra)
            return
        path, s = scope["path"], self.settings
        if path == UPLOAD_PATH:
            receive = _bounded(receive, s.batch_max_upload_bytes)
        elif scope["method"] in UNSAFE:
            try:
                receive = await _buffered(receive, s.max_body_bytes)
            except BodyTooLarge as exc:
                await _send_json(send, 413, error_body(str(exc), "body"))
                return
        if not (path == "/review" or path.startswith("/review/")):  # the page answers in HTML
            send = _errors_in_one_shape(send)
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, dict, list] | None:
        """(status, JSON body, extra headers) of a request refused before it is read, or None."""
        s, path, method = self.settings, scope["path"], scope["method"]
        headers = _headers(scope)
        host = headers.get("host", "")
        if not host_allowed(host, s.allowed_hosts):
            return 400, error_body("this service does not answer to that host name", "Host"), []
        denied = self._credentials(path, headers)
        if denied is not None:
            return denied
        origin = headers.get("origin")
        if (method in UNSAFE and origin is not None and "*" not in s.allowed_origins
                and origin not in s.allowed_origins and not _same_origin(origin, host)):
            return 403, error_body(f"requests from the page at {origin[:200]} are not allowed; "
                                   "add it to CHURN_ALLOWED_ORIGINS", "Origin"), []
        if method == "POST" and (path in JSON_PATHS or path == UPLOAD_PATH):
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            wanted = "multipart/form-data" if path == UPLOAD_PATH else "application/json"
            if kind != wanted:
                sent = f", not {kind[:100]}" if kind else " (none was named)"
                return 415, error_body(f"send the body as {wanted}{sent}", "Content-Type"), []
        length = headers.get("content-length")
        if length is not None:
            limit = s.batch_max_upload_bytes if path == UPLOAD_PATH else s.max_body_bytes
            if not length.strip().isdigit():
                return 400, error_body("must be a whole number of bytes", "Content-Length"), []
            if int(length) > limit:
                return 413, error_body(f"the request body of {int(length)} bytes is larger "
                                       f"than the limit of {limit} bytes", "body"), []
        return None

    def _credentials(self, path: str, headers: dict[str, str]) -> tuple[int, dict, list] | None:
        s = self.settings
        if not s.api_keys and not s.review_keys:
            return None
        if path in ("/", "") or path.startswith(OPEN_PATHS):
            return None
        if path == "/review" or path.startswith("/review/"):
            keys = s.review_keys or s.api_keys
            if _key_in(_basic_password(headers), keys) or _key_in(_bearer(headers), keys):
                return None
            return 401, error_body("the reviewer page needs its password", "Authorization"), [
                (b"www-authenticate", b'Basic realm="churn review"')]
        if not s.api_keys or _key_in(_bearer(headers), s.api_keys):
            return None
        return 401, error_body("send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'",
                               "Authorization"), [(b"www-authenticate", b'Bearer realm="churn"')]


def _errors_in_one_shape(send: Send) -> Send:
    """Hold back an error response and send it in the one error shape (serving.errors): a JSON
    error body of BentoML's (pydantic's list of errors, its model names) or ours, and the
    plain-text 4xx Starlette answers for an unknown path or method. The status and the other
    headers (Allow, WWW-Authenticate) stay."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            status = message["status"]
            kind = dict(message.get("headers", [])).get(b"content-type", b"")
            if 400 <= status < 500 or status >= 500 and kind.startswith(b"application/json"):
                start = message
                return
        elif start is not None and message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, headers = start["status"], dict(start.get("headers", []))
            kind = headers.get(b"content-type", b"")
            allow = headers.get(b"allow", b"").decode("latin-1")
            try:
                body = normalized(json.loads(b"".join(chunks)), status) \
                    if kind.startswith(b"application/json") else for_status(status, allow)
            except ValueError:
                body = for_status(status, allow)
            payload = json.dumps(body).encode()
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() not in (b"content-length", b"content-type")]
            await send({**start, "headers": [*headers, (b"content-type", b"application/json"),
                                             (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        await send(message)
    return wrapped


def _with_security_headers(send: Send) -> Send:
    """The security headers on every response; and `Connection: close` on a 413, so the server
    closes the connection once it has answered instead of reading the rest of a body it
    refused (to find the next request on a kept-alive connection, HTTP/1.1 must read it all)."""
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            if message["status"] == 413:
                extra += [] if b"connection" in present else [(b"connection", b"close")]
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)
    return wrapped


async def _send_json(send: Send, status: int, body: dict, extra: list | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": payload})


async def _buffered(receive: Receive, limit: int) -> Receive:
    """Read the whole body up to `limit` (BodyTooLarge past it) and replay it, so the app never
    starts on a body that turns out too large."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    done = False

    async def replay() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


def _bounded(receive: Receive, limit: int) -> Receive:
    """Count the bytes of a streamed body; BodyTooLarge once they pass `limit`."""
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge(limit)
        return message
    return counted
