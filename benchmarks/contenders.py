"""The article workflow as each contender writes it, and the process that runs one of them.

Every contender plans N sections with one structured call, writes them with N concurrent
calls and joins them; ``run(n)`` returns how many sections were written.

- ``floor``: the bare ``openai`` SDK (``AsyncOpenAI`` on its default httpx transport) and
  ``asyncio.gather``, on the project's prompts and schema: no framework at all;
  ``floor-aiohttp``: the same on the SDK's aiohttp transport, which the project uses.
- ``project``, ``project+sqlite``, ``project+postgres``: ``graphs.article`` as a user runs it
  (``ainvoke`` with a ``Context``; with a checkpointer, on a new thread, durability "sync").
- ``langgraph-docs``: the orchestrator-worker example of LangGraph's "Workflows and agents"
  page (its structured-output planner, ``Send`` workers and synthesizer), on ``ChatOpenAI``.
  Its nodes are ``async def`` with ``ainvoke`` as in the page's TypeScript version: the Python
  version's sync nodes would run on LangGraph's thread pool (cpu + 4 threads).
- ``pydantic-ai``: the source document's code (``Agent`` orchestrator and worker with
  structured outputs, ``asyncio.gather``). Its model is on Chat Completions, which is what
  ``openai:`` meant when the post was written (Pydantic AI 2.x maps ``openai:`` to the
  Responses API); the ``logfire.instrument`` decorator is left out.

The project, the floors and Pydantic AI get the project's request timeout (60 s); the docs
example keeps ``ChatOpenAI``'s default (none).

``python -m benchmarks.contenders NAME`` serves one contender to ``benchmarks.run`` over
stdin/stdout, one JSON object a line: ``{"n": 100}`` runs it once and answers with its wall
and CPU seconds; ``{"n": 1000, "heap": true}`` runs it under tracemalloc for its peak heap.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import operator
import os
import resource
import sys
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Annotated, Any

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

TOPIC = "The history and future of tidal power"

Run = Callable[[int], Awaitable[int]]


# --- the floor: the bare openai SDK -----------------------------------------------------------


@contextlib.asynccontextmanager
async def floor(aiohttp: bool = False) -> AsyncIterator[Run]:
    """Plan, write every section at once with ``asyncio.gather``, join (``aiohttp``: on it)."""
    from openai import AsyncOpenAI, DefaultAioHttpClient

    from nodes.prompts import (
        ORCHESTRATOR_SYSTEM,
        ORCHESTRATOR_USER,
        SECTION_WRITER_SYSTEM,
        SECTION_WRITER_USER,
    )
    from state.article import Sections

    schema = {"name": "Sections", "schema": Sections.model_json_schema(), "strict": False}

    # The project's timeout, 60 s (the SDK's 5 s connect timeout fails at N = 1,000 on httpx,
    # where its own CPU keeps the event loop busy); 2 retries, like the project's client.
    http = {"http_client": DefaultAioHttpClient()} if aiohttp else {}
    async with AsyncOpenAI(timeout=60.0, **http) as client:

        async def complete(system: str, user: str, **extra: Any) -> str:
            response = await client.chat.completions.create(
                model=os.environ["FAKE_MODEL"],
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                temperature=0.0,
                max_completion_tokens=1024,
                **extra,
            )
            return (response.choices[0].message.content or "").strip()

        async def run(n: int) -> int:
            raw = await complete(
                ORCHESTRATOR_SYSTEM.format(max_sections=n),
                ORCHESTRATOR_USER.format(topic=TOPIC),
                response_format={"type": "json_schema", "json_schema": schema},
            )
            sections = [s for s in Sections.model_validate_json(raw).sections if s.name][:n]
            contents = await asyncio.gather(
                *(
                    complete(
                        SECTION_WRITER_SYSTEM,
                        SECTION_WRITER_USER.format(
                            topic=TOPIC, name=s.name, description=s.description
                        ),
                    )
                    for s in sections
                )
            )
            parts = [f"## {s.name}\n\n{c}" for s, c in zip(sections, contents, strict=True)]
            article = "\n\n".join([f"# {TOPIC}", *parts])
            return len(contents) if article else 0

        yield run


# --- this project -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def project(checkpointer: str | None = None) -> AsyncIterator[Run]:
    """``graphs.article``, without a checkpointer or with the one at ``checkpointer``."""
    from graphs.article import builder, graph
    from langgraph_fanout.persistence.checkpointer import aopen_checkpointer
    from state.context import Context

    async with contextlib.AsyncExitStack() as stack:
        durable: dict[str, Any] = {}
        if checkpointer is not None:
            graph = builder.compile(
                await stack.enter_async_context(aopen_checkpointer(checkpointer))
            )
            durable = {"durability": "sync"}  # as the CLI runs

        async def run(n: int) -> int:
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}
            out = await graph.ainvoke(
                {"topic": TOPIC}, config, context=Context(max_sections=n), **durable
            )
            return len(out["completed_sections"])

        yield run


# --- the LangGraph docs' orchestrator-worker example -------------------------------------------


class DocsSection(BaseModel):
    name: str = Field(
        description="Name for this section of the report.",
    )
    description: str = Field(
        description="Brief overview of the main topics and concepts to be covered in this section.",
    )


class DocsSections(BaseModel):
    sections: list[DocsSection] = Field(
        description="Sections of the report.",
    )


class DocsState(TypedDict):
    topic: str
    sections: list[DocsSection]
    completed_sections: Annotated[list, operator.add]
    final_report: str


class DocsWorkerState(TypedDict):
    section: DocsSection
    completed_sections: Annotated[list, operator.add]


@contextlib.asynccontextmanager
async def langgraph_docs() -> AsyncIterator[Run]:
    """The docs' graph, verbatim but for ``async def`` nodes and ``ainvoke``."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    llm = ChatOpenAI(model=os.environ["FAKE_MODEL"])
    planner = llm.with_structured_output(DocsSections)

    async def orchestrator(state: DocsState):
        """Orchestrator that generates a plan for the report"""
        report_sections = await planner.ainvoke(
            [
                SystemMessage(content="Generate a plan for the report."),
                HumanMessage(content=f"Here is the report topic: {state['topic']}"),
            ]
        )
        return {"sections": report_sections.sections}

    async def llm_call(state: DocsWorkerState):
        """Worker writes a section of the report"""
        section = state["section"]
        result = await llm.ainvoke(
            [
                SystemMessage(content="Write a report section."),
                HumanMessage(
                    content=f"Here is the section name: {section.name} and description: "
                    f"{section.description}"
                ),
            ]
        )
        return {"completed_sections": [result.content]}

    def synthesizer(state: DocsState):
        """Synthesize full report from sections"""
        completed_sections = state["completed_sections"]
        final_report = "\n\n---\n\n".join(completed_sections)
        return {"final_report": final_report}

    def assign_workers(state: DocsState):
        """Assign a worker to each section in the plan"""
        return [Send("llm_call", {"section": s}) for s in state["sections"]]

    orchestrator_worker_builder = StateGraph(DocsState)
    orchestrator_worker_builder.add_node("orchestrator", orchestrator)
    orchestrator_worker_builder.add_node("llm_call", llm_call)
    orchestrator_worker_builder.add_node("synthesizer", synthesizer)
    orchestrator_worker_builder.add_edge(START, "orchestrator")
    orchestrator_worker_builder.add_conditional_edges("orchestrator", assign_workers, ["llm_call"])
    orchestrator_worker_builder.add_edge("llm_call", "synthesizer")
    orchestrator_worker_builder.add_edge("synthesizer", END)
    orchestrator_worker = orchestrator_worker_builder.compile()

    async def run(n: int) -> int:
        state = await orchestrator_worker.ainvoke({"topic": TOPIC})
        return len(state["completed_sections"])

    yield run


