"""Where the CLI writes: progress and messages on stderr, the result on stdout."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from cli.runs import RunRecord, Workflow
from cli.terminal import printable, to_json

stderr = Console(stderr=True, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True, markup=False)  # model text is not markup


def print_result(
    args: argparse.Namespace,
    workflow: Workflow,
    record: RunRecord,
    output: dict[str, Any],
    usage: dict[str, Any],
) -> None:
    """Print a finished run: the usage line on stderr, the result on stdout."""
    tokens = (
        f", {usage['input_tokens']} input + {usage['output_tokens']} output tokens"
        if "input_tokens" in usage  # not collected from Temporal workers
        else ""
    )
    stderr.print(f"done: {usage['llm_calls']} LLM calls{tokens}", highlight=False)
    review = output.get("review") or {}
    if review.get("decision") == "rejected":
        reason = f": {printable(review['reason'])}" if review["reason"] else ""
        stderr.print(f"plan rejected at review{reason}; no worker ran", markup=False)
    if args.json:
        print(to_json({"thread_id": record.thread_id, **output, "usage": usage}))
    elif review.get("decision") == "rejected":
        return
    elif workflow.name == "evaluation":
        verdict = "appropriate" if output["is_appropriate"] else "NOT appropriate"
        stdout.print(
            f"{verdict} ({output['votes']}/{len(output['evaluations'])} evaluators vote "
            f"appropriate)\n{printable(output['summary'])}\n"
        )
        for e in output["evaluations"]:
            vote = "yes" if e["is_appropriate"] else "no"
            stdout.print(f"- {e['evaluator']}: {vote} - {printable(e['explanation'])}")
    elif workflow.name == "article":
        stdout.print(printable(output["article"]))
    else:
        report = printable(output["report"])
        stdout.print(f"{report}\n\n({output['task_count']} research questions)")
