"""How runs' data travel through Temporal: compressed, and large texts by reference.

Temporal caps one payload at 2 MiB and one history at 50 MiB; an article of 1,000 sections
of 2,000 characters returns over 4 MB. Two of Temporal's own mechanisms keep runs far from
those limits, the same in every client and worker (:func:`data_converter`):

- :class:`ZlibCodec`, a payload codec: every payload over 1 KiB is stored zlib-compressed
  (prose shrinks to about a third);
- :class:`DatabaseDriver`, an external storage driver: a payload still over 256 KiB after
  compression is kept in a table of the checkpoint database (``--db`` / ``$FANOUT_DB``,
  content-addressed by its SHA-256) and only a reference travels through Temporal. Clients and
  workers must share that database: a PostgreSQL URL when they run on different machines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sqlite3
import zlib
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    PayloadCodec,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from langgraph_fanout.persistence.urls import (
    DatabaseError,
    db_url,
    is_postgres,
    redact,
    scrub,
    sqlite_file,
)

ZLIB_ENCODING = b"binary/zlib"
COMPRESS_FROM = 1024
"""Payloads smaller than this many bytes travel as they are (compressing them gains little)."""
STORE_FROM = 256 * 1024
"""Payloads this large after compression go to the database; Temporal refuses over 2 MiB."""
TABLE = "fanout_temporal_payloads"


class ZlibCodec(PayloadCodec):
    """Compresses every payload of at least :data:`COMPRESS_FROM` bytes that zlib shrinks."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Compress each payload worth it; leave the others as they are."""
        return [_compressed(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Restore compressed payloads; pass any other through."""
        return [_decompressed(p) for p in payloads]


def _compressed(payload: Payload) -> Payload:
    if payload.ByteSize() < COMPRESS_FROM:
        return payload
    data = zlib.compress(payload.SerializeToString(), 6)
    if len(data) >= payload.ByteSize():
        return payload
    return Payload(metadata={"encoding": ZLIB_ENCODING}, data=data)


def _decompressed(payload: Payload) -> Payload:
    if payload.metadata.get("encoding") != ZLIB_ENCODING:
        return payload
    original = Payload()
    original.ParseFromString(zlib.decompress(payload.data))
    return original


class PayloadMissingError(DatabaseError):
    """A payload stored by reference is not in this process's database."""


class DatabaseDriver(StorageDriver):
    """Keeps large payloads in the checkpoint database, keyed by the SHA-256 of their bytes.

    Rows are written once and never changed, so a payload stored twice (a retried attempt, a
    replay) is one row. The database is opened only when a payload is large enough to need it.
    """

    def __init__(self, url: str | None = None) -> None:
        url = db_url(url)
        self.url = url if is_postgres(url) else str(sqlite_file(url).resolve())

    def name(self) -> str:
        """The name references carry (every client and worker registers the same one)."""
        return "fanout-db"

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        """Save ``payloads``; one claim (``{"sha256": ...}``) each."""
        target = context.target
        run = target.id if isinstance(target, StorageDriverWorkflowInfo) else None
        rows = [(hashlib.sha256(p.SerializeToString()).hexdigest(), p) for p in payloads]
        await self._write([(key, run or "", p.SerializeToString()) for key, p in rows])
        return [StorageDriverClaim(claim_data={"sha256": key}) for key, _ in rows]

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """The payloads ``claims`` name, read back.

        Raises:
            PayloadMissingError: one is not in this database (another was configured where it
                was stored).
        """
        keys = [claim.claim_data["sha256"] for claim in claims]
        found = await self._read(keys)
        payloads = []
        for key in keys:
            if key not in found:
                raise PayloadMissingError(
                    f"a large payload of this run ({key[:12]}) is not in {redact(self.url)}: "
                    "the client and every worker must use the same --db / $FANOUT_DB (a "
                    "postgresql:// URL when they run on different machines)"
                )
            payload = Payload()
            payload.ParseFromString(found[key])
            payloads.append(payload)
        return payloads

    async def _write(self, rows: list[tuple[str, str, bytes]]) -> None:
        try:
            if is_postgres(self.url):
                await _pg_write(self.url, rows)
            else:
                await asyncio.to_thread(_sqlite_write, self.url, rows)
        except (OSError, sqlite3.Error, _psycopg_error()) as exc:
            raise DatabaseError(
                f"cannot store a large payload in {redact(self.url)}: {scrub(str(exc), self.url)}"
            ) from None

    async def _read(self, keys: list[str]) -> dict[str, bytes]:
        try:
            if is_postgres(self.url):
                return await _pg_read(self.url, keys)
            return await asyncio.to_thread(_sqlite_read, self.url, keys)
        except (OSError, sqlite3.Error, _psycopg_error()) as exc:
            raise DatabaseError(
                f"cannot read a large payload from {redact(self.url)}: {scrub(str(exc), self.url)}"
            ) from None


def data_converter(db: str | None = None) -> DataConverter:
    """The converter every client and worker of the project's runs uses (``db``: see module)."""
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=ZlibCodec(),
        external_storage=ExternalStorage(
            drivers=[DatabaseDriver(db)], payload_size_threshold=STORE_FROM
        ),
    )


# --- SQLite ----------------------------------------------------------------------------------

SQLITE_CREATE = (
    f"create table if not exists {TABLE} "
    "(sha256 text primary key, workflow_id text not null, data blob not null)"
)


def _sqlite_write(path: str, rows: list[tuple[str, str, bytes]]) -> None:
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


def _psycopg_error() -> type[Exception]:
    import psycopg

    return psycopg.Error


async def _pg_write(url: str, rows: list[tuple[str, str, bytes]]) -> None:
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
