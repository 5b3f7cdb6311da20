"""What the CLI's live worker text costs a run: token streaming and the live table.

    python -m benchmarks.live_output [--sizes 100 1000] [--reps 5 3] [--latency 0.1]
                                     [--reply-chars 0 1500] [--out FILE]

The article graph with N sections (no checkpointer), against the fake OpenAI-compatible server
(``fake_llm``, its own process) at latency L per call, through the real client path, in
one event loop. Variants alternate run by run (order reversed every other round); medians.

- ``no handler``: ``graph.ainvoke``, nothing displayed (the baseline).
- ``live table``: ``ainvoke`` with the progress display
  (``langgraph_fanout.cli.progress.RunProgress``) on a terminal, without any worker text
  (the "live table" row of ``make bench``).
- ``log lines``: the CLI's run path (``langgraph_fanout.cli.stream.stream_run``) with
  stderr not a terminal: ``astream`` of ``values`` only, one plain line per task event, no token
  streaming.
- ``live + text``: the CLI's run path on a terminal: ``astream`` of ``values`` and
  ``messages``; the live table shows each worker's current line, and as many calls at a
  time stream their reply as the table has rows (20; ``langgraph_fanout.llm.call.StreamSlots``).
- ``live + text, all``: the same with every call streaming (what ``stream_mode="messages"``
  does on its own): what the slots save.

Twice: with the fake's own replies (about 100 characters, 9 streamed chunks), and with
worker replies of ``--reply-chars`` characters (1,500: about 95 chunks; a real section is
longer still, and a real API streams a token, 3-4 characters, per chunk).

Every terminal variant renders into a buffer (120 columns) at rich's 4 frames a second, as on a
real terminal. The fake server shares the machine's cores, and a streamed reply costs it (and
the client) more than a whole one: that is part of what is measured. Prints a Markdown table
and writes JSON (default ``benchmarks/results/live_output.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "live_output.json"
TOPIC = "The history and future of tidal power"
REPLY_LINE = "Tidal power turns the rise and fall of the sea into electricity. "

Run = Callable[[], Awaitable[None]]


def variants(n: int) -> dict[str, Run]:
    """The ways to run an article with ``n`` sections."""
    from rich.console import Console

    from graphs.article import graph
    from langgraph_fanout.cli.progress import MAX_ROWS, RunProgress
    from langgraph_fanout.cli.stream import stream_run
    from state.context import Context

    context = Context(max_sections=n)

    def check(output: dict[str, Any]) -> None:
        if len(output["completed_sections"]) != n:
            raise RuntimeError(f"{len(output['completed_sections'])} sections, expected {n}")

    def config() -> dict[str, Any]:
        return {"configurable": {"thread_id": str(uuid.uuid4())}}

    def progress(terminal: bool) -> RunProgress:
        console = Console(file=io.StringIO(), force_terminal=terminal, width=120)
        return RunProgress(console)

    async def no_handler() -> None:
        check(await graph.ainvoke({"topic": TOPIC}, config(), context=context))

    async def live_table() -> None:
        display = progress(terminal=True)
        with display:
            out = await graph.ainvoke(
                {"topic": TOPIC}, {**config(), "callbacks": [display]}, context=context
            )
        check(out)

    def cli_path(terminal: bool, slots: int | None = MAX_ROWS) -> Run:
        async def run() -> None:
            display = progress(terminal)
            cfg: Any = {**config(), "callbacks": [display]}
            out = await stream_run(
                graph, {"topic": TOPIC}, cfg, context, display, None, stream_slots=slots
            )
            check(out)

        return run

    return {
        "no handler": no_handler,
        "live table": live_table,
        "log lines": cli_path(terminal=False),
        "live + text": cli_path(terminal=True),
        "live + text, all": cli_path(terminal=True, slots=None),
    }


async def measure(run: Run) -> tuple[float, float]:
    """Wall and CPU seconds of one run."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    await run()
    return time.perf_counter() - wall, time.process_time() - cpu


