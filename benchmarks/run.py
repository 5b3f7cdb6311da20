"""Benchmark the article workflow against the bare-SDK floor and what else a user could write.

    python -m benchmarks.run [--sizes 8 100 1000] [--rounds 15 15 3] [--latency 0.1]
                             [--contenders floor project ...] [--postgres-url URL | --no-postgres]
                             [--quick] [--out FILE]

Every contender (``benchmarks/contenders.py``: the bare ``openai`` SDK floor, this project
without a checkpointer, with SQLite and with PostgreSQL, the LangGraph docs' orchestrator-worker
example, the source document's Pydantic AI code) runs in its own process against one fake
OpenAI-compatible server (``fake_llm``, its own process, a fixed latency L per call) on the
same cores. The contenders run once to warm up, then at each N in alternating rounds (order
reversed every other round); the table shows median wall seconds as ratios to the floor's,
and the project's to the floor's on aiohttp (the project's transport), with the goals of
issues 12 and 27 met or not.
Each run is checked at the server: exactly N + 1 LLM calls. At the largest N the floors, the
project and the docs example also run once under tracemalloc for their peak Python heap.

Prints Markdown (the README's table) and writes ``benchmarks/results/latest.json``; the load
average at start and end is printed with it: compare runs made under the same load only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
FAKE_MODEL = "fake-model"
ROUNDS_ON_CRITICAL_PATH = 2  # the planner, then the writers
CONTENDERS = [
    "floor",
    "floor-aiohttp",
    "project",
    "project+sqlite",
    "project+postgres",
    "langgraph-docs",
    "pydantic-ai",
]
LABELS = {
    "floor": "floor (bare SDK)",
    "floor-aiohttp": "floor on aiohttp",
    "project": "project",
    "project+sqlite": "+ SQLite",
    "project+postgres": "+ PostgreSQL",
    "langgraph-docs": "LangGraph docs example",
    "pydantic-ai": "Pydantic AI",
}
SIZES = [8, 100, 1000]
ROUNDS = [15, 15, 3]  # N = 100 runs vary by +-20% one to the next: 7 rounds were too few
QUICK_ROUNDS = [5, 3, 1]
HEAP_BEFORE_MIB = 61.5  # the project's heap per run at N = 1,000 before issue 12
AIOHTTP_FLOOR = "floor-aiohttp"
AIOHTTP_GOALS = {100: 1.20, 1000: 1.50}  # issue 27: the project over the floor on aiohttp
ON_AIOHTTP = (
    " The last column divides the project's time by the floor's on the SDK's aiohttp"
    " transport, the one the project uses."
)
# Whose heap is measured at the largest N (a run under tracemalloc takes 2-3 times as long).
HEAP_OF = {"floor", "floor-aiohttp", "project", "langgraph-docs"}


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


@dataclass
class Contender:
    """One contender's process, driven over its stdin/stdout."""

    name: str
    process: subprocess.Popen[str]
    stderr: IO[bytes]

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request, wait for its reply."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self.read()

    def read(self) -> dict[str, Any]:
        """The next reply; raise with the process's stderr if it died or failed."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        reply = json.loads(line) if line else {"error": "the process exited"}
        if "error" in reply:
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace")[-3000:]
            raise ContenderFailed(reply["error"], tail)
        return reply


class ContenderFailed(RuntimeError):
    """A contender's run failed (its error, and the tail of its stderr)."""


@contextlib.contextmanager
def contenders(
    names: list[str], env: dict[str, str], tmp: str, postgres: str | None
) -> Iterator[list[Contender]]:
    """Start one process per contender; stop them all at the end."""
    started: list[Contender] = []
    try:
        for name in names:
            command = [sys.executable, "-m", "benchmarks.contenders", name]
            command += ["--sqlite", f"{tmp}/{name}.sqlite"]
            if postgres:
                command += ["--postgres", postgres]
            stderr = tempfile.TemporaryFile()
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, text=True,
            )  # fmt: skip
            started.append(Contender(name, process, stderr))
        for contender in started:
            contender.read()  # {"ready": name}
        yield started
    finally:
        for contender in started:
            if contender.process.stdin:
                contender.process.stdin.close()
        for contender in started:
            try:
                contender.process.wait(30)
            except subprocess.TimeoutExpired:
                contender.process.kill()
                contender.process.wait()
            if contender.process.stdout:
                contender.process.stdout.close()
            contender.stderr.close()


