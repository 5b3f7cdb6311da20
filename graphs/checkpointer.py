"""Open a LangGraph checkpointer from a URL: a SQLite file (default) or PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver

DEFAULT_DB = ".fanout/checkpoints.sqlite"
"""Where runs are kept unless ``--db`` or $FANOUT_DB says otherwise (relative to the cwd)."""


def db_url(url: str | None = None) -> str:
    """The database to use: ``url``, else $FANOUT_DB, else the default SQLite file."""
    return url or os.environ.get("FANOUT_DB") or DEFAULT_DB


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return url.startswith(("postgres://", "postgresql://"))


def _sqlite_path(url: str) -> str:
    path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


@contextmanager
def open_checkpointer(url: str | None = None) -> Iterator[BaseCheckpointSaver]:
    """A synchronous saver for ``url`` (see :func:`db_url`), tables created on first use."""
    url = db_url(url)
    if is_postgres(url):
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(url) as saver:
            saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        with SqliteSaver.from_conn_string(_sqlite_path(url)) as saver:
            yield saver


@asynccontextmanager
async def aopen_checkpointer(url: str | None = None) -> AsyncIterator[BaseCheckpointSaver]:
    """The asynchronous form of :func:`open_checkpointer`."""
    url = db_url(url)
    if is_postgres(url):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(_sqlite_path(url)) as saver:
            yield saver
