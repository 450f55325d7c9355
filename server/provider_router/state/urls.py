"""State backend URIs: which backend a URI names, and how to show one without credentials.

Kept apart from the backends so that reading the config never imports a Redis client.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from provider_router.errors import ConfigError

REDIS_SCHEMES = ("redis", "rediss")
"""URI schemes served by Redis: plain TCP, and TLS (`rediss`)."""


def is_redis_url(url: str) -> bool:
    """Whether `url` names a Redis backend (`redis://` or `rediss://`)."""
    return urlsplit(url).scheme in REDIS_SCHEMES


def redacted(url: str) -> str:
    """`url` without any user or password: safe for logs, errors and metrics."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def check_redis_url(url: str, key: str = "state.url") -> None:
    """ConfigError naming `key` unless `url` is a usable redis:// or rediss:// URI.

    A password in the URL is refused: config files and their overrides get logged, copied
    and committed; the password belongs in the variable named by `[state] password_env`.
    """
    parts = urlsplit(url)
    shown = redacted(url) if parts.scheme in REDIS_SCHEMES else "(not shown)"
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(key, shown, "a redis:// or rediss:// URI")
    if parts.password is not None:
        raise ConfigError(key, shown, "a URI without a password (name the variable holding "
                                      "it in [state] password_env)")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(key, shown, "redis://HOST:PORT/DB with a port from 1 to 65535"
                          ) from None
    db = parts.path.lstrip("/")
    if not parts.hostname or port == 0 or (db and not db.isdigit()):
        raise ConfigError(key, shown, "redis://HOST:PORT/DB (DB a number, e.g. /0)")