# --- the source document's Pydantic AI code -----------------------------------------------------


class Section(BaseModel):
    name: str = Field(description="The name of the section")
    description: str = Field(description="The description of the section")


class CompletedSection(BaseModel):
    name: str = Field(description="The name of the section")
    content: str = Field(description="The content of the section")


class Sections(BaseModel):
    sections: list[Section] = Field(description="The sections of the article")


@contextlib.asynccontextmanager
async def pydantic_ai() -> AsyncIterator[Run]:
    """The post's orchestrator-workers ``run_workflow``, its model on Chat Completions."""
    from pydantic_ai import Agent
    from pydantic_ai.models import create_async_httpx2_client
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    # As "openai-chat:<model>", with the project's 60 s timeout: Pydantic AI's default 5 s
    # connect timeout fails at N = 1,000, where its own CPU keeps the event loop busy.
    http_client = create_async_httpx2_client(timeout=60.0)
    model = OpenAIChatModel(
        os.environ["FAKE_MODEL"], provider=OpenAIProvider(http_client=http_client)
    )
    orchestrator = Agent(
        model,
        output_type=Sections,
        system_prompt=(
            "You are an expert writer specialized in SEO. Provided with a topic, you will "
            "generate the sections for a short article."
        ),
    )
    worker = Agent(
        model,
        output_type=CompletedSection,
        system_prompt=(
            "You are an expert writer specialized in SEO. Provided with a topic and a section, "
            "you will generate the content of the section."
        ),
    )

    def synthesizer(sections: list[CompletedSection]) -> str:
        completed_sections_str = "\n\n".join([section.content for section in sections])
        return completed_sections_str

    async def run_workflow(topic: str) -> str:
        orchestrator_output = await orchestrator.run(
            f"Generate the sections for a short article about {topic}"
        )
        tasks = [
            worker.run(
                f"Write the section {section.name} about {topic} with the following "
                f"description: {section.description}"
            )
            for section in orchestrator_output.output.sections
        ]
        completed_sections = await asyncio.gather(*tasks)
        full_article = synthesizer([c.output for c in completed_sections])
        return full_article

    async def run(n: int) -> int:
        article = await run_workflow(TOPIC)
        return article.count("\n\n") + 1 if article else 0

    yield run
    await http_client.aclose()


