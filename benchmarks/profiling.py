"""Profile the article graph's framework overhead at a large fan-out.

    python -m benchmarks.profiling [--n 1000] [--runs 3] [--checkpointer none|sqlite|URL]
                                   [--callbacks] [--sharded-pool] [--pyinstrument]
                                   [--top 40] [--save DIR]

Runs the article graph (and, for comparison, the ``ChatOpenAI`` floor) against the fake
server and prints where this process spends CPU: cProfile's top functions by own time and by
cumulative time, or a pyinstrument tree with ``--pyinstrument`` (``pip install pyinstrument``;
not a project dependency). ``--callbacks`` adds the CLI's ``RunProgress`` handler.
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
import cProfile  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

TOPIC = "The history and future of tidal power"


async def _profile(args: argparse.Namespace, fake: Any) -> None:
    from rich.console import Console

    from benchmarks.floor import ChatFloor
    from cli.progress import RunProgress
    from cli.runs import WORKFLOWS
    from graphs.article import graph as plain_graph
    from persistence.checkpointer import aopen_checkpointer
    from state.context import Context

    context = Context(max_sections=args.n)
    fake.reset()
    fake.configure(latency=args.latency, default_items=args.n)
    floor = ChatFloor(context)
    async with contextlib.AsyncExitStack() as stack:
        graph = plain_graph
        if args.checkpointer != "none":
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            url = f"{tmp}/c.sqlite" if args.checkpointer == "sqlite" else args.checkpointer
            saver = await stack.enter_async_context(aopen_checkpointer(url))
            graph = WORKFLOWS["article"].compile(saver)
        devnull = stack.enter_context(open(os.devnull, "w"))  # noqa: ASYNC230

        async def ours() -> None:
            config: dict[str, Any] = {"configurable": {"thread_id": str(uuid.uuid4())}}
            if args.callbacks:
                config["callbacks"] = [RunProgress(Console(file=devnull))]
            out = await graph.ainvoke({"topic": TOPIC}, config, context=context)
            assert len(out["completed_sections"]) == args.n

        async def base() -> None:
            await floor.article(TOPIC, args.n)

        await ours()  # warm-up: imports, connections, caches
        await base()
        for name, run in (("ours", ours), ("floor", base)):
            cpu0, t0 = time.process_time(), time.perf_counter()
            if args.pyinstrument:
                from pyinstrument import Profiler

                profiler = Profiler(async_mode="enabled", interval=0.0005)
                profiler.start()
                for _ in range(args.runs):
                    await run()
                profiler.stop()
            else:
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(args.runs):
                    await run()
                prof.disable()
                if args.save:
                    args.save.mkdir(parents=True, exist_ok=True)
                    prof.dump_stats(args.save / f"{name}.pstats")
            wall = (time.perf_counter() - t0) / args.runs
            cpu = (time.process_time() - cpu0) / args.runs
            print(
                f"\n===== {name}: N={args.n}, {args.runs} runs: {wall:.3f} s wall, "
                f"{cpu:.3f} s CPU per run (profiled, so inflated), "
                f"{cpu / args.n * 1000:.2f} ms CPU per worker ====="
            )
            if args.pyinstrument:
                print(profiler.output_text(unicode=False, color=False, show_all=False))
                continue
            for key in ("tottime", "cumulative"):
                text = io.StringIO()
                stats = pstats.Stats(prof, stream=text).strip_dirs().sort_stats(key)
                stats.print_stats(args.top)
                print(text.getvalue().split("\n", 6)[-1] if key == "tottime" else text.getvalue())


def main(argv: list[str] | None = None) -> None:
    """Profile and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="sections (workers)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument(
        "--checkpointer", default="none", help="none, sqlite, or a postgresql:// URL"
    )
    parser.add_argument("--callbacks", action="store_true", help="add the CLI progress handler")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--save", type=Path, help="directory for ours.pstats and floor.pstats")
    parser.add_argument(
        "--sharded-pool", action="store_true", help="with benchmarks.pool.ShardedTransport"
    )
    args = parser.parse_args(argv)
    if args.sharded_pool:
        from benchmarks import pool

        pool.install()

    from fake_llm import start_fake_llm

    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY"):
        os.environ.pop(name, None)
    with start_fake_llm(latency=args.latency) as fake:
        os.environ.update(
            OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench-key", FANOUT_MODEL="openai:fake"
        )
        asyncio.run(_profile(args, fake))


if __name__ == "__main__":
    main()
