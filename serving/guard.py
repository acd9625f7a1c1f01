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
5. **Body size**: refused (413, with the limit) from Content-Length before a byte is read, and
   while reading when the length is not declared; JSON bodies are then handed on whole.
   /batch/submit streams its own upload to disk and enforces its own larger bound.

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
                await _send_json(send, 413, {"error": str(exc), "field": "body"})
                return
        if path in JSON_PATHS:
            send = _error_detail_as_text(send)
        elif path == "/docs.json":
            send = _documented(send)
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, dict, list] | None:
        """(status, JSON body, extra headers) of a request refused before it is read, or None."""
        s, path, method = self.settings, scope["path"], scope["method"]
        headers = _headers(scope)
        host = headers.get("host", "")
        if not host_allowed(host, s.allowed_hosts):
            return 400, {"error": "this service does not answer to that host name",
                         "field": "Host"}, []
        denied = self._credentials(path, headers)
        if denied is not None:
            return denied
        origin = headers.get("origin")
        if (method in UNSAFE and origin is not None and "*" not in s.allowed_origins
                and origin not in s.allowed_origins and not _same_origin(origin, host)):
            return 403, {"error": f"requests from the page at {origin[:200]} are not allowed; "
                         "add it to CHURN_ALLOWED_ORIGINS", "field": "Origin"}, []
        if method == "POST" and path in JSON_PATHS:
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return 415, {"error": "send the body as application/json",
                             "field": "Content-Type"}, []
        length = headers.get("content-length")
        if length is not None:
            limit = s.batch_max_upload_bytes if path == UPLOAD_PATH else s.max_body_bytes
            if not length.strip().isdigit():
                return 400, {"error": "must be a whole number of bytes",
                             "field": "Content-Length"}, []
            if int(length) > limit:
                return 413, {"error": f"the request body of {int(length)} bytes is larger "
                             f"than the limit of {limit} bytes", "field": "body"}, []
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
            return 401, {"error": "the reviewer page needs its password", "field":
                         "Authorization"}, [(b"www-authenticate", b'Basic realm="churn review"')]
        if not s.api_keys or _key_in(_bearer(headers), s.api_keys):
            return None
        return 401, {"error": "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'",
                     "field": "Authorization"}, [(b"www-authenticate", b'Bearer realm="churn"')]


def _rewriting_json(send: Send, wanted: Callable[[int], bool],
                    rewrite: Callable[[Any], Any]) -> Send:
    """Hold back a JSON response whose status is `wanted`, and send `rewrite(body)` instead."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            kind = dict(message.get("headers", [])).get(b"content-type", b"")
            if wanted(message["status"]) and kind.startswith(b"application/json"):
                start = message
                return
        elif start is not None and message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            payload = json.dumps(rewrite(json.loads(b"".join(chunks)))).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers,
                                             (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        await send(message)
    return wrapped


def _field(loc: Any) -> str:
    """pydantic's ("customers", 0, "signup_at") as customers[0].signup_at."""
    out = ""
    for part in loc or ():
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _error_detail_as_text(send: Send) -> Send:
    """BentoML answers a body that fails validation with `detail` as pydantic's list of errors,
    where its own OpenAPI schema promises a string: name the first field and make it text."""
    def rewrite(body: Any) -> Any:
        detail = body.get("detail") if isinstance(body, dict) else None
        if not isinstance(detail, list):
            return body
        errors = [e for e in detail if isinstance(e, dict)]
        first = errors[0] if errors else {}
        field = _field(first.get("loc"))
        return {"error": f"{field}: {first.get('msg', 'invalid')}" if field
                else str(body.get("error", "invalid request")),
                "field": field,
                "detail": "; ".join(f"{_field(e.get('loc'))}: {e.get('msg')}"
                                    for e in errors)[:2000]}
    return _rewriting_json(send, lambda status: status == 400, rewrite)


REFUSALS = {
    "401": "No valid API key (when CHURN_API_KEYS is set)",
    "403": "A browser page of another origin",
    "413": "The body, or the customers or events in it, past the configured limit",
    "415": "A body that is not application/json",
}


def _documented(send: Send) -> Send:
    """The OpenAPI document BentoML generates, with the answers of this wall added: a client
    (or a schema fuzzer) sees every status an operation can return and the body it carries."""
    def rewrite(spec: Any) -> Any:
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas["RequestRefused"] = {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "string"}, "field": {"type": "string"},
                           "index": {"type": "integer"}, "detail": {"type": "string"}}}
        for name in ("InvalidArgument", "NotFound", "InternalServerError"):
            if name in schemas:
                schemas[name].setdefault("properties", {}).update(
                    field={"type": "string"}, index={"type": "integer"})
        _mark_nullable(spec)
        ref = {"content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/RequestRefused"}}}}
        for path, item in spec.get("paths", {}).items():
            if path not in JSON_PATHS:
                continue
            for operation in item.values():
                _id_either(operation)
                responses = operation.setdefault("responses", {})
                for status, text in REFUSALS.items():
                    responses.setdefault(status, {"description": text, **ref})
        return spec
    return _rewriting_json(send, lambda status: status == 200, rewrite)


def _id_either(operation: dict) -> None:
    """BentoML flattens the `anyOf` of a top-level request property to its first type; an id
    may be a string or an integer (schemas.CustomerId)."""
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    prop = body.get("schema", {}).get("properties", {}).get("customer_id")
    if prop is not None:
        prop.pop("type", None)
        prop["anyOf"] = [{"type": "string"}, {"type": "integer"}]


def _mark_nullable(node: Any) -> None:
    """BentoML writes pydantic's `X | None` as plain X in OpenAPI 3.0; a property whose default
    is null accepts null, so say so (`nullable`)."""
    if isinstance(node, dict):
        if "default" in node and node["default"] is None and "type" in node:
            node["nullable"] = True
        for value in node.values():
            _mark_nullable(value)
    elif isinstance(node, list):
        for value in node:
            _mark_nullable(value)


def _with_security_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = [*message.get("headers", []),
                                  *[(k, v) for k, v in SECURITY_HEADERS if k not in present]]
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
