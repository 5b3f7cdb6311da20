"""What checkpointing costs: the article graph with no checkpointer, SQLite and PostgreSQL.

In process (no CLI), against the fake LLM server with a fixed latency per call. Variants run
round-robin so that drift in machine load spreads over all of them; the table shows the median
wall time of each and its overhead over the graph without a checkpointer::

    python -m benchmarks.checkpoint_overhead [--sections 8] [--latency 0.1] [--runs 5]
        [--postgres-url URL]   # default: a throwaway cluster, if PostgreSQL is installed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fake_llm import start_fake_llm
from pg_cluster import find_bindir, postgres_cluster
from state.context import Context

TOPIC = "The history of tide prediction"


@contextlib.asynccontextmanager
async def article_graph(url: str | None) -> AsyncIterator[Any]:
    """The article graph, compiled with the checkpointer at ``url`` (None: without one)."""
    from cli.runs import WORKFLOWS
    from graphs.article import graph
    from persistence.checkpointer import aopen_checkpointer

    if url is None:
        yield graph
        return
    async with aopen_checkpointer(url) as saver:
        yield WORKFLOWS["article"].compile(saver)


async def one_run(graph: Any, sections: int) -> float:
    """Wall seconds of one article run on a new thread (durability "async")."""
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    durable = {"durability": "async"} if graph.checkpointer else {}  # else a warning per run
    started = time.perf_counter()
    output = await graph.ainvoke(
        {"topic": TOPIC}, config, context=Context(max_sections=sections), **durable
    )
    elapsed = time.perf_counter() - started
    assert len(output["completed_sections"]) == sections
    return elapsed


async def measure(urls: dict[str, str | None], sections: int, runs: int) -> dict[str, list[float]]:
    """``runs`` timed runs of each variant, round-robin, after one warm-up run each."""
    samples: dict[str, list[float]] = {name: [] for name in urls}
    async with contextlib.AsyncExitStack() as stack:
        graphs = {
            name: await stack.enter_async_context(article_graph(url)) for name, url in urls.items()
        }
        for graph in graphs.values():
            await one_run(graph, sections)
        for _ in range(runs):
            for name, graph in graphs.items():
                samples[name].append(await one_run(graph, sections))
    return samples


def table(samples: dict[str, list[float]]) -> str:
    """Median, min and max per variant, and the median's overhead over the first variant."""
    base = statistics.median(next(iter(samples.values())))
    lines = [
        f"{'checkpointer':<14} {'median s':>9} {'min s':>7} {'max s':>7} {'overhead':>16}",
    ]
    for name, values in samples.items():
        median = statistics.median(values)
        extra = median - base
        overhead = f"{extra * 1000:+.0f} ms {extra / base:+.0%}" if name != "none" else "-"
        lines.append(
            f"{name:<14} {median:>9.3f} {min(values):>7.3f} {max(values):>7.3f} {overhead:>16}"
        )
    return "\n".join(lines)


def main() -> None:
    """Start the fake (and a PostgreSQL cluster if needed), measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per LLM call")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres-url", help="default: start a throwaway cluster")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(start_fake_llm(latency=args.latency))
        fake.configure(default_items=args.sections)
        os.environ.update(
            OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench", FANOUT_MODEL="openai:fake-model"
        )
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fanout-bench-"))
        urls: dict[str, str | None] = {"none": None, "sqlite": f"{tmp}/checkpoints.sqlite"}
        if args.postgres_url:
            urls["postgres"] = args.postgres_url
        elif (bindir := find_bindir()) is not None:
            urls["postgres"] = stack.enter_context(postgres_cluster(bindir))
        else:
            print("PostgreSQL is not installed: measuring without it")
        samples = asyncio.run(measure(urls, args.sections, args.runs))
    print(
        f"article graph, {args.sections} sections, fake LLM {args.latency * 1000:.0f} ms per call, "
        f"median of {args.runs} runs (durability async; load {os.getloadavg()[0]:.1f})"
    )
    print(table(samples))


if __name__ == "__main__":
    main()
