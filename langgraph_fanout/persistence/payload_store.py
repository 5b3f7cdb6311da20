"""Rows of bytes keyed by their SHA-256, in a table of the checkpoint database.

Temporal's payloads too large to travel through it (``langgraph_fanout/temporal/payloads.py``)
are kept here, on SQLite or PostgreSQL. Rows are written once and never changed: writing a key
that is there already does nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from langgraph_fanout.persistence.urls import (
    database_errors,
    db_url,
    is_postgres,
    redact,
    sqlite_file,
)

TABLE = "fanout_temporal_payloads"
Row = tuple[str, str, bytes]
"""A row: the SHA-256 of the data (hex), the id of the workflow that stored it, the data."""


class PayloadStore:
    """The payload table of the database ``url`` names (``--db``; see ``urls.db_url``).

    The database is opened only when a row is written or read.
    """

    def __init__(self, url: str | None = None) -> None:
        url = db_url(url)
        self.url = url if is_postgres(url) else str(sqlite_file(url).resolve())
        self.shown = redact(self.url)
        """The database, fit to print."""

    async def write(self, rows: list[Row]) -> None:
        """Save ``rows`` (a key already there is left as it is).

        Raises:
            DatabaseError: the database cannot be written.
        """
        with database_errors("store a large payload in", self.url):
            if is_postgres(self.url):
                await _pg_write(self.url, rows)
            else:
                await asyncio.to_thread(_sqlite_write, self.url, rows)

    async def read(self, keys: list[str]) -> dict[str, bytes]:
        """The data of those of ``keys`` that are stored, by key.

        Raises:
            DatabaseError: the database cannot be read.
        """
        with database_errors("read a large payload from", self.url):
            if is_postgres(self.url):
                return await _pg_read(self.url, keys)
            return await asyncio.to_thread(_sqlite_read, self.url, keys)


# --- SQLite ----------------------------------------------------------------------------------

SQLITE_CREATE = (
    f"create table if not exists {TABLE} "
    "(sha256 text primary key, workflow_id text not null, data blob not null)"
)


def _sqlite_write(path: str, rows: list[Row]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, timeout=30) as connection:
        connection.execute(SQLITE_CREATE)
        connection.executemany(f"insert or ignore into {TABLE} values (?, ?, ?)", rows)
    connection.close()


def _sqlite_read(path: str, keys: list[str]) -> dict[str, bytes]:
    if not Path(path).is_file():
        return {}
    with sqlite3.connect(path, timeout=30) as connection:
        connection.execute(SQLITE_CREATE)
        marks = ",".join("?" * len(keys))
        found = connection.execute(
            f"select sha256, data from {TABLE} where sha256 in ({marks})", keys
        ).fetchall()
    connection.close()
    return dict(found)


# --- PostgreSQL ------------------------------------------------------------------------------

PG_CREATE = (
    f"create table if not exists {TABLE} "
    "(sha256 text primary key, workflow_id text not null, data bytea not null)"
)


async def _pg_write(url: str, rows: list[Row]) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url) as connection:
        await connection.execute(PG_CREATE)
        async with connection.cursor() as cursor:
            await cursor.executemany(
                f"insert into {TABLE} values (%s, %s, %s) on conflict do nothing", rows
            )


async def _pg_read(url: str, keys: list[str]) -> dict[str, bytes]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url) as connection:
        await connection.execute(PG_CREATE)
        cursor = await connection.execute(
            f"select sha256, data from {TABLE} where sha256 = any(%s)", (keys,)
        )
        return {key: bytes(data) for key, data in await cursor.fetchall()}
