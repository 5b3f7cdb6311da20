"""Profile one contender of ``benchmarks.run`` (the article workflow) at a large fan-out.

    python -m benchmarks.profiling [--contender project] [--n 1000] [--runs 3] [--latency 0.1]
                                   [--pyinstrument] [--top 40] [--save FILE]

Runs the contender (``benchmarks/contenders.py``; ``project+sqlite`` included) in this process
against the fake server and prints where it spends CPU: cProfile's top functions by own time
and by cumulative time, or a pyinstrument tree with ``--pyinstrument`` (``pip install
pyinstrument``; not a project dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.contenders import contender
from benchmarks.run import FAKE_MODEL, ROOT


async def _profile(args: argparse.Namespace, sqlite: str) -> None:
    async with contender(args.contender, sqlite, args.postgres_url) as run:
        await run(args.n)  # warm-up: imports, connections, caches
        profiler: Any
        if args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="enabled", interval=0.0005)
            start, stop = profiler.start, profiler.stop
        else:
            profiler = cProfile.Profile()
            start, stop = profiler.enable, profiler.disable
        cpu0, t0 = time.process_time(), time.perf_counter()
        start()
        for _ in range(args.runs):
            await run(args.n)
        stop()
        wall = (time.perf_counter() - t0) / args.runs
        cpu = (time.process_time() - cpu0) / args.runs
    print(
        f"===== {args.contender}: N={args.n}, {args.runs} runs: {wall:.3f} s wall, {cpu:.3f} s "
        f"CPU per run (profiled, so inflated), {cpu / args.n * 1000:.2f} ms CPU per worker ====="
    )
    if args.pyinstrument:
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        return
    if args.save:
        profiler.dump_stats(args.save)
    stats = pstats.Stats(profiler)
    print(by_package(stats))
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        stats.stream = text  # type: ignore[attr-defined]
        stats.strip_dirs().sort_stats(key).print_stats(args.top)
        print(text.getvalue())


def by_package(stats: pstats.Stats) -> str:
    """Own CPU time summed per top-level package (stdlib modules under their own names)."""
    totals: dict[str, float] = {}
    for (path, _, function), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "site-packages/" in path:
            package = path.split("site-packages/", 1)[1].split("/", 1)[0]
        elif path.startswith(str(ROOT)):
            package = "this project: " + Path(path).relative_to(ROOT).parts[0]
        elif path == "~":  # "<method 'connect' of '_socket.socket' objects>", "<built-in ...>"
            package = "C: " + function.removesuffix(" objects>").strip("<>")
        else:
            package = "stdlib: " + Path(path).stem
        totals[package] = totals.get(package, 0.0) + own
    total = sum(totals.values())
    rows = sorted(totals.items(), key=lambda item: -item[1])[:25]
    return "own CPU by package:\n" + "\n".join(
        f"  {seconds:7.3f} s {seconds / total:6.1%}  {package}" for package, seconds in rows
    )


def main(argv: list[str] | None = None) -> None:
    """Start the fake server, profile, print."""
    from tests.fake_llm import start_fake_llm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contender", default="project")
    parser.add_argument("--n", type=int, default=1000, help="sections (workers)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--postgres-url", help="for project+postgres")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--save", type=Path, help="write the cProfile stats to this file")
    args = parser.parse_args(argv)

    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY"):
        os.environ.pop(name, None)
    with start_fake_llm(latency=args.latency) as fake, tempfile.TemporaryDirectory() as tmp:
        fake.configure(default_items=args.n)
        os.environ.update(
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="bench-key",
            FANOUT_MODEL=f"openai:{FAKE_MODEL}",
            FAKE_MODEL=FAKE_MODEL,
        )
        asyncio.run(_profile(args, f"{tmp}/profile.sqlite"))


if __name__ == "__main__":
    main()
