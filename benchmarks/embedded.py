"""The embedded model: the demo article and the evaluation graph, batched vs one at a time.

    python -m benchmarks.embedded [--reps 3] [--out FILE]

Each graph runs on the embedded model with `make demo`'s settings (--max-sections 4
--max-tokens 160), once with its branches decoded together (no concurrency cap) and once
with ``max_concurrency=1`` (one branch at a time), alternating in one process so machine
load hits both alike. The fan-out stage is measured as the CLI's progress log shows it: from
the first worker's start to the last worker's finish. Prints a Markdown table of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from graphs.article import graph as article
from graphs.evaluation import graph as evaluation
from langgraph_fanout.cli.progress import RunProgress
from state.context import Context

DEMO_TOPIC = "Why durable execution matters for AI agents"  # `make demo`'s default topic
TEXT = "A short guide to planting tomatoes: sun, water, and patience."
CONTEXT = Context(model="local", max_sections=4, max_tokens=160)
WORKERS = {"article": "write_section", "evaluation": "evaluate_"}


async def run_once(name: str, max_concurrency: int | None) -> dict[str, Any]:
    """One run of ``name``: wall time, fan-out stage, workers, output tokens."""
    progress = RunProgress(Console(file=io.StringIO()))
    config: dict[str, Any] = {"callbacks": [progress]}
    if max_concurrency is not None:
        config["max_concurrency"] = max_concurrency
    graph, payload = (
        (article, {"topic": DEMO_TOPIC}) if name == "article" else (evaluation, {"text": TEXT})
    )
    started = time.perf_counter()
    await graph.ainvoke(payload, config, context=CONTEXT)
    wall = time.perf_counter() - started
    workers = [t for t in progress.tasks.values() if t.node.startswith(WORKERS[name])]
    return {
        "wall_s": wall,
        "fanout_s": max(t.finished or 0.0 for t in workers) - min(t.started for t in workers),
        "workers": len(workers),
        "output_tokens": progress.usage()["output_tokens"],
    }


async def bench(reps: int) -> list[dict[str, Any]]:
    """Medians per graph and variant; the batched row carries the fan-out ratio."""
    rows = []
    for name in WORKERS:
        runs: dict[str, list[dict[str, Any]]] = {"batched": [], "one at a time": []}
        for _ in range(reps):
            for variant, cap in (("batched", None), ("one at a time", 1)):
                runs[variant].append(await run_once(name, cap))
        for variant, samples in runs.items():
            rows.append(
                {
                    "graph": name,
                    "variant": variant,
                    "reps": reps,
                    "workers": samples[0]["workers"],
                    "wall_s": statistics.median(r["wall_s"] for r in samples),
                    "fanout_s": statistics.median(r["fanout_s"] for r in samples),
                    "output_tokens": statistics.median(r["output_tokens"] for r in samples),
                }
            )
        rows[-2]["fanout_ratio"] = rows[-2]["fanout_s"] / rows[-1]["fanout_s"]
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as the README's table."""
    out = [
        "| graph | variant | runs | workers | wall | fan-out stage | batched / one at a time |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['fanout_ratio']:.2f}" if "fanout_ratio" in r else ""
        out.append(
            f"| {r['graph']} | {r['variant']} | {r['reps']} | {r['workers']} | "
            f"{r['wall_s']:.1f} s | {r['fanout_s']:.1f} s | {ratio} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="runs per graph and variant")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FANOUT_MODEL"):
        os.environ.pop(name, None)
    load = os.getloadavg()
    rows = asyncio.run(bench(args.reps))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))
    end = os.getloadavg()[0]
    print(f"(load average {load[0]:.2f} at start, {end:.2f} at end)", file=sys.stderr)


if __name__ == "__main__":
    main()
