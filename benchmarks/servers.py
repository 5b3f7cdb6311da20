"""Runs/s of 20 concurrent research runs: ``langgraph dev`` vs one and two Aegra replicas.

    python -m benchmarks.servers [--runs 20] [--rounds 5] [--latency 0.2] [--jobs 20]

One run starts the fake OpenAI-compatible server (fixed latency per call), a throwaway
PostgreSQL and Redis, ``langgraph dev`` (``--n-jobs-per-worker``, thread state in PostgreSQL
through langgraph_fanout/server/checkpointer.py) and two Aegra clusters
(langgraph_fanout/production/, its default settings: 3 x 10 runs at once per replica), one of one
replica and one of two, each on a database and Redis index of its own. A round sends ``--runs``
research runs at once (no thread) to each server in turn (a two-replica cluster gets them
alternately, as a load balancer would), once with ``runs.wait`` and once with ``runs.stream``;
every output is checked. Prints Markdown: median runs/s and per-run latency, and the servers' CPU
per run. A research run is 5 LLM calls in 3 rounds (plan, 3 researchers at once, writer): at least
3 x latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.run import machine
from benchmarks.temporal import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "Heat pumps in cold climates"


@dataclass
class Server:
    """One variant: where its runs go and which processes do the work."""

    name: str
    urls: list[str]
    pids: list[int]
    samples: dict[str, list[tuple[float, list[float], float]]] = field(default_factory=dict)

    def cpu(self) -> float:
        """CPU seconds of the server's processes and their children so far."""
        pids = [pid for server_pid in self.pids for pid in (server_pid, *children(server_pid))]
        return sum(cpu_seconds(pid) for pid in pids)


def children(pid: int) -> list[int]:
    """Every descendant of process ``pid``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, p in parents.items() if p == parent]
        found += kids
        frontier += kids
    return found


async def one_run(url: str, style: str, topic: str) -> float:
    """One research run without a thread on ``url``; its latency (the output is checked)."""
    from langgraph_sdk import get_client

    client = get_client(url=url)
    start = time.perf_counter()
    try:
        if style == "wait":
            output = await client.runs.wait(None, "research", input={"topic": topic})
        else:
            parts = client.runs.stream(None, "research", input={"topic": topic})
            output = [part.data async for part in parts if part.event == "values"][-1]
    finally:
        await client.aclose()
    assert isinstance(output, dict) and output["task_count"] == 3, output
    return time.perf_counter() - start


async def measure(server: Server, style: str, runs: int, round_: int) -> None:
    """One round: ``runs`` runs at once, spread over the server's URLs."""
    calls: list[Awaitable[float]] = [
        one_run(server.urls[i % len(server.urls)], style, f"{TOPIC} {round_}-{i}")
        for i in range(runs)
    ]
    cpu = server.cpu()
    start = time.perf_counter()
    latencies = await asyncio.gather(*calls)
    wall = time.perf_counter() - start
    server.samples.setdefault(style, []).append((wall, list(latencies), server.cpu() - cpu))


async def bench(
    servers: list[Server], runs: int, rounds: int, progress: Callable[[str], None]
) -> None:
    """Warm each server up, then alternate them round by round (order reversed every other)."""
    for server in servers:
        for style in ("wait", "stream"):
            await one_run(server.urls[0], style, f"{TOPIC} warm-up")
    for round_ in range(rounds):
        order = servers if round_ % 2 == 0 else servers[::-1]
        for server in order:
            for style in ("wait", "stream"):
                await measure(server, style, runs, round_)
        progress(f"round {round_ + 1} of {rounds} done")


def markdown(servers: list[Server], runs: int) -> str:
    """The results table."""
    out = [
        "| server | runs/s, `runs.wait` | runs/s, `runs.stream` | run latency, wait / stream "
        "| server CPU per run |",
        "|---|---:|---:|---:|---:|",
    ]
    for server in servers:
        cells = []
        for style in ("wait", "stream"):
            walls = [wall for wall, _, _ in server.samples[style]]
            cells.append(f"{runs / statistics.median(walls):.1f}")
        latency = [
            statistics.median(lat for _, lats, _ in server.samples[style] for lat in lats)
            for style in ("wait", "stream")
        ]
        cpu = [cpu / runs for style in ("wait", "stream") for _, _, cpu in server.samples[style]]
        out.append(
            f"| {server.name} | {cells[0]} | {cells[1]} | {latency[0]:.2f} s / {latency[1]:.2f} s "
            f"| {statistics.median(cpu) * 1000:.0f} ms |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Start everything, measure, print the table."""
    from langgraph_fanout.production.postgres import create_database, find_bindir, postgres_cluster
    from langgraph_fanout.production.redis_server import find_redis_server, redis_server
    from tests.aegra_cluster import start_cluster
    from tests.fake_llm import start_fake_llm
    from tests.test_server import server_env, start_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs at once (20)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per server and style (5)")
    parser.add_argument("--latency", type=float, default=0.2, help="fake LLM seconds a call (0.2)")
    parser.add_argument("--jobs", type=int, default=20, help="langgraph dev runs at once (20)")
    args = parser.parse_args(argv)
    bindir, redis_binary = find_bindir(), find_redis_server()
    if bindir is None or redis_binary is None:
        sys.exit("PostgreSQL and redis-server are needed: make system-deps")

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    load_start = os.getloadavg()
    progress(f"load average at start: {' '.join(f'{x:.2f}' for x in load_start)}")
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(start_fake_llm(latency=args.latency))
        postgres = stack.enter_context(postgres_cluster(bindir)).url
        redis = stack.enter_context(redis_server(redis_binary)).url
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fanout-servers-")))
        clusters = []
        for replicas, index in ((1, 1), (2, 2)):
            workdir = work / f"aegra{replicas}"
            workdir.mkdir()
            cluster = start_cluster(
                fake, postgres, f"{redis.rsplit('/', 1)[0]}/{index}", workdir, replicas,
                LEASE_DURATION_SECONDS="30", HEARTBEAT_INTERVAL_SECONDS="10",
                REAPER_INTERVAL_SECONDS="15",
            )  # fmt: skip
            stack.callback(cluster.stop)
            clusters.append(cluster)
        dev_dir = work / "dev"
        dev_dir.mkdir()
        dev_env = server_env(fake, create_database(postgres, "langgraph_dev"))
        dev = start_server(dev_dir, dev_env, jobs=args.jobs)
        stack.callback(dev.kill)
        servers = [
            Server(
                f"`langgraph dev` (--n-jobs-per-worker {args.jobs})", [dev.url], [dev.process.pid]
            ),
            *(
                Server(
                    f"Aegra, {len(c.replicas)} replica{'s' * (len(c.replicas) > 1)}",
                    c.urls,
                    [r.process.pid for r in c.replicas],
                )
                for c in clusters
            ),
        ]
        progress("servers up; measuring")
        asyncio.run(bench(servers, args.runs, args.rounds, progress))
    load_end = os.getloadavg()
    host = machine()
    pins = (ROOT / "langgraph_fanout" / "production" / "requirements.in").read_text()
    aegra = re.search(r"^aegra-api==(\S+)", pins, flags=re.M)
    version = aegra[1] if aegra else "?"
    print(
        f"{args.runs} research runs at once, fake LLM at {args.latency:g} s a call, medians of "
        f"{args.rounds} rounds; {host['cpu']}, {host['cores']} cores; clients and langgraph dev "
        f"on Python {host['python']}, Aegra {version}; load average {load_start[0]:.2f} at start, "
        f"{load_end[0]:.2f} at end\n"
    )
    print(markdown(servers, args.runs))


if __name__ == "__main__":
    main()
