"""How runs' data travel through Temporal: compressed, and large texts by reference.

Temporal caps one payload at 2 MiB and one history at 50 MiB; an article of 1,000 sections
of 2,000 characters returns over 4 MB. Two of Temporal's own mechanisms keep runs far from
those limits, the same in every client and worker (:func:`data_converter`):

- :class:`ZlibCodec`, a payload codec: every payload over 1 KiB is stored zlib-compressed
  (prose shrinks to about a third), large ones in a thread, so a worker's event loop goes on
  heartbeating its activities meanwhile;
- :class:`DatabaseDriver`, an external storage driver: a payload still over 256 KiB after
  compression is kept in a table of the checkpoint database (``--db`` / ``$FANOUT_DB``,
  content-addressed by its SHA-256, :mod:`langgraph_fanout.persistence.payload_store`) and
  only a reference travels through Temporal. Clients and
  workers must share that database: a PostgreSQL URL when they run on different machines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import zlib
from collections.abc import Callable, Sequence

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

from langgraph_fanout.persistence.payload_store import PayloadStore
from langgraph_fanout.persistence.urls import DatabaseError
from state.context import ConfigurationError, Context

ZLIB_ENCODING = b"binary/zlib"
COMPRESS_FROM = 1024
"""Payloads smaller than this many bytes travel as they are (compressing them gains little)."""
COMPRESS_LEVEL = 1
"""zlib's fastest level: 8 MB of prose in 0.35 s to 33% of its size, where level 6 took 2.9 s
for 28% (2 loaded cores): a run's result is compressed within its workflow task's timeout."""
IN_THREAD_FROM = 64 * 1024
"""Payloads this large are compressed and restored in a thread (zlib releases the GIL)."""
STORE_FROM = 256 * 1024
"""Payloads this large after compression go to the database; Temporal refuses over 2 MiB."""
MAX_WORKER_TOKENS = 1_024_000
"""Most tokens the fan-out workers of one Temporal run may write (``max_sections`` times
``max_tokens``: 1,000 sections of 1,024 tokens). On 2 cores loaded by two busy processes, 1,000
sections of 4,096 characters finished with no call made twice; of 16,384 characters, 6% of
the calls ran twice (batches' heartbeats came late); of 120,000, the run failed."""


class ZlibCodec(PayloadCodec):
    """Compresses every payload of at least :data:`COMPRESS_FROM` bytes that zlib shrinks."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Compress each payload worth it; leave the others as they are."""
        return [await _off_loop(_compressed, p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Restore compressed payloads; pass any other through."""
        return [await _off_loop(_decompressed, p) for p in payloads]


async def _off_loop(convert: Callable[[Payload], Payload], payload: Payload) -> Payload:
    """``convert(payload)``, in a thread when the payload is large."""
    if payload.ByteSize() < IN_THREAD_FROM:
        return convert(payload)
    return await asyncio.to_thread(convert, payload)


def _compressed(payload: Payload) -> Payload:
    if payload.ByteSize() < COMPRESS_FROM:
        return payload
    data = zlib.compress(payload.SerializeToString(), COMPRESS_LEVEL)
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

    So a payload stored twice (a retried attempt, a replay) is one row (:class:`PayloadStore`).
    """

    def __init__(self, url: str | None = None) -> None:
        self.database = PayloadStore(url)

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
        await self.database.write([(key, run or "", p.SerializeToString()) for key, p in rows])
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
        found = await self.database.read(keys)
        payloads = []
        for key in keys:
            if key not in found:
                raise PayloadMissingError(
                    f"a large payload of this run ({key[:12]}) is not in {self.database.shown}: "
                    "the client and every worker must use the same --db / $FANOUT_DB (a "
                    "postgresql:// URL when they run on different machines)"
                )
            payload = Payload()
            payload.ParseFromString(found[key])
            payloads.append(payload)
        return payloads


def check_written_size(context: Context) -> None:
    """Refuse a run whose sections may hold more than :data:`MAX_WORKER_TOKENS` tokens.

    Raises:
        ConfigurationError: ``max_sections * max_tokens`` is over it.
    """
    most = context.max_sections * context.max_tokens
    if most > MAX_WORKER_TOKENS:
        raise ConfigurationError(
            f"a Temporal run writes at most {MAX_WORKER_TOKENS:,} tokens of sections "
            f"(max_sections x max_tokens), and {context.max_sections:,} x "
            f"{context.max_tokens:,} = {most:,}: lower --max-sections or --max-tokens, or run "
            "it in this process (without --temporal)"
        )


def database_url(converter: DataConverter) -> str | None:
    """The database of :func:`data_converter`'s ``converter`` (None: not one of its own)."""
    storage = converter.external_storage
    for driver in storage.drivers if storage is not None else []:
        if isinstance(driver, DatabaseDriver):
            return driver.database.url
    return None


def data_converter(db: str | None = None) -> DataConverter:
    """The converter every client and worker of the project's runs uses (``db``: see module)."""
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=ZlibCodec(),
        external_storage=ExternalStorage(
            drivers=[DatabaseDriver(db)], payload_size_threshold=STORE_FROM
        ),
    )
