"""Big fan-outs on Temporal: payloads compressed, and the large ones kept in the database.

An article of 1,000 sections of 2,000 characters returns over 4 MB, twice Temporal's 2 MiB
cap on one payload: it must complete on Temporal with the same output as in-process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.temporal_cluster import temporal_binary

temporal_binary()  # skips the module (fails under CI) without the [temporal] extra

from temporalio.api.common.v1 import Payload  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.converter import (  # noqa: E402
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from langgraph_fanout.temporal.client import connect, run_graph  # noqa: E402
from langgraph_fanout.temporal.payloads import (  # noqa: E402
    COMPRESS_FROM,
    STORE_FROM,
    ZLIB_ENCODING,
    DatabaseDriver,
    PayloadMissingError,
    ZlibCodec,
)
from langgraph_fanout.temporal.worker import serving  # noqa: E402
from state.context import Context  # noqa: E402
from tests.fake_llm import FakeLLM  # noqa: E402
from tests.fanout_cli import fanout, json_result  # noqa: E402
from tests.temporal_cluster import kill, start_worker, wait_until_ready  # noqa: E402

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(300)]

TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024


def payload(data: bytes) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


async def test_codec_compresses_what_shrinks_and_restores_it_exactly() -> None:
    codec = ZlibCodec()
    prose = payload(b'"' + b"the heat pump moves heat from the cold air. " * 200 + b'"')
    small = payload(b'"tides"')
    noise = payload(os.urandom(4 * COMPRESS_FROM))

    encoded = await codec.encode([prose, small, noise])

    assert encoded[0].metadata["encoding"] == ZLIB_ENCODING
    assert encoded[0].ByteSize() < prose.ByteSize() / 10
    assert encoded[1] == small and encoded[2] == noise  # too small; does not shrink
    assert await codec.decode(encoded) == [prose, small, noise]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "payloads.sqlite")
    return str(request.getfixturevalue("postgres_url"))


async def test_database_driver_keeps_payloads_by_content(database: str, tmp_path: Path) -> None:
    driver = DatabaseDriver(database)
    big = [payload(os.urandom(STORE_FROM)), payload(os.urandom(STORE_FROM))]

    claims = await driver.store(StorageDriverStoreContext(), big)
    again = await driver.store(StorageDriverStoreContext(), big[:1])  # a retried attempt
    read = await driver.retrieve(StorageDriverRetrieveContext(), list(reversed(claims)))

    assert again == claims[:1]
    assert read == list(reversed(big))
    other = DatabaseDriver(str(tmp_path / "another.sqlite"))  # a worker with another --db
    with pytest.raises(PayloadMissingError, match="must use the same --db / \\$FANOUT_DB"):
        await other.retrieve(StorageDriverRetrieveContext(), claims)
    missing = StorageDriverClaim(claim_data={"sha256": "0" * 64})
    with pytest.raises(PayloadMissingError, match="is not in"):
        await driver.retrieve(StorageDriverRetrieveContext(), [missing])


@pytest.mark.alone  # 1,000 calls in one worker: on 2 cores shared with 3 other test workers,
# its batches missed their 10 s heartbeats and failed
async def test_an_article_of_1000_sections_of_2000_characters_completes_on_temporal(
    fake_llm: FakeLLM, address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Both runs in ``fanout`` processes: a run of 1,000 keeps ~1,000 connections open."""
    fake_llm.configure(latency=0.05)
    rules = ({"schema": "Sections", "items": 1000}, {"match": "Article topic", "reply_chars": 2000})
    fake_llm.add_rules(*rules)
    command = ("article", "tides", "--max-sections", "1000", "--json")
    local = json_result(fanout(fake_llm, tmp_path, *command, timeout=120))
    fake_llm.reset()
    fake_llm.configure(latency=0.05)
    fake_llm.add_rules(*rules)
    worker = start_worker(fake_llm, tmp_path, address, task_queue, "w1")
    try:
        wait_until_ready(tmp_path, "w1", worker)
        remote = json_result(
            fanout(
                fake_llm, tmp_path, *command, "--temporal", address, "--task-queue", task_queue,
                timeout=120,
            )
        )  # fmt: skip
    finally:
        kill(worker)

    output = {k: v for k, v in remote.items() if k not in ("thread_id", "usage")}
    assert output == {k: v for k, v in local.items() if k not in ("thread_id", "usage")}
    assert len(remote["completed_sections"]) == 1000
    # Every reply counted once: the same tokens. A batch whose heartbeats came late on a
    # starved worker (the full suite on 2 cores) is retried, and its calls then in flight are
    # made again: they count as calls, without tokens.
    calls = remote["usage"].pop("llm_calls")
    assert remote["usage"] == {k: v for k, v in local["usage"].items() if k != "llm_calls"}
    assert local["usage"]["llm_calls"] == 1001 and 1001 <= calls <= 1050, calls  # seen: 1006, 1008
    size = len(client.data_converter.payload_converter.to_payload(output).data)
    assert size > 2 * TEMPORAL_PAYLOAD_LIMIT  # what Temporal alone would have refused
    history = await client.get_workflow_handle(remote["thread_id"]).fetch_history()
    (completed,) = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    ]
    result = completed.workflow_execution_completed_event_attributes.result.payloads[0]
    assert result.ByteSize() < 1024  # a reference; the output itself is in the database
    assert max(e.ByteSize() for e in history.events) < STORE_FROM + 4096


async def test_a_client_on_another_database_than_the_workers_is_told_what_to_change(
    fake_llm: FakeLLM, address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    fake_llm.add_rules({"match": "Article topic", "reply_chars": 400_000})
    workers = await connect(address, db=str(tmp_path / "elsewhere.sqlite"))
    context = Context(model="openai:fake-model", max_sections=3)

    async with serving(workers, task_queue):
        with pytest.raises(PayloadMissingError) as missing:
            await run_graph(client, "article", {"topic": "tides"}, context, task_queue=task_queue)

    assert "is not in" in str(missing.value) and "payloads.sqlite" in str(missing.value)
    assert "must use the same --db / $FANOUT_DB" in str(missing.value)
