"""A/B measurements of performance fixes, applied by monkeypatching where not yet adopted.

    python -m benchmarks.experiments pool     [--n 1000] [--runs 3]
    python -m benchmarks.experiments progress [--n 1000] [--runs 1]
    python -m benchmarks.experiments gc       [--n 1000] [--runs 3]
    python -m benchmarks.experiments sqlite   [--n 1000] [--runs 3]

Each runs its variants round-robin in one process against the fake server (L = 100 ms) and
prints the median wall and CPU of each:

- ``pool``: the article graph on openai's default HTTP client vs on
  ``benchmarks.pool.ShardedTransport`` (each variant has its own model name, so its own
  cached model and client).
- ``progress``: the CLI's ``RunProgress`` as log lines (stderr not a terminal) and as a live
  table (a terminal) vs no handler (adopted: the table is rendered by ``Live``'s own refresh).
- ``gc``: the cyclic garbage collector as is, with a higher gen-0 threshold (adopted by the
  CLI), and off for the run.
- ``sqlite``: the SQLite checkpointer with ``PRAGMA synchronous=FULL`` (SQLite's default)
  vs ``NORMAL`` (adopted; WAL mode: durable across a process crash, not across power loss).

And one hazard, not a fix (``python -m benchmarks.experiments abandoned``): an
``openai.AsyncOpenAI`` client dropped without ``close()`` and collected by the cyclic GC while
another client has requests in flight leaves some of those requests hanging until their read
timeout (1 to 7 rounds in 10 here). Models cached per event loop (``nodes.models``) are dropped
that way when their loop goes away.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.run import FAKE_KEY, TOPIC, RssSampler, Run, alternate, median  # noqa: E402
from cli.progress import RunProgress  # noqa: E402

MAX_ROWS = 20


def article_run(
    graph: Any,
    n: int,
    model: str = "",
    callbacks: Callable[[], list[Any]] | None = None,
    around: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Run:
    """One article run of ``n`` sections, on a new thread."""
    from state.context import Context

    context = Context(max_sections=n, model=model)

    async def run() -> int:
        config: dict[str, Any] = {"configurable": {"thread_id": str(uuid.uuid4())}}
        handlers = callbacks() if callbacks else []
        if handlers:
            config["callbacks"] = handlers
        with contextlib.ExitStack() as stack:
            for handler in handlers:
                if isinstance(handler, RunProgress):
                    stack.enter_context(handler)
            stack.enter_context(around())
            out = await graph.ainvoke({"topic": TOPIC}, config, context=context)
        assert len(out["completed_sections"]) == n
        return n

    return run


@contextlib.contextmanager
def gc_off() -> Any:
    """The cyclic collector off for the block (the next collection comes after the timing)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextlib.contextmanager