# --- the contender process ---------------------------------------------------------------------


def contender(
    name: str, sqlite: str, postgres: str | None
) -> contextlib.AbstractAsyncContextManager[Run]:
    """The contender called ``name``."""
    if name == "floor":
        return floor()
    if name == "floor-aiohttp":
        return floor(aiohttp=True)
    if name == "project":
        return project()
    if name == "project+sqlite":
        return project(sqlite)
    if name == "project+postgres":
        if postgres is None:
            raise SystemExit("project+postgres needs --postgres URL")
        return project(postgres)
    if name == "langgraph-docs":
        return langgraph_docs()
    if name == "pydantic-ai":
        return pydantic_ai()
    raise SystemExit(f"unknown contender {name!r}")


async def measure(run: Run, n: int, heap: bool) -> dict[str, Any]:
    """One run of ``n`` sections: wall and CPU seconds, or the peak heap under tracemalloc."""
    gc.collect()
    if heap:
        tracemalloc.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        done = await run(n)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        heap_peak = tracemalloc.get_traced_memory()[1] if heap else None
    finally:
        tracemalloc.stop()
    if done != n:
        raise RuntimeError(f"{done} sections written, expected {n}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"wall": wall, "cpu": cpu, "heap_peak": heap_peak, "rss_peak": rss}


async def serve(name: str, sqlite: str, postgres: str | None, out: IO[str]) -> None:
    """Answer run requests from stdin until it closes."""
    async with contender(name, sqlite, postgres) as run:
        print(json.dumps({"ready": name}), file=out, flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            request = json.loads(line)
            try:
                reply = await measure(run, request["n"], request.get("heap", False))
            except Exception as exc:  # reported to the driver, which stops the benchmark
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), file=out, flush=True)


def main(argv: list[str] | None = None) -> None:
    """Serve one contender; stdout carries only the protocol (prints go to stderr)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--sqlite", required=True, help="SQLite file for project+sqlite")
    parser.add_argument("--postgres", help="PostgreSQL URL for project+postgres")
    args = parser.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr
    asyncio.run(serve(args.name, args.sqlite, args.postgres, out))


if __name__ == "__main__":
    main()
