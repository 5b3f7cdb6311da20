"""The floor: the three workflows as bare ``asyncio.gather`` over the same LLM client.

No graph, no state, no checkpointer, no retries: what a hand-written script does (the way
the Pydantic AI source runs its workflows). Two clients:

- :class:`ChatFloor` goes through exactly the client path the graphs use: the runnables of
  ``nodes.models.model_for`` (``ChatOpenAI``, ``with_structured_output`` for the structured
  calls), and the same prompts. ``ours / floor`` on it is the framework's cost.
- :class:`SdkFloor` talks to the server with the bare ``openai.AsyncOpenAI`` SDK: the cost of
  the LangChain client layer shows as the gap between the two floors.

Each workflow returns the number of LLM calls it made.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from openai import AsyncOpenAI
from pydantic import BaseModel

from nodes.llm import messages
from nodes.models import model_for
from nodes.prompts import (
    AGGREGATOR_SYSTEM,
    AGGREGATOR_USER,
    CRITERIA,
    EVALUATOR_SYSTEM,
    EVALUATOR_USER,
    ORCHESTRATOR_SYSTEM,
    ORCHESTRATOR_USER,
    PLANNER_SYSTEM,
    PLANNER_USER,
    REPORT_WRITER_SYSTEM,
    REPORT_WRITER_USER,
    RESEARCHER_SYSTEM,
    RESEARCHER_USER,
    SECTION_WRITER_SYSTEM,
    SECTION_WRITER_USER,
)
from state.article import Section, Sections
from state.context import Context, Role
from state.evaluation import AggregatedVerdict, Verdict
from state.research import MAX_QUESTIONS, MIN_QUESTIONS, ResearchPlan


def _evaluation_listing(verdicts: list[tuple[str, Verdict]]) -> list[BaseMessage]:
    listing = "\n".join(
        f"- {name}: {'appropriate' if v.is_appropriate else 'NOT appropriate'} - {v.explanation}"
        for name, v in verdicts
    )
    votes = sum(v.is_appropriate for _, v in verdicts)
    user = AGGREGATOR_USER.format(votes=votes, total=len(verdicts), evaluations=listing)
    return messages(AGGREGATOR_SYSTEM, user)


def _plan_messages(topic: str, max_sections: int) -> list[BaseMessage]:
    return messages(
        ORCHESTRATOR_SYSTEM.format(max_sections=max_sections), ORCHESTRATOR_USER.format(topic=topic)
    )


def _research_plan_messages(topic: str) -> list[BaseMessage]:
    system = PLANNER_SYSTEM.format(min_questions=MIN_QUESTIONS, max_questions=MAX_QUESTIONS)
    return messages(system, PLANNER_USER.format(topic=topic))


def _report_messages(topic: str, findings: list[dict[str, str]]) -> list[BaseMessage]:
    text = json.dumps(findings, indent=2, ensure_ascii=False)
    return messages(REPORT_WRITER_SYSTEM, REPORT_WRITER_USER.format(topic=topic, findings=text))


class ChatFloor:
    """The workflows over the graphs' own client path, minus the graph.

    The runnables are the very objects the graph nodes use (``nodes.models.model_for``, cached
    per event loop): the same ``ChatOpenAI`` instance, HTTP client and connection pool, and
    ``with_structured_output`` for the structured calls.
    """

    def __init__(self, context: Context | None = None) -> None:
        self.context = context or Context()

    def structured(self, schema: type[BaseModel], role: Role = "planner") -> Runnable:
        """The ``role``'s model bound to ``schema``."""
        return model_for(self.context, role, schema)

    async def text(self, prompt: list[BaseMessage], role: Role = "worker") -> str:
        """One plain call; the reply text."""
        return (await model_for(self.context, role).ainvoke(prompt)).text.strip()

    async def evaluation(self, text: str) -> int:
        """Three evaluators at once, then the aggregator: 4 calls."""
        judge = self.structured(Verdict, "evaluator")
        verdicts = await asyncio.gather(
            *(
                judge.ainvoke(
                    messages(
                        EVALUATOR_SYSTEM.format(criterion=criterion),
                        EVALUATOR_USER.format(text=text),
                    )
                )
                for criterion in CRITERIA.values()
            )
        )
        await self.structured(AggregatedVerdict, "aggregator").ainvoke(
            _evaluation_listing(list(zip(CRITERIA, verdicts, strict=True)))
        )
        return len(verdicts) + 1

    async def article(
        self, topic: str, max_sections: int, max_concurrency: int | None = None
    ) -> int:
        """Plan, write every section at once (or ``max_concurrency`` at a time), join."""
        plan: Sections = await self.structured(Sections).ainvoke(
            _plan_messages(topic, max_sections)
        )
        sections = [s for s in plan.sections if s.name.strip()][:max_sections]
        limit = asyncio.Semaphore(max_concurrency) if max_concurrency else contextlib.nullcontext()

        async def write(section: Section) -> str:
            prompt = SECTION_WRITER_USER.format(
                topic=topic, name=section.name, description=section.description
            )
            async with limit:
                return await self.text(messages(SECTION_WRITER_SYSTEM, prompt))

        contents = await asyncio.gather(*(write(s) for s in sections))
        parts = [f"# {topic}"] + [
            f"## {s.name}\n\n{c}" for s, c in zip(sections, contents, strict=True)
        ]
        "\n\n".join(parts)
        return len(sections) + 1

    async def research(self, topic: str) -> int:
        """Plan questions, research them at once, write the report: 2 + N calls."""
        plan: ResearchPlan = await self.structured(ResearchPlan).ainvoke(
            _research_plan_messages(topic)
        )
        questions = list(dict.fromkeys(q.strip() for q in plan.questions if q.strip()))
        questions = questions[:MAX_QUESTIONS]
        answers = await asyncio.gather(
            *(
                self.text(
                    messages(RESEARCHER_SYSTEM, RESEARCHER_USER.format(topic=topic, question=q))
                )
                for q in questions
            )
        )
        findings = [{"question": q, "answer": a} for q, a in zip(questions, answers, strict=True)]
        await self.text(_report_messages(topic, findings), "writer")
        return len(questions) + 2