def gc_threshold(gen0: int) -> Any:
    """A higher gen-0 threshold for the block."""
    old = gc.get_threshold()
    gc.set_threshold(gen0, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


@contextlib.asynccontextmanager
async def variants_for(name: str, n: int) -> AsyncIterator[dict[str, Run]]:
    """The variants of experiment ``name``."""
    from graphs.article import graph

    if name == "pool":
        import nodes.models as models
        from benchmarks.pool import sharded_async_client

        original = models.init_chat_model

        def init_chat_model(spec: str, **kwargs: Any) -> Any:
            if spec == "openai:fake-sharded":
                kwargs["http_async_client"] = sharded_async_client(60.0)
            return original(spec, **kwargs)

        models.init_chat_model = init_chat_model  # type: ignore[assignment]
        yield {
            "default pool": article_run(graph, n, "openai:fake-default"),
            "sharded pool": article_run(graph, n, "openai:fake-sharded"),
        }
    elif name == "progress":

        def handler(cls: type[RunProgress], terminal: bool) -> Callable[[], list[Any]]:
            from rich.console import Console

            return lambda: [cls(Console(file=io.StringIO(), force_terminal=terminal, width=120))]

        await article_run(graph, n)()  # warm-up
        yield {
            "no handler": article_run(graph, n),
            "log lines": article_run(graph, n, callbacks=handler(RunProgress, False)),
            "live table": article_run(graph, n, callbacks=handler(RunProgress, True)),
        }
    elif name == "gc":
        yield {
            "gc as is": article_run(graph, n),
            "gc gen0=10000": article_run(graph, n, around=lambda: gc_threshold(10_000)),
            "gc off in run": article_run(graph, n, around=gc_off),
        }
    elif name == "sqlite":
        from cli.runs import WORKFLOWS
        from persistence.checkpointer import aopen_checkpointer

        with tempfile.TemporaryDirectory() as tmp:
            async with (
                aopen_checkpointer(f"{tmp}/full.sqlite") as full,
                aopen_checkpointer(f"{tmp}/normal.sqlite") as normal,
            ):
                await normal.conn.execute("PRAGMA synchronous=NORMAL")  # type: ignore[attr-defined]
                yield {
                    "no checkpointer": article_run(graph, n),
                    "sqlite FULL": article_run(WORKFLOWS["article"].compile(full), n),
                    "sqlite NORMAL": article_run(WORKFLOWS["article"].compile(normal), n),
                }
    else:
        raise SystemExit(f"unknown experiment {name!r}")


async def abandoned_client(fake: Any, rounds: int = 10, n: int = 100) -> None:
    """Collect an unclosed client while another one has ``n`` requests in flight."""
    from openai import AsyncOpenAI

    def client() -> AsyncOpenAI:
        return AsyncOpenAI(base_url=fake.base_url, api_key=FAKE_KEY, max_retries=0, timeout=3)

    async def burst(c: AsyncOpenAI) -> None:
        message = [{"role": "user", "content": "hi"}]
        await asyncio.gather(
            *(c.chat.completions.create(model="m", messages=message) for _ in range(n))  # type: ignore[arg-type]
        )

    async def collect_soon() -> None:
        await asyncio.sleep(0.05)
        gc.collect()

    fake.reset()
    hung = 0
    for _ in range(rounds):
        dropped = client()
        await burst(dropped)
        del dropped  # unclosed: only the cyclic GC will collect it
        live = client()
        try:
            await asyncio.gather(burst(live), collect_soon())
        except Exception as exc:
            hung += 1
            print(f"  a request of the live client failed: {type(exc).__name__}")
        await live.close()
    print(f"\nabandoned: {hung} of {rounds} rounds had a request hang until its timeout")


async def experiment(name: str, n: int, runs: int, fake: Any) -> None:
    """Run one experiment and print its table."""
    if name == "abandoned":
        await abandoned_client(fake)
        return
    fake.reset()
    fake.configure(latency=0.1, default_items=n)
    async with variants_for(name, n) as variants:
        for run in variants.values():  # warm-up: each variant's model and client
            if name != "progress":
                await run()
        samples = await alternate(variants, runs, RssSampler(), warmup=0)
    print(f"\n{name}: article, N = {n}, {runs} runs each (load {os.getloadavg()[0]:.1f})")
    base = median(next(iter(samples.values())), "wall")
    for variant, values in samples.items():
        wall, cpu = median(values, "wall"), median(values, "cpu")
        print(f"  {variant:<18} wall {wall:7.3f} s ({wall / base:4.2f})  CPU {cpu:7.3f} s")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, start the fake server, run the experiments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "experiments", nargs="+", choices=["pool", "progress", "gc", "sqlite", "abandoned"]
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    from fake_llm import start_fake_llm

    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY"):
        os.environ.pop(name, None)
    with start_fake_llm(latency=0.1) as fake:
        os.environ.update(
            OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY=FAKE_KEY, FANOUT_MODEL="openai:fake"
        )

        async def all_experiments() -> None:
            for name in args.experiments:
                await experiment(name, args.n, args.runs, fake)

        asyncio.run(all_experiments())


if __name__ == "__main__":
    main()
