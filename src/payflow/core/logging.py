"""Structured logging: JSON lines to the console and to a file under LOG_DIR rotated daily (14 kept).

Every event passes through `redact`, which removes passwords, tokens, secrets, card data and
`Authorization` headers by key, and bearer tokens or JWTs found inside any string, so that nothing
a caller sends as a credential can reach a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog
from structlog.types import EventDict, WrappedLogger

from payflow.config import Settings

LOG_FILE_NAME = "payflow.log"
RETENTION_DAYS = 14
REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(
    r"pass(word|wd)?|secret|token|authori[sz]ation|cookie|api[_-]?key|card|cvc|cvv|pan$|signature",
    re.IGNORECASE,
)
_SENSITIVE_TEXT = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"  # a bearer credential
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # a JWT
    r"|\b(?:sk|rk|whsec)_[A-Za-z0-9_]+"  # Stripe keys and webhook secrets
)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SENSITIVE_TEXT.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _SENSITIVE_KEY.search(str(key)) else _scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


# The access line (core/middleware.py) carries only these fields, none of which can hold anything
# a caller sent except the request id, which the middleware accepts only as [A-Za-z0-9._:-]. It is
# written for every request, so it skips the scrub; any other field added to it brings it back.
ACCESS_LOGGER = "payflow.access"
_ACCESS_FIELDS = frozenset(
    {
        "event",
        "method",
        "route",
        "status",
        "latency_ms",
        "user_id",
        "request_id",
        "level",
        "logger",
        "timestamp",
    }
)


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    if event_dict.get("logger") == ACCESS_LOGGER and event_dict.keys() <= _ACCESS_FIELDS:
        return event_dict
    scrubbed: EventDict = _scrub(event_dict)
    return scrubbed


def _render_json(event: Any, **_kwargs: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.format_exc_info,
    ]


def _rename_request_id(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    if "request_id" in event_dict:
        event_dict["requestId"] = event_dict.pop("request_id")
    if "user_id" in event_dict:
        event_dict["userId"] = event_dict.pop("user_id")
    return event_dict


class _RenderOnce(structlog.stdlib.ProcessorFormatter):
    """Both handlers (console and file) write the same line: redact and render each record once."""

    def format(self, record: logging.LogRecord) -> str:
        line = record.__dict__.get("_payflow_line")
        if not isinstance(line, str):
            line = super().format(record)
            record.__dict__["_payflow_line"] = line
        return line


def configure_logging(settings: Settings, *, console: TextIO | None = None) -> None:
    """Configure structlog and the `payflow` stdlib logger; safe to call more than once."""
    formatter = _RenderOnce(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact,
            _rename_request_id,
            structlog.processors.JSONRenderer(serializer=_render_json),
        ],
    )
    # The console is stdout for a server; a command whose stdout is its output logs to stderr.
    handlers: list[logging.Handler] = [logging.StreamHandler(console or sys.stdout)]
    log_dir = Path(settings.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    handlers.append(
        TimedRotatingFileHandler(
            log_dir / LOG_FILE_NAME,
            when="midnight",
            backupCount=RETENTION_DAYS,
            utc=True,
            encoding="utf-8",
        )
    )
    root = logging.getLogger("payflow")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    root.propagate = False

    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
