"""Database URLs: which database (``--db``, $FANOUT_DB, a default file), parsed, fit to print.

A URL may hold a password: a message that shows one passes it through :func:`redact` or
:func:`scrub`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from langgraph_fanout.environment import environment

DEFAULT_DB = ".fanout/checkpoints.sqlite"
"""Where runs are kept unless ``--db`` or $FANOUT_DB says otherwise (relative to the cwd)."""

SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = frozenset({"postgres", "postgresql"})
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
"""Query parameters of a database URL that carry a secret (libpq accepts both)."""


class DatabaseError(Exception):
    """The checkpoint database cannot be used (bad URL, unreachable, not writable...)."""


@contextmanager
def database_errors(what: str, url: str) -> Iterator[None]:
    """The block's SQLite, PostgreSQL and system errors as a :class:`DatabaseError`.

    Its message: "cannot <what> <url>: <why>", passwords hidden.
    """
    import psycopg

    try:
        yield
    except (OSError, sqlite3.Error, psycopg.Error) as exc:
        raise DatabaseError(f"cannot {what} {redact(url)}: {scrub(str(exc), url)}") from None


def db_url(url: str | None = None) -> str:
    """The database to use: ``url``, else $FANOUT_DB, else the default SQLite file.

    Raises:
        DatabaseError: a URL that does not parse, or whose scheme is neither PostgreSQL nor
            SQLite.
    """
    chosen = url or environment("FANOUT_DB").fanout_db or DEFAULT_DB
    parts = check_url(chosen, "--db" if url else "$FANOUT_DB")
    if parts is not None and parts.scheme.lower() not in POSTGRES_SCHEMES:
        raise DatabaseError(
            f"unsupported database {redact(chosen)}: use a SQLite file path (or sqlite:///path) "
            "or a postgresql:// URL"
        )
    return chosen


def check_url(url: str, source: str, kind: str = "database URL") -> SplitResult | None:
    """``url`` (from ``source``: an option or a variable) split into its parts; None for a file.

    Raises:
        DatabaseError: it does not parse; the message names ``source`` and the part at fault,
            and shows no password.
    """
    try:
        return _url_parts(url)
    except ValueError as exc:
        raise DatabaseError(
            f"the {kind} in {source} ({redact(url)}, not shown: it may hold a password) "
            f"does not parse: {_why_malformed(exc)}"
        ) from None


def _url_parts(url: str) -> SplitResult | None:
    """``url`` split into its parts, each checked to parse; None for a SQLite file.

    Raises:
        ValueError: a part does not parse (an unmatched ``[``, a port that is no number...).
    """
    scheme = SCHEME.match(url)
    if scheme is None or scheme[1].lower() == "sqlite":
        return None
    parts = urlsplit(url)
    _ = parts.port, parts.hostname, parts.password  # each raises if its part is malformed
    return parts


def _why_malformed(exc: ValueError) -> str:
    """What is wrong with a URL, said without repeating any of it (it may hold a password)."""
    if "IPv6" in str(exc):
        return (
            'its host part has an unmatched "[" or "]"; in a user name or password, write '
            '"[" as %5B and "]" as %5D'
        )
    if "Port" in str(exc):
        return (
            "its port is not a whole number from 0 to 65535; in a user name or password, "
            'write ":" as %3A, "@" as %40 and "/" as %2F'
        )
    return "it is not a valid URL"


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    scheme = SCHEME.match(url)
    return scheme is not None and scheme[1].lower() in POSTGRES_SCHEMES


def redact(url: str) -> str:
    """``url`` fit to print: every password in it (``user:pw@``, ``?password=``) is ``***``.

    Of a URL that does not parse, only the scheme is shown (``postgresql://***``).
    """
    try:
        parts = _url_parts(url)
    except ValueError:
        return f"{url.partition('://')[0]}://***"
    if parts is None:
        return url  # a file path
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = parts.query
    if any(k.lower() in SECRET_PARAMETERS for k, _ in parse_qsl(query, keep_blank_values=True)):
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs], safe="*"
        )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def secrets_of(url: str) -> list[str]:
    """The passwords ``url`` carries (in its user info and query)."""
    try:
        parts = _url_parts(url)
    except ValueError:
        return []  # never opened: db_url refuses it
    if parts is None:
        return []
    found = [v for k, v in parse_qsl(parts.query) if k.lower() in SECRET_PARAMETERS]
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    return [secret for secret in found if secret]


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error about ``url``) on one line, with ``url``'s passwords hidden."""
    for secret in sorted(secrets_of(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return " ".join(text.replace(url, redact(url)).split())


def has_secret(url: str) -> bool:
    """Whether printing ``url`` would hide a password in it."""
    return redact(url) != url


def exists(url: str | None = None) -> bool:
    """Whether the database may hold runs: a SQLite file that exists, or any PostgreSQL URL."""
    url = db_url(url)
    return is_postgres(url) or sqlite_file(url).is_file()


def sqlite_file(url: str) -> Path:
    """The file of a SQLite database given as a path or a ``sqlite:///path`` URL."""
    return Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
