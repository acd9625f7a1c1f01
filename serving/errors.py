"""The one shape of every error the HTTP service answers: `{"error", "field", "detail"}`.

- `error`: one sentence for a person, naming the field when there is one;
- `field`: where the problem is, e.g. `customers[0].events[3].timestamp`, `Content-Type` or
  `body` ("" when it is no single field's);
- `detail`: every problem found (`field: problem; ...`), and a hint where one helps.

Per-customer errors add `index` (the customer's or row's place in the request); batch answers
add `task_id`. Our own refusals build this shape with `error_body`; responses BentoML or
Starlette produce (pydantic's validation errors, 404, 405) are rewritten into it by the guard
with `normalized`.
"""

from __future__ import annotations

import re
from typing import Any

ISO_HINT = "use ISO 8601, e.g. 2026-06-30 or 2026-06-30T09:00:00Z"
MAX_DETAIL = 2000
# pydantic's error types for a text that is not a date or time
TIME_ERRORS = ("datetime_", "date_", "time_", "timezone_")
STATUS_TEXT = {404: ("no such endpoint; see /docs for the endpoints", "path"),
               405: ("this endpoint does not answer that method; see /docs", "method")}


def error_body(problem: str, field: str = "", detail: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """An error answer in the one shape: `error` is `field: problem`; `detail` defaults to it."""
    error = f"{field}: {problem}" if field else problem
    return {"error": error, "field": field, "detail": (detail or error)[:MAX_DETAIL], **extra}


def combined(bodies: list[dict[str, Any]], **extra: Any) -> tuple[dict[str, Any], int]:
    """Several errors of one request as one answer and its HTTP status: the first names the
    field, `detail` lists every one. A body made between processes (serving.items) carries
    its status as `status` (default 400), which the answer does not show."""
    bodies = [dict(b) for b in bodies]
    status = int(bodies[0].get("status", 400))
    for body in bodies:
        body.pop("status", None)
    body = {**bodies[0], **extra}
    if len(bodies) > 1:
        body["detail"] = "; ".join(b.get("detail") or b.get("error", "")
                                   for b in bodies)[:MAX_DETAIL]
    return body, status


def field_name(loc: Any) -> str:
    """pydantic's ("customers", 0, "signup_at") as customers[0].signup_at."""
    out = ""
    for part in loc or ():
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _problem(error: dict) -> str:
    """One pydantic error as our text: a time that is not one gets the ISO 8601 hint, a bad
    body says so instead of naming the request model."""
    kind, msg = str(error.get("type", "")), str(error.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ")
    if kind.startswith(TIME_ERRORS):
        why = re.sub(r"^Input should be a valid [a-z ]+?(, |$)", "", msg)
        return f"is not an ISO 8601 date or time{f' ({why})' if why else ''}: {ISO_HINT}"
    if "ISO 8601" in msg:
        return f"{msg}: {ISO_HINT}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    if kind == "json_invalid":
        return f"is not valid JSON: {msg.removeprefix('Invalid JSON: ')}"
    loc = tuple(error.get("loc") or ())
    in_event = len(loc) >= 3 and loc[-3] == "events" and isinstance(loc[-2], int)
    if kind == "extra_forbidden" and in_event:  # a column of an events file, sent as a field
        return (f"is not a field of an event: send a numeric column under values "
                f'({{"values": {{"{loc[-1]}": 2}}}}) and a text one under contacts '
                f'({{"contacts": {{"{loc[-1]}": "..."}}}}), as churn score reads them')
    if kind == "extra_forbidden":
        return "is not a field of this request"
    if kind.startswith("float") and len(loc) >= 2 and loc[-2] == "values":
        return (f"must be a number: a text column goes under contacts "
                f'({{"contacts": {{"{loc[-1]}": ...}}}})')
    if kind == "missing":
        return "is required"
    return msg


def from_validation(errors: list[dict]) -> dict[str, Any]:
    """pydantic's list of errors in the one shape: the first names the field, `detail` lists
    every one."""
    errors = [e for e in errors if isinstance(e, dict)] or [{"msg": "invalid request"}]
    named = [(field_name(e.get("loc")) or "body", _problem(e)) for e in errors]
    field, problem = named[0]
    return error_body(problem, field, "; ".join(f"{f}: {p}" for f, p in named))


NAMES = re.compile(r"\b\w+IODescriptor\b")


def normalized(body: Any, status: int) -> dict[str, Any]:
    """Any JSON error body (ours, BentoML's, a list) in the one shape."""
    if isinstance(body, list) and len(body) == 1:  # BentoML answers some errors as [{...}]
        body = body[0]
    if not isinstance(body, dict):
        return error_body(str(body)[:200] or f"HTTP {status}")
    if isinstance(body.get("detail"), list):
        return from_validation(body["detail"])
    error = NAMES.sub("request", str(body.get("error") or body.get("message") or f"HTTP {status}"))
    field = str(body.get("field") or "")
    if field and error.startswith(f"{field}: "):
        error = error[len(field) + 2:]
    out = error_body(error, field, None if body.get("detail") is None else str(body["detail"]))
    for key in ("index", "task_id"):
        if key in body:
            out[key] = body[key]
    return out


def for_status(status: int, allow: str = "") -> dict[str, Any]:
    """The body of a 4xx that came without one (Starlette's plain-text 404 and 405); `allow`:
    the methods a 405's endpoint answers."""
    problem, field = STATUS_TEXT.get(status, (f"HTTP {status}", ""))
    if status == 405 and allow:
        problem = f"this endpoint answers {allow} only; see /docs"
    return error_body(problem, field)
