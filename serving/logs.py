"""Logs of the service: a 4xx is the caller's mistake and gets one line; tracebacks are for
5xx. BentoML logs every refused request body with its full traceback (a fuzzing run wrote
21 MB of them), so a filter on its logger shortens those records."""

from __future__ import annotations

import logging
import re

from pydantic import ValidationError

BENTOML_HTTP_LOGGERS = ("bentoml._internal.server.http_app", "_bentoml_impl.server.app")


def _client_error(exc: BaseException | None) -> bool:
    if isinstance(exc, ValidationError):
        return True
    code = getattr(getattr(exc, "error_code", None), "value", None)
    return isinstance(code, int) and 400 <= code < 500


class ClientErrorsOnOneLine(logging.Filter):
    """Drop the traceback of a record whose exception is a client error, keeping its gist."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if _client_error(exc):
            gist = " ".join(str(exc).split())[:200]
            record.msg = f"{record.getMessage()}: refused ({type(exc).__name__}: {gist})"
            record.args, record.exc_info, record.exc_text = None, None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ControlCharactersEscaped(logging.Filter):
    """The access log writes the decoded request path as it came: `%0A` in a path would start
    a forged log line and `%00` would write a NUL. Escape control characters in its values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(CONTROL.sub(lambda m: repr(m.group())[1:-1], a)
                                if isinstance(a, str) else a for a in record.args)
        return True


def _add_once(name: str, kind: type[logging.Filter]) -> None:
    logger = logging.getLogger(name)
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())


def quiet_client_errors() -> None:
    """One line per 4xx on BentoML's loggers, and an access log a client cannot forge."""
    for name in BENTOML_HTTP_LOGGERS:
        _add_once(name, ClientErrorsOnOneLine)
    _add_once("bentoml.access", ControlCharactersEscaped)