async def bench(
    fake: Any,
    latency: float,
    sizes: dict[int, int],
    reply_chars: list[int],
    only: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Every variant at every size and reply length, round-robin; a row for each."""
    rows = []
    for chars, (n, reps) in [(c, s) for c in reply_chars for s in sizes.items()]:
        fake.reset()
        fake.configure(latency=latency, default_items=n)
        if chars:
            text = (REPLY_LINE * (chars // len(REPLY_LINE) + 1))[:chars]
            fake.add_rules({"match": "Article topic", "response": text})
        runs = {k: v for k, v in variants(n).items() if k == "no handler" or not only or k in only}
        for run in runs.values():  # warm up: imports, clients, the first streamed call
            await run()
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        names = list(runs)
        for rep in range(reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                samples[name].append(await measure(runs[name]))
        base = statistics.median(s[0] for s in samples["no handler"])
        table = statistics.median(s[0] for s in samples.get("live table", samples["no handler"]))
        base_cpu = statistics.median(s[1] for s in samples["no handler"])
        for name in names:
            wall = statistics.median(s[0] for s in samples[name])
            rows.append(
                {
                    "n": n,
                    "reply_chars": chars,
                    "variant": name,
                    "reps": reps,
                    "wall_s": wall,
                    "over_no_handler": wall / base,
                    "over_live_table": wall / table,
                    "cpu_s": statistics.median(s[1] for s in samples[name]),
                    "cpu_over_no_handler": statistics.median(s[1] for s in samples[name])
                    / base_cpu,
                    "walls": [s[0] for s in samples[name]],
                }
            )
        print(
            f"  N={n}, replies {chars or 'as faked'}: "
            + ", ".join(
                f"{r['variant']} {r['wall_s']:.3f}s"
                for r in rows
                if (r["n"], r["reply_chars"]) == (n, chars)
            ),
            file=sys.stderr,
            flush=True,
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The rows as a Markdown table, with how and where they were measured."""
    out = [
        f"Measured {results['date']} on {results['cpu']}, {results['cores']} cores, Python "
        f"{results['python']}; fake server at L = {results['latency_s'] * 1000:g} ms; load "
        f"average {results['loadavg_start'][0]:.2f} at start, {results['loadavg_end'][0]:.2f} "
        "at end (medians).",
        "",
        "| N | worker reply | variant | runs | wall | vs no handler | vs live table | CPU "
        "| CPU vs no handler |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        reply = f"{r['reply_chars']:,} chars" if r["reply_chars"] else "~100 chars"
        out.append(
            f"| {r['n']:,} | {reply} | {r['variant']} | {r['reps']} | {r['wall_s']:.3f} s | "
            f"{r['over_no_handler']:.2f} | {r['over_live_table']:.2f} | {r['cpu_s']:.2f} s | "
            f"{r['cpu_over_no_handler']:.2f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--reps", type=int, nargs="+", default=[5, 3], help="runs per size")
    parser.add_argument("--latency", type=float, default=0.1, help="fake latency per call (s)")
    parser.add_argument(
        "--reply-chars",
        type=int,
        nargs="+",
        default=[0, 1500],
        help="worker reply length (0: the fake's own, ~100 characters)",
    )
    parser.add_argument(
        "--only", nargs="+", help="variants to run besides 'no handler' (default: all)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if len(args.reps) != len(args.sizes):
        parser.error("give one --reps per --sizes")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.fake_llm import start_fake_llm

    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY"):
        os.environ.pop(name, None)
    gc.set_threshold(10_000, 10, 10)  # as the CLI runs (langgraph_fanout/cli/main.py)
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        "unknown CPU",
    )
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "latency_s": args.latency,
        "loadavg_start": os.getloadavg(),
    }
    with start_fake_llm(latency=args.latency) as fake:
        os.environ.update(
            OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench-key", FANOUT_MODEL="openai:x"
        )
        sizes = dict(zip(args.sizes, args.reps, strict=True))
        results["rows"] = asyncio.run(bench(fake, args.latency, sizes, args.reply_chars, args.only))
    results["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