@dataclass
class Samples:
    """What one contender measured at one N."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    heap_peak: int | None = None
    rss_peak: int = 0
    error: str | None = None  # why it has no (or not all) samples here


def one_run(
    contender: Contender, fake: Any, n: int, heap: bool = False
) -> tuple[dict[str, Any], float]:
    """One run; the reply and the fake server's CPU seconds it took. Checks N + 1 calls."""
    before = fake.stats()
    reply = contender.ask({"n": n, "heap": heap})
    after = fake.stats()
    calls = after["requests"] - before["requests"]
    if calls != n + 1:
        raise ContenderFailed(f"{calls} LLM calls at N = {n}, expected {n + 1}", "")
    return reply, after["cpu_s"] - before["cpu_s"]


def bench(
    procs: list[Contender], fake: Any, latency: float, sizes: list[int], rounds: list[int]
) -> dict[int, dict[str, Samples]]:
    """Every contender at every N: a warm-up run, then alternating rounds.

    A contender whose run fails is dropped from then on (the floor's failure ends the
    benchmark); its error is kept in its samples.
    """
    results: dict[int, dict[str, Samples]] = {}
    active = list(procs)
    failed: dict[str, str] = {}
    for n, reps in zip(sizes, rounds, strict=True):
        fake.reset()
        fake.configure(latency=latency, default_items=n)
        samples = {c.name: Samples(error=failed.get(c.name)) for c in procs}

        def attempt(
            contender: Contender, heap: bool = False, n: int = n, samples: dict = samples
        ) -> dict[str, Any] | None:
            try:
                reply, server_cpu = one_run(contender, fake, n, heap)
            except ContenderFailed as exc:
                if contender is procs[0]:
                    raise RuntimeError(f"{contender.name}: {exc.args[0]}\n{exc.args[1]}") from exc
                failed[contender.name] = samples[contender.name].error = f"{exc.args[0]}"
                active.remove(contender)
                _progress(f"{contender.name} failed at N = {n:,}: {exc.args[0]}; dropped")
                return None
            return {**reply, "server_cpu": server_cpu}

        if n == sizes[0]:  # warm-up: imports, caches, first connections
            for contender in list(active):
                attempt(contender)
        for rep in range(reps):
            for contender in list(active if rep % 2 == 0 else active[::-1]):
                if (reply := attempt(contender)) is None:
                    continue
                s = samples[contender.name]
                s.wall.append(reply["wall"])
                s.cpu.append(reply["cpu"])
                s.server_cpu.append(reply["server_cpu"])
                s.rss_peak = max(s.rss_peak, reply["rss_peak"])
        if n == max(sizes):
            for contender in [c for c in active if c.name in HEAP_OF]:
                if (reply := attempt(contender, heap=True)) is not None:
                    samples[contender.name].heap_peak = reply["heap_peak"]
        results[n] = samples
        floor = statistics.median(samples[procs[0].name].wall)
        _progress(
            f"N={n:,} ({reps} rounds, load {os.getloadavg()[0]:.2f}): "
            + ", ".join(
                f"{k} {statistics.median(v.wall) / floor:.2f}" if v.wall and not v.error else k
                for k, v in samples.items()
            )
        )
    return results


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), cpu)
    versions = {}
    for package in ("langgraph", "langchain-openai", "openai", "pydantic-ai-slim", "aiohttp"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "packages": versions,
    }


def summarize(results: dict[int, dict[str, Samples]], latency: float) -> list[dict[str, Any]]:
    """One row per N and contender: medians and ratios to the floor."""
    rows = []
    for n, samples in results.items():
        floor = statistics.median(samples["floor"].wall)
        for name, s in samples.items():
            if s.error is not None or not s.wall:
                rows.append({"n": n, "contender": name, "error": s.error or "not run"})
                continue
            wall = statistics.median(s.wall)
            rows.append(
                {
                    "n": n,
                    "contender": name,
                    "runs": len(s.wall),
                    "wall_s": wall,
                    "over_floor": wall / floor,
                    "over_critical_path": wall / (ROUNDS_ON_CRITICAL_PATH * latency),
                    "cpu_s": statistics.median(s.cpu),
                    "server_cpu_s": statistics.median(s.server_cpu),
                    "heap_peak_mib": None if s.heap_peak is None else s.heap_peak / 2**20,
                    "rss_peak_mib": s.rss_peak / 2**20,
                    "walls": s.wall,
                }
            )
    return rows


