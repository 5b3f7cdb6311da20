"""The model factory's HTTP clients: the SDK's aiohttp transport, one pool per event loop that
holds a whole fan-out, closed (with its connections) when its loop ends."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import weakref
from typing import Any

import openai

from langgraph_fanout.llm.models import load_chat_model, model_for
from state.context import Context
from tests.fake_llm import FakeLLM


def open_sockets() -> int:
    """Sockets this process has open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:  # closed meanwhile (e.g. the listdir's own fd)
            pass
    return count


def test_openai_models_use_the_sdks_aiohttp_transport(fake_llm: FakeLLM) -> None:
    model: Any = load_chat_model("openai:fake-model", 0.0, 64, 5.0)

    assert isinstance(model.http_async_client, openai.DefaultAioHttpClient)


async def test_a_fan_out_wider_than_aiohttps_default_pool_is_in_flight_at_once(
    fake_llm: FakeLLM,
) -> None:
    fan_out = 120  # aiohttp's own default pool holds 100 connections
    fake_llm.configure(latency=1.5)
    model = model_for(Context(), "worker")

    await asyncio.gather(*(model.ainvoke(f"question {i}") for i in range(fan_out)))

    assert fake_llm.stats()["peak_in_flight"] == fan_out


def test_clients_and_connections_are_closed_when_their_event_loop_ends(fake_llm: FakeLLM) -> None:
    clients: list[Any] = []
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def five_calls() -> None:
        model: Any = model_for(Context(), "worker")
        clients.append(model.http_async_client)
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await asyncio.gather(*(model.ainvoke(f"question {i}") for i in range(5)))

    before = open_sockets()
    asyncio.run(five_calls())
    asyncio.run(five_calls())  # a new loop gets a new client: the first one's loop is gone

    assert len(fake_llm.log()) == 10
    assert clients[0] is not clients[1]
    assert [client.is_closed for client in clients] == [True, True]
    assert open_sockets() == before  # no connection left behind
    clients.clear()
    gc.collect()
    assert [loop() for loop in loops] == [None, None]  # nor the loops and their models


SDKS_LOADED = """
import sys
import graphs.article, graphs.evaluation, graphs.research, langgraph_fanout.cli.main
loaded = lambda: sorted({"openai", "langchain_openai", "aiohttp"} & set(sys.modules))
print(loaded())
from langgraph_fanout.llm.models import load_chat_model
load_chat_model("openai:any-model", temperature=0.0, max_tokens=10, timeout=5.0)
print(loaded())
"""


def test_the_provider_sdks_load_with_the_first_model_not_with_the_graphs() -> None:
    """``fanout runs``/``show`` and a Temporal client read runs without calling a model."""
    result = subprocess.run(
        [sys.executable, "-c", SDKS_LOADED],
        capture_output=True,
        text=True,
        env=os.environ | {"OPENAI_API_KEY": "unused"},
        check=True,
    )
    assert result.stdout.splitlines() == ["[]", "['aiohttp', 'langchain_openai', 'openai']"]


def test_a_server_imports_the_provider_sdks_as_it_starts_not_in_its_first_run() -> None:
    """In a run, the imports would stall the event loop of every run on the server (measured
    with asyncio's debug mode in an Aegra replica: 1.6 s in its first run, 0.25 s after)."""
    served = (
        "import sys, langgraph_fanout.server.graphs\n"
        "print(sorted({'openai', 'langchain_openai'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", served], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == ["['langchain_openai', 'openai']"]
