"""Open a LangGraph checkpointer from a URL: a SQLite file (default) or PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

SQLITE_SYNC = "PRAGMA synchronous=NORMAL"
"""With the saver's WAL journal: every commit survives a killed process (not a power cut)."""
DEFAULT_DB = ".fanout/checkpoints.sqlite"
"""Where runs are kept unless ``--db`` or $FANOUT_DB says otherwise (relative to the cwd)."""


def db_url(url: str | None = None) -> str:
    """The database to use: ``url``, else $FANOUT_DB, else the default SQLite file."""
    return url or os.environ.get("FANOUT_DB") or DEFAULT_DB


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return url.startswith(("postgres://", "postgresql://"))


def redact(url: str) -> str:
    """``url`` fit to print: a PostgreSQL URL's password replaced by ``***``."""
    if not is_postgres(url):
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def exists(url: str | None = None) -> bool:
    """Whether the database may hold runs: a SQLite file that exists, or any PostgreSQL URL."""
    url = db_url(url)
    return is_postgres(url) or _sqlite_file(url).is_file()


def _sqlite_file(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))


def _sqlite_path(url: str) -> str:
    path = _sqlite_file(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


class DatabaseError(Exception):
    """The checkpoint database cannot be opened (unreachable, not writable, not a database)."""


@contextmanager
def open_checkpointer(url: str | None = None) -> Iterator[BaseCheckpointSaver]:
    """A synchronous saver for ``url`` (see :func:`db_url`), its tables created if missing.

    Raises:
        DatabaseError: the database cannot be opened or set up.
    """
    url = db_url(url)
    with ExitStack() as stack:
        try:
            if is_postgres(url):
                from langgraph.checkpoint.postgres import PostgresSaver

                saver: PostgresSaver | SqliteSaver
                saver = stack.enter_context(PostgresSaver.from_conn_string(url))
                saver.setup()
            else:
                from langgraph.checkpoint.sqlite import SqliteSaver

                saver = stack.enter_context(SqliteSaver.from_conn_string(_sqlite_path(url)))
                saver.setup()
                saver.conn.execute(SQLITE_SYNC)
        except Exception as exc:
            raise DatabaseError(f"cannot open {redact(url)}: {exc}") from exc
        yield saver


@asynccontextmanager
async def aopen_checkpointer(
    url: str | None = None, *, defer_thread_deletes: bool = False
) -> AsyncIterator[BaseCheckpointSaver]:
    """The asynchronous form of :func:`open_checkpointer`.

    ``defer_thread_deletes``: the saver the ``langgraph dev`` server needs
    (``persistence/deferred_deletes.py`` says why).
    """
    url = db_url(url)
    async with AsyncExitStack() as stack:
        try:
            if is_postgres(url):
                from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

                from persistence.deferred_deletes import DeferredDeletePostgresSaver

                pg = DeferredDeletePostgresSaver if defer_thread_deletes else AsyncPostgresSaver
                saver: AsyncPostgresSaver | AsyncSqliteSaver
                saver = await stack.enter_async_context(pg.from_conn_string(url))
                await saver.setup()
            else:
                from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

                from persistence.deferred_deletes import DeferredDeleteSqliteSaver

                sqlite = DeferredDeleteSqliteSaver if defer_thread_deletes else AsyncSqliteSaver
                path = _sqlite_path(url)
                saver = await stack.enter_async_context(sqlite.from_conn_string(path))
                await saver.setup()
                await saver.conn.execute(SQLITE_SYNC)
        except Exception as exc:
            raise DatabaseError(f"cannot open {redact(url)}: {exc}") from exc
        yield saver
