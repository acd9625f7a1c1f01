"""Logs of the service: a 4xx is the caller's mistake and gets one line; tracebacks are for
5xx. BentoML logs every refused request body with its full traceback (a fuzzing run wrote
21 MB of them), so a filter on its logger shortens those records."""

from __future__ import annotations

import logging

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


def quiet_client_errors() -> None:
    for name in BENTOML_HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientErrorsOnOneLine) for f in logger.filters):
            logger.addFilter(ClientErrorsOnOneLine())
