"""Structured logging: text or JSON lines, the request id on every record, secrets redacted."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
"""The id of the request being served by the current task (set by the api layer)."""

REDACTED = "[REDACTED]"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the current request id."""
        record.request_id = REQUEST_ID.get()
        return True


class SecretRedactionFilter(logging.Filter):
    """Last line of defence: replaces any known secret value in a record's final message.

    Secrets are never logged on purpose; this catches a provider echoing a key back in an
    error body, for instance. `secrets` is read at each record so new registrations count.
    """

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message when it contains a secret."""
        message = record.getMessage()
        cleaned = message
        for secret in self._secrets():
            if len(secret) >= 8 and secret in cleaned:
                cleaned = cleaned.replace(secret, REDACTED)
        if cleaned is not message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1])
            if any(len(s) >= 8 and s in text for s in self._secrets()):
                record.exc_info = None
                record.msg = f"{cleaned} (exception text withheld: it contained a secret)"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log pipelines."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(level: str, fmt: str, secrets: Callable[[], Iterable[str]]) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SecretRedactionFilter(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