class SdkFloor:
    """The article workflow over the bare ``openai.AsyncOpenAI`` SDK (no LangChain at all)."""

    def __init__(self, base_url: str, api_key: str, model: str, context: Context | None = None):
        self.context = context or Context()
        self.model = model
        self.client = AsyncOpenAI(
            base_url=base_url, api_key=api_key, max_retries=0, timeout=self.context.timeout
        )
        self._schema = {
            "name": "Sections",
            "schema": Sections.model_json_schema(),
            "strict": False,
        }

    async def _call(self, prompt: list[BaseMessage], **extra: Any) -> str:
        response = await self.client.chat.completions.create(
            model=self.model,
            messages=[
                {"role": "system" if m.type == "system" else "user", "content": m.text}
                for m in prompt
            ],  # type: ignore[misc]
            temperature=self.context.temperature,
            max_completion_tokens=self.context.max_tokens,
            **extra,
        )
        return (response.choices[0].message.content or "").strip()

    async def article(self, topic: str, max_sections: int) -> int:
        """Plan, write every section at once, join: 1 + N calls."""
        raw = await self._call(
            _plan_messages(topic, max_sections),
            response_format={"type": "json_schema", "json_schema": self._schema},
        )
        plan = Sections.model_validate_json(raw)
        sections = [s for s in plan.sections if s.name.strip()][:max_sections]
        contents = await asyncio.gather(
            *(
                self._call(
                    messages(
                        SECTION_WRITER_SYSTEM,
                        SECTION_WRITER_USER.format(
                            topic=topic, name=s.name, description=s.description
                        ),
                    )
                )
                for s in sections
            )
        )
        parts = [f"## {s.name}\n\n{c}" for s, c in zip(sections, contents, strict=True)]
        "\n\n".join([f"# {topic}", *parts])
        return len(sections) + 1

    async def aclose(self) -> None:
        """Close the SDK's HTTP client."""
        await self.client.close()