def over_aiohttp(rows: list[dict[str, Any]]) -> dict[int, float]:
    """The project's median wall time over the floor's on aiohttp (its transport), per N."""
    wall = {(r["n"], r["contender"]): r["wall_s"] for r in rows if "error" not in r}
    sizes = sorted({n for n, _ in wall})
    return {
        n: wall[n, "project"] / wall[n, AIOHTTP_FLOOR]
        for n in sizes
        if (n, "project") in wall and (n, AIOHTTP_FLOOR) in wall
    }


def goals(rows: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """Issue 12's and issue 27's goals, each with whether this run met it."""
    ratio = {(r["n"], r["contender"]): r["over_floor"] for r in rows if "error" not in r}
    sizes = sorted({r["n"] for r in rows})
    checks: list[tuple[str, bool]] = []
    for n in sizes:
        if (n, "project") not in ratio:
            continue
        limit = 1.05 if n <= 8 else 1.10
        checks.append(
            (f"project / floor <= {limit:.2f} at N = {n:,}", ratio[n, "project"] <= limit)
        )
        for other in ("langgraph-docs", "pydantic-ai"):
            if (n, other) in ratio:
                checks.append(
                    (
                        f"project <= {LABELS[other]} at N = {n:,}",
                        ratio[n, "project"] <= ratio[n, other],
                    )
                )
    if (100, "project+sqlite") in ratio and (100, "project") in ratio:
        extra = ratio[100, "project+sqlite"] - ratio[100, "project"]
        checks.append((f"SQLite adds {extra:.2f} <= 0.10 of the floor at N = 100", extra <= 0.10))
    for n, over in over_aiohttp(rows).items():
        if (limit := AIOHTTP_GOALS.get(n)) is not None:
            checks.append(
                (f"project / {LABELS[AIOHTTP_FLOOR]} {over:.3f} <= {limit:.2f} at N = {n:,}",
                 over <= limit)
            )  # fmt: skip
    heap = [r.get("heap_peak_mib") for r in rows if r["contender"] == "project" and r["n"] == 1000]
    if heap and heap[0] is not None:
        checks.append(
            (f"project heap per run {heap[0]:.1f} MiB <= {HEAP_BEFORE_MIB} MiB at N = 1,000",
             heap[0] <= HEAP_BEFORE_MIB)
        )  # fmt: skip
    return checks


def markdown(results: dict[str, Any]) -> str:
    """The tables, in Markdown."""
    m, rows, latency = results["machine"], results["rows"], results["latency_s"]
    names = list(dict.fromkeys(r["contender"] for r in rows))
    sizes = sorted({r["n"] for r in rows})
    by = {(r["n"], r["contender"]): r for r in rows}
    load = results["loadavg_start"], results["loadavg_end"]
    runs = ", ".join(f"{by[n, 'floor']['runs']} at N = {n:,}" for n in sizes)
    over = over_aiohttp(rows)
    extra = f" | project / {LABELS[AIOHTTP_FLOOR]}" if over else ""
    out = [
        f"Measured {results['date']} on {m['cpu']}, {m['cores']} cores, Python {m['python']}; "
        f"fake OpenAI-compatible server at L = {latency * 1000:g} ms per call on the same cores; "
        f"load average {load[0][0]:.2f} at start, {load[1][0]:.2f} at end; "
        f"{', '.join(f'{k} {v}' for k, v in m['packages'].items())}.",
        "",
        "Article workflow, N sections: median wall time as a ratio to the floor (bare `openai` "
        "SDK + `asyncio.gather`); each contender in its own process, alternating rounds "
        f"({runs})." + (ON_AIOHTTP if over else ""),
        "",
        "| N | k x L | floor | " + " | ".join(LABELS.get(c, c) for c in names[1:]) + extra + " |",
        "|---:|---:|---:|" + "---:|" * (len(names) - 1 + bool(over)),
    ]
    for n in sizes:
        floor = by[n, "floor"]
        cells = [
            "failed" if "error" in by[n, c] else f"{by[n, c]['over_floor']:.2f}" for c in names[1:]
        ]
        if over:
            cells.append(f"{over[n]:.2f}" if n in over else "—")
        out.append(
            f"| {n:,} | {ROUNDS_ON_CRITICAL_PATH * latency:.2f} s | {floor['wall_s']:.3f} s "
            f"({floor['over_critical_path']:.2f} x kL) | " + " | ".join(cells) + " |"
        )
    n = sizes[-1]
    out += [
        "",
        f"At N = {n:,}, per run (medians): CPU of the contender's process and of the fake "
        "server; peak Python heap of one run (tracemalloc); peak RSS of the contender's process.",
        "",
        "| contender | wall | client CPU | server CPU | heap / run | peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in names:
        r = by[n, c]
        if "error" in r:
            out.append(f"| {LABELS.get(c, c)} | failed | | | | |")
            continue
        heap = "—" if r["heap_peak_mib"] is None else f"{r['heap_peak_mib']:.1f} MiB"
        out.append(
            f"| {LABELS.get(c, c)} | {r['wall_s']:.2f} s | {r['cpu_s']:.2f} s "
            f"| {r['server_cpu_s']:.2f} s | {heap} | {r['rss_peak_mib']:.0f} MiB |"
        )
    errors = {r["contender"]: (r["n"], r["error"]) for r in reversed(rows) if "error" in r}
    for c, (n, error) in errors.items():
        out += ["", f"{LABELS.get(c, c)} failed at N = {n:,}: {error}"]
    out += ["", "Goals (issues 12 and 27):", ""]
    out += [f"- {'met' if ok else 'NOT met'}: {text}" for text, ok in results["goals"]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Start the services and the contenders, measure, print the tables, write the JSON."""
    from langgraph_fanout.production.postgres import find_bindir, postgres_cluster
    from tests.fake_llm import start_fake_llm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--rounds", type=int, nargs="+", help="rounds at each size")
    parser.add_argument("--quick", action="store_true", help=f"rounds {QUICK_ROUNDS}")
    parser.add_argument("--latency", type=float, default=0.1, help="fake latency per call (s)")
    parser.add_argument(
        "--contenders", nargs="+", default=CONTENDERS, help=f"default: {' '.join(CONTENDERS)}"
    )
    parser.add_argument("--postgres-url", help="default: a throwaway cluster if installed")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)[: len(args.sizes)]
    if len(rounds) != len(args.sizes):
        parser.error("give one --rounds value per size")
    names = ["floor", *(c for c in args.contenders if c != "floor")]
    load_start = os.getloadavg()
    _progress(f"load average at start: {' '.join(f'{x:.2f}' for x in load_start)}")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH", "LANGCHAIN_"))}
    with contextlib.ExitStack() as stack:
        postgres = None if args.no_postgres else args.postgres_url
        if "project+postgres" in names and postgres is None and not args.no_postgres:
            if (bindir := find_bindir()) is None:
                _progress("no PostgreSQL binaries (make system-deps): skipping project+postgres")
            else:
                postgres = stack.enter_context(postgres_cluster(bindir)).url
        if postgres is None:
            names = [c for c in names if c != "project+postgres"]
        fake = stack.enter_context(start_fake_llm(latency=args.latency))
        env.update(
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="bench-key",
            FANOUT_MODEL=f"openai:{FAKE_MODEL}",
            FAKE_MODEL=FAKE_MODEL,
        )
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fanout-bench-"))
        started = time.perf_counter()
        procs = stack.enter_context(contenders(names, env, tmp, postgres))
        measured = bench(procs, fake, args.latency, args.sizes, rounds)
    load_end = os.getloadavg()
    rows = summarize(measured, args.latency)
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "latency_s": args.latency,
        "machine": machine(),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    results["goals"] = goals(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    _progress(f"load average at end: {' '.join(f'{x:.2f}' for x in load_end)}")
    print(markdown(results))
    print(f"\n({results['elapsed_s']:.0f} s; results in {args.out})", file=sys.stderr)


if __name__ == "__main__":
    main()
