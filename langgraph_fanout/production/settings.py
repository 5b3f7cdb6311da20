"""The production server's database and Redis URLs, checked before anything starts.

A malformed or unreachable ``DATABASE_URL`` or ``REDIS_URL`` is one line naming the setting and
the cause, with no password in it; the launcher then exits (2) instead of starting replicas that
would print tracebacks, or a migration that would print the password.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from urllib.parse import urlsplit

from langgraph_fanout.persistence.urls import DatabaseError, check_url, is_postgres, redact, scrub

CONNECT_TIMEOUT = 5
"""Seconds to reach the database or Redis before calling it unreachable."""
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


class SettingError(Exception):
    """A setting the production server cannot start with (the message says which, and why)."""


def check_database_url(url: str, name: str = "DATABASE_URL") -> str:
    """``url``, a PostgreSQL database that answers.

    Raises:
        SettingError: it does not parse, is not PostgreSQL, or cannot be reached.
    """
    import psycopg

    if not url:
        raise SettingError(f"${name} is not set: it must be a postgresql:// URL")
    try:
        check_url(url, f"${name}")
    except DatabaseError as exc:
        raise SettingError(str(exc)) from None
    if not is_postgres(url):
        raise SettingError(f"${name} ({redact(url)}) must be a postgresql:// URL")
    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT).close()
    except psycopg.Error as exc:
        raise SettingError(
            f"${name} ({redact(url)}) cannot be reached: {scrub(str(exc), url)}"
        ) from None
    return url


def check_redis_url(url: str, name: str = "REDIS_URL") -> str:
    """``url``, a Redis that answers PING.

    Raises:
        SettingError: it does not parse or cannot be reached.
    """
    import redis

    try:
        parts = check_url(url, f"${name}", kind="Redis URL")
    except DatabaseError as exc:
        raise SettingError(str(exc)) from None
    scheme = (parts.scheme if parts else urlsplit(url).scheme).lower()
    if parts is None or scheme not in REDIS_SCHEMES:
        raise SettingError(f"${name} ({redact(url)}) must be a redis://, rediss:// or unix:// URL")
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
        )
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError) as exc:
        raise SettingError(
            f"${name} ({redact(url)}) cannot be reached: {scrub(str(exc), url)}"
        ) from None
    return url


def exit_unless_usable(environ: Mapping[str, str]) -> None:
    """For a server starting on ``environ``: exit 2 with one line if a URL it needs is bad.

    Checks $DATABASE_URL and $REDIS_URL when set, and $FANOUT_DB, which a replica needs: the
    PostgreSQL database where its runs lock their threads.
    """
    try:
        if url := environ.get("DATABASE_URL"):
            check_database_url(url)
        if url := environ.get("REDIS_URL"):
            check_redis_url(url)
        check_database_url(environ.get("FANOUT_DB", ""), "FANOUT_DB")
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
